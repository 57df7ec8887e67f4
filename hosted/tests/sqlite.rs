//! A real program under `LD_PRELOAD`: Debian's `sqlite3` CLI, unmodified, with a
//! database on a host file in WAL mode and `PRAGMA mmap_size` of 256 MiB, so sqlite maps
//! the database file and its `-shm` index. 100 000 rows go in over ten transactions,
//! then queries, an update and `PRAGMA integrity_check`; a second process reopens the
//! database and checks it again. While each process holds the database open, its
//! mappings of the database file and of the `-shm` file must be the server's (placed in
//! its windows, none of the host's own) and the server's statistics must list both
//! files among the host files it serves.
//!
//! Its own harness (`harness = false`): the result is one line, `N passed, N failed, N
//! skipped`, and a missing `sqlite3` is reported as skipped (`cargo xtask setup`
//! installs it), never as passed.

mod common;

use common::Daemon;
use memserver_hosted::daemon::config::{LOW_WINDOW, WINDOW};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A backstop for a hung sqlite3, not a timing assertion.
const DEADLINE: Duration = Duration::from_secs(300);

/// The one case's name, for `--list` and name filters (as libtest's).
const NAME: &str = "sqlite3_under_ld_preload";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("{NAME}: test");
        return;
    }
    if !selected(&args) {
        return;
    }
    let found = Command::new("sqlite3").arg("--version").output();
    let version = match found {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ => {
            println!(
                "sqlite3 under LD_PRELOAD: 0 passed, 0 failed, 1 skipped (sqlite3 is not \
                 installed; `cargo xtask setup` installs it)"
            );
            return;
        }
    };
    eprintln!("sqlite3 {}", version.trim());
    match sqlite_on_a_mapped_host_file() {
        Ok(()) => println!("sqlite3 under LD_PRELOAD: 1 passed, 0 failed, 0 skipped"),
        Err(why) => {
            eprintln!("sqlite3 under LD_PRELOAD: {why}");
            println!("sqlite3 under LD_PRELOAD: 0 passed, 1 failed, 0 skipped");
            std::process::exit(1);
        }
    }
}

/// Whether libtest's arguments select this case: flags mean nothing here (a flag's
/// value is skipped), `--skip WORD` drops it when its name contains WORD, and any other
/// word is a name filter it must match when one is given.
fn selected(args: &[String]) -> bool {
    const WITH_VALUE: [&str; 5] = ["--test-threads", "--format", "--color", "--logfile", "-Z"];
    let mut filters = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--skip" {
            if it.next().is_some_and(|w| NAME.contains(w.as_str())) {
                return false;
            }
        } else if WITH_VALUE.contains(&a.as_str()) {
            it.next();
        } else if !a.starts_with('-') {
            filters.push(a);
        }
    }
    filters.is_empty() || filters.iter().any(|f| NAME.contains(f.as_str()))
}

/// A directory of its own, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The first process's script, up to the point where it holds the database mapped.
fn fill_script(marker: &Path) -> String {
    let mut s = String::from(
        ".bail on\n\
         PRAGMA mmap_size=268435456;\n\
         PRAGMA journal_mode=WAL;\n\
         CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT NOT NULL, n INTEGER NOT NULL);\n\
         CREATE INDEX t_n ON t(n);\n",
    );
    for i in 0..10 {
        s.push_str(&format!(
            "BEGIN;\nWITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < \
             10000) INSERT INTO t(k, n) SELECT 'key-' || (x + {o}), (x + {o}) % 1000 FROM c;\n\
             COMMIT;\n",
            o = i * 10_000
        ));
    }
    s.push_str(
        "SELECT 'count', count(*) FROM t;\n\
         SELECT 'sum', sum(n) FROM t;\n\
         SELECT 'n7', count(*) FROM t WHERE n = 7;\n\
         SELECT 'key', n FROM t WHERE k = 'key-54321';\n\
         UPDATE t SET n = n + 1000 WHERE id % 10 = 0;\n",
    );
    s.push_str(&checks_script(marker));
    s
}

/// What both processes check, then the marker that says the database is open.
fn checks_script(marker: &Path) -> String {
    format!(
        "SELECT 'updated', count(*) FROM t WHERE n >= 1000;\n\
         SELECT 'sum2', sum(n) FROM t;\n\
         SELECT 'journal', * FROM pragma_journal_mode;\n\
         PRAGMA mmap_size;\n\
         PRAGMA integrity_check;\n\
         .system touch {}\n",
        marker.display()
    )
}

/// 1..=100 000 mod 1000: each residue 100 times.
const SUM: u64 = 100 * 999 * 1000 / 2;

/// The lines each process must print (list mode, `|` between columns).
fn expected(first: bool) -> Vec<String> {
    let mut v = vec![];
    if first {
        v.extend([
            "count|100000".to_string(),
            format!("sum|{SUM}"),
            "n7|100".into(),
            "key|321".into(),
        ]);
    }
    v.extend([
        "updated|10000".to_string(),
        format!("sum2|{}", SUM + 10_000 * 1000),
        "journal|wal".into(),
        "268435456".into(),
        "ok".into(),
    ]);
    v
}

fn sqlite_on_a_mapped_host_file() -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("memserver-sqlite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let scratch = Scratch(dir);
    let db = scratch.0.join("test.db");
    let d = Daemon::start("1G");
    let mut failures = Vec::new();
    for (first, name) in [(true, "first"), (false, "second")] {
        let marker = scratch.0.join(format!("{name}.open"));
        let script = if first {
            fill_script(&marker)
        } else {
            format!(
                ".bail on\nPRAGMA mmap_size=268435456;\nSELECT 'count', count(*) FROM t;\n{}",
                checks_script(&marker)
            )
        };
        let mut want = expected(first);
        if !first {
            want.insert(0, "count|100000".into());
        }
        if let Err(e) = one_process(&d, &db, &script, &marker, &want) {
            failures.push(format!("{name} process: {e}"));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}\nmemserverd's log:\n{}",
            failures.join("\n"),
            d.log()
        ))
    }
}

/// Runs one sqlite3 process on `db`: feeds it `script`, waits for `marker` (the database
/// is open and mapped), checks its mappings and the server's counts, lets it quit, and
/// checks what it printed.
fn one_process(
    d: &Daemon,
    db: &Path,
    script: &str,
    marker: &Path,
    want: &[String],
) -> Result<(), String> {
    let mut child = d
        .preloaded(Path::new("sqlite3"))
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start sqlite3: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let out = reader(child.stdout.take());
    let err = reader(child.stderr.take());
    let fed = stdin.write_all(script.as_bytes());
    let open = fed.is_ok() && wait_for(marker, &mut child);
    let mut problems = Vec::new();
    if open {
        problems.extend(served_by_the_server(d, db, child.id()));
    } else {
        problems.push("never reached the point where the database is open".to_string());
    }
    let _ = stdin.write_all(b".quit\n");
    drop(stdin);
    let status = wait_or_kill(&mut child);
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if !status.is_some_and(|s| s.success()) {
        problems.push(format!("sqlite3 ended with {status:?}"));
    }
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    for w in want {
        if !lines.contains(&w.as_str()) {
            problems.push(format!("no line {w:?}"));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{}\n--- stdout:\n{stdout}--- stderr:\n{stderr}",
        problems.join("; ")
    ))
}

fn reader<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut r) = r {
            let _ = r.read_to_string(&mut s);
        }
        s
    })
}

/// Waits until `marker` exists (true) or the process ends or the deadline passes.
fn wait_for(marker: &Path, child: &mut Child) -> bool {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if marker.exists() {
            return true;
        }
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn wait_or_kill(child: &mut Child) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// While sqlite3 (`pid`) holds `db` open: its mappings of the database file and of the
/// `-shm` file all lie in the server's windows (the server placed them: none is the
/// host's own), there is at least one of each, and the server's statistics list both
/// files (by device and inode) among the host files it serves. Each miss is one problem.
fn served_by_the_server(d: &Daemon, db: &Path, pid: u32) -> Vec<String> {
    let mut problems = Vec::new();
    let maps = match std::fs::read_to_string(format!("/proc/{pid}/maps")) {
        Ok(m) => m,
        Err(e) => return vec![format!("/proc/{pid}/maps: {e}")],
    };
    let shm = PathBuf::from(format!("{}-shm", db.display()));
    let windows = [WINDOW, LOW_WINDOW];
    for file in [db, shm.as_path()] {
        let path = file.display().to_string();
        let (mut served, mut host) = (0, Vec::new());
        for line in maps.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.get(5).copied() != Some(path.as_str()) {
                continue;
            }
            let start = f
                .first()
                .and_then(|r| r.split('-').next())
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .unwrap_or(0);
            if windows.iter().any(|&(lo, hi)| (lo..hi).contains(&start)) {
                served += 1;
            } else {
                host.push(line.to_string());
            }
        }
        if !host.is_empty() {
            problems.push(format!(
                "the host maps {path} itself, outside the server's windows:\n  {}",
                host.join("\n  ")
            ));
        }
        if served == 0 {
            problems.push(format!("no mapping of {path} in the server's windows"));
        }
    }
    match host_files(d) {
        Ok(listed) => {
            for file in [db, shm.as_path()] {
                match std::fs::metadata(file) {
                    Ok(m) if listed.contains(&(m.dev(), m.ino())) => {}
                    Ok(m) => problems.push(format!(
                        "the server's statistics do not list {} ({}:{}) among its host \
                         files: {listed:?}",
                        file.display(),
                        m.dev(),
                        m.ino()
                    )),
                    Err(e) => problems.push(format!("{}: {e}", file.display())),
                }
            }
        }
        Err(e) => problems.push(e),
    }
    problems
}

/// The host files the server serves, as `(device, inode)` (`msclient stats`, which as
/// the server's own user lists them).
fn host_files(d: &Daemon) -> Result<Vec<(u64, u64)>, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_msclient"))
        .arg("stats")
        .env("MEMSERVER_SOCKET", &d.socket)
        .env_remove("LD_PRELOAD")
        .output()
        .map_err(|e| format!("msclient stats: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !text.contains("host_files=") || text.contains("host_files=?") {
        return Err(format!("msclient stats lists no host files: {text:?}"));
    }
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("host_file "))
        .filter_map(|l| {
            let (dev, ino) = l.split_whitespace().next()?.split_once(':')?;
            Some((dev.parse().ok()?, ino.parse().ok()?))
        })
        .collect())
}
