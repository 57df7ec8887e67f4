//! `cargo xtask conformance [--hosted] [--filter S] [--verbose]`: run the conformance
//! suite in-process (default) or against `memserverd` with every client a process of
//! its own (`--hosted`), and print `N passed, N failed, N skipped`. `MS_DAEMON_LOG`
//! sets the hosted daemon's `RUST_LOG` (default `warn`), e.g.
//! `MS_DAEMON_LOG=memserver_hosted=debug` to see every connection and fault placed.

use conformance::Verdict;
use conformance::harness::Harness;
use conformance::inproc::InProc;
use memserver_hosted::child::ChildGuard;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Entry point.
pub fn run(args: &[String]) -> Result<(), String> {
    let mut filter = String::new();
    let mut verbose = false;
    let mut hosted = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--filter" => filter = it.next().cloned().ok_or("--filter needs a value")?,
            "--verbose" | "-v" => verbose = true,
            "--in-process" => {}
            "--hosted" => hosted = true,
            other => {
                return Err(format!(
                    "unknown argument `{other}`\nusage: cargo xtask conformance [--in-process | --hosted] [--filter S] [--verbose]"
                ));
            }
        }
    }
    if hosted {
        return run_hosted(&filter, verbose);
    }
    let cases = conformance::cases::everything();
    let mut h = InProc::real();
    report("in-process", &mut h, &cases, &filter, verbose)
}

fn report(
    name: &str,
    h: &mut dyn Harness,
    cases: &[conformance::Case],
    filter: &str,
    verbose: bool,
) -> Result<(), String> {
    println!("conformance ({name}): {} cases", cases.len());
    let sum = conformance::run(h, cases, filter, &mut |name, verdict| match verdict {
        Verdict::Passed if verbose => println!("ok   {name}"),
        Verdict::Passed => {}
        Verdict::Skipped(why) => println!("skip {name}: {why}"),
        Verdict::Failed(why) => println!("FAIL {name}: {why}"),
    });
    println!("{}", sum.line());
    if sum.failed == 0 {
        Ok(())
    } else {
        Err(format!("{} conformance cases failed", sum.failed))
    }
}

/// Builds `memserverd` and `msclient`, starts the server with its self-checks on, and
/// runs every case, fork included, each client a process of its own.
fn run_hosted(filter: &str, verbose: bool) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(["build", "--release", "-p", "memserver-hosted", "--bins"])
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err("building memserverd failed".into());
    }
    let bin = PathBuf::from("target/release");
    let socket = std::env::temp_dir().join(format!(
        "memserverd-conformance-{}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&socket);
    // Killed on every way out of this function, panics included.
    let daemon = ChildGuard::spawn(
        Command::new(bin.join("memserverd"))
            .arg("--socket")
            .arg(&socket)
            .args(["--mem", "64M"])
            .env("MEMSERVER_SELF_CHECK", "1")
            .env(
                "RUST_LOG",
                std::env::var("MS_DAEMON_LOG").unwrap_or("warn".into()),
            )
            .stdout(Stdio::null()),
    )
    .map_err(|e| format!("cannot start memserverd: {e}"))?;
    for _ in 0..500 {
        if socket.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let result = memserver_hosted::agent::HostedHarness::new(bin.join("msclient"), socket.clone())
        .map_err(|e| format!("cannot start the harness's client: {e}"))
        .and_then(|mut h| {
            report(
                "hosted",
                &mut h,
                &conformance::cases::everything(),
                filter,
                verbose,
            )
        });
    drop(daemon);
    let _ = std::fs::remove_file(&socket);
    result
}
