//! `cargo xtask bench --guest [--accel tcg|kvm] [--json FILE]`: boots the microkernel in
//! its benchmark mode (kernel command line `bench`) and reports the guest's medians in
//! TSC cycles, each over 10 000 round trips after 1 000 warm-up ones, measured by a
//! ring-3 app with interrupts off and the memory server's after-every-request check off.
//! TCG figures are emulation's and labelled so.

use crate::qemu::{self, Accel, Boot};
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::time::Duration;

/// The cases, in the order the app measures them, with what each is.
const CASES: &[(&str, &str)] = &[
    ("null_syscall", "null system call"),
    (
        "null_ipc_hello",
        "null IPC round trip to the memory server (Hello)",
    ),
    ("mmap_munmap", "mmap+munmap round trip from a ring-3 task"),
    (
        "first_touch_fault",
        "first-touch fault round trip (fault, kernel, server, install, resume)",
    ),
    ("populate_64_pages", "64-page MAP_POPULATE"),
];

/// One case's figures, from a `bench: NAME median M p10 A p90 B n N` line.
#[derive(Debug, PartialEq)]
struct Figures {
    median: u64,
    p10: u64,
    p90: u64,
    n: u64,
}

/// Entry point (`args` after `--guest`).
pub fn run(args: &[String]) -> Result<(), String> {
    let mut accel = Accel::Tcg;
    let mut json_path: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--accel" => accel = Accel::parse(it.next().ok_or("--accel needs tcg or kvm")?)?,
            "--json" => json_path = Some(it.next().ok_or("--json needs a file")?.into()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if accel == Accel::Kvm && !qemu::kvm_available() {
        return Err("--accel kvm: /dev/kvm does not open".into());
    }
    crate::setup::ensure_rust_target()?;
    crate::setup::ensure_qemu()?;
    qemu::build()?;
    let lines = qemu::boot_image(&Boot {
        accel,
        cmdline: Some("bench".into()),
        timeout: Duration::from_secs(3600),
        gdb: false,
        echo: false,
    })?;
    let label = match accel {
        Accel::Tcg => "TCG emulation: guest cycles, not hardware figures",
        Accel::Kvm => "KVM",
    };
    println!(
        "guest benchmarks under {} ({label}), TSC cycles",
        accel.name()
    );
    println!(
        "{:<20} {:>12} {:>12} {:>12}  what",
        "case", "median", "p10", "p90"
    );
    let mut out = Map::new();
    out.insert("accel".into(), json!(accel.name()));
    out.insert("unit".into(), json!("tsc_cycles"));
    out.insert("label".into(), json!(label));
    for &(name, what) in CASES {
        let f = lines
            .iter()
            .find_map(|l| parse(l, name))
            .ok_or_else(|| format!("the guest reported no `{name}`"))?;
        println!(
            "{name:<20} {:>12} {:>12} {:>12}  {what}",
            f.median, f.p10, f.p90
        );
        let mut case = Map::new();
        case.insert("median".into(), json!(f.median));
        case.insert("p10".into(), json!(f.p10));
        case.insert("p90".into(), json!(f.p90));
        case.insert("iterations".into(), json!(f.n));
        case.insert("what".into(), json!(what));
        out.insert(name.into(), Value::Object(case));
    }
    if let Some(path) = json_path {
        let text = serde_json::to_string_pretty(&Value::Object(out)).map_err(|e| e.to_string())?;
        std::fs::write(&path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("xtask bench: wrote {}", path.display());
    }
    Ok(())
}

/// The figures of `name` if `line` is its report.
fn parse(line: &str, name: &str) -> Option<Figures> {
    let rest = line.strip_prefix("bench: ")?.strip_prefix(name)?;
    let words: Vec<&str> = rest.split_whitespace().collect();
    let field = |key: &str| -> Option<u64> {
        let i = words.iter().position(|w| *w == key)?;
        words.get(i + 1)?.parse().ok()
    };
    Some(Figures {
        median: field("median")?,
        p10: field("p10")?,
        p90: field("p90")?,
        n: field("n")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_line_parses_and_others_do_not() {
        let line = "bench: null_syscall median 341926 p10 340860 p90 345904 n 10000";
        assert_eq!(
            parse(line, "null_syscall"),
            Some(Figures {
                median: 341_926,
                p10: 340_860,
                p90: 345_904,
                n: 10_000
            })
        );
        assert_eq!(parse(line, "mmap_munmap"), None);
        assert_eq!(parse("bench: null_syscall median x", "null_syscall"), None);
        assert_eq!(parse("FAIL something", "null_syscall"), None);
    }
}
