//! `cargo xtask qemu [--gdb] [--timeout SECONDS]`: build the microkernel, boot it under
//! QEMU (TCG, PVH `-kernel` boot), stream its serial console, and succeed exactly when
//! the guest reports success through `isa-debug-exit`.

use crate::setup;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the kernel is built (its own target dir: it needs its own RUSTFLAGS).
const TARGET_DIR: &str = "target/kernel";
/// The kernel image QEMU boots.
const IMAGE: &str = "target/kernel/x86_64-unknown-none/release/microkernel";
/// The guest's success code: it writes 0x10 to port 0xf4, QEMU exits (0x10 << 1) | 1.
const GUEST_SUCCESS: i32 = 33;
/// Serial lines shown when the guest fails or hangs.
const TAIL: usize = 40;

/// Entry point.
pub fn run(args: &[String]) -> Result<(), String> {
    let mut gdb = false;
    let mut timeout = Duration::from_secs(120);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--gdb" => gdb = true,
            "--timeout" => {
                let s: u64 = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--timeout needs a number of seconds")?;
                timeout = Duration::from_secs(s);
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    setup::ensure_rust_target()?;
    setup::ensure_qemu()?;
    build()?;
    boot(gdb, timeout)
}

/// The ring-3 tasks' images, which the kernel carries.
const APP_IMAGE: &str = "target/kernel/x86_64-unknown-none/release/conformance-app";
const SERVER_IMAGE: &str = "target/kernel/x86_64-unknown-none/release/memserver-task";
const FILES_IMAGE: &str = "target/kernel/x86_64-unknown-none/release/fileserver-task";

fn build() -> Result<(), String> {
    eprintln!("xtask qemu: building the ring-3 tasks and the microkernel");
    let root = std::env::current_dir().map_err(|e| format!("no current directory: {e}"))?;
    for package in ["ms-tasks", "microkernel"] {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "-p", package, "--target"])
            .arg(setup::KERNEL_TARGET)
            .args(["--target-dir", TARGET_DIR])
            // Fixed-address (non-PIE) images, as the linker scripts lay them out.
            .env("RUSTFLAGS", "-C relocation-model=static")
            .env("MS_APP_ELF", root.join(APP_IMAGE))
            .env("MS_SERVER_ELF", root.join(SERVER_IMAGE))
            .env("MS_FILES_ELF", root.join(FILES_IMAGE))
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !status.success() {
            return Err(format!("building {package} failed"));
        }
    }
    Ok(())
}

fn boot(gdb: bool, timeout: Duration) -> Result<(), String> {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-kernel",
        IMAGE,
        "-m",
        "256M",
        "-accel",
        "tcg",
        "-cpu",
        "qemu64,+nx",
    ])
    .args([
        "-serial",
        "stdio",
        "-display",
        "none",
        "-vga",
        "std",
        "-no-reboot",
    ])
    .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
    .stdin(Stdio::null())
    .stdout(Stdio::piped());
    if gdb {
        cmd.args(["-s", "-S"]);
        eprintln!(
            "xtask qemu: waiting for gdb: gdb {IMAGE} -ex 'target remote :1234' -ex continue"
        );
    }
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout from QEMU")?;
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let reader = {
        let tail = Arc::clone(&tail);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("{line}");
                let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                if t.len() == TAIL {
                    t.pop_front();
                }
                t.push_back(line);
            }
        })
    };
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if !gdb && started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let _ = reader.join();
            let t = tail.lock().unwrap_or_else(|e| e.into_inner());
            let last: Vec<&str> = t.iter().map(String::as_str).collect();
            return Err(format!(
                "the guest did not finish within {} s; last serial lines:\n{}",
                timeout.as_secs(),
                last.join("\n")
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = reader.join();
    let secs = started.elapsed().as_secs_f64();
    match status.code() {
        Some(GUEST_SUCCESS) => {
            eprintln!("xtask qemu: guest reported success, boot to result in {secs:.1} s");
            Ok(())
        }
        code => {
            let t = tail.lock().unwrap_or_else(|e| e.into_inner());
            let last: Vec<&str> = t.iter().map(String::as_str).collect();
            Err(format!(
                "the guest failed (QEMU exit status {code:?}) after {secs:.1} s; last serial lines:\n{}",
                last.join("\n")
            ))
        }
    }
}
