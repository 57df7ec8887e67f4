//! Issue 17's tests, from a stranger's point of view: real C programs
//! (`hosted/c-tests/*.c`), written the way ordinary Linux programs are, built against our
//! `<sys/mman.h>` and `libmemserver_hosted.a` and run against a `memserverd` of their
//! own; and each also built and run as a plain Linux program, which proves the program
//! itself is right.
//!
//! Each program was first shown to fail against the runtime before the isolation work
//! (a readable frames memfd, deadlocked threads, broken copy-on-write, faults reaching
//! the program's handler, a crash at 65 530 host mappings, a hang when the server died).

mod common;

use common::{Build, Daemon, Run, build_c, run, spawn};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

/// Every program has alarm() watchdogs (120 s; threads and gigabytes: a minute without
/// progress, or 10 and 15 minutes in all): the driver's own deadlines are a backstop past
/// them, not timing assertions.
const DEADLINE: Duration = Duration::from_secs(180);
const THREADS_DEADLINE: Duration = Duration::from_secs(660);
const GIGABYTES_DEADLINE: Duration = Duration::from_secs(960);

/// The gigabytes runs touch 4 GiB each: one at a time.
static BIG: Mutex<()> = Mutex::new(());

fn against_memserverd(name: &str, mem: &str, deadline: Duration) -> Run {
    let bin = build_c(name, Build::Memserver);
    let d = Daemon::start(mem);
    let r = run(d.command(&bin.0), deadline);
    if r.code() != Some(0) {
        eprintln!("{name}: memserverd's log:\n{}", d.log());
    }
    r
}

/// Whether this test runs as root (needed to run a program as another user).
fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A server that lets other users connect: `--socket-mode 0666` (the option issue 17
/// asks for), or, for a server without the option, its socket made 0666 by hand as an
/// administrator would.
fn daemon_for_every_user() -> Daemon {
    match Daemon::try_start("256M", &["--socket-mode", "0666"]) {
        Ok(d) => d,
        Err(_) => {
            let d = Daemon::start("256M");
            std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666))
                .expect("chmod the socket");
            d
        }
    }
}

fn plain_linux(name: &str, args: &[&str], deadline: Duration) -> Run {
    let bin = build_c(name, Build::PlainLinux);
    let mut cmd = Command::new(&bin.0);
    cmd.args(args);
    run(cmd, deadline)
}

/// `maps: max=N end=N` from gigabytes.c.
fn maps_counts(r: &Run) -> (u64, u64) {
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with("maps: max="))
        .unwrap_or_else(|| panic!("no maps line: {}", r.describe()));
    let field = |k: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {line:?}"))
    };
    (field("max="), field("end="))
}

fn assert_gigabytes(r: &Run, what: &str) {
    r.assert_passed(what);
    let (max, end) = maps_counts(r);
    eprintln!("{what}: host mappings max {max}, at the end {end}");
    assert!(
        max < 10_000,
        "{what}: {max} host mappings at most (sampled)"
    );
    assert!(end < 1_000, "{what}: {end} host mappings at the end");
}

// ---- against memserverd ----

#[test]
fn isolation_against_memserverd() {
    against_memserverd("isolation", "256M", DEADLINE).assert_passed("isolation");
}

#[test]
fn isolation_other_uid_against_memserverd() {
    if !root() {
        eprintln!("skipped: running the attacker as another user needs root");
        return;
    }
    let bin = build_c("isolation", Build::Memserver);
    let d = daemon_for_every_user();
    let mut cmd = d.command(&bin.0);
    cmd.args(["--attacker-uid", "65534"]);
    let r = run(cmd, DEADLINE);
    if r.code() != Some(0) {
        eprintln!("isolation (other uid): memserverd's log:\n{}", d.log());
    }
    r.assert_passed("isolation (other uid)");
}

#[test]
fn threads_against_memserverd() {
    against_memserverd("threads", "256M", THREADS_DEADLINE).assert_passed("threads");
}

#[test]
fn portable_against_memserverd() {
    against_memserverd("portable", "256M", DEADLINE).assert_passed("portable");
}

#[test]
fn descriptors_against_memserverd() {
    against_memserverd("descriptors", "256M", DEADLINE).assert_passed("descriptors");
}

#[test]
fn fork_against_memserverd() {
    against_memserverd("fork", "256M", DEADLINE).assert_passed("fork");
}

#[test]
fn own_handler_against_memserverd() {
    against_memserverd("own_handler", "256M", DEADLINE).assert_passed("own_handler");
}

#[test]
fn gigabytes_against_memserverd() {
    let _one_at_a_time = BIG.lock().unwrap_or_else(|e| e.into_inner());
    let r = against_memserverd("gigabytes", "6G", GIGABYTES_DEADLINE);
    assert_gigabytes(&r, "gigabytes");
}

#[test]
fn server_death_against_memserverd() {
    let bin = build_c("server_death", Build::Memserver);
    let mut d = Daemon::start("256M");
    let running = spawn(d.command(&bin.0));
    let looping = running.wait_for_line("looping", Duration::from_secs(60));
    if !looping {
        let r = running.finish(Duration::ZERO);
        panic!("server_death never looped: {}", r.describe());
    }
    d.kill9();
    // "Within seconds": 10 s from the kill.
    let r = running.finish(Duration::from_secs(10));
    let failed_with_eio = r.code() == Some(3) && r.stdout.contains("errno=5 ");
    let sigbus = r.signal() == Some(libc::SIGBUS);
    assert!(
        failed_with_eio || sigbus,
        "after memserverd's SIGKILL the program must fail a call with EIO (exit 3) or die \
         of SIGBUS within seconds: {}",
        r.describe()
    );
    eprintln!(
        "server_death: ended {} after memserverd's death",
        if sigbus { "by SIGBUS" } else { "with EIO" }
    );
}

#[test]
fn a_killed_servers_socket_is_replaced() {
    let bin = build_c("server_death", Build::Memserver);
    let mut dead = Daemon::start("64M");
    dead.kill9();
    // Its socket file stays behind (nothing can remove it on SIGKILL); a new server on
    // the same path must replace it and serve.
    let mut fresh = Daemon::spawn_at(&dead.socket, "64M");
    fresh
        .wait_connectable(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("a new server on a killed server's socket: {e}"));
    let mut cmd = fresh.command(&bin.0);
    cmd.arg("1000");
    run(cmd, DEADLINE).assert_passed("a program against the replacing server");
}

#[test]
fn a_live_servers_socket_is_not_taken() {
    let bin = build_c("server_death", Build::Memserver);
    let live = Daemon::start("64M");
    let mut second = Daemon::spawn_at(&live.socket, "64M");
    let status = second.exited_within(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| !s.success()),
        "a second memserverd on a live server's socket must refuse to start (it {}):\n{}",
        status.map_or("kept running".to_string(), |s| format!("exited with {s:?}")),
        second.log()
    );
    let mut cmd = live.command(&bin.0);
    cmd.arg("1000");
    run(cmd, DEADLINE).assert_passed("a program against the live server");
}

// ---- as plain Linux programs: the programs themselves are right ----

#[test]
fn isolation_as_plain_linux() {
    plain_linux("isolation", &[], DEADLINE).assert_passed("isolation (plain Linux)");
}

#[test]
fn isolation_other_uid_as_plain_linux() {
    if !root() {
        eprintln!("skipped: running the attacker as another user needs root");
        return;
    }
    plain_linux("isolation", &["--attacker-uid", "65534"], DEADLINE)
        .assert_passed("isolation, other uid (plain Linux)");
}

#[test]
fn host_files_against_memserverd() {
    against_memserverd("host_files", "256M", DEADLINE).assert_passed("host_files");
}

#[test]
fn host_files_as_plain_linux() {
    plain_linux("host_files", &[], DEADLINE).assert_passed("host_files (plain Linux)");
}

#[test]
fn descriptors_as_plain_linux() {
    plain_linux("descriptors", &[], DEADLINE).assert_passed("descriptors (plain Linux)");
}

#[test]
fn portable_as_plain_linux() {
    plain_linux("portable", &[], DEADLINE).assert_passed("portable (plain Linux)");
}

#[test]
fn threads_as_plain_linux() {
    plain_linux("threads", &[], THREADS_DEADLINE).assert_passed("threads (plain Linux)");
}

#[test]
fn fork_as_plain_linux() {
    plain_linux("fork", &[], DEADLINE).assert_passed("fork (plain Linux)");
}

#[test]
fn own_handler_as_plain_linux() {
    plain_linux("own_handler", &[], DEADLINE).assert_passed("own_handler (plain Linux)");
}

#[test]
fn gigabytes_as_plain_linux() {
    let _one_at_a_time = BIG.lock().unwrap_or_else(|e| e.into_inner());
    let r = plain_linux("gigabytes", &[], GIGABYTES_DEADLINE);
    assert_gigabytes(&r, "gigabytes (plain Linux)");
}

#[test]
fn server_death_as_plain_linux() {
    // No server to kill: a bounded run must loop cleanly and stop.
    let r = plain_linux("server_death", &["100000"], DEADLINE);
    r.assert_passed("server_death (plain Linux)");
}
