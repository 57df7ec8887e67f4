//! What the tests that drive C programs share: `memserverd` as a real process (killed on
//! drop), C programs of `hosted/c-tests/` built against our `<sys/mman.h>` and
//! `libmemserver_hosted.a` (as `hosted.rs`'s `c_program` builds one) or as plain Linux
//! programs, and runs of them bounded by a deadline.
//!
//! Each test crate that includes it (`mod common;`) uses a part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

fn unique(what: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("{what}-{}-{n}", std::process::id()))
}

/// `memserverd` on a socket of its own, killed when dropped.
pub struct Daemon {
    child: Child,
    pub socket: PathBuf,
    log: PathBuf,
    /// Whether dropping it removes the socket file (not when it was started on another
    /// server's path).
    owns_socket: bool,
}

impl Daemon {
    /// Starts `memserverd --mem <mem>` and waits for its socket.
    pub fn start(mem: &str) -> Daemon {
        Daemon::try_start(mem, &[]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts `memserverd --mem <mem> <extra...>` and waits for its socket; `Err` (with
    /// its log) if it exits instead.
    pub fn try_start(mem: &str, extra: &[&str]) -> Result<Daemon, String> {
        let socket = unique("memserverd-c-programs").with_extension("sock");
        let log = socket.with_extension("log");
        let child = Command::new(env!("CARGO_BIN_EXE_memserverd"))
            .args(["--socket", socket.to_str().unwrap(), "--mem", mem])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the daemon's log"))
            .spawn()
            .expect("start memserverd");
        let mut d = Daemon {
            child,
            socket,
            log,
            owns_socket: true,
        };
        // Wait for the socket to appear (a condition, not a timing assertion).
        for _ in 0..1000 {
            if d.socket.exists() {
                return Ok(d);
            }
            if let Ok(Some(status)) = d.child.try_wait() {
                return Err(format!(
                    "memserverd exited at start: {status:?}\n{}",
                    d.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(format!("memserverd did not create its socket\n{}", d.log()))
    }

    /// Starts `memserverd --mem <mem>` on `socket`, a path that may exist already (another
    /// server's, dead or alive), without waiting for anything. Dropping it leaves the path.
    pub fn spawn_at(socket: &Path, mem: &str) -> Daemon {
        let log = unique("memserverd-c-programs").with_extension("log");
        let child = Command::new(env!("CARGO_BIN_EXE_memserverd"))
            .args(["--socket", socket.to_str().unwrap(), "--mem", mem])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the daemon's log"))
            .spawn()
            .expect("start memserverd");
        Daemon {
            child,
            socket: socket.to_path_buf(),
            log,
            owns_socket: false,
        }
    }

    /// Waits (at most `timeout`) until the socket accepts a connection; `Err` with the log
    /// if the server exits first or never does.
    pub fn wait_connectable(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("memserverd exited: {status:?}\n{}", self.log()));
            }
            // memserverd's socket is SOCK_SEQPACKET.
            let connected = rustix::net::socket_with(
                rustix::net::AddressFamily::UNIX,
                rustix::net::SocketType::SEQPACKET,
                rustix::net::SocketFlags::CLOEXEC,
                None,
            )
            .and_then(|s| {
                let addr = rustix::net::SocketAddrUnix::new(self.socket.as_path())?;
                rustix::net::connect(&s, &addr)
            });
            if connected.is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(format!(
            "memserverd never accepted a connection\n{}",
            self.log()
        ))
    }

    /// How the server ended, if it does within `timeout`.
    pub fn exited_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// A command for `program` that talks to this server.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        c.env("MEMSERVER_SOCKET", &self.socket);
        c
    }

    /// A command running the unmodified `program` with its memory calls served by this
    /// server: `LD_PRELOAD` of `libmemserver_preload.so`.
    pub fn preloaded(&self, program: &Path) -> Command {
        let mut c = self.command(program);
        c.env("LD_PRELOAD", preload_lib());
        c
    }

    /// Kills the server with SIGKILL, as a crash would, and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server logged (warnings and errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.owns_socket {
            let _ = std::fs::remove_file(&self.socket);
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// How a C program is built.
#[derive(Clone, Copy, Debug)]
pub enum Build {
    /// `-DMEMSERVER_STANDARD_NAMES -I include/memserver`, linked with `libmemserver_hosted.a`:
    /// its `<sys/mman.h>` calls go to `memserverd`.
    Memserver,
    /// A plain Linux program: proves the program itself is right.
    PlainLinux,
}

/// The static library C programs link: built once per test run in a target directory of
/// its own (cargo does not build a staticlib for tests, and the running cargo holds the
/// main target directory); the same one `hosted.rs` builds.
fn memserver_lib() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let target = manifest.join("../target/c-abi");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = Command::new(cargo)
            .args([
                "build",
                "-q",
                "-p",
                "memserver-hosted",
                "--lib",
                "--target-dir",
            ])
            .arg(&target)
            .status()
            .expect("run cargo");
        assert!(built.success(), "building libmemserver_hosted.a failed");
        let lib = target.join("debug/libmemserver_hosted.a");
        assert!(lib.exists(), "{} not built", lib.display());
        lib
    })
}

/// `libmemserver_preload.so`, built once per test run in the same target directory as
/// [`memserver_lib`] (a cdylib of another package is not built for this one's tests).
pub fn preload_lib() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let target = manifest.join("../target/c-abi");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = Command::new(cargo)
            .args(["build", "-q", "-p", "memserver-preload", "--target-dir"])
            .arg(&target)
            .status()
            .expect("run cargo");
        assert!(built.success(), "building libmemserver_preload.so failed");
        let lib = target.join("debug/libmemserver_preload.so");
        assert!(lib.exists(), "{} not built", lib.display());
        // Canonical: the dynamic linker resolves LD_PRELOAD from any working directory.
        lib.canonicalize().unwrap_or(lib)
    })
}

/// A built C program, deleted when dropped.
pub struct Binary(pub PathBuf);

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Builds `hosted/c-tests/<name>.c`.
pub fn build_c(name: &str, build: Build) -> Binary {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Binary(unique(&format!("c-{name}-{build:?}")));
    let mut cc = Command::new("cc");
    cc.args(["-O1", "-g", "-Wall", "-Wextra"]);
    if let Build::Memserver = build {
        cc.arg("-DMEMSERVER_STANDARD_NAMES")
            .arg("-I")
            .arg(manifest.join("include/memserver"));
    }
    cc.arg(manifest.join(format!("c-tests/{name}.c")));
    if let Build::Memserver = build {
        cc.arg(memserver_lib())
            .args(["-lpthread", "-ldl", "-lm", "-lrt", "-lgcc_s"]);
    } else {
        cc.args(["-lpthread", "-lrt"]);
    }
    let done = cc.arg("-o").arg(&out.0).output().expect("run cc");
    assert!(
        done.status.success(),
        "cc {name}.c ({build:?}) failed:\n{}",
        String::from_utf8_lossy(&done.stderr)
    );
    out
}

/// A program started by [`spawn`], in a process group of its own (with whatever it forks),
/// its output collected as it comes.
pub struct Running {
    child: Child,
    started: Instant,
    lines: mpsc::Receiver<String>,
    stdout: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    stderr: Arc<Mutex<String>>,
}

/// How a program ended.
pub struct Run {
    /// `None` when it missed its deadline and was killed.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    /// From start to end (or to the kill at the deadline).
    pub elapsed: Duration,
}

pub fn spawn(mut cmd: Command) -> Running {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("start the program");
    let started = Instant::now();
    let (tx, lines) = mpsc::channel();
    let stdout = Arc::new(Mutex::new(String::new()));
    let stderr = Arc::new(Mutex::new(String::new()));
    let out = BufReader::new(child.stdout.take().unwrap());
    let acc = stdout.clone();
    let mut readers = vec![std::thread::spawn(move || {
        for line in out.lines() {
            let Ok(line) = line else { break };
            let mut s = acc.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
            let _ = tx.send(line);
        }
    })];
    let mut err = child.stderr.take().unwrap();
    let acc = stderr.clone();
    readers.push(std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        acc.lock().unwrap().push_str(&String::from_utf8_lossy(&buf));
    }));
    Running {
        child,
        started,
        lines,
        stdout,
        readers,
        stderr,
    }
}

impl Running {
    /// Waits (at most `timeout`) for a line of stdout equal to `want`.
    pub fn wait_for_line(&self, want: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) if l.trim() == want => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    /// Whether the program has exited (it is not reaped: its pid stays its own).
    fn exited(&self) -> bool {
        // SAFETY: an all-zero siginfo_t is valid; waitid writes it for our own child,
        // and WNOWAIT leaves the child to be reaped by `Child::wait`.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let r = libc::waitid(
                libc::P_PID,
                self.child.id(),
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            r == 0 && info.si_pid() != 0
        }
    }

    /// Waits for the program to end, at most `timeout` from now; past it, kills it (and
    /// its process group). Either way kills whatever it left running in its group.
    pub fn finish(mut self, timeout: Duration) -> Run {
        let deadline = Instant::now() + timeout;
        let mut timed_out = true;
        while Instant::now() < deadline {
            if self.exited() {
                timed_out = false;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let elapsed = self.started.elapsed();
        // The group is the program's own (process_group(0)); its leader is not reaped
        // yet, so the id cannot have been reused.
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's process group.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let status = self.child.wait().expect("wait for the program");
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let stdout = self.stdout.lock().unwrap().clone();
        let stderr = self.stderr.lock().unwrap().clone();
        Run {
            status: (!timed_out).then_some(status),
            stdout,
            stderr,
            elapsed,
        }
    }
}

/// Runs a program to its end or its deadline.
pub fn run(cmd: Command, timeout: Duration) -> Run {
    spawn(cmd).finish(timeout)
}

impl Run {
    /// The signal that ended the program, if one did.
    pub fn signal(&self) -> Option<i32> {
        self.status.and_then(|s| s.signal())
    }

    /// The program's exit code, if it exited.
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// The program's last "N passed, N failed" line, parsed.
    pub fn counts(&self) -> Option<(u64, u64)> {
        self.stdout.lines().rev().find_map(|l| {
            let (p, f) = l.trim().split_once(" passed, ")?;
            Some((p.parse().ok()?, f.strip_suffix(" failed")?.parse().ok()?))
        })
    }

    /// How it ended and what it printed, for an assertion message.
    pub fn describe(&self) -> String {
        let how = match (self.status, self.signal()) {
            (None, _) => format!(
                "still running at its deadline after {:.1} s (killed)",
                self.elapsed.as_secs_f64()
            ),
            (Some(_), Some(sig)) => format!(
                "killed by signal {sig} after {:.1} s",
                self.elapsed.as_secs_f64()
            ),
            (Some(s), None) => format!(
                "exit status {} after {:.1} s",
                s.code().unwrap_or(-1),
                self.elapsed.as_secs_f64()
            ),
        };
        format!(
            "{how}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.stdout, self.stderr
        )
    }

    /// Asserts the program exited 0 with "N passed, 0 failed" (N > 0).
    pub fn assert_passed(&self, what: &str) {
        let counts = self.counts();
        assert!(
            self.code() == Some(0) && matches!(counts, Some((p, 0)) if p > 0),
            "{what}: {}",
            self.describe()
        );
        eprintln!("{what}: {} passed, 0 failed", counts.unwrap().0);
    }
}
