//! [`Client`]: the POSIX-shaped calls, each one request and one response.

use crate::c_args;
use crate::transport::Transport;
use ipc_proto::{
    Advice, Errno, Fd, FilePath, MAX_REQUEST_LEN, MAX_RESPONSE_LEN, MapFlags, MlockallFlags,
    MmapArgs, MremapFlags, MsyncFlags, OFlags, ObjName, PROTOCOL_MAJOR, PROTOCOL_MINOR, PageInfo,
    Prot, RegionInfo, Reply, Request, Response, ServerInfo, ServerStats, ShmName, Stat,
    decode_response, encode_request,
};

/// A connection to the memory server over transport `T`.
pub struct Client<T> {
    transport: T,
}

impl<T: Transport> Client<T> {
    /// Wraps a transport. No message is sent until the first call.
    pub fn new(transport: T) -> Self {
        Client { transport }
    }

    /// The transport, e.g. to reach a test harness behind it.
    pub fn transport(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Gives the transport back.
    pub fn into_transport(self) -> T {
        self.transport
    }

    /// Sends any request and returns the server's response, through real encode/decode.
    ///
    /// A transport failure or an undecodable response is returned as the response's
    /// error (`EBADMSG`/`EPROTO`/whatever the transport reports).
    pub fn call(&mut self, request: &Request) -> Response {
        let mut req = [0u8; MAX_REQUEST_LEN];
        let len = encode_request(request, &mut req)?;
        let mut resp = [0u8; MAX_RESPONSE_LEN];
        let n = self.transport.call(&req[..len], &mut resp)?;
        let bytes = resp.get(..n).ok_or(Errno::EMSGSIZE)?;
        decode_response(bytes)?
    }

    /// The version handshake: the server's limits, or `EPROTO` if it speaks another major
    /// version.
    pub fn hello(&mut self) -> Result<ServerInfo, Errno> {
        match self.call(&Request::Hello {
            major: PROTOCOL_MAJOR,
            minor: PROTOCOL_MINOR,
        })? {
            Reply::Hello(info) if info.major == PROTOCOL_MAJOR => Ok(info),
            _ => Err(Errno::EPROTO),
        }
    }

    /// `mmap(addr, len, prot, flags, fd, offset)`: the address of the new mapping.
    pub fn mmap(
        &mut self,
        addr: u64,
        len: u64,
        prot: Prot,
        flags: MapFlags,
        fd: Option<Fd>,
        offset: u64,
    ) -> Result<u64, Errno> {
        self.mmap_args(MmapArgs {
            addr,
            len,
            prot,
            flags,
            fd,
            offset,
        })
    }

    /// `mmap` with its arguments already gathered.
    pub fn mmap_args(&mut self, args: MmapArgs) -> Result<u64, Errno> {
        match self.call(&Request::Mmap(args))? {
            Reply::Mapped { addr } => Ok(addr),
            _ => Err(Errno::EPROTO),
        }
    }

    /// `mmap` with C-style arguments (`int` flags, `-1` for no fd, signed offset).
    pub fn mmap_c(
        &mut self,
        addr: u64,
        len: u64,
        prot: i32,
        flags: i32,
        fd: i32,
        offset: i64,
    ) -> Result<u64, Errno> {
        self.mmap_args(c_args::mmap(addr, len, prot, flags, fd, offset)?)
    }

    /// `munmap(addr, len)`.
    pub fn munmap(&mut self, addr: u64, len: u64) -> Result<(), Errno> {
        self.done(&Request::Munmap { addr, len })
    }

    /// `mprotect(addr, len, prot)`.
    pub fn mprotect(&mut self, addr: u64, len: u64, prot: Prot) -> Result<(), Errno> {
        self.done(&Request::Mprotect { addr, len, prot })
    }

    /// `msync(addr, len, flags)`.
    pub fn msync(&mut self, addr: u64, len: u64, flags: MsyncFlags) -> Result<(), Errno> {
        self.done(&Request::Msync { addr, len, flags })
    }

    /// `mlock(addr, len)`.
    pub fn mlock(&mut self, addr: u64, len: u64) -> Result<(), Errno> {
        self.done(&Request::Mlock { addr, len })
    }

    /// `munlock(addr, len)`.
    pub fn munlock(&mut self, addr: u64, len: u64) -> Result<(), Errno> {
        self.done(&Request::Munlock { addr, len })
    }

    /// `mlockall(flags)`.
    pub fn mlockall(&mut self, flags: MlockallFlags) -> Result<(), Errno> {
        self.done(&Request::Mlockall { flags })
    }

    /// `munlockall()`.
    pub fn munlockall(&mut self) -> Result<(), Errno> {
        self.done(&Request::Munlockall)
    }

    /// `mremap(old_addr, old_len, new_len, flags, new_addr)`: the mapping's address
    /// afterwards (`new_addr` counts only with `MREMAP_FIXED`).
    pub fn mremap(
        &mut self,
        old_addr: u64,
        old_len: u64,
        new_len: u64,
        flags: MremapFlags,
        new_addr: u64,
    ) -> Result<u64, Errno> {
        let req = Request::Mremap {
            old_addr,
            old_len,
            new_len,
            flags,
            new_addr,
        };
        match self.call(&req)? {
            Reply::Mapped { addr } => Ok(addr),
            _ => Err(Errno::EPROTO),
        }
    }

    /// `mremap` with a C `int` for the flags (unknown bits are `EINVAL`).
    pub fn mremap_c(
        &mut self,
        old_addr: u64,
        old_len: u64,
        new_len: u64,
        flags: i32,
        new_addr: u64,
    ) -> Result<u64, Errno> {
        let flags = c_args::mremap_flags(flags)?;
        self.mremap(old_addr, old_len, new_len, flags, new_addr)
    }

    /// `madvise(addr, len, advice)`.
    pub fn madvise(&mut self, addr: u64, len: u64, advice: Advice) -> Result<(), Errno> {
        self.done(&Request::Madvise { addr, len, advice })
    }

    /// `madvise` with a C `int` advice (unknown advice is `EINVAL`, as Linux).
    pub fn madvise_c(&mut self, addr: u64, len: u64, advice: i32) -> Result<(), Errno> {
        let advice = c_args::advice(advice)?;
        self.madvise(addr, len, advice)
    }

    /// `shm_open(name, oflag, mode)`.
    ///
    /// The name is checked here as glibc does: leading slashes optional (`"x"` and
    /// `"/x"` are one object), longer than `NAME_MAX` after them is `ENAMETOOLONG`, any
    /// other rule broken `EINVAL`. Mode bits beyond `0o7777` are ignored.
    pub fn shm_open(&mut self, name: &str, oflag: OFlags, mode: u32) -> Result<Fd, Errno> {
        let name = ShmName::new(name)?;
        let mode = c_args::mode(mode);
        self.fd(&Request::ShmOpen { name, oflag, mode })
    }

    /// `shm_unlink(name)`.
    pub fn shm_unlink(&mut self, name: &str) -> Result<(), Errno> {
        let name = ShmName::new(name)?;
        self.done(&Request::ShmUnlink { name })
    }

    /// `ftruncate(fd, len)`: a negative length is `EINVAL`.
    pub fn ftruncate(&mut self, fd: Fd, len: i64) -> Result<(), Errno> {
        let len = c_args::length(len)?;
        self.done(&Request::Ftruncate { fd, len })
    }

    /// `close(fd)` of one of the server's fds.
    pub fn close(&mut self, fd: Fd) -> Result<(), Errno> {
        self.done(&Request::Close { fd })
    }

    /// `fstat(fd)` of one of the server's fds.
    pub fn fstat(&mut self, fd: Fd) -> Result<Stat, Errno> {
        match self.call(&Request::Fstat { fd })? {
            Reply::Stat(st) => Ok(st),
            _ => Err(Errno::EPROTO),
        }
    }

    /// Opens the memory bank `name` (seed 000's `/kfs/mem/bank*`).
    pub fn open_bank(&mut self, name: &str) -> Result<Fd, Errno> {
        let name = ObjName::new(name)?;
        self.fd(&Request::OpenBank { name })
    }

    /// Opens the device window `name` with `O_RDONLY` or `O_RDWR`.
    pub fn open_device(&mut self, name: &str, oflag: OFlags) -> Result<Fd, Errno> {
        let name = ObjName::new(name)?;
        self.fd(&Request::OpenDevice { name, oflag })
    }

    /// Opens the file `path` of the file server for mapping (`open(2)` of a file the
    /// memory server pages from its pager): `O_RDONLY` or `O_RDWR`, optionally `O_TRUNC`.
    /// The fd takes `mmap`, `ftruncate`, `fstat` and `close`.
    pub fn open_file(&mut self, path: &str, oflag: OFlags) -> Result<Fd, Errno> {
        let path = FilePath::new(path)?;
        self.fd(&Request::FileOpen { path, oflag })
    }

    /// The caller's mappings in address order, one request per region.
    pub fn regions(&mut self) -> Regions<'_, T> {
        Regions {
            client: self,
            after: 0,
            done: false,
        }
    }

    /// What backs the caller's page at `addr`.
    pub fn page_info(&mut self, addr: u64) -> Result<PageInfo, Errno> {
        match self.call(&Request::PageInfo { addr })? {
            Reply::PageInfo(info) => Ok(info),
            _ => Err(Errno::EPROTO),
        }
    }

    /// Server-wide counters (free frames, objects, invariant violations).
    pub fn stats(&mut self) -> Result<ServerStats, Errno> {
        match self.call(&Request::Stats)? {
            Reply::Stats(stats) => Ok(stats),
            _ => Err(Errno::EPROTO),
        }
    }

    fn done(&mut self, req: &Request) -> Result<(), Errno> {
        match self.call(req)? {
            Reply::Done => Ok(()),
            _ => Err(Errno::EPROTO),
        }
    }

    fn fd(&mut self, req: &Request) -> Result<Fd, Errno> {
        match self.call(req)? {
            Reply::Fd(fd) => Ok(fd),
            _ => Err(Errno::EPROTO),
        }
    }
}

/// Iterator over the caller's regions; see [`Client::regions`].
pub struct Regions<'a, T> {
    client: &'a mut Client<T>,
    after: u64,
    done: bool,
}

impl<T: Transport> Iterator for Regions<'_, T> {
    type Item = Result<RegionInfo, Errno>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let reply = self.client.call(&Request::Regions { after: self.after });
        let item = match reply {
            Ok(Reply::Region(Some(r))) if r.end > self.after => {
                self.after = r.end;
                return Some(Ok(r));
            }
            Ok(Reply::Region(None)) => None,
            // A region not past the cursor would loop forever: a protocol violation.
            Ok(_) => Some(Err(Errno::EPROTO)),
            Err(e) => Some(Err(e)),
        };
        self.done = true;
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc_proto::{decode_request, encode_response};

    /// A transport answering from a closure, through real encode/decode.
    struct Fake<F>(F);

    impl<F: FnMut(Request) -> Response> Transport for Fake<F> {
        fn call(&mut self, request: &[u8], response: &mut [u8]) -> Result<usize, Errno> {
            let req = decode_request(request)?;
            encode_response(&(self.0)(req), response)
        }
    }

    #[test]
    fn mmap_sends_the_arguments_and_returns_the_address() {
        let mut c = Client::new(Fake(|req| match req {
            Request::Mmap(a) if a.len == 8192 && a.fd.is_none() => {
                Ok(Reply::Mapped { addr: 0x1000_0000 })
            }
            _ => Err(Errno::EINVAL),
        }));
        let flags = MapFlags::PRIVATE | MapFlags::ANONYMOUS;
        assert_eq!(c.mmap(0, 8192, Prot::READ, flags, None, 0), Ok(0x1000_0000));
        assert_eq!(c.mmap(0, 1, Prot::READ, flags, None, 0), Err(Errno::EINVAL));
    }

    #[test]
    fn mremap_and_madvise_send_their_arguments() {
        let mut c = Client::new(Fake(|req| match req {
            Request::Mremap {
                old_addr: 0x1000_0000,
                old_len: 4096,
                new_len: 8192,
                flags,
                new_addr: 0,
            } if flags == MremapFlags::MAYMOVE => Ok(Reply::Mapped { addr: 0x2000_0000 }),
            Request::Madvise {
                advice: Advice::DontNeed,
                ..
            } => Ok(Reply::Done),
            _ => Err(Errno::EINVAL),
        }));
        assert_eq!(
            c.mremap(0x1000_0000, 4096, 8192, MremapFlags::MAYMOVE, 0),
            Ok(0x2000_0000)
        );
        assert_eq!(c.mremap_c(0x1000_0000, 4096, 8192, 1, 0), Ok(0x2000_0000));
        assert_eq!(
            c.mremap_c(0x1000_0000, 4096, 8192, 8, 0),
            Err(Errno::EINVAL)
        );
        assert_eq!(c.madvise_c(0x1000_0000, 4096, 4), Ok(()));
        assert_eq!(c.madvise_c(0x1000_0000, 4096, 3), Err(Errno::EINVAL));
        assert_eq!(c.madvise_c(0x1000_0000, 4096, 77), Err(Errno::EINVAL));
    }

    #[test]
    fn wrong_reply_kind_is_eproto() {
        let mut c = Client::new(Fake(|_| Ok(Reply::Done)));
        assert_eq!(c.fstat(Fd(3)), Err(Errno::EPROTO));
        assert_eq!(c.munmap(0, 4096), Ok(()));
    }

    #[test]
    fn names_are_checked_before_sending() {
        let mut sent = 0;
        let mut c = Client::new(Fake(|_| {
            sent += 1;
            Ok(Reply::Fd(Fd(0)))
        }));
        let mut long = [b'x'; 257];
        long[0] = b'/';
        let long = core::str::from_utf8(&long).unwrap();
        assert_eq!(
            c.shm_open(long, OFlags::RDWR, 0o600),
            Err(Errno::ENAMETOOLONG)
        );
        assert_eq!(c.shm_open("a/b", OFlags::RDWR, 0o600), Err(Errno::EINVAL));
        assert_eq!(c.shm_open("..", OFlags::RDWR, 0o600), Err(Errno::EINVAL));
        assert_eq!(c.shm_open("/ok", OFlags::RDWR, 0o600), Ok(Fd(0)));
        // glibc: the leading slash is optional.
        assert_eq!(c.shm_open("noslash", OFlags::RDWR, 0o600), Ok(Fd(0)));
        let _ = c;
        assert_eq!(sent, 2);
    }

    #[test]
    fn regions_iterates_until_none() {
        let mut c = Client::new(Fake(|req| match req {
            Request::Regions { after } if after < 0x3000 => Ok(Reply::Region(Some(RegionInfo {
                start: after.max(0x1000),
                end: after.max(0x1000) + 0x1000,
                prot: Prot::READ,
                shared: false,
                locked: false,
                backing: ipc_proto::Backing::Anonymous,
                offset: 0,
            }))),
            _ => Ok(Reply::Region(None)),
        }));
        let all: Result<alloc_free::Vec3, _> = c.regions().collect();
        assert_eq!(all.unwrap().0, 2);
    }

    #[test]
    fn a_stuck_region_cursor_is_eproto_not_a_loop() {
        let mut c = Client::new(Fake(|_| {
            Ok(Reply::Region(Some(RegionInfo {
                start: 0,
                end: 0,
                prot: Prot::READ,
                shared: false,
                locked: false,
                backing: ipc_proto::Backing::Anonymous,
                offset: 0,
            })))
        }));
        let mut it = c.regions();
        assert_eq!(it.next(), Some(Err(Errno::EPROTO)));
        assert_eq!(it.next(), None);
    }

    /// Counting collector, so the tests need no allocator.
    mod alloc_free {
        use super::*;
        pub struct Vec3(pub usize);
        impl FromIterator<RegionInfo> for Vec3 {
            fn from_iter<I: IntoIterator<Item = RegionInfo>>(it: I) -> Self {
                Vec3(it.into_iter().count())
            }
        }
    }
}
