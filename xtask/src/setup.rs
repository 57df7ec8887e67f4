//! Idempotent installation of what the project needs beyond a Rust toolchain.

use std::process::Command;

/// The bare-metal target the microkernel and its user programs are built for.
pub const KERNEL_TARGET: &str = "x86_64-unknown-none";

/// `cargo xtask setup`: install everything, report what was done.
pub fn run(_args: &[String]) -> Result<(), String> {
    ensure_rust_target()?;
    ensure_qemu()?;
    ensure_sqlite3()?;
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
    ensure_command("qemu-system-x86_64", "qemu-system-x86")
}

/// Installs Debian's `sqlite3` CLI if it is not on PATH: the real program the hosted
/// tests run unmodified under `LD_PRELOAD` (`hosted/tests/sqlite.rs`).
pub fn ensure_sqlite3() -> Result<(), String> {
    ensure_command("sqlite3", "sqlite3")
}

/// Installs Debian package `package` (apt-get, through sudo unless root) when `command
/// --version` cannot run; nothing when it can.
fn ensure_command(command: &str, package: &str) -> Result<(), String> {
    if Command::new(command).arg("--version").output().is_ok() {
        return Ok(());
    }
    eprintln!("xtask: installing {package} (apt-get)");
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
    apt(&["install", "-y", "-qq", package])?;
    Command::new(command)
        .arg("--version")
        .output()
        .map(|_| ())
        .map_err(|e| format!("{command} still missing after apt-get: {e}"))
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
