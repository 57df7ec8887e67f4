//! The conformance suite, hosted: every client is its own process (`msclient agent`),
//! with its own address space, connection and userfaultfd, driven by the harness over a
//! `SOCK_SEQPACKET` channel that is the agent's standard input, one packet a message.
//!
//! Agent commands, `[op: u8][payload]`: `C` a request (answered `[0][response]`, or
//! `[1][errno: u16]` when the transport failed), `R`/`W`/`X` a read, write or fetch at
//! an address (answered `[0][byte]` or `[1][signal]`: the access really happens, in the
//! agent, through the pages the server placed there), `S` a `ClientSpec` to run with
//! (`[0]` or `[1][errno]`), `M` `[access: u8][path_len: u16 LE][path][postcard
//! Request::Mmap]`: open the host file (`0` read-only, `1` write-only, `2` read-write),
//! map it through the server and close it (answered `[0][addr: u64]` or `[1][errno]`),
//! `F` a `ClientSpec` with a new channel attached: the agent
//! really forks, the child adopts the server's clone and serves the new channel
//! (answered `[0][child pid: u32]`), `A` a `u32` pid whose clients the server must have
//! reclaimed before the answer (`[0]` or `[1][errno]`), `Q` exit (the server reclaims
//! everything, then the agent answers `[0]` and ends). The first message on a channel is
//! the agent's `Setup`.
//!
//! An agent that died (a case made it take a fatal signal) cannot say `Q`: its pid goes
//! on the harness's list of exits to await, and the harness asks the server, through its
//! own agent, to confirm each before it reads counters. Every agent is killed when its
//! handle is dropped, on every path, panics included.

use crate::child::ChildGuard;
use crate::packet;
use crate::probe;
use crate::runtime::HostedClient;
use crate::wire::Setup;
use client_lib::Transport;
use conformance::harness::{Facts, Harness, HostOpen, MemoryAccess, Process};
use ipc_proto::{
    ClientSpec, Errno, MAX_REQUEST_LEN, MAX_RESPONSE_LEN, Reply, Request, ServerStats, Signal,
};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::net::RecvFlags;
use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;

fn addr_of(p: &[u8]) -> u64 {
    u64::from_le_bytes(p.get(..8).and_then(|s| s.try_into().ok()).unwrap_or([0; 8]))
}

fn signal_reply(r: Result<u8, Signal>) -> Vec<u8> {
    match r {
        Ok(v) => vec![0, v],
        Err(s) => vec![1, s.number()],
    }
}

fn errno_reply(r: Result<(), Errno>) -> Vec<u8> {
    match r {
        Ok(()) => vec![0],
        Err(e) => {
            let mut v = vec![1u8];
            v.extend_from_slice(&(e as u16).to_le_bytes());
            v
        }
    }
}

/// `msclient agent`: serves the harness on standard input until `Q` or its end.
pub fn agent_main() {
    let path = std::env::var("MEMSERVER_SOCKET").unwrap_or_else(|_| "/tmp/memserver.sock".into());
    probe::install();
    // Forked children are reaped by the kernel: the harness waits through the server.
    // SAFETY: setting a disposition; SIG_IGN for SIGCHLD means no zombies.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    let Ok(mut client) = HostedClient::connect(&path) else {
        std::process::exit(2);
    };
    // SAFETY: standard input is the harness's channel for the process's life.
    let chan = unsafe { BorrowedFd::borrow_raw(0) };
    if packet::send(chan, &client.setup().encode(), &[]).is_err() {
        return;
    }
    // A request, or an `M` with a path in front of its request.
    let mut buf = vec![0u8; MAX_REQUEST_LEN + 16 + libc::PATH_MAX as usize];
    let mut resp = [0u8; MAX_RESPONSE_LEN];
    loop {
        let Ok((n, mut fds)) = packet::recv(chan, &mut buf, RecvFlags::empty()) else {
            return;
        };
        let Some((&op, body)) = buf[..n].split_first() else {
            return;
        };
        let reply: Vec<u8> = match op {
            b'C' => match client.call(body, &mut resp) {
                Ok(n) => [&[0u8][..], &resp[..n]].concat(),
                Err(e) => errno_reply(Err(e)),
            },
            b'R' => signal_reply(probe::read(addr_of(body))),
            b'W' => {
                let v = body.get(8).copied().unwrap_or(0);
                signal_reply(probe::write(addr_of(body), v).map(|()| 0))
            }
            b'X' => signal_reply(probe::exec(addr_of(body)).map(|()| 0)),
            b'S' => errno_reply(
                postcard::from_bytes::<ClientSpec>(body)
                    .map_err(|_| Errno::EINVAL)
                    .and_then(|spec| client.set_spec(&spec)),
            ),
            b'M' => match map_host_file(&mut client, body) {
                Ok(addr) => [&[0u8][..], &addr.to_le_bytes()].concat(),
                Err(e) => errno_reply(Err(e)),
            },
            b'A' => {
                let pid = u32::from_le_bytes(
                    body.get(..4)
                        .and_then(|b| b.try_into().ok())
                        .unwrap_or([0; 4]),
                );
                errno_reply(client.await_exit(pid))
            }
            b'F' => {
                let Some(child_chan) = fds.pop() else {
                    return;
                };
                match fork_agent(&mut client, &path, body, child_chan) {
                    Ok(Some(pid)) => [&[0u8][..], &pid.to_le_bytes()].concat(),
                    // This is the child, now serving its own channel.
                    Ok(None) => continue,
                    Err(e) => errno_reply(Err(e)),
                }
            }
            b'Q' => {
                let ok = client.exit().is_ok();
                let _ = packet::send(chan, &[u8::from(!ok)], &[]);
                return;
            }
            _ => return,
        };
        if packet::send(chan, &reply, &[]).is_err() {
            return;
        }
    }
}

/// The agent's `M`: opens the host file the body names as it says, maps it through
/// the server, closes it (the mapping keeps the file).
fn map_host_file(client: &mut HostedClient, body: &[u8]) -> Result<u64, Errno> {
    use rustix::fs::{Mode, OFlags};
    let (&access, rest) = body.split_first().ok_or(Errno::EINVAL)?;
    let len = usize::from(u16::from_le_bytes(
        rest.get(..2)
            .and_then(|b| b.try_into().ok())
            .ok_or(Errno::EINVAL)?,
    ));
    let path = rest.get(2..2 + len).ok_or(Errno::EINVAL)?;
    let path = std::str::from_utf8(path).map_err(|_| Errno::EINVAL)?;
    let Request::Mmap(args) = ipc_proto::decode_request(rest.get(2 + len..).ok_or(Errno::EINVAL)?)?
    else {
        return Err(Errno::EINVAL);
    };
    let mode = match access {
        0 => OFlags::RDONLY,
        1 => OFlags::WRONLY,
        _ => OFlags::RDWR,
    };
    let file = rustix::fs::open(path, mode | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Errno::from_raw(e.raw_os_error() as u16).unwrap_or(Errno::EIO))?;
    client.mmap_file(&args, file.as_fd())
}

/// Forks the agent: the parent gets `Some(child pid)`; the child (which gets `None`)
/// has adopted the server's clone, serves `chan` as its standard input, and has sent its
/// setup on it.
fn fork_agent(
    client: &mut HostedClient,
    path: &str,
    spec: &[u8],
    chan: OwnedFd,
) -> Result<Option<u32>, Errno> {
    let spec: ClientSpec = postcard::from_bytes(spec).map_err(|_| Errno::EINVAL)?;
    let token = client.fork_token(Some(&spec))?;
    let window = client.setup().windows();
    // SAFETY: fork; the child goes on as a single-threaded copy of this agent.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Errno::EAGAIN);
    }
    if pid > 0 {
        return Ok(Some(pid as u32));
    }
    // The child: its channel becomes its standard input; the parent's connection is
    // the parent's.
    // SAFETY: dup2 onto fd 0, which this process owns.
    if unsafe { libc::dup2(rustix::fd::AsRawFd::as_raw_fd(&chan), 0) } < 0 {
        std::process::exit(4);
    }
    drop(chan);
    let adopted =
        HostedClient::adopt(path, token, window).unwrap_or_else(|_| std::process::exit(3));
    std::mem::replace(client, adopted).forsake();
    // SAFETY: the new standard input.
    let chan = unsafe { BorrowedFd::borrow_raw(0) };
    if packet::send(chan, &client.setup().encode(), &[]).is_err() {
        std::process::exit(5);
    }
    Ok(None)
}

/// Pids of agents that died without saying `Q`, whose exits the server must confirm.
type Deaths = Rc<RefCell<Vec<u32>>>;

/// One agent process: a client of the hosted server.
pub struct AgentProcess {
    socket: PathBuf,
    msclient: PathBuf,
    setup: Setup,
    deaths: Deaths,
    chan: OwnedFd,
    pid: u32,
    /// The process, when the harness started it (a forked agent is its parent's child).
    child: Option<ChildGuard>,
    buf: Vec<u8>,
}

impl AgentProcess {
    /// Starts `msclient agent` against the server at `socket`.
    pub fn start(msclient: &PathBuf, socket: &PathBuf) -> io::Result<AgentProcess> {
        Self::start_with(msclient, socket, Deaths::default())
    }

    fn start_with(
        msclient: &PathBuf,
        socket: &PathBuf,
        deaths: Deaths,
    ) -> io::Result<AgentProcess> {
        let (ours, theirs) = packet::pair()?;
        let child = ChildGuard::spawn(
            Command::new(msclient)
                .arg("agent")
                .env("MEMSERVER_SOCKET", socket)
                .stdin(Stdio::from(theirs)),
        )?;
        let pid = child.id();
        Self::attach(msclient, socket, deaths, ours, pid, Some(child))
    }

    fn attach(
        msclient: &Path,
        socket: &Path,
        deaths: Deaths,
        chan: OwnedFd,
        pid: u32,
        child: Option<ChildGuard>,
    ) -> io::Result<AgentProcess> {
        let mut buf = vec![0u8; MAX_RESPONSE_LEN + 16];
        let (n, _) = packet::recv(chan.as_fd(), &mut buf, RecvFlags::empty())?;
        let setup = Setup::decode(&buf[..n]).ok_or(io::ErrorKind::InvalidData)?;
        Ok(AgentProcess {
            socket: socket.to_path_buf(),
            msclient: msclient.to_path_buf(),
            setup,
            deaths,
            chan,
            pid,
            child,
            buf,
        })
    }

    fn ask_with(&mut self, op: u8, payload: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<&[u8]> {
        let msg = [&[op][..], payload].concat();
        packet::send(self.chan.as_fd(), &msg, fds)?;
        let (n, _) = packet::recv(self.chan.as_fd(), &mut self.buf, RecvFlags::empty())?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(&self.buf[..n])
    }

    fn ask(&mut self, op: u8, payload: &[u8]) -> io::Result<&[u8]> {
        self.ask_with(op, payload, &[])
    }

    fn access(&mut self, op: u8, payload: &[u8]) -> Result<u8, Signal> {
        match self.ask(op, payload) {
            Ok(&[0, v]) => Ok(v),
            Ok(&[1, s]) if s == Signal::Bus.number() => Err(Signal::Bus),
            // A dead or confused agent: the access certainly did not succeed.
            _ => Err(Signal::Segv),
        }
    }

    fn errno_answer(r: io::Result<&[u8]>) -> Result<(), Errno> {
        match r {
            Ok(&[0]) => Ok(()),
            Ok(&[1, a, b]) => {
                Err(Errno::from_raw(u16::from_le_bytes([a, b])).unwrap_or(Errno::EPROTO))
            }
            _ => Err(Errno::EPROTO),
        }
    }

    fn set_spec(&mut self, spec: &ClientSpec) -> Result<(), Errno> {
        let mut buf = [0u8; MAX_REQUEST_LEN];
        let bytes = postcard::to_slice(spec, &mut buf).map_err(|_| Errno::EINVAL)?;
        Self::errno_answer(self.ask(b'S', bytes))
    }

    /// Asks the server, through this agent, to confirm that process `pid` is gone.
    fn await_exit(&mut self, pid: u32) -> Result<(), String> {
        Self::errno_answer(self.ask(b'A', &pid.to_le_bytes()))
            .map_err(|e| format!("the server did not confirm the exit of agent {pid}: {e:?}"))
    }
}

impl Transport for AgentProcess {
    fn call(&mut self, request: &[u8], response: &mut [u8]) -> Result<usize, Errno> {
        match self.ask(b'C', request).map_err(|_| Errno::EPROTO)? {
            [0, rest @ ..] => {
                let n = rest.len();
                response
                    .get_mut(..n)
                    .ok_or(Errno::EMSGSIZE)?
                    .copy_from_slice(rest);
                Ok(n)
            }
            &[1, a, b] => Err(Errno::from_raw(u16::from_le_bytes([a, b])).unwrap_or(Errno::EPROTO)),
            _ => Err(Errno::EPROTO),
        }
    }
}

impl MemoryAccess for AgentProcess {
    fn read(&mut self, addr: u64) -> Result<u8, Signal> {
        self.access(b'R', &addr.to_le_bytes())
    }
    fn write(&mut self, addr: u64, value: u8) -> Result<(), Signal> {
        let mut p = [0u8; 9];
        p[..8].copy_from_slice(&addr.to_le_bytes());
        p[8] = value;
        self.access(b'W', &p).map(|_| ())
    }
    fn exec(&mut self, addr: u64) -> Result<(), Signal> {
        self.access(b'X', &addr.to_le_bytes()).map(|_| ())
    }
}

impl Process for AgentProcess {
    fn transport(&mut self) -> &mut dyn Transport {
        self
    }

    /// The agent really forks; its child adopts the server's copy-on-write clone, as a
    /// C program's child does.
    fn fork(&mut self, spec: ClientSpec) -> Result<Box<dyn Process>, Errno> {
        let mut buf = [0u8; MAX_REQUEST_LEN];
        let bytes = postcard::to_slice(&spec, &mut buf).map_err(|_| Errno::EINVAL)?;
        let (ours, theirs) = packet::pair().map_err(|_| Errno::EAGAIN)?;
        let pid = match self.ask_with(b'F', bytes, &[theirs.as_fd()]) {
            Ok(&[0, a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
            Ok(&[1, a, b]) => {
                return Err(Errno::from_raw(u16::from_le_bytes([a, b])).unwrap_or(Errno::EPROTO));
            }
            _ => return Err(Errno::EPROTO),
        };
        drop(theirs);
        let (m, s, d) = (
            self.msclient.clone(),
            self.socket.clone(),
            Rc::clone(&self.deaths),
        );
        let child = AgentProcess::attach(&m, &s, d, ours, pid, None).map_err(|_| Errno::EAGAIN)?;
        Ok(Box::new(child))
    }

    fn mmap_host_file(
        &mut self,
        path: &str,
        open: HostOpen,
        args: ipc_proto::MmapArgs,
    ) -> Result<u64, Errno> {
        let mut req = [0u8; MAX_REQUEST_LEN];
        let n = ipc_proto::encode_request(&Request::Mmap(args), &mut req)?;
        let len = u16::try_from(path.len()).map_err(|_| Errno::ENAMETOOLONG)?;
        let access = match open {
            HostOpen::ReadOnly => 0u8,
            HostOpen::WriteOnly => 1,
            HostOpen::ReadWrite => 2,
        };
        let body = [
            &[access][..],
            &len.to_le_bytes(),
            path.as_bytes(),
            &req[..n],
        ]
        .concat();
        match self.ask(b'M', &body).map_err(|_| Errno::EPROTO)? {
            [0, addr @ ..] if addr.len() == 8 => Ok(addr_of(addr)),
            &[1, a, b] => Err(Errno::from_raw(u16::from_le_bytes([a, b])).unwrap_or(Errno::EPROTO)),
            _ => Err(Errno::EPROTO),
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        // `Q` returns once the server has reclaimed everything; an agent that cannot
        // answer it is dead or dying, and the server must confirm its exit later.
        let said_goodbye = matches!(self.ask(b'Q', &[]), Ok(&[0]));
        match &mut self.child {
            Some(c) => c.stop(),
            // A forked agent: not our child to reap (its parent ignores SIGCHLD).
            // SAFETY: kill takes plain integers; the pid is the agent's.
            None => unsafe {
                libc::kill(self.pid as i32, libc::SIGKILL);
            },
        }
        if !said_goodbye {
            self.deaths.borrow_mut().push(self.pid);
        }
    }
}

/// The hosted harness: a `memserverd` already running at `socket`, clients started with
/// `msclient`.
pub struct HostedHarness {
    msclient: PathBuf,
    socket: PathBuf,
    setup: Setup,
    own: AgentProcess,
}

impl HostedHarness {
    /// A harness for the `memserverd` at `socket` (laid out as `memserverd` does: `dma`
    /// 64 frames, `normal`, `fb0` 256 frames), starting clients with `msclient`.
    pub fn new(msclient: PathBuf, socket: PathBuf) -> io::Result<HostedHarness> {
        let own = AgentProcess::start(&msclient, &socket)?;
        let setup = own.setup;
        Ok(HostedHarness {
            msclient,
            socket,
            setup,
            own,
        })
    }

    /// Waits until the server confirms the exit of every agent that died.
    fn settle(&mut self) -> Result<(), String> {
        let dead: Vec<u32> = self.own.deaths.borrow_mut().drain(..).collect();
        for pid in dead {
            self.own.await_exit(pid)?;
        }
        Ok(())
    }
}

impl Harness for HostedHarness {
    fn name(&self) -> &str {
        "hosted"
    }

    fn facts(&self) -> Facts {
        use crate::daemon::config::{DMA_FRAMES, FB_FRAMES};
        let frames = self.setup.mem_size / 4096;
        let normal = frames - DMA_FRAMES - FB_FRAMES;
        Facts {
            mmap_min: self.setup.window_lo,
            mmap_max: self.setup.window_hi,
            low_window: Some((self.setup.low_lo, self.setup.low_hi)),
            default_bank: "normal".into(),
            small_bank: ("dma".into(), DMA_FRAMES),
            device: ("fb0".into(), FB_FRAMES * 4096),
            unmappable_device: "uart0".into(),
            total_frames: frames - FB_FRAMES,
            max_shm_objects: 1024,
            max_open_files: 8192,
            max_object_size: normal * 4096,
            exclusive: true,
        }
    }

    fn spawn(&mut self, spec: ClientSpec) -> Result<Box<dyn Process>, Errno> {
        let mut p =
            AgentProcess::start_with(&self.msclient, &self.socket, Rc::clone(&self.own.deaths))
                .map_err(|_| Errno::EAGAIN)?;
        p.set_spec(&spec)?;
        Ok(Box::new(p))
    }

    fn stats(&mut self) -> ServerStats {
        if let Err(e) = self.settle() {
            eprintln!("hosted harness: {e}");
        }
        let mut c = client_lib::Client::new(&mut self.own);
        c.stats().unwrap_or(ServerStats {
            total_frames: 0,
            free_frames: 0,
            table_frames: 0,
            shm_objects: 0,
            clients: 0,
            violations: u32::MAX,
        })
    }

    fn check(&mut self) -> Result<(), String> {
        self.settle()?;
        // memserverd runs with MEMSERVER_SELF_CHECK: it checks every invariant after
        // every request and counts violations.
        match client_lib::Client::new(&mut self.own).call(&Request::Stats) {
            Ok(Reply::Stats(s)) if s.violations == 0 => Ok(()),
            Ok(Reply::Stats(s)) => Err(format!("{} invariant violations", s.violations)),
            other => Err(format!("stats: {other:?}")),
        }
    }

    fn unique_name(&self, base: &str) -> String {
        format!("/hosted-{}-{base}", std::process::id())
    }

    fn offers(&self, need: conformance::Need) -> bool {
        need == conformance::Need::HostFiles
    }

    fn make_host_file(&mut self, base: &str, contents: &[u8]) -> Option<String> {
        let path = std::env::temp_dir().join(format!("hosted-{}-{base}", std::process::id()));
        std::fs::write(&path, contents).ok()?;
        path.into_os_string().into_string().ok()
    }

    fn pwrite_host_file(&mut self, path: &str, offset: u64, bytes: &[u8]) -> bool {
        use std::os::unix::fs::FileExt;
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.write_all_at(bytes, offset))
            .is_ok()
    }

    fn read_host_file(&mut self, path: &str) -> Option<Vec<u8>> {
        std::fs::read(path).ok()
    }

    fn host_directory(&mut self) -> Option<String> {
        std::env::temp_dir().into_os_string().into_string().ok()
    }

    fn remove_host_file(&mut self, path: &str) {
        let _ = std::fs::remove_file(path);
    }
}
