//! The daemon's one loop: `epoll` over the listening socket, every connection and
//! every client's userfaultfd. No thread per connection: a thousand idle clients cost
//! a thousand descriptors pairs and nothing else.

use super::config::DaemonConfig;
use super::connection::{After, ConnId, Daemon};
use crate::HostedStub;
use crate::packet;
use memserver::Server;
use rustix::event::epoll::{self, CreateFlags, EventData, EventFlags};
use rustix::fd::{AsFd, OwnedFd};
use rustix::net::{AddressFamily, RecvFlags, SocketAddrUnix, SocketFlags, SocketType};
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set by SIGTERM or SIGINT: the loop ends and the server reports.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: i32) {
    STOP.store(true, Ordering::SeqCst);
}

const LISTENER: u64 = u64::MAX;

fn conn_token(id: ConnId) -> u64 {
    u64::from(id) << 1
}

fn uffd_token(id: ConnId) -> u64 {
    u64::from(id) << 1 | 1
}

/// What the server held when it stopped.
#[derive(Clone, Copy, Debug)]
pub struct Stopped {
    /// Free frames.
    pub free_frames: u64,
    /// All frames.
    pub total_frames: u64,
    /// Clients still connected.
    pub clients: u32,
}

/// Binds `path`, replacing a stale socket file but never a live server's socket nor
/// anything that is not a socket.
fn bind(path: &Path, mode: u32) -> io::Result<OwnedFd> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::other(format!(
                "{} exists and is not a socket: not replacing it",
                path.display()
            )));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok()
            || std::os::unix::net::UnixDatagram::unbound()
                .and_then(|d| d.connect(path))
                .is_ok()
            || seqpacket_connects(path)
        {
            return Err(io::Error::other(format!(
                "{}: a server is already listening there",
                path.display()
            )));
        }
        std::fs::remove_file(path)?;
    }
    let sock = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    rustix::net::bind(&sock, &SocketAddrUnix::new(path)?)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    rustix::net::listen(&sock, 128)?;
    Ok(sock)
}

fn seqpacket_connects(path: &Path) -> bool {
    let Ok(s) = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    ) else {
        return false;
    };
    SocketAddrUnix::new(path).is_ok_and(|a| rustix::net::connect(&s, &a).is_ok())
}

/// Serves until SIGTERM or SIGINT; removes the socket file on the way out.
pub fn run(cfg: &DaemonConfig, server: Server<HostedStub>) -> io::Result<Stopped> {
    // Every connection costs a descriptor and every mapped object its memfd: take all
    // the descriptors the administrator allows.
    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let _ = rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: nofile.maximum,
            maximum: nofile.maximum,
        },
    );
    let listener = bind(&cfg.socket, cfg.socket_mode)?;
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_term as *const () as libc::sighandler_t) };
    }
    let result = serve(cfg, server, &listener);
    let _ = std::fs::remove_file(&cfg.socket);
    result
}

fn serve(
    cfg: &DaemonConfig,
    server: Server<HostedStub>,
    listener: &OwnedFd,
) -> io::Result<Stopped> {
    let ep = epoll::create(CreateFlags::CLOEXEC)?;
    epoll::add(&ep, listener, EventData::new_u64(LISTENER), EventFlags::IN)?;
    let mut d = Daemon::new(server, cfg);
    let mut events = Vec::with_capacity(256);
    let mut buf = vec![0u8; crate::wire::MAX_PACKET];
    let mut listening = true;
    let mut resume_at: Option<Instant> = None;
    let mut last_accept_error: Option<Instant> = None;
    let tick = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 200_000_000,
    };
    log::info!(
        "listening on {}: {} frames of {} MiB",
        cfg.socket.display(),
        cfg.frames(),
        cfg.mem >> 20
    );
    while !STOP.load(Ordering::SeqCst) {
        events.clear();
        match epoll::wait(
            &ep,
            rustix::buffer::spare_capacity(&mut events),
            Some(&tick),
        ) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        for ev in events.iter() {
            let (token, flags) = (ev.data.u64(), { ev.flags });
            if token == LISTENER {
                if let Err(e) = accept_all(&mut d, &ep, listener) {
                    // Out of descriptors: stop listening a moment instead of spinning,
                    // and say so once a second at most.
                    let now = Instant::now();
                    if last_accept_error.is_none_or(|t| now - t >= Duration::from_secs(1)) {
                        log::warn!("accept: {e}");
                        last_accept_error = Some(now);
                    }
                    if listening && epoll::delete(&ep, listener).is_ok() {
                        listening = false;
                        resume_at = Some(now + Duration::from_millis(100));
                    }
                }
                continue;
            }
            let id = (token >> 1) as ConnId;
            if token & 1 == 1 {
                if flags.intersects(EventFlags::ERR | EventFlags::HUP) {
                    forget_uffd(&d, &ep, id);
                } else if !d.faults(id) {
                    close(&mut d, &ep, id);
                }
                continue;
            }
            if !read_all(&mut d, &ep, id, &mut buf) {
                close(&mut d, &ep, id);
            }
        }
        let now = Instant::now();
        d.answer_waiters(now);
        if !listening && resume_at.is_some_and(|t| now >= t) {
            listening =
                epoll::add(&ep, listener, EventData::new_u64(LISTENER), EventFlags::IN).is_ok();
            resume_at = (!listening).then(|| now + Duration::from_millis(100));
        }
    }
    let s = d.server.stats();
    log::info!(
        "shutting down: {} of {} frames free, {} clients, {} shm objects",
        s.free_frames,
        s.total_frames,
        s.clients,
        s.shm_objects
    );
    Ok(Stopped {
        free_frames: s.free_frames,
        total_frames: s.total_frames,
        clients: s.clients,
    })
}

fn accept_all(d: &mut Daemon, ep: &OwnedFd, listener: &OwnedFd) -> io::Result<()> {
    loop {
        let sock = match rustix::net::accept_with(
            listener,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        ) {
            Ok(s) => s,
            Err(rustix::io::Errno::AGAIN) => return Ok(()),
            Err(rustix::io::Errno::INTR | rustix::io::Errno::CONNABORTED) => continue,
            Err(e) => return Err(e.into()),
        };
        if let Some(id) = d.accept(sock)
            && let Some(c) = d.conns.get(&id)
            && epoll::add(
                ep,
                &c.sock,
                EventData::new_u64(conn_token(id)),
                EventFlags::IN,
            )
            .is_err()
        {
            d.disconnect(id);
        }
    }
}

/// Most messages answered for one connection before the loop turns to the others (the
/// rest wait for the next round: `epoll` is level-triggered), so a client pipelining
/// requests cannot starve the rest.
const FAIR_SHARE: usize = 64;

/// Answers the messages waiting on connection `id`, up to [`FAIR_SHARE`]; `false` when
/// it must close.
fn read_all(d: &mut Daemon, ep: &OwnedFd, id: ConnId, buf: &mut [u8]) -> bool {
    for _ in 0..FAIR_SHARE {
        let Some(c) = d.conns.get(&id) else {
            return false;
        };
        let (n, fds) = match packet::recv(c.sock.as_fd(), buf, RecvFlags::DONTWAIT) {
            Ok((0, _)) => return false,
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        };
        match d.message(id, &buf[..n], fds) {
            After::Nothing => {}
            After::WatchUffd => {
                let Some(u) = d.conns.get(&id).and_then(|c| c.uffd.clone()) else {
                    return false;
                };
                if epoll::add(
                    ep,
                    u.fd(),
                    EventData::new_u64(uffd_token(id)),
                    EventFlags::IN,
                )
                .is_err()
                {
                    return false;
                }
            }
            After::Close => return false,
        }
    }
    true
}

fn forget_uffd(d: &Daemon, ep: &OwnedFd, id: ConnId) {
    if let Some(u) = d.conns.get(&id).and_then(|c| c.uffd.as_ref()) {
        let _ = epoll::delete(ep, u.fd());
    }
}

fn close(d: &mut Daemon, ep: &OwnedFd, id: ConnId) {
    forget_uffd(d, ep, id);
    if let Some(c) = d.disconnect(id) {
        let _ = epoll::delete(ep, &c.sock);
    }
}
