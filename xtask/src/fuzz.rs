//! `cargo xtask fuzz [--seconds N] [--target T]`: run every cargo-fuzz target for N
//! seconds each (default 60), starting from the checked-in seed corpus, and report the
//! executions each ran. Installs cargo-fuzz (and the nightly toolchain it needs) if
//! missing.

use crate::setup;
use std::process::Command;

/// The fuzz targets in `fuzz/fuzz_targets/`.
pub const TARGETS: &[&str] = &["decode", "server", "stub"];

/// Entry point.
pub fn run(args: &[String]) -> Result<(), String> {
    let mut seconds = 60u64;
    let mut only: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                seconds = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--seconds needs a number")?
            }
            "--target" => only = it.next().cloned(),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    ensure_cargo_fuzz()?;
    let root = std::env::current_dir().map_err(|e| e.to_string())?;
    let mut report = Vec::new();
    for &t in TARGETS
        .iter()
        .filter(|t| only.as_deref().is_none_or(|o| o == **t))
    {
        if !root
            .join("fuzz/fuzz_targets")
            .join(format!("{t}.rs"))
            .exists()
        {
            continue;
        }
        let scratch = std::env::temp_dir().join(format!("memserver-fuzz-{t}"));
        std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
        let seeds = root.join("fuzz/corpus").join(t);
        // git keeps no empty directory, and libFuzzer refuses a missing one.
        std::fs::create_dir_all(&seeds).map_err(|e| e.to_string())?;
        eprintln!("xtask fuzz: {t} for {seconds} s");
        let out = Command::new("cargo")
            .current_dir(root.join("fuzz"))
            .args(["+nightly", "fuzz", "run", t])
            .arg(&scratch)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .output()
            .map_err(|e| format!("cannot run cargo fuzz: {e}"))?;
        let log = String::from_utf8_lossy(&out.stderr);
        let runs = log
            .lines()
            .filter_map(|l| l.strip_prefix("Done "))
            .filter_map(|l| l.split_whitespace().next())
            .next_back()
            .unwrap_or("?")
            .to_string();
        if !out.status.success() {
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
            let found = log.contains("Test unit written to");
            return Err(if found {
                format!("fuzz target {t} found a failure (see fuzz/artifacts/{t})")
            } else {
                format!("fuzz target {t} did not run ({})", out.status)
            });
        }
        report.push((t, runs));
    }
    println!("{:<10} {:>14}", "target", "executions");
    for (t, runs) in report {
        println!("{t:<10} {runs:>14}");
    }
    Ok(())
}

fn ensure_cargo_fuzz() -> Result<(), String> {
    let has_nightly = Command::new("rustc")
        .args(["+nightly", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_nightly {
        setup::status(
            "rustup",
            &["toolchain", "install", "nightly", "--profile", "minimal"],
        )?;
    }
    let has_fuzz = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_fuzz {
        setup::status("cargo", &["install", "cargo-fuzz", "--locked"])?;
    }
    Ok(())
}
