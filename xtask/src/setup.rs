//! Idempotent installation of what the project needs beyond a Rust toolchain.

use std::process::Command;

/// The bare-metal target the microkernel and its user programs are built for.
pub const KERNEL_TARGET: &str = "x86_64-unknown-none";

/// `cargo xtask setup`: install everything, report what was done.
pub fn run(_args: &[String]) -> Result<(), String> {
    ensure_rust_target()?;
    ensure_qemu()?;
    Ok(())
}

/// Adds the bare-metal rustup target if the pinned toolchain lacks it.
pub fn ensure_rust_target() -> Result<(), String> {
    let installed = output("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if installed.lines().any(|l| l.trim() == KERNEL_TARGET) {
        return Ok(());
    }
    eprintln!("xtask: installing rustup target {KERNEL_TARGET}");
    status("rustup", &["target", "add", KERNEL_TARGET])
}

/// Installs `qemu-system-x86_64` from Debian's packages if it is not on PATH.
pub fn ensure_qemu() -> Result<(), String> {
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok()
    {
        return Ok(());
    }
    eprintln!("xtask: installing qemu-system-x86 (apt-get)");
    let sudo = !is_root();
    let apt = |args: &[&str]| {
        if sudo {
            let mut all = vec!["apt-get"];
            all.extend_from_slice(args);
            status("sudo", &all)
        } else {
            status("apt-get", args)
        }
    };
    apt(&["update", "-qq"])?;
    apt(&["install", "-y", "-qq", "qemu-system-x86"])?;
    Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .map(|_| ())
        .map_err(|e| format!("qemu-system-x86_64 still missing after apt-get: {e}"))
}

fn is_root() -> bool {
    output("id", &["-u"]).is_some_and(|s| s.trim() == "0")
}

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command, inheriting stdio; a non-zero exit is an error naming the command.
pub fn status(cmd: &str, args: &[&str]) -> Result<(), String> {
    let st = Command::new(cmd)
        .args(args)
        .status()
        .map_err(|e| format!("cannot run {cmd}: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("`{cmd} {}` failed with {st}", args.join(" ")))
    }
}
