//! The client runtime: connect to `memserverd`, send requests, apply the page-table
//! operations that come back, and turn real page faults in the server's window into
//! `PageFault` reports.
//!
//! One connection per process (the fault handler needs to find it without locks); calls
//! are made from one thread at a time. Everything the fault handler runs is
//! async-signal-safe: raw `read`/`write`/`mmap`/`mprotect` system calls into fixed
//! buffers, no allocation and no lock.

use crate::ring::{RING_SIZE, Ring};
use crate::wire::{KIND_FAULT, KIND_REQUEST, OP_LEN, Op, Setup};
use client_lib::Transport;
use ipc_proto::{Errno, MAX_REQUEST_LEN, MAX_RESPONSE_LEN, Reply, Signal};
use rustix::fd::{AsFd, BorrowedFd, IntoRawFd, OwnedFd};
use rustix::mm::{self, MapFlags, MprotectFlags, ProtFlags};
use std::io;
use std::mem::MaybeUninit;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};

const P: u64 = 4096;

static SOCK: AtomicI32 = AtomicI32::new(-1);
static RING: AtomicU64 = AtomicU64::new(0);
static DOORBELL: AtomicI32 = AtomicI32::new(-1);
/// Doorbells rung so far: a reply older than the last one must not grant access.
static RINGS: AtomicU64 = AtomicU64::new(0);
static MEMFD: AtomicI32 = AtomicI32::new(-1);
static FRAME_BASE: AtomicU64 = AtomicU64::new(0);
static WIN_LO: AtomicU64 = AtomicU64::new(0);
static WIN_HI: AtomicU64 = AtomicU64::new(0);
static HANDLER: AtomicBool = AtomicBool::new(false);
static LAST_FAULT: AtomicU64 = AtomicU64::new(u64::MAX);
static REPEATS: AtomicU32 = AtomicU32::new(0);

/// A connection to `memserverd`: the process's one client of the memory server.
pub struct HostedClient {
    sock: OwnedFd,
    setup: Setup,
}

fn borrowed(fd: i32) -> BorrowedFd<'static> {
    // SAFETY: the fds stored in SOCK and MEMFD are owned by the process's connection,
    // which lives until exit (`connect` stores them and nothing closes them).
    unsafe { BorrowedFd::borrow_raw(fd) }
}

impl HostedClient {
    /// Connects to the server at `path`, takes its memfd, reserves the window and
    /// installs the fault handler. A second connection in one process is refused
    /// (`AlreadyExists`): faults must know which server to ask.
    pub fn connect(path: &str) -> io::Result<HostedClient> {
        if SOCK.load(Ordering::Acquire) >= 0 {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        let stream = UnixStream::connect(path)?;
        let sock: OwnedFd = stream.into();
        let mut buf = [0u8; 32];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
        let mut cmsg = rustix::net::RecvAncillaryBuffer::new(&mut space);
        let got = rustix::net::recvmsg(
            &sock,
            &mut [io::IoSliceMut::new(&mut buf)],
            &mut cmsg,
            rustix::net::RecvFlags::CMSG_CLOEXEC,
        )?;
        let (mut memfd, mut bell, mut chan) = (None, None, None);
        for m in cmsg.drain() {
            if let rustix::net::RecvAncillaryMessage::ScmRights(mut fds) = m {
                memfd = fds.next();
                bell = fds.next();
                chan = fds.next();
            }
        }
        let memfd: OwnedFd = memfd.ok_or(io::ErrorKind::InvalidData)?;
        let bell: OwnedFd = bell.ok_or(io::ErrorKind::InvalidData)?;
        let chan: OwnedFd = chan.ok_or(io::ErrorKind::InvalidData)?;
        // SAFETY: a fresh shared mapping of the channel memfd, kept for the process's life.
        let ring = unsafe {
            mm::mmap(
                std::ptr::null_mut(),
                RING_SIZE,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &chan,
                0,
            )
        }?;
        if got.bytes != 32 {
            return Err(io::ErrorKind::InvalidData.into());
        }
        let setup = Setup::decode(&buf);
        let len = setup
            .window_hi
            .checked_sub(setup.window_lo)
            .ok_or(io::ErrorKind::InvalidData)?;
        // SAFETY: the window is fresh address space (MAP_FIXED_NOREPLACE refuses anything
        // in use), reserved inaccessible; the runtime alone maps into it from now on.
        unsafe {
            mm::mmap_anonymous(
                setup.window_lo as *mut _,
                len as usize,
                ProtFlags::empty(),
                MapFlags::PRIVATE | MapFlags::NORESERVE | MapFlags::FIXED_NOREPLACE,
            )
        }?;
        FRAME_BASE.store(setup.frame_base, Ordering::Relaxed);
        WIN_LO.store(setup.window_lo, Ordering::Relaxed);
        WIN_HI.store(setup.window_hi, Ordering::Relaxed);
        MEMFD.store(memfd.into_raw_fd(), Ordering::Release);
        RING.store(ring as u64, Ordering::Release);
        DOORBELL.store(bell.into_raw_fd(), Ordering::Release);
        // The handler's own descriptor of the socket, kept open for the process's life.
        SOCK.store(rustix::io::dup(&sock)?.into_raw_fd(), Ordering::Release);
        install_handler();
        Ok(HostedClient { sock, setup })
    }

    /// Asks to run with `spec` (identity, rights, limits): only a process of the server's
    /// own user may, before it maps anything (`EPERM`, `EBUSY` otherwise).
    pub fn set_spec(&mut self, spec: &ipc_proto::ClientSpec) -> Result<(), Errno> {
        let mut bytes = [0u8; MAX_REQUEST_LEN];
        let used = postcard::to_slice(spec, &mut bytes).map_err(|_| Errno::EMSGSIZE)?;
        let mut out = [0u8; MAX_RESPONSE_LEN];
        let n = exchange(self.sock.as_fd(), crate::wire::KIND_SPEC, used, &mut out)?;
        ipc_proto::decode_response(&out[..n])?.map(|_| ())
    }

    /// Clones this client (the memory half of `fork`) with `spec`: the clone shares
    /// the shared mappings, gets the private ones copy-on-write, and waits for a new
    /// connection to [`adopt`](Self::adopt) it with the returned secret.
    pub fn fork_token(&mut self, spec: &ipc_proto::ClientSpec) -> Result<u64, Errno> {
        let mut bytes = [0u8; MAX_REQUEST_LEN];
        let used = postcard::to_slice(spec, &mut bytes).map_err(|_| Errno::EMSGSIZE)?;
        let mut out = [0u8; MAX_RESPONSE_LEN];
        let n = exchange(self.sock.as_fd(), crate::wire::KIND_FORK, used, &mut out)?;
        match (n, out[0]) {
            (9, 0) => Ok(u64::from_le_bytes(
                out[1..9].try_into().map_err(|_| Errno::EPROTO)?,
            )),
            (3, 1) => {
                Err(Errno::from_raw(u16::from_le_bytes([out[1], out[2]])).unwrap_or(Errno::EPROTO))
            }
            _ => Err(Errno::EPROTO),
        }
    }

    /// Makes this (fresh) connection the clone `secret` names: from now on its address
    /// space is the clone's, faulted in lazily.
    pub fn adopt(&mut self, secret: u64) -> Result<(), Errno> {
        let mut out = [0u8; MAX_RESPONSE_LEN];
        let n = exchange(
            self.sock.as_fd(),
            crate::wire::KIND_ADOPT,
            &secret.to_le_bytes(),
            &mut out,
        )?;
        ipc_proto::decode_response(&out[..n])?.map(|_| ())
    }

    /// Waits until the server has reclaimed every client of process `pid` (whose
    /// connection ended or is ending): what a harness does before it counts frames.
    /// Only a process of the server's own user may (`EPERM`); `EBUSY` when the process
    /// is still served after ten seconds.
    pub fn await_exit(&mut self, pid: u32) -> Result<(), Errno> {
        let mut out = [0u8; MAX_RESPONSE_LEN];
        let n = exchange(
            self.sock.as_fd(),
            crate::wire::KIND_AWAIT_EXIT,
            &pid.to_le_bytes(),
            &mut out,
        )?;
        ipc_proto::decode_response(&out[..n])?.map(|_| ())
    }

    /// Ends the client: the server reclaims everything before this returns.
    pub fn exit(self) -> Result<(), Errno> {
        let mut out = [0u8; MAX_RESPONSE_LEN];
        let n = exchange(self.sock.as_fd(), crate::wire::KIND_EXIT, &[], &mut out)?;
        ipc_proto::decode_response(&out[..n])?.map(|_| ())
    }

    /// What the server told this connection.
    pub fn setup(&self) -> Setup {
        self.setup
    }
}

impl Transport for HostedClient {
    fn call(&mut self, request: &[u8], response: &mut [u8]) -> Result<usize, Errno> {
        // A call between two faults at one address (say, munmap and mmap reusing it) is
        // progress: only faults in a row count as repeats.
        LAST_FAULT.store(u64::MAX, Ordering::Relaxed);
        exchange(self.sock.as_fd(), KIND_REQUEST, request, response)
    }
}

/// The process's channel to the server, once connected.
fn channel() -> Option<Ring> {
    let p = std::ptr::NonNull::new(RING.load(Ordering::Acquire) as *mut u8)?;
    // SAFETY: RING holds the channel mapping `connect` made, which is never unmapped.
    Some(unsafe { Ring::new(p) })
}

fn write_all(fd: BorrowedFd<'_>, mut b: &[u8]) -> Result<(), Errno> {
    while !b.is_empty() {
        match rustix::io::write(fd, b) {
            Ok(0) => return Err(Errno::EPROTO),
            Ok(n) => b = &b[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return Err(Errno::EPROTO),
        }
    }
    Ok(())
}

fn read_exact(fd: BorrowedFd<'_>, mut b: &mut [u8]) -> Result<(), Errno> {
    while !b.is_empty() {
        match rustix::io::read(fd, &mut *b) {
            Ok(0) => return Err(Errno::EPROTO),
            Ok(n) => b = &mut b[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return Err(Errno::EPROTO),
        }
    }
    Ok(())
}

/// Sends one message through the channel, waits for the answer, applies its page-table
/// operations, and copies the response bytes out. Allocation-free, for the fault
/// handler's sake.
fn exchange(fd: BorrowedFd<'_>, kind: u8, payload: &[u8], out: &mut [u8]) -> Result<usize, Errno> {
    let ring = channel().ok_or(Errno::EPROTO)?;
    let rings = RINGS.load(Ordering::Acquire);
    let seq = ring.post_request(kind, payload);
    ring.wait_response(seq);
    let mut resp = [0u8; MAX_RESPONSE_LEN];
    let (n, in_ring, more) = ring.response(&mut resp);
    // A doorbell rung since the request went out carried newer operations: ours must not
    // undo them. Revoking operations are always safe; granting ones are skipped (a later
    // fault on the page gets it afresh). With the doorbell blocked while applying, none
    // can slip in between the check and the change.
    doorbell_mask(true);
    let stale = RINGS.load(Ordering::Acquire) != rings;
    let take = |op: &[u8; OP_LEN]| {
        if let Some(op) = Op::decode(op)
            && !(stale && grants(&op))
        {
            apply(op);
        }
    };
    for i in 0..in_ring as usize {
        take(&ring.op(i));
    }
    let mut result = Ok(());
    for _ in 0..more {
        let mut op = [0u8; OP_LEN];
        if let Err(e) = read_exact(fd, &mut op) {
            result = Err(e);
            break;
        }
        take(&op);
    }
    doorbell_mask(false);
    result?;
    let dst = out.get_mut(..n).ok_or(Errno::EMSGSIZE)?;
    dst.copy_from_slice(&resp[..n]);
    Ok(n)
}

/// The signal the server rings a client's doorbell with.
pub fn doorbell_signal() -> i32 {
    libc::SIGRTMIN() + 1
}

/// Blocks or unblocks the doorbell signal for this thread.
fn doorbell_mask(block: bool) {
    // SAFETY: sigset operations on a local set and pthread_sigmask are
    // async-signal-safe; only the doorbell signal changes.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, doorbell_signal());
        let how = if block {
            libc::SIG_BLOCK
        } else {
            libc::SIG_UNBLOCK
        };
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

/// The doorbell: another client's request changed this space (a shared object shrank).
/// The operations are waiting on the doorbell socket; apply them (they are the newest
/// there are) and acknowledge, so the server can answer that request.
extern "C" fn on_doorbell(_: i32) {
    let fd = DOORBELL.load(Ordering::Acquire);
    if fd < 0 {
        return;
    }
    let bell = borrowed(fd);
    let mut count = [0u8; 4];
    if read_exact(bell, &mut count).is_err() {
        return;
    }
    for _ in 0..u32::from_le_bytes(count) {
        let mut op = [0u8; OP_LEN];
        if read_exact(bell, &mut op).is_err() {
            return;
        }
        if let Some(op) = Op::decode(&op) {
            apply(op);
        }
    }
    RINGS.fetch_add(1, Ordering::AcqRel);
    let _ = write_all(bell, &[1]);
}

/// Whether an operation can give access (a stale one must not: see `exchange`).
fn grants(op: &Op) -> bool {
    match *op {
        Op::Map { .. } => true,
        Op::Protect { write, exec, .. } => write || exec,
        Op::Unmap { .. } => false,
    }
}

fn prot(write: bool, exec: bool) -> ProtFlags {
    let mut p = ProtFlags::READ;
    if write {
        p |= ProtFlags::WRITE;
    }
    if exec {
        p |= ProtFlags::EXEC;
    }
    p
}

/// Applies one operation inside the window (anything outside is ignored: the server
/// never sends it, and a forged one must not clobber the program's memory).
fn apply(op: Op) {
    let (lo, hi) = (
        WIN_LO.load(Ordering::Relaxed),
        WIN_HI.load(Ordering::Relaxed),
    );
    let inside = |addr: u64, pages: u64| {
        addr >= lo
            && pages
                .checked_mul(P)
                .and_then(|l| addr.checked_add(l))
                .is_some_and(|e| e <= hi)
    };
    let memfd = borrowed(MEMFD.load(Ordering::Acquire));
    // SAFETY: for all three operations, the range lies in the window, which the runtime reserved and
    // alone maps into; the program reaches it only through pointers the server gave it,
    // and changing what they map is exactly what the server decided.
    unsafe {
        match op {
            Op::Map {
                addr,
                frame,
                write,
                exec,
            } if inside(addr, 1) => {
                let offset = (frame - FRAME_BASE.load(Ordering::Relaxed)) * P;
                let _ = mm::mmap(
                    addr as *mut _,
                    P as usize,
                    prot(write, exec),
                    MapFlags::SHARED | MapFlags::FIXED,
                    memfd,
                    offset,
                );
            }
            Op::Unmap { addr, pages } if inside(addr, pages) => {
                let _ = mm::mmap_anonymous(
                    addr as *mut _,
                    (pages * P) as usize,
                    ProtFlags::empty(),
                    MapFlags::PRIVATE | MapFlags::NORESERVE | MapFlags::FIXED,
                );
            }
            Op::Protect {
                addr,
                pages,
                write,
                exec,
            } if inside(addr, pages) => {
                let _ = mm::mprotect(
                    addr as *mut _,
                    (pages * P) as usize,
                    MprotectFlags::from_bits_retain(prot(write, exec).bits()),
                );
            }
            _ => {}
        }
    }
}

core::arch::global_asm!(
    r#"
.text
.global ms_probe_read
ms_probe_read:
    movzx eax, byte ptr [rdi]
    ret
.global ms_probe_write
ms_probe_write:
    xor eax, eax
.global ms_probe_write_at
ms_probe_write_at:
    mov byte ptr [rdi], sil
    ret
.global ms_probe_exec
ms_probe_exec:
    call rdi
    xor eax, eax
    ret
.global ms_probe_recover
ms_probe_recover:
    ret
.global ms_probe_recover_exec
ms_probe_recover_exec:
    add rsp, 8
    ret
"#
);

unsafe extern "C" {
    fn ms_probe_read(addr: u64) -> u64;
    fn ms_probe_write(addr: u64, value: u64) -> u64;
    fn ms_probe_exec(addr: u64) -> u64;
    static ms_probe_write_at: u8;
    static ms_probe_recover: u8;
    static ms_probe_recover_exec: u8;
}

fn probe_result(v: u64) -> Result<u8, Signal> {
    if v & 0x100 == 0 {
        Ok(v as u8)
    } else if v as u8 == Signal::Bus.number() {
        Err(Signal::Bus)
    } else {
        Err(Signal::Segv)
    }
}

/// Reads the byte at `addr`, reporting the signal the access raised instead of dying.
pub fn probe_read(addr: u64) -> Result<u8, Signal> {
    // SAFETY: a one-byte read; a fault there is resolved by the server or turned by the
    // handler into a return through the probe's recovery point.
    probe_result(unsafe { ms_probe_read(addr) })
}

/// Writes the byte at `addr`, reporting the signal the access raised instead of dying.
pub fn probe_write(addr: u64, value: u8) -> Result<(), Signal> {
    // SAFETY: as for `probe_read`: only `addr` is written, and only if the page allows.
    probe_result(unsafe { ms_probe_write(addr, u64::from(value)) }).map(|_| ())
}

/// Calls into the page at `addr` (whose byte must be `ret`), reporting the signal.
pub fn probe_exec(addr: u64) -> Result<(), Signal> {
    // SAFETY: as for `probe_read`; the code at `addr` is one `ret`.
    probe_result(unsafe { ms_probe_exec(addr) }).map(|_| ())
}

fn install_handler() {
    if HANDLER.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: as below; the doorbell handler is async-signal-safe too, and restarts the
    // calls it interrupts.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_doorbell as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(doorbell_signal(), &sa, std::ptr::null_mut());
    }
    let mut prev: [libc::sigaction; 2] = [zeroed_sigaction(); 2];
    for (i, sig) in [libc::SIGSEGV, libc::SIGBUS].into_iter().enumerate() {
        // SAFETY: a zeroed sigaction is valid; the handler is async-signal-safe (see the
        // module doc) and runs with SA_SIGINFO's three arguments; the old action is
        // kept, to be given the signals that are the program's.
        unsafe {
            let mut sa = zeroed_sigaction();
            sa.sa_sigaction = on_fault as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, &mut prev[i]);
        }
    }
    let _ = PREVIOUS.set(prev);
}

/// The program's own SIGSEGV and SIGBUS actions, from before the runtime's.
static PREVIOUS: std::sync::OnceLock<[libc::sigaction; 2]> = std::sync::OnceLock::new();

fn zeroed_sigaction() -> libc::sigaction {
    // SAFETY: all-zero is a valid sigaction (SIG_DFL, empty mask, no flags).
    unsafe { std::mem::zeroed() }
}

/// Delivers `sig` as the kernel would have: to the program's own handler if it had one
/// (with the fault's siginfo and context), otherwise with the default action (the
/// disposition is reset and the access faults again, or the signal is raised when it
/// differs from the one being handled).
fn deliver(sig: i32, handling: i32, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // The program may have changed `sig`'s disposition since the runtime started (a
    // handler that resets itself to SIG_DFL, as Rust's own does, then lets the access
    // fault again): what is installed now wins over what was there before us.
    let mut now = zeroed_sigaction();
    // SAFETY: querying a disposition is async-signal-safe; `now` is a valid out-pointer.
    unsafe { libc::sigaction(sig, std::ptr::null(), &mut now) };
    let prev = if now.sa_sigaction == on_fault as *const () as usize {
        PREVIOUS.get().map(|p| p[usize::from(sig == libc::SIGBUS)])
    } else {
        Some(now)
    };
    match prev {
        Some(sa) if sa.sa_sigaction != libc::SIG_DFL && sa.sa_sigaction != libc::SIG_IGN => {
            // SAFETY: the program installed this function for `sig`, with the signature
            // its flags say; it gets the arguments the kernel gave us.
            unsafe {
                if sa.sa_flags & libc::SA_SIGINFO != 0 {
                    let f: extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void) =
                        std::mem::transmute(sa.sa_sigaction);
                    f(sig, info, ctx);
                } else {
                    let f: extern "C" fn(i32) = std::mem::transmute(sa.sa_sigaction);
                    f(sig);
                }
            }
        }
        // Default (an ignored fault signal is not ignorable: the kernel kills too).
        // SAFETY: resetting a disposition and raising a signal are async-signal-safe.
        _ => unsafe {
            libc::signal(sig, libc::SIG_DFL);
            if sig != handling {
                libc::raise(sig);
            }
        },
    }
}

extern "C" fn on_fault(sig: i32, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes valid siginfo and ucontext pointers to an SA_SIGINFO
    // handler; only their fields are read and the saved RIP/RAX written.
    let (addr, regs) = unsafe {
        (
            (*info).si_addr() as u64,
            &mut (*(ctx as *mut libc::ucontext_t)).uc_mcontext.gregs,
        )
    };
    let sock = SOCK.load(Ordering::Acquire);
    let (lo, hi) = (
        WIN_LO.load(Ordering::Relaxed),
        WIN_HI.load(Ordering::Relaxed),
    );
    if sock < 0 || addr < lo || addr >= hi {
        deliver(sig, sig, info, ctx);
        return;
    }
    let err = regs[libc::REG_ERR as usize] as u64;
    let rip = regs[libc::REG_RIP as usize] as u64;
    let access = if err & 0x10 != 0 {
        2u8
    } else if err & 0x2 != 0 {
        1
    } else {
        0
    };
    // A fault the server says it resolved, again and again at the same address, would
    // loop forever: after a few, it is a SIGSEGV.
    let repeats = if LAST_FAULT.swap(addr, Ordering::Relaxed) == addr {
        REPEATS.fetch_add(1, Ordering::Relaxed) + 1
    } else {
        REPEATS.store(0, Ordering::Relaxed);
        0
    };
    let mut payload = [0u8; 9];
    payload[..8].copy_from_slice(&addr.to_le_bytes());
    payload[8] = access;
    let mut out = [0u8; MAX_RESPONSE_LEN];
    let answer = exchange(borrowed(sock), KIND_FAULT, &payload, &mut out)
        .ok()
        .and_then(|n| ipc_proto::decode_response(&out[..n]).ok());
    let signal = match answer {
        Some(Ok(Reply::FaultResolved)) if repeats < 4 => return,
        Some(Ok(Reply::Signal(s))) => s,
        _ => Signal::Segv,
    };
    LAST_FAULT.store(u64::MAX, Ordering::Relaxed);
    // A probe gets the signal as a value at its recovery point.
    // SAFETY: only the probes' addresses are taken.
    let (read_at, write_at, recover, recover_exec) = unsafe {
        (
            ms_probe_read as *const () as u64,
            &ms_probe_write_at as *const u8 as u64,
            &ms_probe_recover as *const u8 as u64,
            &ms_probe_recover_exec as *const u8 as u64,
        )
    };
    let fetch = access == 2 && rip == addr;
    if rip == read_at || rip == write_at || fetch {
        regs[libc::REG_RAX as usize] = (0x100 | u64::from(signal.number())) as i64;
        regs[libc::REG_RIP as usize] = (if fetch { recover_exec } else { recover }) as i64;
        return;
    }
    deliver(i32::from(signal.number()), sig, info, ctx);
}
