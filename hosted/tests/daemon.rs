//! `memserverd` as a server among hostile or careless peers: idle connections cost no
//! threads, one uid cannot take every connection, running out of descriptors is logged
//! once a second at most, and the socket file is never stolen from a live server nor
//! replaced where it is not a socket.

mod common;

use common::Daemon;
use rustix::fd::OwnedFd;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use std::time::{Duration, Instant};

fn connect(path: &std::path::Path) -> std::io::Result<OwnedFd> {
    connect_with(path, SocketFlags::CLOEXEC)
}

/// A connection; with `NONBLOCK`, one the server's full backlog refuses at once.
fn connect_with(path: &std::path::Path, flags: SocketFlags) -> std::io::Result<OwnedFd> {
    let s = rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, flags, None)?;
    rustix::net::connect(&s, &SocketAddrUnix::new(path)?)?;
    Ok(s)
}

fn threads_of(pid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("Threads: line")
}

/// Waits (a condition, bounded) until the server reports `want` clients.
fn wait_clients(d: &Daemon, want: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = d
            .command(std::path::Path::new(env!("CARGO_BIN_EXE_msclient")))
            .arg("stats")
            .output()
            .expect("msclient stats");
        let text = String::from_utf8_lossy(&out.stdout);
        let clients = text
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("clients="))
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(u32::MAX)
            .saturating_sub(1);
        if clients == want || Instant::now() > deadline {
            return clients;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_thousand_idle_connections_cost_no_threads() {
    let d = Daemon::try_start("64M", &["--max-connections-per-uid", "5000"]).expect("start");
    let conns: Vec<OwnedFd> = (0..1000)
        .map(|_| connect(&d.socket).expect("connect"))
        .collect();
    assert_eq!(wait_clients(&d, 1000), 1000);
    assert_eq!(threads_of(d.pid()), 1, "memserverd serves from one thread");
    drop(conns);
    assert_eq!(wait_clients(&d, 0), 0, "closed connections are reclaimed");
}

#[test]
fn one_uid_gets_at_most_its_connection_limit() {
    let d = Daemon::try_start("64M", &["--max-connections-per-uid", "20"]).expect("start");
    let mut kept: Vec<OwnedFd> = (0..19)
        .map(|_| connect(&d.socket).expect("connect"))
        .collect();
    assert_eq!(wait_clients(&d, 19), 19, "the stats client is the 20th");
    kept.push(connect(&d.socket).expect("the 20th"));
    // The 21st is answered EAGAIN and closed.
    let extra = connect(&d.socket).expect("connect");
    let mut buf = [0u8; 64];
    let (n, _) = memserver_hosted::packet::recv(
        rustix::fd::AsFd::as_fd(&extra),
        &mut buf,
        rustix::net::RecvFlags::empty(),
    )
    .expect("an answer");
    let (payload, _) = memserver_hosted::wire::decode_answer(&buf[..n]).expect("an answer");
    assert_eq!(
        ipc_proto::decode_response(payload),
        Ok(Err(ipc_proto::Errno::EAGAIN))
    );
    drop(kept);
}

#[test]
fn running_out_of_descriptors_is_logged_once_a_second_at_most() {
    // memserverd with 64 descriptors, 300 connections knocking.
    let d = Daemon::start("64M");
    let pid = d.pid() as i32;
    let limit = libc::rlimit {
        rlim_cur: 64,
        rlim_max: 64,
    };
    // SAFETY: prlimit on our own child with a valid rlimit.
    let set = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut()) };
    assert_eq!(set, 0);
    let started = Instant::now();
    let conns: Vec<OwnedFd> = (0..300)
        .filter_map(|_| connect_with(&d.socket, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK).ok())
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let secs = started.elapsed().as_secs() + 1;
    let warnings = d.log().matches("accept:").count() as u64;
    assert!(
        warnings >= 1,
        "the refusal was not logged at all:\n{}",
        d.log()
    );
    assert!(
        warnings <= secs,
        "{warnings} accept warnings in {secs} s:\n{}",
        d.log()
    );
    drop(conns);
    // It serves again once descriptors are back.
    assert_eq!(wait_clients(&d, 0), 0);
}

#[test]
fn the_socket_of_a_live_server_is_not_stolen_and_other_files_are_not_replaced() {
    let d = Daemon::start("64M");
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_memserverd"))
        .arg("--socket")
        .arg(&d.socket)
        .output()
        .expect("run memserverd");
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("already listening"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(wait_clients(&d, 0), 0, "the first server still serves");

    let file = std::env::temp_dir().join(format!("not-a-socket-{}", std::process::id()));
    std::fs::write(&file, b"precious").expect("write");
    let third = std::process::Command::new(env!("CARGO_BIN_EXE_memserverd"))
        .arg("--socket")
        .arg(&file)
        .output()
        .expect("run memserverd");
    assert!(!third.status.success());
    assert_eq!(std::fs::read(&file).expect("read"), b"precious");
    let _ = std::fs::remove_file(&file);
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let path = std::env::temp_dir().join(format!("stale-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    assert!(path.exists(), "a stale socket file");
    let mut daemon = std::process::Command::new(env!("CARGO_BIN_EXE_memserverd"))
        .arg("--socket")
        .arg(&path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut served = false;
    while Instant::now() < deadline && !served {
        served = connect(&path).is_ok();
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    let _ = std::fs::remove_file(&path);
    assert!(served, "memserverd did not take over the stale socket");
}

#[test]
fn exec_after_fork_leaves_no_client_behind() {
    use std::io::{BufRead, BufReader, Write};
    let d = Daemon::start("64M");
    let bin = common::build_c("exec", common::Build::Memserver);
    let mut prog = d
        .command(&bin.0)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the program");
    let mut out = BufReader::new(prog.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("a line");
    assert!(line.starts_with("ready"), "{line}");
    // The sleeper still runs, but its client (the clone it adopted at fork) ended with
    // the exec: only the parent is a client.
    assert_eq!(wait_clients(&d, 1), 1, "a client outlived its exec");
    prog.stdin
        .take()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("go");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).expect("the rest");
    let status = prog.wait().expect("wait");
    assert!(
        status.success() && rest.contains(" passed, 0 failed"),
        "{status:?}: {rest}"
    );
    assert_eq!(wait_clients(&d, 0), 0);
}

#[test]
fn a_hello_with_something_else_than_a_userfaultfd_is_refused() {
    let d = Daemon::start("64M");
    let (pipe_r, _pipe_w) = rustix::pipe::pipe().expect("pipe");
    for (fds, what) in [
        (vec![rustix::fd::AsFd::as_fd(&pipe_r)], "a pipe"),
        (vec![], "nothing"),
    ] {
        let c = connect(&d.socket).expect("connect");
        let c = rustix::fd::AsFd::as_fd(&c);
        memserver_hosted::packet::send(c, &[memserver_hosted::wire::KIND_HELLO], &fds)
            .expect("send");
        let mut buf = [0u8; 64];
        let (n, _) = memserver_hosted::packet::recv(c, &mut buf, rustix::net::RecvFlags::empty())
            .expect("recv");
        assert_eq!(n, 0, "a hello with {what} attached was answered");
    }
    assert_eq!(
        wait_clients(&d, 0),
        0,
        "the refused connections are reclaimed"
    );
}
