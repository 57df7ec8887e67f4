//! `memserverd --socket PATH [--mem SIZE] [--tar IMAGE]`: the memory server as a Linux
//! process.
//!
//! Physical memory is a memfd of SIZE bytes (default 256M): a small `dma` bank, the
//! `normal` bank, and a 1 MiB `fb0` device window at its end. Each connection is a
//! client (its identity from the socket's peer credentials); its death, however it
//! happens, is the kernel's `ClientExited`. SIGTERM or SIGINT stops the server cleanly,
//! reporting its free frames. `RUST_LOG=debug` logs every request. Its pager is a RAM file
//! server in the same process holding the conformance suite's files
//! (`fileserver::fixture`) and the read-only files of the ustar archive IMAGE.

use ipc_proto::{Access, ClientId, ClientSpec, MAX_REQUEST_LEN, MAX_RESPONSE_LEN, Request};
use memserver::{Config, Sender, Server, StandardLayout};
use memserver_hosted::ring::{OPS_CAP, RING_SIZE, Ring};
use memserver_hosted::wire::{
    self, KIND_ADOPT, KIND_AWAIT_EXIT, KIND_EXIT, KIND_FAULT, KIND_FORK, KIND_REQUEST, KIND_SPEC,
    Setup,
};
use memserver_hosted::{HostedStub, hosted_stub::MemView};
use rustix::fd::AsFd;
use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::os::unix::net::{UnixListener, UnixStream};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// The clients' window: 16 TiB well away from where Linux places a program's mappings.
const WINDOW: (u64, u64) = (0x2000_0000_0000, 0x3000_0000_0000);
/// Frame number of the memfd's first page (any value; frames are just names).
const FRAME_BASE: u64 = 0x100;
const DMA_FRAMES: u64 = 64;
const FB_FRAMES: u64 = 256;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: i32) {
    STOP.store(true, Ordering::SeqCst);
}

struct State {
    server: Server<HostedStub>,
    memfd: rustix::fd::OwnedFd,
    setup: Setup,
    /// Each client's doorbell: the server's end of a socket pair, and the process.
    doorbells: std::collections::BTreeMap<ClientId, (UnixStream, i32)>,
    /// Clones waiting for their connection: secret -> (clone, parent, user).
    forks: std::collections::BTreeMap<u64, (ClientId, ClientId, u32)>,
    next_client: u32,
}

impl State {
    fn new_id(&mut self) -> ClientId {
        self.next_client += 1;
        ClientId(self.next_client)
    }
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most 8 bytes into the buffer.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), 8, 0) };
    if n != 8 {
        // Unpredictable enough as a fallback: the address of a stack slot and the time.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        return t ^ (b.as_ptr() as u64).rotate_left(32);
    }
    u64::from_le_bytes(b)
}

/// Pushes the operations another request queued for other clients to them, and waits
/// until each has applied them: only then may the request be answered (the frames it
/// freed may be reused at once). A client that does not acknowledge within two seconds
/// is killed: it cannot be left with access the server took away.
fn ring_doorbells(st: &mut State, requester: ClientId) {
    let State {
        server, doorbells, ..
    } = st;
    for (&cid, (bell, pid)) in doorbells.iter_mut() {
        if cid == requester {
            continue;
        }
        let Some(space) = server.space_of(cid) else {
            continue;
        };
        let ops = server.stub_mut().take_ops(space);
        if ops.is_empty() {
            continue;
        }
        let mut msg = (ops.len() as u32).to_le_bytes().to_vec();
        for op in &ops {
            msg.extend_from_slice(&op.encode());
        }
        let sig = memserver_hosted::runtime::doorbell_signal();
        let mut ack = [0u8; 1];
        let delivered = bell.write_all(&msg).is_ok()
            // SAFETY: signalling the client's own process, whose pid the socket reported.
            && unsafe { libc::kill(*pid, sig) } == 0
            && bell.set_read_timeout(Some(Duration::from_secs(2))).is_ok()
            && io::Read::read_exact(bell, &mut ack).is_ok();
        if !delivered {
            log::warn!(
                "client {}: no doorbell acknowledgement, killing pid {pid}",
                cid.0
            );
            // SAFETY: as above; the client keeps access it must not have.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
    }
}

/// The server's state and the condition "a connection ended and its clients are
/// reclaimed", which [`KIND_AWAIT_EXIT`] waits for.
struct Shared {
    state: Mutex<State>,
    exited: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether a connection of process `pid` is still being served.
fn has_process(st: &State, pid: i32) -> bool {
    st.doorbells.values().any(|&(_, p)| p == pid)
}

fn parse_size(s: &str) -> Option<u64> {
    let (n, mul) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 1 << 10),
        b'M' | b'm' => (&s[..s.len() - 1], 1 << 20),
        b'G' | b'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    n.parse::<u64>().ok()?.checked_mul(mul)
}

fn config(frames: u64) -> Config {
    let normal = frames - DMA_FRAMES - FB_FRAMES;
    let mut cfg = Config::standard(StandardLayout::contiguous(
        FRAME_BASE, DMA_FRAMES, normal, FB_FRAMES,
    ));
    cfg.mmap_min = WINDOW.0;
    cfg.mmap_max = WINDOW.1;
    cfg.self_check = std::env::var_os("MEMSERVER_SELF_CHECK").is_some();
    cfg
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args = std::env::args().skip(1);
    let (mut path, mut mem, mut tar) = (None, 256u64 << 20, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--socket" => path = args.next(),
            "--tar" => tar = args.next(),
            "--mem" => match args.next().as_deref().and_then(parse_size) {
                Some(m) if m >= (4 << 20) => mem = m,
                _ => fail("--mem needs a size of at least 4M, e.g. 256M"),
            },
            _ => fail("usage: memserverd --socket PATH [--mem SIZE] [--tar IMAGE]"),
        }
    }
    let path =
        path.unwrap_or_else(|| fail("usage: memserverd --socket PATH [--mem SIZE] [--tar IMAGE]"));
    if let Err(e) = serve(&path, mem, tar.as_deref()) {
        fail(&format!("memserverd: {e}"));
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::exit(2);
}

fn serve(path: &str, mem: u64, tar: Option<&str>) -> io::Result<()> {
    let mem = mem & !4095;
    let memfd = rustix::fs::memfd_create("memserver-frames", rustix::fs::MemfdFlags::CLOEXEC)?;
    rustix::fs::ftruncate(&memfd, mem)?;
    // SAFETY: a fresh shared mapping of the memfd, owned by the server for its life.
    let base = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            mem as usize,
            rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
            rustix::mm::MapFlags::SHARED,
            &memfd,
            0,
        )
    }?;
    let base = NonNull::new(base.cast::<u8>()).ok_or(io::ErrorKind::Other)?;
    // SAFETY: the mapping above stays for the process's life; nothing else refers to it.
    let view = unsafe { MemView::new(base, mem) };
    let frames = mem / 4096;
    let cfg = config(frames);
    let setup = Setup {
        window_lo: cfg.mmap_min,
        window_hi: cfg.mmap_max,
        frame_base: FRAME_BASE,
        mem_size: mem,
    };
    let mut server = Server::new(cfg, HostedStub::new(view, FRAME_BASE));
    // The file server runs in this process: the conformance suite's files, plus the
    // read-only files of a `--tar` image.
    let mut files = fileserver::fixture::conformance_fs();
    if let Some(tar) = tar {
        let image = std::fs::read(tar)?;
        let n = files
            .load_tar(&image)
            .map_err(|e| io::Error::other(format!("{tar}: {e}")))?;
        log::info!("{tar}: {n} read-only files");
    }
    server
        .set_pager(Box::new(files.into_pager()))
        .map_err(|e| io::Error::other(format!("pager: {e}")))?;
    let state = Arc::new(Shared {
        state: Mutex::new(State {
            server,
            memfd,
            setup,
            doorbells: Default::default(),
            forks: Default::default(),
            next_client: 0,
        }),
        exited: Condvar::new(),
    });
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_term as *const () as libc::sighandler_t) };
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    listener.set_nonblocking(true)?;
    log::info!("listening on {path}: {frames} frames of {} MiB", mem >> 20);
    while !STOP.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                let id = state.lock().new_id();
                let state = Arc::clone(&state);
                std::thread::spawn(move || connection(state, stream, id));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => log::warn!("accept: {e}"),
        }
    }
    let s = state.lock().server.stats();
    log::info!(
        "shutting down: {} of {} frames free, {} clients, {} shm objects",
        s.free_frames,
        s.total_frames,
        s.clients,
        s.shm_objects
    );
    println!(
        "memserverd: stopped: free_frames={} total_frames={} clients={}",
        s.free_frames, s.total_frames, s.clients
    );
    let _ = std::fs::remove_file(path);
    Ok(())
}

/// Serves one client until its connection ends, then reclaims everything it held.
fn connection(shared: Arc<Shared>, mut stream: UnixStream, mut id: ClientId) {
    let Ok(cred) = rustix::net::sockopt::socket_peercred(&stream) else {
        log::warn!("client {}: no peer credentials", id.0);
        return;
    };
    let spec = ClientSpec {
        uid: cred.uid.as_raw(),
        gid: cred.gid.as_raw(),
        ..ClientSpec::DEFAULT
    };
    let Ok((bell_ours, bell_theirs)) = UnixStream::pair() else {
        return;
    };
    let Ok((ring, chan)) = make_channel() else {
        log::warn!("client {}: no channel", id.0);
        return;
    };
    {
        let mut st = shared.lock();
        let started = st
            .server
            .handle(Sender::Kernel, &Request::ClientStarted { client: id, spec });
        if let Err(e) = started {
            log::warn!("client {}: refused: {e}", id.0);
            return;
        }
        let setup = st.setup.encode();
        let fds = [st.memfd.as_fd(), bell_theirs.as_fd(), chan.as_fd()];
        if let Err(e) = send_setup(&stream, &setup, &fds) {
            log::warn!("client {}: set-up failed: {e}", id.0);
        }
        st.doorbells
            .insert(id, (bell_ours, cred.pid.as_raw_nonzero().get()));
    }
    log::info!("client {} connected (uid {})", id.0, spec.uid);
    // The server's own user (or root) may set its clients' specs: it is the "kernel".
    let trusted = spec.uid == 0 || spec.uid == rustix::process::getuid().as_raw();
    let mut exiting = false;
    // No request handled yet: the spec may still change.
    let mut fresh = true;
    let mut buf = [0u8; MAX_REQUEST_LEN + 1];
    let mut out = [0u8; MAX_RESPONSE_LEN];
    // The client never writes to the socket after set-up: a read returns only when it is
    // gone, and then the channel is closed so the connection stops waiting.
    let closer = ring.closer();
    let watcher = stream.try_clone().ok().map(|mut s| {
        std::thread::spawn(move || {
            let mut b = [0u8; 64];
            while matches!(io::Read::read(&mut s, &mut b), Ok(n) if n > 0) {}
            closer.close();
        })
    });
    let mut last = 0u32;
    loop {
        let Some((seq, kind, len)) = ring.next_request(last, &mut buf, Duration::from_secs(1))
        else {
            if watcher.as_ref().is_some_and(|w| !w.is_finished()) {
                continue;
            }
            break;
        };
        last = seq;
        let mut st = shared.lock();
        let was_fresh = fresh;
        fresh = false;
        let n = match (kind, len) {
            (KIND_REQUEST, n) => st
                .server
                .handle_message(Sender::Client(id), &buf[..n], &mut out),
            (KIND_SPEC, n) if n <= MAX_REQUEST_LEN => {
                let resp = match postcard::from_bytes::<ClientSpec>(&buf[..n]) {
                    Err(_) => Err(ipc_proto::Errno::EINVAL),
                    Ok(_) if !trusted => Err(ipc_proto::Errno::EPERM),
                    Ok(_) if !was_fresh => Err(ipc_proto::Errno::EBUSY),
                    Ok(new) => {
                        // Nothing is held yet: announce the client again with its spec.
                        let _ = st
                            .server
                            .handle(Sender::Kernel, &Request::ClientExited { client: id });
                        st.server.handle(
                            Sender::Kernel,
                            &Request::ClientStarted {
                                client: id,
                                spec: new,
                            },
                        )
                    }
                };
                ipc_proto::encode_response(&resp, &mut out).unwrap_or(0)
            }
            (KIND_FORK, n) if n <= MAX_REQUEST_LEN => {
                match postcard::from_bytes::<ClientSpec>(&buf[..n]) {
                    Err(_) => fork_answer(&mut out, Err(ipc_proto::Errno::EINVAL)),
                    Ok(mut child_spec) => {
                        if !trusted {
                            child_spec.uid = spec.uid;
                            child_spec.gid = spec.gid;
                        }
                        let child = st.new_id();
                        let cloned = st.server.handle(
                            Sender::Kernel,
                            &Request::ClientCloned {
                                parent: id,
                                child,
                                spec: child_spec,
                            },
                        );
                        let answer = cloned.map(|_| {
                            let secret = random_u64();
                            st.forks.insert(secret, (child, id, spec.uid));
                            secret
                        });
                        fork_answer(&mut out, answer)
                    }
                }
            }
            (KIND_ADOPT, 8) => {
                let secret = u64::from_le_bytes(buf[..8].try_into().unwrap_or([0; 8]));
                let resp = match st.forks.get(&secret).copied() {
                    _ if !was_fresh => Err(ipc_proto::Errno::EBUSY),
                    Some((child, _, uid)) if uid == spec.uid || trusted => {
                        st.forks.remove(&secret);
                        // This connection's own fresh client gives way to the clone.
                        let _ = st
                            .server
                            .handle(Sender::Kernel, &Request::ClientExited { client: id });
                        if let Some(bell) = st.doorbells.remove(&id) {
                            st.doorbells.insert(child, bell);
                        }
                        log::info!("client {} is now the clone {}", id.0, child.0);
                        id = child;
                        Ok(ipc_proto::Reply::Done)
                    }
                    _ => Err(ipc_proto::Errno::EPERM),
                };
                ipc_proto::encode_response(&resp, &mut out).unwrap_or(0)
            }
            (KIND_AWAIT_EXIT, 4) if trusted => {
                let pid = u32::from_le_bytes(buf[..4].try_into().unwrap_or([0; 4])) as i32;
                let (guard, waited) = shared
                    .exited
                    .wait_timeout_while(st, Duration::from_secs(10), |st| has_process(st, pid))
                    .unwrap_or_else(|e| e.into_inner());
                st = guard;
                let resp = if waited.timed_out() {
                    Err(ipc_proto::Errno::EBUSY)
                } else {
                    Ok(ipc_proto::Reply::Done)
                };
                ipc_proto::encode_response(&resp, &mut out).unwrap_or(0)
            }
            (KIND_EXIT, 0) => {
                exiting = true;
                let resp = st
                    .server
                    .handle(Sender::Kernel, &Request::ClientExited { client: id });
                ipc_proto::encode_response(&resp, &mut out).unwrap_or(0)
            }
            (KIND_FAULT, 9) => {
                let addr = u64::from_le_bytes(buf[..8].try_into().unwrap_or([0; 8]));
                let access = match buf[8] {
                    1 => Access::Write,
                    2 => Access::Exec,
                    _ => Access::Read,
                };
                // The server process is this client's kernel: the fault is reported for
                // the connection's own client only.
                let resp = st.server.handle(
                    Sender::Kernel,
                    &Request::PageFault {
                        client: id,
                        addr,
                        access,
                    },
                );
                ipc_proto::encode_response(&resp, &mut out).unwrap_or(0)
            }
            _ => {
                log::warn!("client {}: malformed frame, dropping the connection", id.0);
                break;
            }
        };
        if kind == KIND_FAULT
            && ops_pending(&mut st, id) == 0
            && let Some(space) = st.server.space_of(id)
        {
            // Resolved with nothing to install: the client skipped a stale operation.
            let addr = u64::from_le_bytes(buf[..8].try_into().unwrap_or([0; 8]));
            st.server.stub_mut().refresh(space, addr);
        }
        ring_doorbells(&mut st, id);
        let ops = match st.server.space_of(id) {
            Some(space) => st.server.stub_mut().take_ops(space),
            None => Vec::new(),
        };
        drop(st);
        let encoded: Vec<[u8; wire::OP_LEN]> = ops.iter().map(wire::Op::encode).collect();
        let (first, rest) = encoded.split_at(encoded.len().min(OPS_CAP));
        // Operations beyond the channel's room follow on the socket, before the answer.
        let more: Vec<u8> = rest.concat();
        if stream.write_all(&more).is_err() {
            break;
        }
        ring.post_response(seq, &out[..n], first, rest.len() as u32);
        if exiting {
            break;
        }
    }
    if exiting {
        unmap_channel(ring, &stream, watcher);
        let mut st = shared.lock();
        st.doorbells.remove(&id);
        abandon_forks(&mut st, id);
        shared.exited.notify_all();
        log::info!("client {} exited", id.0);
        return;
    }
    unmap_channel(ring, &stream, watcher);
    let mut st = shared.lock();
    st.doorbells.remove(&id);
    abandon_forks(&mut st, id);
    let _ = st
        .server
        .handle(Sender::Kernel, &Request::ClientExited { client: id });
    // Writing its dirty file pages back write-protected them in the other clients too.
    ring_doorbells(&mut st, id);
    shared.exited.notify_all();
    let s = st.server.stats();
    log::info!(
        "client {} gone: {} of {} frames free",
        id.0,
        s.free_frames,
        s.total_frames
    );
}

/// Writes a `KIND_FORK` answer; returns its length.
fn fork_answer(out: &mut [u8], answer: Result<u64, ipc_proto::Errno>) -> usize {
    match answer {
        Ok(secret) => {
            out[0] = 0;
            out[1..9].copy_from_slice(&secret.to_le_bytes());
            9
        }
        Err(e) => {
            out[0] = 1;
            out[1..3].copy_from_slice(&(e as u16).to_le_bytes());
            3
        }
    }
}

/// Ends the clones `parent` made that no connection took over.
fn abandon_forks(st: &mut State, parent: ClientId) {
    let orphans: Vec<(u64, ClientId)> = st
        .forks
        .iter()
        .filter(|(_, f)| f.1 == parent)
        .map(|(&s, f)| (s, f.0))
        .collect();
    for (secret, child) in orphans {
        st.forks.remove(&secret);
        let _ = st
            .server
            .handle(Sender::Kernel, &Request::ClientExited { client: child });
    }
}

/// How many operations wait for `id`'s space.
fn ops_pending(st: &mut State, id: ClientId) -> usize {
    match st.server.space_of(id) {
        Some(space) => st.server.stub_mut().pending(space),
        None => 0,
    }
}

/// A client's channel: a shared memfd the server maps and hands to the client.
fn make_channel() -> io::Result<(Ring, rustix::fd::OwnedFd)> {
    let fd = rustix::fs::memfd_create("memserver-channel", rustix::fs::MemfdFlags::CLOEXEC)?;
    rustix::fs::ftruncate(&fd, RING_SIZE as u64)?;
    // SAFETY: a fresh shared mapping of the channel; `connection` unmaps it when the
    // client is gone.
    let p = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            RING_SIZE,
            rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
            rustix::mm::MapFlags::SHARED,
            &fd,
            0,
        )
    }?;
    let p = NonNull::new(p.cast::<u8>()).ok_or(io::ErrorKind::Other)?;
    // SAFETY: the mapping just made is RING_SIZE bytes of a channel memfd and stays.
    Ok((unsafe { Ring::new(p) }, fd))
}

fn unmap_channel(ring: Ring, stream: &UnixStream, watcher: Option<std::thread::JoinHandle<()>>) {
    // The watcher may still touch the channel: stop it first.
    let _ = stream.shutdown(std::net::Shutdown::Both);
    if let Some(w) = watcher {
        let _ = w.join();
    }
    // SAFETY: the channel's own mapping, made by `make_channel`; its connection is over,
    // so nothing uses it any more (the client keeps its own mapping).
    let _ = unsafe { rustix::mm::munmap(ring.as_ptr().cast(), RING_SIZE) };
}

fn send_setup(
    stream: &UnixStream,
    setup: &[u8; 32],
    fds: &[rustix::fd::BorrowedFd<'_>; 3],
) -> io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
    let mut cmsg = rustix::net::SendAncillaryBuffer::new(&mut space);
    if !cmsg.push(rustix::net::SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::ErrorKind::Other.into());
    }
    rustix::net::sendmsg(
        stream,
        &[io::IoSlice::new(setup)],
        &mut cmsg,
        rustix::net::SendFlags::empty(),
    )?;
    Ok(())
}
