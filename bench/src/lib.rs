//! The workloads the benchmarks measure, ours and Linux's side by side, shared by the
//! criterion benches (`benches/pairs.rs`) and the callgrind probe (`src/bin/probe.rs`).
//!
//! "Ours" always goes through the real protocol: encode the request, the server decodes,
//! handles (region map, frame allocator, kernel stub) and encodes the reply, and the
//! client decodes it. "Linux" is the same call as a real syscall in this process.
#![warn(missing_docs)]

use ipc_proto::{
    ClientId, ClientSpec, Limits, MAX_REQUEST_LEN, MAX_RESPONSE_LEN, Prot, Reply, Request,
    decode_response, encode_request, examples,
};
use memserver::{Config, FrameRange, Sender};
use memserver_testkit::Machine;
use memserver_testkit::RamStub;
use rustix::mm::{MapFlags as LMap, ProtFlags};

/// The stub the in-process benchmarks drive: the real `kernel-stub`, writing x86_64
/// page tables in simulated RAM, as the issue asks ("through the kernel stub").
pub type Stub = RamStub;

/// Page size.
pub const P: u64 = 4096;

/// An in-process server with one client, ready to take requests.
pub struct Ours {
    /// The whole simulated system.
    pub machine: Machine<Stub>,
    /// The benchmarked client.
    pub id: ClientId,
    req: [u8; MAX_REQUEST_LEN],
    resp: [u8; MAX_RESPONSE_LEN],
}

impl Ours {
    /// A server with `frames` frames of RAM (at most 65 536, what the in-process stub
    /// simulates) and one client allowed `regions` regions.
    pub fn new(frames: u64, regions: u32) -> Ours {
        let cfg = Config::with_ram(vec![FrameRange {
            start: 0x100,
            count: frames,
        }]);
        let stub = memserver_testkit::ram_stub(&cfg).expect("simulable RAM");
        let mut machine = Machine::new(cfg, stub);
        let spec = ClientSpec {
            limits: Limits {
                max_regions: regions,
                ..Limits::DEFAULT
            },
            ..ClientSpec::DEFAULT
        };
        let id = machine.spawn(spec).expect("spawn");
        Ours {
            machine,
            id,
            req: [0; MAX_REQUEST_LEN],
            resp: [0; MAX_RESPONSE_LEN],
        }
    }

    /// One request through encode → server → decode.
    pub fn call(&mut self, r: &Request) -> Reply {
        let n = encode_request(r, &mut self.req).expect("encode");
        let m = self.machine.server.handle_message(
            Sender::Client(self.id),
            &self.req[..n],
            &mut self.resp,
        );
        match decode_response(&self.resp[..m]) {
            Ok(Ok(reply)) => reply,
            other => panic!("{r:?} failed: {other:?}"),
        }
    }

    /// `mmap` of anonymous memory; returns the address.
    pub fn mmap(&mut self, len: u64, prot: Prot) -> u64 {
        let mut req = examples::mmap_anon_4k();
        if let Request::Mmap(a) = &mut req {
            a.len = len;
            a.prot = prot;
        }
        match self.call(&req) {
            Reply::Mapped { addr } => addr,
            r => panic!("mmap answered {r:?}"),
        }
    }

    /// The benchmarked pair: a 4 KiB anonymous mmap and its munmap.
    pub fn mmap_munmap(&mut self) {
        let addr = self.mmap(P, Prot::READ | Prot::WRITE);
        self.call(&Request::Munmap { addr, len: P });
    }

    /// Fills the address space with `n` one-page regions that cannot merge.
    pub fn populate_regions(&mut self, n: u64) {
        for i in 0..n {
            let prot = if i % 2 == 0 {
                Prot::READ
            } else {
                Prot::READ | Prot::WRITE
            };
            self.mmap(P, prot);
        }
    }

    /// Protect the middle page of a 3-page region, then restore it.
    pub fn mprotect_split_merge(&mut self, addr: u64) {
        self.call(&Request::Mprotect {
            addr: addr + P,
            len: P,
            prot: Prot::READ,
        });
        self.call(&Request::Mprotect {
            addr: addr + P,
            len: P,
            prot: Prot::READ | Prot::WRITE,
        });
    }

    /// A first write to a page of a lazily-mapped region: fault → frame → install.
    pub fn first_touch(&mut self, addr: u64) {
        self.machine.write(self.id, addr, 1).expect("first touch");
    }

    /// A region with `pages` untouched pages, for [`first_touch`](Self::first_touch).
    pub fn fresh_region(&mut self, pages: u64) -> u64 {
        self.mmap(pages * P, Prot::READ | Prot::WRITE)
    }

    /// Unmaps a region.
    pub fn munmap(&mut self, addr: u64, len: u64) {
        self.call(&Request::Munmap { addr, len });
    }

    /// Connects a RAM file server holding [`FILE`], `pages` pages long.
    pub fn with_file(mut self, pages: u64) -> Ours {
        let mut fs = fileserver::RamFs::new(1 << 30);
        let data: Vec<u8> = (0..pages * P).map(|i| (i / P) as u8).collect();
        fs.create(FILE, 0o644, 0, 0, &data).expect("a new file");
        self.machine
            .server
            .set_pager(Box::new(fs.into_pager()))
            .expect("a fresh server takes a pager");
        self
    }

    /// Opens [`FILE`] read-only and maps `pages` of it shared; the fd and the address.
    pub fn map_file(&mut self, pages: u64) -> (ipc_proto::Fd, u64) {
        let open = Request::FileOpen {
            path: ipc_proto::FilePath::new(FILE).expect("valid path"),
            oflag: ipc_proto::OFlags::RDONLY,
        };
        let Reply::Fd(fd) = self.call(&open) else {
            panic!("open answered no fd")
        };
        let mut req = examples::mmap_anon_4k();
        if let Request::Mmap(a) = &mut req {
            a.len = pages * P;
            a.prot = Prot::READ;
            a.flags = ipc_proto::MapFlags::SHARED;
            a.fd = Some(fd);
        }
        match self.call(&req) {
            Reply::Mapped { addr } => (fd, addr),
            r => panic!("mmap answered {r:?}"),
        }
    }

    /// A first read of a page of a file mapping: fault → (page-in from the file server
    /// if no mapping holds the page yet) → install.
    pub fn file_touch(&mut self, addr: u64) -> u8 {
        self.machine.read(self.id, addr).expect("file page")
    }

    /// Unmaps a file mapping and closes its fd: with nothing else holding the file, its
    /// cached pages go.
    pub fn unmap_file(&mut self, fd: ipc_proto::Fd, addr: u64, pages: u64) {
        self.munmap(addr, pages * P);
        self.call(&Request::Close { fd });
    }
}

/// The file the file-fault benchmarks map.
pub const FILE: &str = "/bench/data";

/// Encode a typical mmap request, decode it, encode its reply, decode that.
pub fn encode_decode(req_buf: &mut [u8], resp_buf: &mut [u8]) -> u64 {
    let n = encode_request(&examples::mmap_anon_4k(), req_buf).expect("encode");
    let req = ipc_proto::decode_request(&req_buf[..n]).expect("decode");
    let Request::Mmap(a) = req else {
        unreachable!("an mmap")
    };
    let resp: ipc_proto::Response = Ok(Reply::Mapped {
        addr: a.len + 0x7fff_0000_0000,
    });
    let m = ipc_proto::encode_response(&resp, resp_buf).expect("encode");
    match decode_response(&resp_buf[..m]) {
        Ok(Ok(Reply::Mapped { addr })) => addr,
        _ => unreachable!("a mapping"),
    }
}

/// Linux's side: real syscalls in this process.
pub mod linux {
    use super::*;
    use core::ffi::c_void;

    /// An anonymous private mapping owned by this process; unmapped on drop.
    pub struct Mapping {
        ptr: *mut c_void,
        len: usize,
    }

    impl Mapping {
        /// `mmap` of `len` anonymous private bytes.
        pub fn new(len: u64, prot: ProtFlags) -> Mapping {
            let len = len as usize;
            // SAFETY: a fresh anonymous mapping at an address the kernel chooses cannot
            // alias any Rust object.
            let ptr = unsafe {
                rustix::mm::mmap_anonymous(core::ptr::null_mut(), len, prot, LMap::PRIVATE)
            }
            .expect("mmap");
            Mapping { ptr, len }
        }

        /// Protect the middle page of a 3-page mapping, then restore it.
        pub fn mprotect_split_merge(&self) {
            assert!(self.len >= 3 * P as usize);
            let mid = self.ptr.wrapping_byte_add(P as usize);
            let rw = rustix::mm::MprotectFlags::READ | rustix::mm::MprotectFlags::WRITE;
            // SAFETY: the page lies inside this mapping, which no Rust reference points
            // into; only its protection changes.
            unsafe {
                rustix::mm::mprotect(mid, P as usize, rustix::mm::MprotectFlags::READ)
                    .expect("mprotect");
                rustix::mm::mprotect(mid, P as usize, rw).expect("mprotect");
            }
        }

        /// A read of page `i` (a real page fault if it was never touched).
        pub fn read(&self, i: u64) -> u8 {
            let off = (i * P) as usize;
            assert!(off < self.len);
            // SAFETY: `off` is inside this readable mapping (checked above), which no
            // Rust reference points into.
            unsafe { self.ptr.cast::<u8>().add(off).read_volatile() }
        }

        /// A first write to page `i` (a real page fault if it was never touched).
        pub fn touch(&self, i: u64) {
            let off = (i * P) as usize;
            assert!(off < self.len);
            // SAFETY: `off` is inside this writable mapping (checked above), which no Rust
            // reference points into.
            unsafe { self.ptr.cast::<u8>().add(off).write_volatile(1) };
        }
    }

    impl Drop for Mapping {
        fn drop(&mut self) {
            // SAFETY: `ptr`/`len` describe a mapping this value owns and nothing else uses.
            unsafe { rustix::mm::munmap(self.ptr, self.len) }.expect("munmap");
        }
    }

    /// A memfd of `pages` pages, every page resident (written): Linux's side of a file
    /// whose contents are in memory, mapped shared read-only; unmapped on drop (the
    /// memfd closes with it).
    pub fn file_mapping(pages: u64) -> (Mapping, rustix::fd::OwnedFd) {
        let fd = rustix::fs::memfd_create("bench", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd");
        let data: Vec<u8> = (0..pages * P).map(|i| (i / P) as u8).collect();
        rustix::io::write(&fd, &data).expect("write");
        let len = (pages * P) as usize;
        // SAFETY: a fresh shared read-only mapping of our own memfd at an address the
        // kernel chooses cannot alias any Rust object.
        let ptr = unsafe {
            rustix::mm::mmap(
                core::ptr::null_mut(),
                len,
                ProtFlags::READ,
                LMap::SHARED,
                &fd,
                0,
            )
        }
        .expect("mmap");
        (Mapping { ptr, len }, fd)
    }

    /// The pair: a 4 KiB anonymous mmap and its munmap.
    pub fn mmap_munmap() {
        drop(Mapping::new(P, ProtFlags::READ | ProtFlags::WRITE));
    }

    /// `n` one-page mappings that cannot merge (alternating protection).
    pub fn populate_regions(n: u64) -> Vec<Mapping> {
        (0..n)
            .map(|i| {
                let prot = if i % 2 == 0 {
                    ProtFlags::READ
                } else {
                    ProtFlags::READ | ProtFlags::WRITE
                };
                Mapping::new(P, prot)
            })
            .collect()
    }
}
