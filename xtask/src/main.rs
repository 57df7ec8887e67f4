//! The project's commands, run as `cargo xtask <command>` (see README.md).
//!
//! Each command lives in its own module; `main` only dispatches.

#![forbid(unsafe_code)]

mod bench;
mod conformance;
mod fuzz;
mod guest_bench;
mod qemu;
mod setup;
mod test;
mod wire_sizes;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  qemu [--accel tcg|kvm] [--smoke] [--gdb] [--timeout S]
                      boot the microkernel under QEMU (TCG by default) and run the
                      conformance apps (--smoke: every eighth case)
  bench [--quick] [--json FILE]
                      our figures beside Linux's, as ratios; callgrind counts; plot
  bench --guest [--accel tcg|kvm] [--json FILE]
                      the microkernel's own figures in cycles (rdtsc medians)
  conformance [--filter S] [--verbose]
                      run the conformance suite in-process: N passed, N failed
  fuzz [--seconds N] [--target T]
                      run every fuzz target N seconds (default 60)
  test                install what the tests need, then run every test (CI runs this)
  setup               install the rustup target and QEMU if missing (idempotent)
  wire-sizes [--json] encoded sizes of typical protocol messages
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match cmd.as_str() {
        "qemu" => qemu::run(rest),
        "bench" => bench::run(rest),
        "conformance" => conformance::run(rest),
        "fuzz" => fuzz::run(rest),
        "setup" => setup::run(rest),
        "test" => test::run(rest),
        "wire-sizes" => wire_sizes::run(rest),
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("xtask: {msg}");
            ExitCode::FAILURE
        }
    }
}
