//! The client runtime: a process's connection to `memserverd`.
//!
//! The process creates a userfaultfd for its own address space and hands it to the
//! server when it connects: from then on every first touch of a page in its window is
//! a message the server answers by placing exactly the page it decided, from any
//! thread, with no signal handler in the process (the program's own handlers are the
//! program's). Each request's answer carries the host mappings the server decided
//! ([`apply`]); they are made before the call returns. One call at a time goes over the
//! connection (the caller serializes: the C ABI holds a lock), while any number of
//! threads fault at once. If the server dies, calls fail with `EIO` and a fault in the
//! window ends the process with `SIGBUS` ([`watch`]); after `fork`, the child adopts the
//! copy-on-write clone the server made for it on a connection of its own ([`fork`]).
//! [`transport`] sends and receives the messages.

pub mod apply;
pub mod fork;
pub mod transport;
pub mod watch;

use crate::uffd::Uffd;
use crate::wire::{self, Setup};
use client_lib::Transport;
use ipc_proto::{ClientSpec, Errno, MAX_REQUEST_LEN, MAX_RESPONSE_LEN, MmapArgs, Reply, Request};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::mm::{MapFlags, ProtFlags};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What the runtime and its watcher share.
pub struct Link {
    /// The connection.
    pub sock: OwnedFd,
    /// The process's own userfaultfd (the server holds it too).
    pub uffd: Uffd,
    /// What the server said at set-up.
    pub setup: Setup,
    /// The server is gone.
    pub dead: AtomicBool,
    /// The connection is being given up (exit, drop): the watcher ends.
    pub closing: AtomicBool,
}

/// A connection to `memserverd`: the process's client of the memory server.
pub struct HostedClient {
    link: Arc<Link>,
    /// Where answers are received (one allocation for the connection's life).
    buf: Vec<u8>,
    /// Descriptors the last answer handed the program, by server fd (closed at the next
    /// call unless taken).
    handed: Vec<(u32, OwnedFd)>,
}

impl HostedClient {
    /// Connects to the server at `path`: makes the process's userfaultfd, hands it
    /// over, reserves the window the server names, and starts the watcher.
    pub fn connect(path: &str) -> io::Result<HostedClient> {
        let sock = transport::connect(path)?;
        let (uffd, _kernel_faults) = Uffd::create()?;
        let setup = transport::greet(sock.as_fd(), wire::KIND_HELLO, &[], uffd.fd())?;
        // Both windows must be empty: MAP_FIXED_NOREPLACE refuses one if anything of the
        // process is there. They are then left empty (an access there is SEGV_MAPERR, as
        // anywhere unmapped): Linux places a process's own mappings top-down from far
        // above the main window, and below 2 GiB only a non-PIE program's image and heap
        // lie, under the low window, so only the runtime maps there.
        for (lo, hi) in setup.windows() {
            let len = hi.checked_sub(lo).ok_or(io::ErrorKind::InvalidData)?;
            // SAFETY: fresh address space, unmapped again at once.
            unsafe {
                let probe = rustix::mm::mmap_anonymous(
                    lo as *mut _,
                    len as usize,
                    ProtFlags::empty(),
                    MapFlags::PRIVATE | MapFlags::NORESERVE | MapFlags::FIXED_NOREPLACE,
                )?;
                rustix::mm::munmap(probe, len as usize)?;
            }
        }
        Ok(HostedClient::start(sock, uffd, setup))
    }

    fn start(sock: OwnedFd, uffd: Uffd, setup: Setup) -> HostedClient {
        let link = Arc::new(Link {
            sock,
            uffd,
            setup,
            dead: AtomicBool::new(false),
            closing: AtomicBool::new(false),
        });
        watch::spawn(Arc::clone(&link));
        HostedClient {
            link,
            buf: vec![0; wire::MAX_PACKET],
            handed: Vec::new(),
        }
    }

    /// The process's own descriptor of the object server fd `fd` names, if the last
    /// answer handed one over (`shm_open`'s does).
    pub fn take_descriptor(&mut self, fd: ipc_proto::Fd) -> Option<OwnedFd> {
        let i = self.handed.iter().position(|(f, _)| *f == fd.0)?;
        Some(self.handed.swap_remove(i).1)
    }

    /// What the server told this connection.
    pub fn setup(&self) -> Setup {
        self.link.setup
    }

    fn exchange(&mut self, kind: u8, payload: &[u8], out: &mut [u8]) -> Result<usize, Errno> {
        self.exchange_with(kind, payload, out, &mut transport::Extras::default())
    }

    fn exchange_with(
        &mut self,
        kind: u8,
        payload: &[u8],
        out: &mut [u8],
        extras: &mut transport::Extras<'_>,
    ) -> Result<usize, Errno> {
        if self.link.dead.load(Ordering::Acquire) {
            return Err(Errno::EIO);
        }
        self.handed.clear();
        let r = transport::exchange(
            &self.link,
            &mut self.buf,
            kind,
            payload,
            out,
            &mut self.handed,
            extras,
        );
        if r == Err(Errno::EIO) {
            self.link.dead.store(true, Ordering::Release);
        }
        r
    }

    fn call_kind(&mut self, kind: u8, payload: &[u8]) -> Result<(), Errno> {
        let mut out = [0u8; MAX_RESPONSE_LEN];
        let n = self.exchange(kind, payload, &mut out)?;
        ipc_proto::decode_response(&out[..n])?.map(|_| ())
    }

    /// `mmap` of the process's own regular file `file` (`args.fd` is ignored): the
    /// server decides placement, rights and accounting, the host's page cache holds the
    /// pages. `ENODEV` for anything but a regular file; if the host will not map the file
    /// after all, the server's mapping is taken back and the host's errno returned.
    pub fn mmap_file(&mut self, args: &MmapArgs, file: BorrowedFd<'_>) -> Result<u64, Errno> {
        let mut bytes = [0u8; MAX_REQUEST_LEN];
        let n = ipc_proto::encode_request(&Request::Mmap(args.clone()), &mut bytes)?;
        let mut out = [0u8; MAX_RESPONSE_LEN];
        let fds = [file];
        let mut extras = transport::Extras {
            fds: &fds,
            failed: None,
        };
        let m = self.exchange_with(wire::KIND_MMAP_FILE, &bytes[..n], &mut out, &mut extras)?;
        let addr = match ipc_proto::decode_response(&out[..m])?? {
            Reply::Mapped { addr } => addr,
            _ => return Err(Errno::EPROTO),
        };
        if let Some(e) = extras.failed {
            let undo = Request::Munmap {
                addr,
                len: args.len,
            };
            let n = ipc_proto::encode_request(&undo, &mut bytes)?;
            let _ = self.exchange(wire::KIND_REQUEST, &bytes[..n], &mut out);
            return Err(e);
        }
        Ok(addr)
    }

    /// The host files the server serves: their whole number and the first
    /// [`wire::MAX_HOST_FILES_LISTED`]. Only a process of the server's own user may ask
    /// (`EPERM`).
    pub fn host_files(&mut self) -> Result<(u32, Vec<wire::HostFileEntry>), Errno> {
        let mut out = vec![0u8; wire::MAX_PACKET];
        let n = self.exchange(wire::KIND_HOST_FILES, &[], &mut out)?;
        let answer = out.get(..n).ok_or(Errno::EPROTO)?;
        if let Some(list) = wire::decode_host_files(answer) {
            return Ok(list);
        }
        Err(ipc_proto::decode_response(answer)?
            .err()
            .unwrap_or(Errno::EPROTO))
    }

    /// Asks to run with `spec` (identity, rights, limits): only a process of the
    /// server's own user may, before it maps anything (`EPERM`, `EBUSY` otherwise).
    pub fn set_spec(&mut self, spec: &ClientSpec) -> Result<(), Errno> {
        let mut bytes = [0u8; MAX_REQUEST_LEN];
        let used = postcard::to_slice(spec, &mut bytes).map_err(|_| Errno::EMSGSIZE)?;
        self.call_kind(wire::KIND_SPEC, used)
    }

    /// Prepares a `fork`: the server clones this client copy-on-write (as this client
    /// runs, or with `spec`, whose identity only a trusted process may choose) and
    /// answers the token the child presents to [`adopt`](Self::adopt) it.
    pub fn fork_token(&mut self, spec: Option<&ClientSpec>) -> Result<u64, Errno> {
        let mut bytes = [0u8; MAX_REQUEST_LEN];
        let used: &[u8] = match spec {
            Some(spec) => postcard::to_slice(spec, &mut bytes).map_err(|_| Errno::EMSGSIZE)?,
            None => &[],
        };
        let mut out = [0u8; MAX_RESPONSE_LEN];
        let n = self.exchange(wire::KIND_FORK, used, &mut out)?;
        match out.get(..n) {
            Some(t) if n == 8 => Ok(u64::from_le_bytes(t.try_into().map_err(|_| Errno::EPROTO)?)),
            Some(r) => Err(ipc_proto::decode_response(r)?
                .err()
                .unwrap_or(Errno::EPROTO)),
            None => Err(Errno::EPROTO),
        }
    }

    /// In a forked child: a connection of its own that becomes the clone `token`
    /// names. The window and its mappings came with `fork`; they are registered with a
    /// new userfaultfd the server gets.
    pub fn adopt(path: &str, token: u64, windows: [(u64, u64); 2]) -> io::Result<HostedClient> {
        let sock = transport::connect(path)?;
        let (uffd, _) = Uffd::create()?;
        fork::register_inherited(&uffd, windows)?;
        let setup = transport::greet(
            sock.as_fd(),
            wire::KIND_ADOPT,
            &token.to_le_bytes(),
            uffd.fd(),
        )?;
        Ok(HostedClient::start(sock, uffd, setup))
    }

    /// Tells the server the resource limits of this process (`None`) or of process
    /// `pid` changed: it reads them again from `/proc` (`ESRCH` when that process has
    /// no client).
    pub fn limits_changed(&mut self, pid: Option<i32>) -> Result<(), Errno> {
        match pid {
            Some(pid) => self.call_kind(wire::KIND_LIMITS, &pid.to_le_bytes()),
            None => self.call_kind(wire::KIND_LIMITS, &[]),
        }
    }

    /// Waits until the server has reclaimed every client of process `pid`: what a
    /// harness does before it counts frames. Only a process of the server's own user
    /// may (`EPERM`); `EBUSY` when the process is still served after ten seconds.
    pub fn await_exit(&mut self, pid: u32) -> Result<(), Errno> {
        self.call_kind(wire::KIND_AWAIT_EXIT, &pid.to_le_bytes())
    }

    /// In a forked child: lets go of the parent's connection without a word on it (it
    /// is the parent's), closing this process's descriptors of it, so the server sees
    /// the parent's exit when the parent exits.
    pub fn forsake(self) {
        let link = std::mem::ManuallyDrop::new(self);
        // The count in this copy of memory includes the parent's watcher, which is not
        // in this process: close the descriptors by hand and never drop the link.
        for fd in [
            rustix::fd::AsRawFd::as_raw_fd(&link.link.sock),
            rustix::fd::AsRawFd::as_raw_fd(&link.link.uffd.fd()),
        ] {
            // SAFETY: descriptors of this process that nothing in it uses after this (the
            // link is never dropped, so they are not closed twice).
            unsafe { libc::close(fd) };
        }
    }

    /// Ends the client: the server reclaims everything before this returns.
    pub fn exit(self) -> Result<(), Errno> {
        let mut me = self;
        me.call_kind(wire::KIND_EXIT, &[])
    }
}

impl Drop for HostedClient {
    fn drop(&mut self) {
        // The watcher ends; the descriptors close with the last holder (never a
        // shutdown: a forked child dropping its parent's connection must not end it).
        self.link.closing.store(true, Ordering::Release);
    }
}

impl Transport for HostedClient {
    fn call(&mut self, request: &[u8], response: &mut [u8]) -> Result<usize, Errno> {
        self.exchange(wire::KIND_REQUEST, request, response)
    }
}
