//! Unmodified programs under `LD_PRELOAD=libmemserver_preload.so`: C programs built
//! WITHOUT our header (plain Linux programs, `hosted/c-tests/`), run against a
//! `memserverd` of their own. Each must pass as it does on Linux, and the tests check
//! where the calls went: the addresses the program was given lie in the server's
//! window, the server counts the client and its object while the program holds them,
//! the library's debug log says "server" for those and "host" for the program's own
//! memory (malloc'd, the stack, a hint far from the window), and the limits the server
//! enforces are the process's own `RLIMIT_MEMLOCK` / `RLIMIT_AS`. `descriptors.c`
//! (shm fds are real descriptors: read, write, dup, fork) runs unmodified too.

mod common;

use common::{Build, Daemon, Run, build_c, run, spawn};
use memserver_hosted::daemon::config::WINDOW;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

/// The programs' own alarm() watchdogs come first; this is a backstop, not a timing
/// assertion.
const DEADLINE: Duration = Duration::from_secs(180);
const THREADS_DEADLINE: Duration = Duration::from_secs(660);

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The `key=0x...` address the program printed.
fn address(r: &Run, key: &str) -> u64 {
    let prefix = format!("{key}=0x");
    r.stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or_else(|| panic!("no {key}= line: {}", r.describe()))
}

fn in_window(a: u64) -> bool {
    (WINDOW.0..WINDOW.1).contains(&a)
}

/// `msclient stats` against `d`: (clients, objects).
fn stats(d: &Daemon) -> (u64, u64) {
    let out = Command::new(env!("CARGO_BIN_EXE_msclient"))
        .arg("stats")
        .env("MEMSERVER_SOCKET", &d.socket)
        .env_remove("LD_PRELOAD")
        .output()
        .expect("run msclient stats");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |k: &str| -> u64 {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in msclient's {text:?}"))
    };
    (field("clients="), field("shm_objects="))
}

/// A debug-log line of the library: `call(0x...` ... `-> whose: result`.
fn logged(r: &Run, call: &str, whose: &str, ok: bool) -> bool {
    r.stderr.lines().any(|l| {
        l.starts_with(&format!("memserver-preload: {call}("))
            && l.contains(&format!("-> {whose}"))
            && (!ok || l.ends_with(": 0") || l.contains(": 0x"))
    })
}

#[test]
fn an_unmodified_program_is_served_in_the_window_and_its_own_memory_by_the_host() {
    let bin = build_c("preload", Build::PlainLinux);
    let d = Daemon::start("256M");
    let hold = bin.0.with_extension("go");
    let mut cmd = d.preloaded(&bin.0);
    cmd.env("MEMSERVER_LOG", "debug").arg("--hold").arg(&hold);
    let running = spawn(cmd);
    let holding = running.wait_for_line("holding", Duration::from_secs(60));
    // While it holds its mapping of the object: the server counts it and its object.
    let (clients, objects) = if holding { stats(&d) } else { (0, 0) };
    std::fs::write(&hold, b"").expect("create the hold file");
    let r = running.finish(DEADLINE);
    let _ = std::fs::remove_file(&hold);
    if r.code() != Some(0) {
        eprintln!("memserverd's log:\n{}", d.log());
    }
    r.assert_passed("preload.c under LD_PRELOAD");
    assert!(holding, "it never held: {}", r.describe());
    assert!(
        clients >= 2 && objects >= 1,
        "the server must count the program (and msclient) and its shm object: \
         clients={clients} objects={objects}"
    );
    for key in ["anon", "grown", "shm"] {
        let a = address(&r, key);
        assert!(
            in_window(a),
            "{key}={a:#x} is not in the server's window {WINDOW:x?}"
        );
    }
    for key in ["hinted", "fixed"] {
        let a = address(&r, key);
        assert!(
            !in_window(a),
            "{key}={a:#x} is the host's, not in the window"
        );
    }
    for call in [
        "mmap", "mprotect", "mlock", "munlock", "madvise", "msync", "mremap",
    ] {
        assert!(
            logged(&r, call, "server", true),
            "no successful {call} served by the server in the log:\n{}",
            r.stderr
        );
    }
    for call in ["mlock", "munlock", "mmap", "munmap"] {
        assert!(
            logged(&r, call, "host", true),
            "no successful {call} made by the host in the log:\n{}",
            r.stderr
        );
    }
    assert!(r.stderr.contains("shm_open -> server: fd"), "{}", r.stderr);
    assert!(
        r.stderr.contains("mlockall(0x1) -> server and host: 0"),
        "{}",
        r.stderr
    );
}

/// Runs the plain `hosted/c-tests/<name>.c` under `LD_PRELOAD` with the debug log, and
/// checks it passed and that its calls reached the server.
fn under_preload(name: &str, args: &[&str], deadline: Duration) {
    let bin = build_c(name, Build::PlainLinux);
    let d = Daemon::start("256M");
    let mut cmd = d.preloaded(&bin.0);
    cmd.args(args).env("MEMSERVER_LOG", "debug");
    let r = run(cmd, deadline);
    if r.code() != Some(0) {
        eprintln!("{name}: memserverd's log:\n{}", d.log());
    }
    r.assert_passed(&format!("{name}.c under LD_PRELOAD"));
    assert!(
        logged(&r, "mmap", "server", true),
        "{name}: no mmap served by the server:\n{}",
        r.stderr.lines().take(40).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn portable_under_ld_preload() {
    under_preload("portable", &[], DEADLINE);
}

#[test]
fn fork_under_ld_preload() {
    under_preload("fork", &[], DEADLINE);
}

#[test]
fn own_handler_under_ld_preload() {
    under_preload("own_handler", &[], DEADLINE);
}

#[test]
fn descriptors_under_ld_preload() {
    under_preload("descriptors", &[], DEADLINE);
}

#[test]
fn isolation_under_ld_preload() {
    under_preload("isolation", &[], DEADLINE);
}

#[test]
fn threads_under_ld_preload() {
    let bin = build_c("threads", Build::PlainLinux);
    let d = Daemon::start("256M");
    // No debug log: 80 000 calls.
    let r = run(d.preloaded(&bin.0), THREADS_DEADLINE);
    if r.code() != Some(0) {
        eprintln!("threads: memserverd's log:\n{}", d.log());
    }
    r.assert_passed("threads.c under LD_PRELOAD");
}

/// A server every user may reach (`--socket-mode 666`).
fn daemon_for_every_user() -> Daemon {
    Daemon::try_start("256M", &["--socket-mode", "666"]).unwrap_or_else(|e| panic!("{e}"))
}

/// `preload rlimit` started with `RLIMIT_MEMLOCK` 0 (soft; the hard limit stays), as
/// `uid` when given (root runs it as another user); under `LD_PRELOAD` against `d`,
/// with the debug log, or as a plain Linux program.
fn rlimit_command(bin: &std::path::Path, d: Option<&Daemon>, uid: Option<u32>) -> Command {
    let mut cmd = match d {
        Some(d) => {
            let mut c = d.preloaded(bin);
            c.env("MEMSERVER_LOG", "debug");
            c
        }
        None => Command::new(bin),
    };
    cmd.arg("rlimit");
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    // SAFETY: the closure only calls getrlimit and setrlimit (system calls, safe between
    // fork and exec) on a local.
    unsafe {
        cmd.pre_exec(|| {
            let mut r = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            r.rlim_cur = 0;
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// As root, the programs run as uid 65534 too: they and the library must be readable.
fn for_everyone(bin: &common::Binary) {
    std::fs::set_permissions(&bin.0, std::fs::Permissions::from_mode(0o755))
        .expect("chmod the program");
}

#[test]
fn lock_and_address_space_limits_are_the_processs_own() {
    let bin = build_c("preload", Build::PlainLinux);
    for_everyone(&bin);
    let d = daemon_for_every_user();
    // Unprivileged (as root: uid 65534), the limits bind: EPERM at 0, ENOMEM past them.
    let unprivileged = if root() { Some(65534) } else { None };
    let r = run(rlimit_command(&bin.0, Some(&d), unprivileged), DEADLINE);
    if r.code() != Some(0) {
        eprintln!("memserverd's log:\n{}", d.log());
    }
    r.assert_passed("preload rlimit (unprivileged)");
    assert!(
        r.stdout.lines().any(|l| l.ends_with(" memlock=0")),
        "{}",
        r.describe()
    );
    assert!(in_window(address(&r, "anon")), "{}", r.describe());
    assert!(
        r.stderr
            .lines()
            .any(|l| l.contains("mlock(0x") && l.contains("-> server: -1 (errno 1)")),
        "the server must answer EPERM itself:\n{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("-> server re-read them: Ok(())"),
        "setrlimit must reach the server:\n{}",
        r.stderr
    );
    // Root is not limited (CAP_IPC_LOCK), here as on Linux.
    if root() {
        let r = run(rlimit_command(&bin.0, Some(&d), None), DEADLINE);
        r.assert_passed("preload rlimit (root)");
    } else {
        eprintln!("root part skipped: not running as root");
    }
}

#[test]
fn the_rlimit_program_passes_as_plain_linux() {
    let bin = build_c("preload", Build::PlainLinux);
    for_everyone(&bin);
    let unprivileged = root().then_some(65534);
    run(rlimit_command(&bin.0, None, unprivileged), DEADLINE)
        .assert_passed("preload rlimit (plain Linux, unprivileged)");
    if root() {
        run(rlimit_command(&bin.0, None, None), DEADLINE)
            .assert_passed("preload rlimit (plain Linux, root)");
    }
}

#[test]
fn the_calls_program_passes_as_plain_linux() {
    let bin = build_c("preload", Build::PlainLinux);
    run(Command::new(&bin.0), DEADLINE).assert_passed("preload.c (plain Linux)");
}

#[test]
fn an_unreachable_server_is_one_stderr_line_and_the_connections_errno() {
    let bin = build_c("preload", Build::PlainLinux);
    let d = Daemon::start("64M");
    let mut cmd = d.preloaded(&bin.0);
    let nowhere = d.socket.with_extension("nowhere");
    cmd.env("MEMSERVER_SOCKET", &nowhere);
    let r = run(cmd, DEADLINE);
    // The first mapping without an address needs the server: it fails with ENOENT
    // (no socket there), and the program reports it.
    assert_eq!(r.code(), Some(1), "{}", r.describe());
    assert!(
        r.stdout.contains("mmap anonymous (errno 2)"),
        "{}",
        r.describe()
    );
    let said = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("memserver-preload: cannot reach memserverd at "))
        .count();
    assert_eq!(said, 1, "one line, once: {}", r.stderr);
}
