//! `cargo xtask qemu [--accel tcg|kvm] [--smoke] [--gdb] [--timeout SECONDS]`: build the
//! microkernel, boot it under QEMU (PVH `-kernel` boot; TCG emulation by default, or
//! hardware virtualization through `/dev/kvm`), stream its serial console, and succeed
//! exactly when the guest reports success through `isa-debug-exit`.

use crate::setup;
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

/// How QEMU runs the guest's CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// TCG, QEMU's emulator: works everywhere; cycle counts are emulation's.
    Tcg,
    /// KVM through `/dev/kvm`.
    Kvm,
}

impl Accel {
    /// Parses `tcg` or `kvm`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "tcg" => Ok(Self::Tcg),
            "kvm" => Ok(Self::Kvm),
            other => Err(format!("--accel takes tcg or kvm, not `{other}`")),
        }
    }

    /// The name QEMU's `-accel` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tcg => "tcg",
            Self::Kvm => "kvm",
        }
    }

    /// How long a whole run may take: nested KVM here starts slowly and every exit to
    /// the hypervisor is costly (see docs/microkernel.md for the measured times; the
    /// whole KVM run took 1 706 s on a loaded machine, too close to half an hour).
    fn default_timeout(self) -> Duration {
        match self {
            Self::Tcg => Duration::from_secs(300),
            Self::Kvm => Duration::from_secs(3600),
        }
    }
}

/// Whether `/dev/kvm` opens for reading and writing, as QEMU needs it to.
pub fn kvm_available() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// One boot of the kernel: the accelerator, the kernel command line (the PVH start
/// info's, which selects a mode such as `bench`), the time allowed, and gdb.
pub struct Boot {
    /// TCG or KVM.
    pub accel: Accel,
    /// The kernel command line (`-append`), if any.
    pub cmdline: Option<String>,
    /// After this long the guest has hung.
    pub timeout: Duration,
    /// Wait for gdb on `:1234`.
    pub gdb: bool,
    /// Echo the serial console as it comes.
    pub echo: bool,
}

/// Entry point.
pub fn run(args: &[String]) -> Result<(), String> {
    let mut gdb = false;
    let mut smoke = false;
    let mut accel = Accel::Tcg;
    let mut timeout = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--gdb" => gdb = true,
            "--smoke" => smoke = true,
            "--accel" => accel = Accel::parse(it.next().ok_or("--accel needs tcg or kvm")?)?,
            "--timeout" => {
                let s: u64 = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--timeout needs a number of seconds")?;
                timeout = Some(Duration::from_secs(s));
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if accel == Accel::Kvm && !kvm_available() {
        return Err("--accel kvm: /dev/kvm does not open".into());
    }
    setup::ensure_rust_target()?;
    setup::ensure_qemu()?;
    build()?;
    let boot = Boot {
        accel,
        cmdline: smoke.then(|| "smoke".to_string()),
        timeout: timeout.unwrap_or_else(|| accel.default_timeout()),
        gdb,
        echo: true,
    };
    boot_image(&boot).map(|_| ())
}

/// The ring-3 tasks' images, which the kernel carries.
const APP_IMAGE: &str = "target/kernel/x86_64-unknown-none/release/conformance-app";
const SERVER_IMAGE: &str = "target/kernel/x86_64-unknown-none/release/memserver-task";
const FILES_IMAGE: &str = "target/kernel/x86_64-unknown-none/release/fileserver-task";

/// Builds the ring-3 tasks, then the kernel that carries them.
pub fn build() -> Result<(), String> {
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

/// Boots the built kernel as `boot` says; its serial lines when the guest reports
/// success, an error with the last lines otherwise.
pub fn boot_image(boot: &Boot) -> Result<Vec<String>, String> {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-kernel", IMAGE, "-m", "256M", "-accel", boot.accel.name()])
        .args(["-cpu", "qemu64,+nx"])
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
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(line) = &boot.cmdline {
        cmd.args(["-append", line]);
    }
    if boot.gdb {
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
    let lines = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let lines = Arc::clone(&lines);
        let echo = boot.echo;
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if echo {
                    println!("{line}");
                }
                lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        })
    };
    let tail = |lines: &Arc<Mutex<Vec<String>>>| {
        let l = lines.lock().unwrap_or_else(|e| e.into_inner());
        l[l.len().saturating_sub(TAIL)..].join("\n")
    };
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if !boot.gdb && started.elapsed() > boot.timeout {
            let _ = child.kill();
            let _ = child.wait();
            let _ = reader.join();
            return Err(format!(
                "the guest ({}) did not finish within {} s; last serial lines:\n{}",
                boot.accel.name(),
                boot.timeout.as_secs(),
                tail(&lines)
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = reader.join();
    let secs = started.elapsed().as_secs_f64();
    let accel = boot.accel.name();
    match status.code() {
        Some(GUEST_SUCCESS) => {
            eprintln!(
                "xtask qemu: guest ({accel}) reported success, boot to result in {secs:.1} s"
            );
            let l = lines.lock().unwrap_or_else(|e| e.into_inner());
            Ok(l.clone())
        }
        code => Err(format!(
            "the guest ({accel}) failed (QEMU exit status {code:?}) after {secs:.1} s; last serial lines:\n{}",
            tail(&lines)
        )),
    }
}
