//! The conformance suite, hosted: every client is its own process (`msclient agent`),
//! with its own address space, connection and fault handler, driven by the harness over
//! its stdin and stdout.
//!
//! Agent commands, `[op: u8][len: u16 LE][payload]`: `C` a request (answered
//! `[0][len: u16][response]`, or `[1][errno: u16]` when the transport failed), `R`/`W`/`X`
//! a read, write or fetch at an address (answered `[0][byte]` or `[1][signal]`: the
//! access really happens, in the agent, through the pages the server installed there),
//! `S` a `ClientSpec` to run with (answered `[0]` or `[1][errno]`), `A` a `u32` pid whose
//! clients the server must have reclaimed before the answer (`[0]` or `[1][errno]`), `Q`
//! exit (the server reclaims everything, then the agent answers `[0]` and ends).
//!
//! An agent that died (a case made it take a fatal signal) cannot say `Q`: its pid goes
//! on the harness's list of exits to await, and the harness asks the server, through its
//! own agent, to confirm each before it reads counters. Every agent process is killed
//! when its handle is dropped, on every path, panics included.

use crate::child::ChildGuard;
use crate::runtime::{HostedClient, probe_exec, probe_read, probe_write};
use crate::wire::Setup;
use client_lib::Transport;
use conformance::harness::{Facts, Harness, MemoryAccess, Process};
use ipc_proto::{
    ClientSpec, Errno, MAX_REQUEST_LEN, MAX_RESPONSE_LEN, Reply, Request, ServerStats, Signal,
};
use std::cell::RefCell;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::rc::Rc;

fn read_msg(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<u8> {
    let mut head = [0u8; 3];
    r.read_exact(&mut head)?;
    buf.resize(usize::from(u16::from_le_bytes([head[1], head[2]])), 0);
    r.read_exact(buf)?;
    Ok(head[0])
}

fn write_msg(w: &mut impl Write, op: u8, payload: &[u8]) -> io::Result<()> {
    let len = u16::try_from(payload.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
    w.write_all(&[op])?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(payload)?;
    w.flush()
}

fn addr_of(p: &[u8]) -> u64 {
    u64::from_le_bytes(p.get(..8).and_then(|s| s.try_into().ok()).unwrap_or([0; 8]))
}

fn signal_reply(r: Result<u8, Signal>) -> [u8; 2] {
    match r {
        Ok(v) => [0, v],
        Err(s) => [1, s.number()],
    }
}

/// `msclient agent`: serves the harness until `Q` or end of input.
pub fn agent_main() {
    let path = std::env::var("MEMSERVER_SOCKET").unwrap_or_else(|_| "/tmp/memserver.sock".into());
    let Ok(mut client) = HostedClient::connect(&path) else {
        std::process::exit(2);
    };
    // A forked client: become the clone the parent made.
    if let Some(secret) = std::env::var("MEMSERVER_ADOPT")
        .ok()
        .and_then(|s| u64::from_str_radix(&s, 16).ok())
        && client.adopt(secret).is_err()
    {
        std::process::exit(3);
    }
    let (mut input, mut output) = (BufReader::new(io::stdin()), BufWriter::new(io::stdout()));
    // First, what the server told us: the harness learns the window and memory size.
    if write_msg(&mut output, 0, &client.setup().encode()).is_err() {
        return;
    }
    let mut buf = Vec::new();
    let mut resp = [0u8; MAX_RESPONSE_LEN];
    while let Ok(op) = read_msg(&mut input, &mut buf) {
        let reply: Vec<u8> = match op {
            b'C' => match client.call(&buf, &mut resp) {
                Ok(n) => {
                    let mut v = vec![0u8];
                    v.extend_from_slice(&(n as u16).to_le_bytes());
                    v.extend_from_slice(&resp[..n]);
                    v
                }
                Err(e) => {
                    let mut v = vec![1u8];
                    v.extend_from_slice(&(e as u16).to_le_bytes());
                    v
                }
            },
            b'R' => signal_reply(probe_read(addr_of(&buf))).to_vec(),
            b'W' => {
                let v = buf.get(8).copied().unwrap_or(0);
                signal_reply(probe_write(addr_of(&buf), v).map(|()| 0)).to_vec()
            }
            b'X' => signal_reply(probe_exec(addr_of(&buf)).map(|()| 0)).to_vec(),
            b'S' => {
                let r = postcard::from_bytes::<ClientSpec>(&buf)
                    .map_err(|_| Errno::EINVAL)
                    .and_then(|spec| client.set_spec(&spec));
                match r {
                    Ok(()) => vec![0],
                    Err(e) => {
                        let mut v = vec![1u8];
                        v.extend_from_slice(&(e as u16).to_le_bytes());
                        v
                    }
                }
            }
            b'A' => {
                let pid = u32::from_le_bytes(
                    buf.get(..4)
                        .and_then(|b| b.try_into().ok())
                        .unwrap_or([0; 4]),
                );
                match client.await_exit(pid) {
                    Ok(()) => vec![0],
                    Err(e) => {
                        let mut v = vec![1u8];
                        v.extend_from_slice(&(e as u16).to_le_bytes());
                        v
                    }
                }
            }
            b'F' => {
                let r = postcard::from_bytes::<ClientSpec>(&buf)
                    .map_err(|_| Errno::EINVAL)
                    .and_then(|spec| client.fork_token(&spec));
                match r {
                    Ok(secret) => {
                        let mut v = vec![0u8];
                        v.extend_from_slice(&secret.to_le_bytes());
                        v
                    }
                    Err(e) => {
                        let mut v = vec![1u8];
                        v.extend_from_slice(&(e as u16).to_le_bytes());
                        v
                    }
                }
            }
            b'Q' => {
                let ok = client.exit().is_ok();
                let _ = write_msg(&mut output, 0, &[u8::from(!ok)]);
                return;
            }
            _ => return,
        };
        if write_msg(&mut output, 0, &reply).is_err() {
            return;
        }
    }
}

/// Pids of agents that died without saying `Q`, whose exits the server must confirm.
type Deaths = Rc<RefCell<Vec<u32>>>;

/// One agent process: a client of the hosted server.
pub struct AgentProcess {
    msclient: PathBuf,
    socket: PathBuf,
    setup: Setup,
    deaths: Deaths,
    child: ChildGuard,
    to: BufWriter<ChildStdin>,
    from: BufReader<ChildStdout>,
    buf: Vec<u8>,
}

impl AgentProcess {
    /// Starts `msclient agent` against the server at `socket`.
    pub fn start(msclient: &PathBuf, socket: &PathBuf) -> io::Result<AgentProcess> {
        Self::start_with(msclient, socket, None, Deaths::default())
    }

    /// Starts an agent, as the clone `adopt` names if given; its death, if it dies,
    /// goes on `deaths`.
    fn start_with(
        msclient: &PathBuf,
        socket: &PathBuf,
        adopt: Option<u64>,
        deaths: Deaths,
    ) -> io::Result<AgentProcess> {
        let mut cmd = Command::new(msclient);
        if let Some(secret) = adopt {
            cmd.env("MEMSERVER_ADOPT", format!("{secret:x}"));
        }
        let mut child = ChildGuard::spawn(
            cmd.arg("agent")
                .env("MEMSERVER_SOCKET", socket)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped()),
        )?;
        let to = BufWriter::new(child.stdin.take().ok_or(io::ErrorKind::BrokenPipe)?);
        let mut from = BufReader::new(child.stdout.take().ok_or(io::ErrorKind::BrokenPipe)?);
        let mut buf = Vec::new();
        read_msg(&mut from, &mut buf)?;
        let setup: [u8; 32] = buf
            .as_slice()
            .try_into()
            .map_err(|_| io::ErrorKind::InvalidData)?;
        Ok(AgentProcess {
            msclient: msclient.clone(),
            socket: socket.clone(),
            setup: Setup::decode(&setup),
            deaths,
            child,
            to,
            from,
            buf: Vec::new(),
        })
    }

    fn ask(&mut self, op: u8, payload: &[u8]) -> io::Result<&[u8]> {
        write_msg(&mut self.to, op, payload)?;
        read_msg(&mut self.from, &mut self.buf)?;
        Ok(&self.buf)
    }

    fn access(&mut self, op: u8, payload: &[u8]) -> Result<u8, Signal> {
        match self.ask(op, payload) {
            Ok(&[0, v]) => Ok(v),
            Ok(&[1, s]) if s == Signal::Bus.number() => Err(Signal::Bus),
            // A dead or confused agent: the access certainly did not succeed.
            _ => Err(Signal::Segv),
        }
    }

    fn set_spec(&mut self, spec: &ClientSpec) -> Result<(), Errno> {
        let mut buf = [0u8; MAX_REQUEST_LEN];
        let bytes = postcard::to_slice(spec, &mut buf).map_err(|_| Errno::EINVAL)?;
        match self.ask(b'S', bytes) {
            Ok(&[0]) => Ok(()),
            Ok(&[1, a, b]) => {
                Err(Errno::from_raw(u16::from_le_bytes([a, b])).unwrap_or(Errno::EPROTO))
            }
            _ => Err(Errno::EPROTO),
        }
    }
}

impl Transport for AgentProcess {
    fn call(&mut self, request: &[u8], response: &mut [u8]) -> Result<usize, Errno> {
        let r = self.ask(b'C', request).map_err(|_| Errno::EPROTO)?;
        match r {
            [0, a, b, rest @ ..] => {
                let n = usize::from(u16::from_le_bytes([*a, *b]));
                let src = rest.get(..n).ok_or(Errno::EPROTO)?;
                response
                    .get_mut(..n)
                    .ok_or(Errno::EMSGSIZE)?
                    .copy_from_slice(src);
                Ok(n)
            }
            [1, a, b] => {
                Err(Errno::from_raw(u16::from_le_bytes([*a, *b])).unwrap_or(Errno::EPROTO))
            }
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

    /// The agent asks for a clone; a new agent process takes it over. (A C program
    /// would `fork` and adopt the clone in the child the same way.)
    fn fork(&mut self, spec: ClientSpec) -> Result<Box<dyn Process>, Errno> {
        let mut buf = [0u8; MAX_REQUEST_LEN];
        let bytes = postcard::to_slice(&spec, &mut buf).map_err(|_| Errno::EINVAL)?;
        let secret = match self.ask(b'F', bytes) {
            Ok([0, s @ ..]) if s.len() == 8 => {
                u64::from_le_bytes(s.try_into().map_err(|_| Errno::EPROTO)?)
            }
            Ok(&[1, a, b]) => {
                return Err(Errno::from_raw(u16::from_le_bytes([a, b])).unwrap_or(Errno::EPROTO));
            }
            _ => return Err(Errno::EPROTO),
        };
        let child = Self::start_with(
            &self.msclient,
            &self.socket,
            Some(secret),
            Rc::clone(&self.deaths),
        )
        .map_err(|_| Errno::EAGAIN)?;
        Ok(Box::new(child))
    }
}

impl AgentProcess {
    /// Asks the server, through this agent, to confirm that process `pid` is gone.
    fn await_exit(&mut self, pid: u32) -> Result<(), String> {
        match self.ask(b'A', &pid.to_le_bytes()) {
            Ok(&[0]) => Ok(()),
            Ok(&[1, a, b]) => Err(format!(
                "the server did not confirm the exit of agent {pid}: {:?}",
                Errno::from_raw(u16::from_le_bytes([a, b]))
            )),
            other => Err(format!("await exit of agent {pid}: {other:?}")),
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        // `Q` returns once the server has reclaimed everything; an agent that cannot
        // answer it is dead or dying, and the server must confirm its exit later.
        let said_goodbye = matches!(self.ask(b'Q', &[]), Ok(&[0]));
        let pid = self.child.id();
        self.child.stop();
        if !said_goodbye {
            self.deaths.borrow_mut().push(pid);
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
    /// A harness for the `memserverd` at `socket` (its memfd laid out as `memserverd`
    /// does: `dma` 64 frames, `normal`, `fb0` 256 frames), starting clients with the
    /// `msclient` binary at `msclient`.
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
}

impl HostedHarness {
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
        let frames = self.setup.mem_size / 4096;
        let normal = frames - 64 - 256;
        Facts {
            mmap_min: self.setup.window_lo,
            mmap_max: self.setup.window_hi,
            default_bank: "normal".into(),
            small_bank: ("dma".into(), 64),
            device: ("fb0".into(), 256 * 4096),
            unmappable_device: "uart0".into(),
            total_frames: frames - 256,
            max_shm_objects: 1024,
            max_open_files: 8192,
            max_object_size: normal * 4096,
            exclusive: true,
        }
    }

    fn spawn(&mut self, spec: ClientSpec) -> Result<Box<dyn Process>, Errno> {
        let mut p = AgentProcess::start_with(
            &self.msclient,
            &self.socket,
            None,
            Rc::clone(&self.own.deaths),
        )
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
}

const _: () = assert!(MAX_REQUEST_LEN < u16::MAX as usize);
