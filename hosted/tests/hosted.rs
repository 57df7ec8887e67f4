//! The hosted runtime end to end: `memserverd` as a real process, clients as real
//! processes (`msclient`, and a C program built against the C ABI), page faults as real
//! SIGSEGVs. One test function runs every scenario in order against one server.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Daemon {
    fn start() -> Daemon {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let socket =
            std::env::temp_dir().join(format!("memserverd-test-{}-{n}.sock", std::process::id()));
        let child = Command::new(env!("CARGO_BIN_EXE_memserverd"))
            .args(["--socket", socket.to_str().unwrap(), "--mem", "128M"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start memserverd");
        // Wait for the socket to appear (a condition, not a timing assertion).
        for _ in 0..500 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(socket.exists(), "memserverd did not create its socket");
        Daemon { child, socket }
    }

    fn client(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_msclient"));
        c.args(args).env("MEMSERVER_SOCKET", &self.socket);
        c
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.client(args).output().expect("run msclient")
    }

    /// (free frames, total frames, clients), from a fresh client (which counts itself).
    fn stats(&self) -> (u64, u64, u64) {
        let out = String::from_utf8(self.run(&["stats"]).stdout).unwrap();
        let field = |k: &str| -> u64 {
            out.split_whitespace()
                .find_map(|kv| kv.strip_prefix(k))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {k} in {out:?}"))
        };
        (
            field("free_frames="),
            field("total_frames="),
            field("clients=") - 1,
        )
    }

    /// Waits until the server has noticed every client's exit.
    fn settle(&self) -> (u64, u64) {
        for _ in 0..500 {
            let (free, total, clients) = self.stats();
            if clients == 0 {
                return (free, total);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("clients never went away");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn signal_of(status: std::process::ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(&status)
}

fn line(r: &mut impl BufRead) -> String {
    let mut s = String::new();
    r.read_line(&mut s).unwrap();
    s.trim().to_string()
}

#[test]
fn hosted_runtime_end_to_end() {
    let d = Daemon::start();
    let (free0, total) = d.settle();
    assert_eq!(free0, total, "a fresh server has every frame free");

    // Real lazy memory and faults.
    let out = d.run(&["smoke"]);
    assert!(
        out.status.success(),
        "smoke: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");

    // The server's signals are the process's.
    assert_eq!(signal_of(d.run(&["segv"]).status), Some(libc::SIGSEGV));
    assert_eq!(signal_of(d.run(&["bus"]).status), Some(libc::SIGBUS));

    // A program's own SIGSEGV handler gets the server's signal, and its own faults.
    assert_eq!(d.run(&["own-handler"]).status.code(), Some(42));
    assert_eq!(d.run(&["own-handler", "null"]).status.code(), Some(43));

    // Two processes share an object, both ways.
    let mut writer = d
        .client(&["share-write", "/e2e-share"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut wout = BufReader::new(writer.stdout.take().unwrap());
    assert_eq!(line(&mut wout), "written");
    let out = d.run(&["share-read", "/e2e-share"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    writer.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(line(&mut wout), "seen");
    assert!(writer.wait().unwrap().success());

    // A client killed with SIGKILL mid-session leaks nothing (locked pages included).
    let mut holder = d.client(&["hold"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut hout = BufReader::new(holder.stdout.take().unwrap());
    assert_eq!(line(&mut hout), "holding");
    let (free_held, _, _) = d.stats();
    assert!(
        free_held <= total - 64,
        "the holder's 64 pages are not in use"
    );
    holder.kill().unwrap();
    assert_eq!(signal_of(holder.wait().unwrap()), Some(libc::SIGKILL));
    assert_eq!(d.settle().0, total, "frames leaked by a killed client");

    // Load: 32 clients x 10 000 mixed operations at once, every one checked.
    let clients: Vec<Child> = (0..32)
        .map(|i| {
            d.client(&["load", "10000", &i.to_string()])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let started = std::time::Instant::now();
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    for c in clients {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "a load client failed");
        let f: Vec<u64> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(
            (f[0], f[1]),
            (10_000, 0),
            "operations and errors of a load client"
        );
        p50s.push(f[2]);
        p99s.push(f[3]);
    }
    let secs = started.elapsed().as_secs_f64();
    p50s.sort_unstable();
    p99s.sort_unstable();
    eprintln!(
        "load: 32 clients x 10000 operations in {secs:.2} s ({:.0} ops/s); median client p50 {} us, worst client p99 {} us",
        320_000.0 / secs,
        p50s[16] / 1000,
        p99s[31] / 1000
    );
    assert_eq!(d.settle().0, total, "frames leaked under load");

    // Clients killed with SIGKILL at arbitrary points of busy sessions, while another
    // holds a shared object: nothing leaks, and the object keeps its data.
    let mut keeper = d
        .client(&["share-write", "/e2e-survivor"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut kout = BufReader::new(keeper.stdout.take().unwrap());
    assert_eq!(line(&mut kout), "written");
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for round in 0..4 {
        let victims: Vec<Child> = (0..8)
            .map(|i| {
                d.client(&["load", "1000000", &format!("{round}{i}")])
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut v in victims {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            std::thread::sleep(Duration::from_millis(x % 40));
            v.kill().unwrap();
            assert_eq!(signal_of(v.wait().unwrap()), Some(libc::SIGKILL));
        }
    }
    let out = d.run(&["share-read", "/e2e-survivor"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ok",
        "the survivor's object lost data"
    );
    keeper.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(line(&mut kout), "seen");
    assert!(keeper.wait().unwrap().success());
    assert_eq!(d.settle().0, total, "frames leaked by killed clients");

    // A C program written against <sys/mman.h>, unchanged but for the build line.
    c_program(&d);
    assert_eq!(d.settle().0, total, "frames leaked by the C program");
}

fn c_program(d: &Daemon) {
    let bin = common::build_c("posix_mman", common::Build::Memserver);
    let out_bin = bin.0.clone();
    let run = Command::new(&out_bin)
        .env("MEMSERVER_SOCKET", &d.socket)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    eprintln!("C program: {}", stdout.lines().last().unwrap_or(""));
    assert!(run.status.success(), "C program failed:\n{stdout}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

#[test]
fn memserverd_stops_cleanly_on_sigterm() {
    let mut d = Daemon::start();
    let out = d.run(&["smoke"]);
    assert!(out.status.success());
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGTERM) };
    let status = d.child.wait().unwrap();
    assert!(status.success(), "memserverd exited with {status:?}");
    let mut s = String::new();
    std::io::Read::read_to_string(&mut d.child.stdout.take().unwrap(), &mut s).unwrap();
    let free = s
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("free_frames="))
        .unwrap();
    let total = s
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("total_frames="))
        .unwrap();
    assert_eq!(free, total, "{s}");
    assert!(!d.socket.exists(), "socket left behind");
}
