//! The whole suite in-process: every case passes, and the suite is as large as promised.

use conformance::Verdict;
use conformance::inproc::InProc;

fn run_all<K: memserver_testkit::SimulatedCpu + 'static>(mut h: InProc<K>) {
    let cases = conformance::cases::everything();
    let sum = conformance::run(&mut h, &cases, "", &mut |name, verdict| {
        if let Verdict::Failed(why) = verdict {
            eprintln!("FAIL {name}: {why}");
        }
    });
    eprintln!("{}", sum.line());
    assert_eq!(sum.failed, 0, "{:?}", sum.failures);
    // In-process the simulated machine offers everything but a host kernel's files: only
    // the host-file cases may skip, and they must.
    let host_files = cases
        .iter()
        .filter(|c| c.needs == Some(conformance::Need::HostFiles))
        .count();
    assert!(host_files > 0);
    assert_eq!(sum.skipped as usize, host_files);
    assert_eq!(sum.passed as usize, cases.len() - host_files);
}

#[test]
fn suite_passes_in_process_over_the_real_kernel_stub() {
    run_all(InProc::real());
}

#[test]
fn suite_passes_in_process_over_the_model_stub() {
    run_all(InProc::model());
}

#[test]
fn case_names_are_unique() {
    let cases = conformance::cases::everything();
    let mut names: Vec<_> = cases.iter().map(|c| c.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), cases.len());
}
