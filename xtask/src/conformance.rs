//! `cargo xtask conformance [--filter S] [--verbose]`: run the conformance suite
//! in-process and print `N passed, N failed`.

use conformance::inproc::InProc;

/// Entry point.
pub fn run(args: &[String]) -> Result<(), String> {
    let mut filter = String::new();
    let mut verbose = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--filter" => filter = it.next().cloned().ok_or("--filter needs a value")?,
            "--verbose" | "-v" => verbose = true,
            "--in-process" => {}
            other => {
                return Err(format!(
                    "unknown argument `{other}`\nusage: cargo xtask conformance [--in-process] [--filter S] [--verbose]"
                ));
            }
        }
    }
    let cases = conformance::cases::everything();
    let mut h = InProc::real();
    println!("conformance (in-process): {} cases", cases.len());
    let sum = conformance::run(
        &mut h,
        &cases,
        &filter,
        &mut |name, outcome| match outcome {
            Ok(()) if verbose => println!("ok   {name}"),
            Ok(()) => {}
            Err(e) => println!("FAIL {name}: {}", e.0),
        },
    );
    println!("{}", sum.line());
    if sum.failed == 0 {
        Ok(())
    } else {
        Err(format!("{} conformance cases failed", sum.failed))
    }
}
