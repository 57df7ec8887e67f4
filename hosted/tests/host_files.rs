//! Host files end to end: `mmap` of a client's own regular file, with `memserverd`
//! deciding placement, rights and accounting and the host's page cache holding the
//! pages, so `pwrite`/`read` and every mapping in every client agree, as on Linux.
//!
//! Each client is a process of its own (a client's window is per process): this test
//! binary run again with `HF_ROLE` set, whose `role_entry` plays that role through the C
//! ABI (`ms_mmap`, `ms_msync`, ...) and prints what it saw.

mod common;

use common::Daemon;
use memserver_hosted::c_abi::{ms_mmap, ms_mprotect, ms_msync, ms_munmap};
use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const P: usize = 4096;
/// The test file's size: three pages and a bit, so the fourth page has a tail.
const SIZE: usize = 3 * P + 100;
const DEADLINE: Duration = Duration::from_secs(60);

fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

// ---- the roles, run in child processes ----

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn open(path: &str, flags: i32) -> i32 {
    let c = CString::new(path).unwrap();
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), flags) };
    assert!(fd >= 0, "open {path}: errno {}", errno());
    fd
}

fn map(len: usize, prot: i32, flags: i32, fd: i32, off: i64) -> Result<*mut u8, i32> {
    let p = ms_mmap(std::ptr::null_mut(), len, prot, flags, fd, off);
    if p == libc::MAP_FAILED {
        Err(errno())
    } else {
        Ok(p.cast())
    }
}

fn pwrite(fd: i32, bytes: &[u8], off: usize) {
    // SAFETY: `bytes` is valid for reads of its length.
    let n = unsafe { libc::pwrite(fd, bytes.as_ptr().cast(), bytes.len(), off as i64) };
    assert_eq!(n, bytes.len() as isize, "pwrite");
}

fn pread(fd: i32, len: usize, off: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    // SAFETY: `b` is valid for writes of its length.
    let n = unsafe { libc::pread(fd, b.as_mut_ptr().cast(), len, off as i64) };
    assert_eq!(n, len as isize, "pread");
    b
}

/// The bytes at `p + off`, through the mapping.
fn peek(p: *mut u8, off: usize, len: usize) -> Vec<u8> {
    // SAFETY: the callers read inside a mapping they made.
    (0..len)
        .map(|i| unsafe { p.add(off + i).read_volatile() })
        .collect()
}

fn poke(p: *mut u8, off: usize, bytes: &[u8]) {
    for (i, &b) in bytes.iter().enumerate() {
        // SAFETY: the callers write inside a writable mapping they made.
        unsafe { p.add(off + i).write_volatile(b) };
    }
}

fn wait_for_file(go: &str) {
    let deadline = Instant::now() + DEADLINE;
    while !Path::new(go).exists() {
        assert!(Instant::now() < deadline, "never told to go on");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Maps the file shared, checks what `pwrite` put there and the zero tail, writes
/// through the mapping, and after being told to go on sees the other client's write.
fn role_writer(path: &str, go: &str) {
    let fd = open(path, libc::O_RDWR);
    let p = map(
        4 * P,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_SHARED,
        fd,
        0,
    )
    .unwrap();
    let want: Vec<u8> = (0..SIZE).map(pattern).collect();
    assert!(
        peek(p, 0, SIZE) == want,
        "the file's bytes through the mapping"
    );
    assert!(
        peek(p, SIZE, 4 * P - SIZE).iter().all(|&b| b == 0),
        "the tail of the last page reads zero"
    );
    // SQLite's way: pwrite a page, read it back through the mapping.
    pwrite(fd, b"PWRITE", 5000);
    assert_eq!(peek(p, 5000, 6), b"PWRITE");
    poke(p, 100, b"MAPPED");
    assert_eq!(pread(fd, 6, 100), b"MAPPED", "a mapped write is read(2)'s");
    assert_eq!(ms_msync(p.cast(), 4 * P, libc::MS_SYNC), 0, "msync");
    println!("mapped");
    wait_for_file(go);
    assert_eq!(peek(p, 9000, 6), b"OTHER!", "the other client's write");
    assert_eq!(ms_munmap(p.cast(), 4 * P), 0);
    println!("saw other");
}

/// A second client: sees both kinds of write of the first, writes one of its own.
fn role_reader(path: &str) {
    let fd = open(path, libc::O_RDWR);
    let p = map(
        3 * P,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_SHARED,
        fd,
        0,
    )
    .unwrap();
    assert_eq!(peek(p, 100, 6), b"MAPPED");
    assert_eq!(peek(p, 5000, 6), b"PWRITE");
    poke(p, 9000, b"OTHER!");
    assert_eq!(
        ms_msync(p.cast(), 3 * P, libc::MS_ASYNC | libc::MS_INVALIDATE),
        0
    );
    println!("reader ok");
}

/// `MAP_PRIVATE` is copy-on-write: a write stays in this mapping.
fn role_private(path: &str) {
    let fd = open(path, libc::O_RDONLY);
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let p = map(P, rw, libc::MAP_PRIVATE, fd, 0).unwrap();
    let q = map(P, libc::PROT_READ, libc::MAP_SHARED, fd, 0).unwrap();
    let before = peek(q, 0, 3);
    poke(p, 0, b"COW");
    assert_eq!(peek(p, 0, 3), b"COW");
    assert_eq!(
        peek(q, 0, 3),
        before,
        "another mapping keeps the file's bytes"
    );
    assert_eq!(pread(fd, 3, 0), before, "read(2) keeps the file's bytes");
    println!("private ok");
}

/// A page wholly past the end of the file is `SIGBUS` (after the tail page reads zero).
fn role_sigbus(path: &str) {
    let fd = open(path, libc::O_RDONLY);
    let p = map(6 * P, libc::PROT_READ, libc::MAP_SHARED, fd, 0).unwrap();
    assert_eq!(peek(p, 3 * P + 200, 1), [0]);
    println!("touching");
    let _ = peek(p, 4 * P, 1);
    println!("no SIGBUS");
}

/// Every refusal, with Linux's errno.
fn role_errors(path: &str, dir: &str) {
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let ro = open(path, libc::O_RDONLY);
    assert_eq!(map(P, rw, libc::MAP_SHARED, ro, 0), Err(libc::EACCES));
    let wo = open(path, libc::O_WRONLY);
    assert_eq!(
        map(P, libc::PROT_READ, libc::MAP_SHARED, wo, 0),
        Err(libc::EACCES)
    );
    let app = open(path, libc::O_RDWR | libc::O_APPEND);
    assert_eq!(map(P, rw, libc::MAP_SHARED, app, 0), Err(libc::EACCES));
    // A shared mapping of a read-only fd never becomes writable.
    let p = map(P, libc::PROT_READ, libc::MAP_SHARED, ro, 0).unwrap();
    assert_eq!(ms_mprotect(p.cast(), P, rw), -1);
    assert_eq!(errno(), libc::EACCES);
    let mut pipe = [0i32; 2];
    // SAFETY: `pipe` has room for two fds.
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
    assert_eq!(
        map(P, libc::PROT_READ, libc::MAP_SHARED, pipe[0], 0),
        Err(libc::ENODEV)
    );
    let mut sv = [0i32; 2];
    // SAFETY: `sv` has room for two fds.
    let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, sv.as_mut_ptr()) };
    assert_eq!(r, 0);
    assert_eq!(
        map(P, libc::PROT_READ, libc::MAP_SHARED, sv[0], 0),
        Err(libc::ENODEV)
    );
    let d = open(dir, libc::O_RDONLY | libc::O_DIRECTORY);
    assert_eq!(
        map(P, libc::PROT_READ, libc::MAP_PRIVATE, d, 0),
        Err(libc::ENODEV)
    );
    let opath = open(path, libc::O_PATH);
    assert_eq!(
        map(P, libc::PROT_READ, libc::MAP_SHARED, opath, 0),
        Err(libc::EBADF)
    );
    // SAFETY: closing our own fd.
    assert_eq!(unsafe { libc::close(d) }, 0);
    assert_eq!(
        map(P, libc::PROT_READ, libc::MAP_SHARED, d, 0),
        Err(libc::EBADF)
    );
    let off = i64::MAX & !(P as i64 - 1);
    assert_eq!(
        map(2 * P, libc::PROT_READ, libc::MAP_SHARED, ro, off),
        Err(libc::EOVERFLOW)
    );
    assert_eq!(ms_munmap(p.cast(), P), 0);
    println!("errors ok");
}

/// Runs the role `HF_ROLE` names (only in a child this file started).
#[test]
fn role_entry() {
    let Ok(role) = std::env::var("HF_ROLE") else {
        return;
    };
    let path = std::env::var("HF_PATH").expect("HF_PATH");
    let extra = std::env::var("HF_EXTRA").unwrap_or_default();
    // The harness's "test role_entry ... " has no newline yet: our lines start afresh.
    println!();
    match role.as_str() {
        "writer" => role_writer(&path, &extra),
        "reader" => role_reader(&path),
        "private" => role_private(&path),
        "sigbus" => role_sigbus(&path),
        "errors" => role_errors(&path, &extra),
        other => panic!("unknown role {other}"),
    }
}

// ---- the tests ----

/// A file of [`SIZE`] bytes of [`pattern`], written with `write(2)`, in a fresh directory.
fn test_file(what: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("host-files-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join("data");
    let bytes: Vec<u8> = (0..SIZE).map(pattern).collect();
    std::fs::write(&path, bytes).expect("write the test file");
    (dir, path)
}

fn role(d: &Daemon, role: &str, path: &Path, extra: &str) -> Command {
    let mut c = d.command(&std::env::current_exe().expect("this test binary"));
    c.args(["--exact", "role_entry", "--nocapture", "--test-threads=1"])
        .env("HF_ROLE", role)
        .env("HF_PATH", path)
        .env("HF_EXTRA", extra);
    c
}

/// `msclient stats`: the host file count and the `dev:ino` lines.
fn host_files(d: &Daemon) -> (u32, Vec<String>) {
    let out = d
        .command(Path::new(env!("CARGO_BIN_EXE_msclient")))
        .arg("stats")
        .output()
        .expect("msclient stats");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let count = text
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("host_files="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no host_files= in {text:?}"));
    let lines = text
        .lines()
        .filter_map(|l| l.strip_prefix("host_file "))
        .map(String::from)
        .collect();
    (count, lines)
}

/// Waits (a condition, bounded) until the server serves `want` host files.
fn wait_host_files(d: &Daemon, want: u32) -> (u32, Vec<String>) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let got = host_files(d);
        if got.0 == want || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn writes_through_pwrite_and_mappings_are_seen_by_read_and_every_client() {
    let d = Daemon::start("64M");
    let (dir, path) = test_file("shared");
    let go = dir.join("go");
    let writer = common::spawn(role(&d, "writer", &path, go.to_str().unwrap()));
    assert!(
        writer.wait_for_line("mapped", DEADLINE),
        "writer: {}",
        writer.finish(DEADLINE).describe()
    );
    // The first client's write through its mapping is read(2)'s, in this process too.
    let bytes = std::fs::read(&path).expect("read");
    assert_eq!(&bytes[100..106], b"MAPPED");
    assert_eq!(&bytes[5000..5006], b"PWRITE");
    // One object for the file, which the server names by device and inode.
    let meta = std::fs::metadata(&path).expect("stat");
    let (count, lines) = host_files(&d);
    assert_eq!(count, 1, "{lines:?}");
    let want = format!("{}:{} size={SIZE} mapped_pages=4", meta.dev(), meta.ino());
    assert_eq!(lines, [want]);
    let reader = common::run(role(&d, "reader", &path, ""), DEADLINE);
    assert!(
        reader.code() == Some(0) && reader.stdout.contains("reader ok"),
        "reader: {}",
        reader.describe()
    );
    std::fs::write(&go, b"").expect("go");
    let writer = writer.finish(DEADLINE);
    assert!(
        writer.code() == Some(0) && writer.stdout.contains("saw other"),
        "writer: {}",
        writer.describe()
    );
    assert_eq!(&std::fs::read(&path).expect("read")[9000..9006], b"OTHER!");
    // The object lives exactly while something maps it.
    assert_eq!(wait_host_files(&d, 0).0, 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn private_mappings_copy_on_write() {
    let d = Daemon::start("64M");
    let (dir, path) = test_file("private");
    let run = common::run(role(&d, "private", &path, ""), DEADLINE);
    assert!(
        run.code() == Some(0) && run.stdout.contains("private ok"),
        "{}",
        run.describe()
    );
    let bytes = std::fs::read(&path).expect("read");
    assert_eq!(bytes[..3], [pattern(0), pattern(1), pattern(2)]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn past_the_end_of_the_file_is_sigbus() {
    let d = Daemon::start("64M");
    let (dir, path) = test_file("sigbus");
    let run = common::run(role(&d, "sigbus", &path, ""), DEADLINE);
    assert!(
        run.stdout.contains("touching") && run.signal() == Some(libc::SIGBUS),
        "{}",
        run.describe()
    );
    assert_eq!(
        wait_host_files(&d, 0).0,
        0,
        "a dead client's files are let go"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn refusals_carry_linux_errnos_and_leave_nothing() {
    let d = Daemon::start("64M");
    let (dir, path) = test_file("errors");
    let run = common::run(role(&d, "errors", &path, dir.to_str().unwrap()), DEADLINE);
    assert!(
        run.code() == Some(0) && run.stdout.contains("errors ok"),
        "{}",
        run.describe()
    );
    assert_eq!(wait_host_files(&d, 0).0, 0);
    let _ = std::fs::remove_dir_all(dir);
}
