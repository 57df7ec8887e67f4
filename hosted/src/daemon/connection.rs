//! [`Daemon`]: the server, its connections and what each message does.

use super::config::{DaemonConfig, LOW_WINDOW, WINDOW};
use super::faults::{self, Fault};
use super::host_ops::{self, HostOps};
use super::limits;
use crate::HostedStub;
use crate::packet;
use crate::uffd::{Event, Uffd};
use crate::wire::{
    self, KIND_ADOPT, KIND_AWAIT_EXIT, KIND_EXIT, KIND_FORK, KIND_HELLO, KIND_HOST_FILES,
    KIND_LIMITS, KIND_MMAP_FILE, KIND_REQUEST, KIND_SPEC, Setup,
};
use ipc_proto::{ClientId, ClientSpec, Errno, MAX_REQUEST_LEN, MAX_RESPONSE_LEN, Reply, Request};
use memserver::region::RegionBacking;
use memserver::{HostFileAccess, HostFileKey, Sender, Server};
use rustix::fd::{AsFd, OwnedFd};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most faults of one client resolved before the loop turns to the others.
const FAULTS_PER_ROUND: usize = 256;

/// A connection's number (its client's number can change: a forked child adopts its
/// clone's).
pub type ConnId = u32;

/// One connection.
pub struct Conn {
    /// The socket.
    pub sock: OwnedFd,
    /// Its client.
    pub client: ClientId,
    /// The peer's process, user and group (`SO_PEERCRED`).
    pub pid: i32,
    uid: u32,
    /// Its userfaultfd, once it said hello.
    pub uffd: Option<Arc<Uffd>>,
    /// The server's own user (or root): it plays the kernel's part (specs, waits).
    trusted: bool,
    /// No request handled yet: the spec may still change.
    fresh: bool,
    /// Its client exited on request; the connection only waits to close.
    exited: bool,
}

/// A clone waiting for its forked child's connection.
struct PendingFork {
    child: ClientId,
    parent: ClientId,
    uid: u32,
}

/// A `KIND_AWAIT_EXIT` answered when process `pid` has no connection left.
struct Waiter {
    conn: ConnId,
    pid: i32,
    deadline: Instant,
}

/// What a message asks of the event loop.
#[derive(Debug, PartialEq, Eq)]
pub enum After {
    /// Nothing more.
    Nothing,
    /// Watch this connection's new userfaultfd.
    WatchUffd,
    /// Close the connection.
    Close,
}

/// The memory server and its connections.
pub struct Daemon {
    /// The server.
    pub server: Server<HostedStub>,
    /// Live connections.
    pub conns: BTreeMap<ConnId, Conn>,
    forks: BTreeMap<u64, PendingFork>,
    waiters: Vec<Waiter>,
    per_uid: BTreeMap<u32, usize>,
    next_client: u32,
    mem_size: u64,
    max_per_uid: usize,
    own_uid: u32,
    out: Vec<u8>,
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most 8 bytes into the buffer.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), 8, 0) };
    if n != 8 {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        return t ^ (b.as_ptr() as u64).rotate_left(32);
    }
    u64::from_le_bytes(b)
}

impl Daemon {
    /// A daemon serving `server`, configured by `cfg`.
    pub fn new(server: Server<HostedStub>, cfg: &DaemonConfig) -> Daemon {
        Daemon {
            server,
            conns: BTreeMap::new(),
            forks: BTreeMap::new(),
            waiters: Vec::new(),
            per_uid: BTreeMap::new(),
            next_client: 0,
            mem_size: cfg.mem,
            max_per_uid: cfg.max_connections_per_uid,
            own_uid: rustix::process::getuid().as_raw(),
            out: Vec::with_capacity(wire::MAX_PACKET),
        }
    }

    /// A fresh client number; `None` once they run out (after 2^32 connections and
    /// forks: numbers are never reused, so a stale one can never name a new client).
    fn new_client(&mut self) -> Option<ClientId> {
        self.next_client = self.next_client.checked_add(1)?;
        Some(ClientId(self.next_client))
    }

    /// Takes a new connection; `None` (after telling the peer why) when refused.
    pub fn accept(&mut self, sock: OwnedFd) -> Option<ConnId> {
        let Ok(cred) = rustix::net::sockopt::socket_peercred(&sock) else {
            return None;
        };
        // SO_PEERCRED: the effective ids of the process when it connected.
        let (uid, gid) = (cred.uid.as_raw(), cred.gid.as_raw());
        let pid = cred.pid.as_raw_nonzero().get();
        let count = self.per_uid.get(&uid).copied().unwrap_or(0);
        if count >= self.max_per_uid {
            log::warn!("uid {uid}: {count} connections, refusing another");
            self.answer_err(&sock, Errno::EAGAIN);
            return None;
        }
        let Some(client) = self.new_client() else {
            self.answer_err(&sock, Errno::EAGAIN);
            return None;
        };
        // Its process's own RLIMIT_MEMLOCK and RLIMIT_AS, read from /proc (a process
        // that is gone already gets the defaults and is dropped soon after).
        let spec = ClientSpec {
            uid,
            gid,
            limits: limits::of_process(pid).unwrap_or_default(),
            ..ClientSpec::DEFAULT
        };
        if let Err(e) = self
            .server
            .handle(Sender::Kernel, &Request::ClientStarted { client, spec })
        {
            log::warn!("client {}: refused: {e}", client.0);
            self.answer_err(&sock, e);
            return None;
        }
        *self.per_uid.entry(uid).or_default() += 1;
        let id = client.0;
        self.conns.insert(
            id,
            Conn {
                sock,
                client,
                pid,
                uid,
                uffd: None,
                trusted: uid == 0 || uid == self.own_uid,
                fresh: true,
                exited: false,
            },
        );
        log::debug!("client {} connected (uid {uid})", client.0);
        Some(id)
    }

    fn answer_err(&mut self, sock: &OwnedFd, e: Errno) {
        let mut resp = [0u8; MAX_RESPONSE_LEN];
        let n = ipc_proto::encode_response(&Err(e), &mut resp).unwrap_or(0);
        if wire::encode_answer(&resp[..n], &[], &mut self.out).is_some() {
            let _ = packet::send(sock.as_fd(), &self.out, &[]);
        }
    }

    /// Answers one message of connection `id`.
    pub fn message(&mut self, id: ConnId, msg: &[u8], mut fds: Vec<OwnedFd>) -> After {
        let Some(conn) = self.conns.get(&id) else {
            return After::Close;
        };
        let (kind, body) = match msg.split_first() {
            Some((&k, b)) => (k, b),
            None => return After::Close,
        };
        let greeted = conn.uffd.is_some();
        let client = conn.client;
        let mut after = After::Nothing;
        let mut ops = HostOps::default();
        let mut payload = [0u8; MAX_RESPONSE_LEN];
        let n = match kind {
            KIND_HELLO | KIND_ADOPT if greeted => return After::Close,
            KIND_HELLO => match fds
                .pop()
                .filter(|_| body.is_empty())
                .and_then(Uffd::checked)
            {
                Some(fd) => {
                    self.attach(id, fd);
                    after = After::WatchUffd;
                    self.setup(id, &mut payload)
                }
                None => return After::Close,
            },
            KIND_ADOPT => {
                let token = body.try_into().map(u64::from_le_bytes);
                match (token, fds.pop().and_then(Uffd::checked)) {
                    (Ok(token), Some(fd)) => match self.adopt(id, token) {
                        Ok(()) => {
                            self.attach(id, fd);
                            after = After::WatchUffd;
                            self.protect_private(id);
                            self.setup(id, &mut payload)
                        }
                        Err(e) => encode(&Err(e), &mut payload),
                    },
                    _ => return After::Close,
                }
            }
            _ if !greeted => return After::Close,
            KIND_REQUEST => {
                let resp = if body.len() > MAX_REQUEST_LEN {
                    Err(Errno::EMSGSIZE)
                } else {
                    match ipc_proto::decode_request(body) {
                        Ok(req) => {
                            host_ops::sync_size(&mut self.server, client, &req);
                            let resp = self.server.handle(Sender::Client(client), &req);
                            match &resp {
                                Ok(reply) => match host_ops::for_request(
                                    &mut self.server,
                                    client,
                                    &req,
                                    reply,
                                    [WINDOW, LOW_WINDOW],
                                    None,
                                ) {
                                    Ok(o) => {
                                        ops = o;
                                        resp
                                    }
                                    Err(e) => self.host_failed(client, &req, reply, e),
                                },
                                Err(_) => resp,
                            }
                        }
                        Err(e) => Err(e),
                    }
                };
                self.mark_used(id);
                encode(&resp, &mut payload)
            }
            KIND_MMAP_FILE => {
                let resp = match (fds.pop(), fds.is_empty()) {
                    (Some(file), true) => self.mmap_file(client, body, &file, &mut ops),
                    _ => Err(Errno::EINVAL),
                };
                self.mark_used(id);
                encode(&resp, &mut payload)
            }
            KIND_HOST_FILES if body.is_empty() => {
                let trusted = self.conns.get(&id).is_some_and(|c| c.trusted);
                if !trusted {
                    encode(&Err(Errno::EPERM), &mut payload)
                } else {
                    let list = self.host_files();
                    return if self.send(id, &list, &ops) {
                        after
                    } else {
                        After::Close
                    };
                }
            }
            KIND_SPEC => {
                let resp = self.spec(id, body);
                encode(&resp, &mut payload)
            }
            KIND_EXIT if body.is_empty() => {
                let resp = self
                    .server
                    .handle(Sender::Kernel, &Request::ClientExited { client });
                if let Some(c) = self.conns.get_mut(&id) {
                    c.exited = true;
                }
                self.abandon_forks(client);
                encode(&resp, &mut payload)
            }
            KIND_FORK => match self.fork(id, body) {
                Ok(token) => {
                    payload[..8].copy_from_slice(&token.to_le_bytes());
                    8
                }
                Err(e) => encode(&Err(e), &mut payload),
            },
            KIND_LIMITS => {
                let pid = match body.len() {
                    0 => self.conns.get(&id).map(|c| c.pid),
                    _ => body.try_into().ok().map(i32::from_le_bytes),
                };
                let resp = match pid {
                    Some(pid) => self.reread_limits(pid),
                    None => return After::Close,
                };
                encode(&resp, &mut payload)
            }
            KIND_AWAIT_EXIT => {
                let pid = body.try_into().map(i32::from_le_bytes);
                match pid {
                    Ok(pid) if self.conns.get(&id).is_some_and(|c| c.trusted) => {
                        if self.conns.values().any(|c| c.pid == pid) {
                            self.waiters.push(Waiter {
                                conn: id,
                                pid,
                                deadline: Instant::now() + Duration::from_secs(10),
                            });
                            return After::Nothing;
                        }
                        encode(&Ok(Reply::Done), &mut payload)
                    }
                    Ok(_) => encode(&Err(Errno::EPERM), &mut payload),
                    Err(_) => return After::Close,
                }
            }
            _ => {
                log::warn!("client {}: malformed message, closing", client.0);
                return After::Close;
            }
        };
        if !self.send(id, &payload[..n], &ops) {
            return After::Close;
        }
        after
    }

    /// Sends an answer to connection `id`; `false` when it cannot be delivered.
    fn send(&mut self, id: ConnId, payload: &[u8], ops: &HostOps) -> bool {
        let Some(conn) = self.conns.get(&id) else {
            return false;
        };
        if wire::encode_answer(payload, &ops.ops, &mut self.out).is_none()
            || ops.fds.len() > wire::MAX_FDS
        {
            log::warn!("client {}: answer too large", conn.client.0);
            return false;
        }
        packet::send(conn.sock.as_fd(), &self.out, &packet::borrow_all(&ops.fds)).is_ok()
    }

    /// `KIND_MMAP_FILE`: `mmap` of the client's own fd `file`. Only a regular file maps
    /// (`ENODEV` for a pipe, socket, directory or device; `EBADF` for an `O_PATH` fd);
    /// its object is opened with the rights of the fd's open mode, then the ordinary
    /// `mmap` decides everything else, and the answer hands `file` back to be mapped.
    fn mmap_file(
        &mut self,
        client: ClientId,
        body: &[u8],
        file: &OwnedFd,
        ops: &mut HostOps,
    ) -> Result<Reply, Errno> {
        if body.len() > MAX_REQUEST_LEN {
            return Err(Errno::EMSGSIZE);
        }
        let Request::Mmap(mut args) = ipc_proto::decode_request(body)? else {
            return Err(Errno::EINVAL);
        };
        if args.flags.contains(ipc_proto::MapFlags::ANONYMOUS) {
            return Err(Errno::EINVAL);
        }
        let (key, size, access) = host_file(file)?;
        let fd = self.server.open_host_file(client, key, size, access)?;
        args.fd = Some(fd);
        let req = Request::Mmap(args);
        let resp = self.server.handle(Sender::Client(client), &req);
        // The object lives on while mapped; the server's fd was only for this call.
        let _ = self
            .server
            .handle(Sender::Client(client), &Request::Close { fd });
        let reply = resp?;
        let windows = [WINDOW, LOW_WINDOW];
        match host_ops::for_request(&mut self.server, client, &req, &reply, windows, Some(file)) {
            Ok(o) => {
                *ops = o;
                Ok(reply)
            }
            Err(e) => self.host_failed(client, &req, &reply, e),
        }
    }

    /// `KIND_HOST_FILES`' answer.
    fn host_files(&self) -> Vec<u8> {
        let files: Vec<wire::HostFileEntry> = self
            .server
            .host_files()
            .into_iter()
            .map(|f| wire::HostFileEntry {
                dev: f.key.dev,
                ino: f.key.ino,
                size: f.size,
                mapped_pages: f.mapped_pages,
            })
            .collect();
        wire::encode_host_files(&files)
    }

    /// The host could not make what a request needs (out of descriptors for an
    /// object's memfd): a new mapping is taken back and the call fails, so no client
    /// believes in a mapping the host never made.
    fn host_failed(
        &mut self,
        client: ClientId,
        req: &Request,
        reply: &Reply,
        e: std::io::Error,
    ) -> Result<Reply, Errno> {
        log::warn!("client {}: host mappings: {e}", client.0);
        let undo = match (req, reply) {
            (Request::Mmap(args), Reply::Mapped { addr }) => Some(Request::Munmap {
                addr: *addr,
                len: args.len,
            }),
            // The program never learns of an fd it has no descriptor for.
            (Request::ShmOpen { .. }, Reply::Fd(fd)) => Some(Request::Close { fd: *fd }),
            _ => None,
        };
        if let Some(undo) = undo {
            let _ = self.server.handle(Sender::Client(client), &undo);
        }
        Err(Errno::ENFILE)
    }

    fn setup(&self, id: ConnId, out: &mut [u8]) -> usize {
        let client = self.conns.get(&id).map_or(0, |c| c.client.0);
        let s = Setup {
            window_lo: WINDOW.0,
            window_hi: WINDOW.1,
            mem_size: self.mem_size,
            client,
            low_lo: LOW_WINDOW.0,
            low_hi: LOW_WINDOW.1,
        }
        .encode();
        out[..s.len()].copy_from_slice(&s);
        s.len()
    }

    fn attach(&mut self, id: ConnId, uffd: Uffd) {
        let uffd = Arc::new(uffd);
        if let Some(c) = self.conns.get_mut(&id) {
            c.uffd = Some(Arc::clone(&uffd));
            if let Some(space) = self.server.space_of(c.client) {
                self.server.stub_mut().attach(space, uffd);
            }
        }
    }

    fn mark_used(&mut self, id: ConnId) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.fresh = false;
        }
    }

    fn spec(&mut self, id: ConnId, body: &[u8]) -> Result<Reply, Errno> {
        let c = self.conns.get(&id).ok_or(Errno::ESRCH)?;
        let new: ClientSpec = postcard::from_bytes(body).map_err(|_| Errno::EINVAL)?;
        if !c.trusted {
            return Err(Errno::EPERM);
        }
        if !c.fresh {
            return Err(Errno::EBUSY);
        }
        let client = c.client;
        // Nothing is held yet: announce the client again with its spec.
        let _ = self
            .server
            .handle(Sender::Kernel, &Request::ClientExited { client });
        let r = self.server.handle(
            Sender::Kernel,
            &Request::ClientStarted { client, spec: new },
        );
        if let (Some(space), Some(u)) = (
            self.server.space_of(client),
            self.conns.get(&id).and_then(|c| c.uffd.clone()),
        ) {
            self.server.stub_mut().attach(space, u);
        }
        r
    }

    /// Reads process `pid`'s limits again and gives them to each of its clients
    /// (`ESRCH` when it has none or is gone).
    fn reread_limits(&mut self, pid: i32) -> Result<Reply, Errno> {
        let clients: Vec<ClientId> = self
            .conns
            .values()
            .filter(|c| c.pid == pid && !c.exited)
            .map(|c| c.client)
            .collect();
        if clients.is_empty() {
            return Err(Errno::ESRCH);
        }
        let read = limits::of_process(pid).ok_or(Errno::ESRCH)?;
        for client in clients {
            // Only what the process's limits say changes: region and fd limits stay.
            let mut limits = self.server.spec_of(client).ok_or(Errno::ESRCH)?.limits;
            limits.max_locked = read.max_locked;
            limits.max_bytes = read.max_bytes;
            self.server.set_limits(client, limits)?;
            log::debug!(
                "client {}: limits of process {pid}: {} bytes locked, {} bytes mapped",
                client.0,
                limits.max_locked,
                limits.max_bytes
            );
        }
        Ok(Reply::Done)
    }

    fn fork(&mut self, id: ConnId, body: &[u8]) -> Result<u64, Errno> {
        let c = self.conns.get(&id).ok_or(Errno::ESRCH)?;
        let (parent, uid, trusted) = (c.client, c.uid, c.trusted);
        // The child runs as its parent does (a C program's fork); only a trusted caller
        // (the harness, a launcher) may give it another identity, rights or limits.
        let spec: ClientSpec = if body.is_empty() || !trusted {
            self.server.spec_of(parent).ok_or(Errno::ESRCH)?
        } else {
            postcard::from_bytes(body).map_err(|_| Errno::EINVAL)?
        };
        // One clone waits for its child at a time: a new fork replaces an unadopted one.
        self.abandon_forks(parent);
        let child = self.new_client().ok_or(Errno::EAGAIN)?;
        self.server.handle(
            Sender::Kernel,
            &Request::ClientCloned {
                parent,
                child,
                spec,
            },
        )?;
        let token = random_u64();
        self.forks.insert(token, PendingFork { child, parent, uid });
        self.mark_used(id);
        Ok(token)
    }

    fn adopt(&mut self, id: ConnId, token: u64) -> Result<(), Errno> {
        let c = self.conns.get(&id).ok_or(Errno::ESRCH)?;
        if !c.fresh {
            return Err(Errno::EBUSY);
        }
        match self.forks.get(&token) {
            Some(f) if f.uid == c.uid || c.trusted => {}
            _ => return Err(Errno::EPERM),
        }
        let fork = self.forks.remove(&token).ok_or(Errno::EPERM)?;
        let own = c.client;
        // This connection's own fresh client gives way to the clone.
        let _ = self
            .server
            .handle(Sender::Kernel, &Request::ClientExited { client: own });
        if let Some(c) = self.conns.get_mut(&id) {
            c.client = fork.child;
            c.fresh = false;
        }
        log::debug!("client {} is now the clone {}", own.0, fork.child.0);
        Ok(())
    }

    /// After a clone: the child's private pages are the parent's, copy-on-write, so the
    /// host's copies (made by `fork`) are write-protected until the server says.
    fn protect_private(&mut self, id: ConnId) {
        let Some(c) = self.conns.get(&id) else {
            return;
        };
        let (client, Some(u)) = (c.client, c.uffd.clone()) else {
            return;
        };
        let mut regions = self.server.regions_in(client, LOW_WINDOW.0, LOW_WINDOW.1);
        regions.extend(self.server.regions_in(client, WINDOW.0, WINDOW.1));
        for r in regions {
            // A host file's private pages are the host's own copy-on-write after `fork`.
            if self.server.is_host_backed(&r) {
                continue;
            }
            if !r.shared || matches!(r.backing, RegionBacking::Anon { .. }) {
                let _ = u.write_protect(r.start, r.end - r.start, true);
            }
        }
    }

    /// Ends the clones `parent` made that no connection took over.
    fn abandon_forks(&mut self, parent: ClientId) {
        let orphans: Vec<u64> = self
            .forks
            .iter()
            .filter(|(_, f)| f.parent == parent)
            .map(|(&t, _)| t)
            .collect();
        for token in orphans {
            if let Some(f) = self.forks.remove(&token) {
                let _ = self
                    .server
                    .handle(Sender::Kernel, &Request::ClientExited { client: f.child });
            }
        }
    }

    /// Connection `id` is gone: everything its client held is reclaimed.
    pub fn disconnect(&mut self, id: ConnId) -> Option<Conn> {
        let conn = self.conns.remove(&id)?;
        if let Some(n) = self.per_uid.get_mut(&conn.uid) {
            *n = n.saturating_sub(1);
        }
        self.abandon_forks(conn.client);
        if !conn.exited {
            let _ = self.server.handle(
                Sender::Kernel,
                &Request::ClientExited {
                    client: conn.client,
                },
            );
        }
        let s = self.server.stats();
        log::debug!(
            "client {} gone: {} of {} frames free",
            conn.client.0,
            s.free_frames,
            s.total_frames
        );
        self.waiters.retain(|w| w.conn != id);
        self.answer_waiters(Instant::now());
        Some(conn)
    }

    /// Answers the waits that are over: their process is gone (`Done`) or their time
    /// is up (`EBUSY`).
    pub fn answer_waiters(&mut self, now: Instant) {
        let waiters = std::mem::take(&mut self.waiters);
        for w in waiters {
            let gone = !self.conns.values().any(|c| c.pid == w.pid);
            let resp = if gone {
                Ok(Reply::Done)
            } else if now >= w.deadline {
                Err(Errno::EBUSY)
            } else {
                self.waiters.push(w);
                continue;
            };
            let mut payload = [0u8; MAX_RESPONSE_LEN];
            let n = encode(&resp, &mut payload);
            self.send(w.conn, &payload[..n], &HostOps::default());
        }
    }

    /// Resolves the faults waiting on connection `id`'s userfaultfd; `false` when the
    /// connection must close.
    pub fn faults(&mut self, id: ConnId) -> bool {
        let Some(c) = self.conns.get(&id) else {
            return false;
        };
        let (Some(uffd), client, pid) = (c.uffd.clone(), c.client, c.pid) else {
            return false;
        };
        // At most a round's worth: a client whose threads fault without end cannot
        // keep the loop from everyone else (epoll is level-triggered).
        for _ in 0..FAULTS_PER_ROUND {
            let Some(ev) = uffd.read_event() else {
                break;
            };
            let Event::Fault { addr, flags, tid } = ev else {
                continue;
            };
            let fault = Fault {
                client,
                pid,
                tid,
                addr,
                flags,
            };
            if !faults::resolve(&mut self.server, &uffd, fault) {
                log::warn!(
                    "client {}: a signal cannot reach thread {tid}, dropping it",
                    client.0
                );
                return false;
            }
        }
        true
    }
}

/// What the server needs of a host fd to map it: the file's identity, its size now and
/// what its open mode allows. `ENODEV` unless it is a regular file, `EBADF` for an
/// `O_PATH` descriptor (which maps nothing on Linux either).
fn host_file(file: &OwnedFd) -> Result<(HostFileKey, u64, HostFileAccess), Errno> {
    use rustix::fs::{FileType, OFlags};
    let st = rustix::fs::fstat(file).map_err(|_| Errno::EBADF)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(Errno::ENODEV);
    }
    let fl = rustix::fs::fcntl_getfl(file).map_err(|_| Errno::EBADF)?;
    if fl.contains(OFlags::PATH) {
        return Err(Errno::EBADF);
    }
    let mode = fl & OFlags::ACCMODE;
    // Linux: an append-only fd gives no shared writable mapping.
    let access = HostFileAccess {
        read: mode != OFlags::WRONLY,
        write: mode == OFlags::RDWR && !fl.contains(OFlags::APPEND),
    };
    let key = HostFileKey {
        dev: st.st_dev,
        ino: st.st_ino,
    };
    Ok((key, u64::try_from(st.st_size).unwrap_or(0), access))
}

fn encode(resp: &Result<Reply, Errno>, out: &mut [u8]) -> usize {
    ipc_proto::encode_response(resp, out)
        .unwrap_or_else(|_| ipc_proto::encode_response(&Err(Errno::EMSGSIZE), out).unwrap_or(0))
}
