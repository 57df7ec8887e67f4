//! `cargo xtask test`: install what the tests need, then run every test suite.
//!
//! This is the README's test command and what `.ci/run` calls.

use crate::setup;

/// Entry point of `cargo xtask test`.
pub fn run(args: &[String]) -> Result<(), String> {
    if !args.is_empty() {
        return Err("usage: cargo xtask test".into());
    }
    setup::ensure_rust_target()?;
    setup::ensure_qemu()?;
    setup::ensure_sqlite3()?;
    // The hosted tests build libmemserver_preload.so themselves (target/c-abi, as
    // the C programs' static library), before they run a program under LD_PRELOAD.
    step("unit, property and scenario tests", || {
        setup::status("cargo", &["test", "--workspace", "--quiet"])
    })?;
    step("conformance suite, in-process", || {
        crate::conformance::run(&[])
    })?;
    step("bare-metal build of the no_std crates", || {
        setup::status(
            "cargo",
            &[
                "build",
                "--quiet",
                "--target",
                setup::KERNEL_TARGET,
                "-p",
                "ipc-proto",
                "-p",
                "kernel-stub",
                "-p",
                "client-lib",
                "-p",
                "memserver",
                "-p",
                "conformance",
                "-p",
                "fileserver",
            ],
        )
    })?;
    step(
        "conformance suite, hosted (memserverd, a process per client)",
        || crate::conformance::run(&["--hosted".into()]),
    )?;
    step("the microkernel under QEMU, TCG (the main job)", || {
        crate::qemu::run(&[])
    })?;
    // The same image under hardware virtualization, where the machine has it: a skip
    // is reported as one, never counted as a pass. Nested KVM here makes the whole run
    // take tens of minutes (docs/microkernel.md), so CI runs the smoke subset (every
    // eighth case, the demos, the spinner, the ring-3 checks); `cargo xtask qemu
    // --accel kvm` runs the whole.
    if crate::qemu::kvm_available() {
        step("the microkernel under QEMU, KVM (smoke subset)", || {
            crate::qemu::run(&["--accel".into(), "kvm".into(), "--smoke".into()])
        })?;
    } else {
        eprintln!("xtask test: the microkernel under QEMU, KVM: skipped: no /dev/kvm");
    }
    step("every fuzz target briefly, from the seed corpus", || {
        crate::fuzz::run(&["--seconds".into(), "10".into()])
    })?;
    eprintln!("xtask test: all steps passed");
    Ok(())
}

fn step(what: &str, f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    eprintln!("xtask test: {what}");
    f().map_err(|e| format!("{what}: {e}"))
}
