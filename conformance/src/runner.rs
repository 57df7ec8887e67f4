//! Running cases: each in a clean state, each followed by the invariant and leak checks.

use crate::harness::Harness;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Why a case failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fail(pub String);

/// A case's result.
pub type Outcome = Result<(), Fail>;

/// One conformance case.
#[derive(Clone, Copy)]
pub struct Case {
    /// Unique name saying the behaviour, e.g. `munmap_unmapped_range_succeeds`.
    pub name: &'static str,
    /// The case body. It must drop every process it starts and unlink every shm name it
    /// creates; the runner checks.
    pub run: fn(&mut dyn Harness) -> Outcome,
}

/// Totals of a run.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Cases that passed.
    pub passed: u32,
    /// Cases that failed.
    pub failed: u32,
    /// Name and reason of each failure.
    pub failures: Vec<(&'static str, String)>,
}

impl Summary {
    /// The line every runner prints: `N passed, N failed`.
    pub fn line(&self) -> String {
        format!("{} passed, {} failed", self.passed, self.failed)
    }
}

/// Runs `cases` whose name contains `filter` (all if empty), reporting each result.
pub fn run(
    h: &mut dyn Harness,
    cases: &[Case],
    filter: &str,
    report: &mut dyn FnMut(&'static str, &Outcome),
) -> Summary {
    let mut sum = Summary::default();
    for case in cases.iter().filter(|c| c.name.contains(filter)) {
        let before = h.stats();
        let mut outcome = (case.run)(h);
        if outcome.is_ok() {
            outcome = after_case(h, &before);
        }
        report(case.name, &outcome);
        match outcome {
            Ok(()) => sum.passed += 1,
            Err(Fail(why)) => {
                sum.failed += 1;
                sum.failures.push((case.name, why));
            }
        }
    }
    sum
}

/// The checks after every case: invariants hold, and with the system quiet, every frame,
/// object and client the case used is gone.
fn after_case(h: &mut dyn Harness, before: &ipc_proto::ServerStats) -> Outcome {
    h.check()
        .map_err(|e| Fail(format!("invariant violated after the case: {e}")))?;
    let after = h.stats();
    if after.violations != before.violations {
        return Err(Fail(format!(
            "server counted {} invariant violations",
            after.violations
        )));
    }
    if h.facts().exclusive {
        if after.clients != before.clients {
            return Err(Fail(format!(
                "{} clients left running",
                after.clients - before.clients
            )));
        }
        if after.shm_objects != before.shm_objects {
            return Err(Fail(format!(
                "shm objects {} before, {} after",
                before.shm_objects, after.shm_objects
            )));
        }
        if after.free_frames + after.table_frames != before.free_frames + before.table_frames {
            return Err(Fail(format!(
                "frames leaked: {} free before, {} after",
                before.free_frames + before.table_frames,
                after.free_frames + after.table_frames
            )));
        }
    }
    Ok(())
}

/// Fails the case with a message unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::Fail(alloc::format!("{} (line {})", alloc::format!($($fmt)+), line!())));
        }
    };
}

/// Fails the case unless `left == right`, showing both.
#[macro_export]
macro_rules! ensure_eq {
    ($left:expr, $right:expr) => {
        match (&$left, &$right) {
            (l, r) => {
                if l != r {
                    return Err($crate::Fail(alloc::format!(
                        "{} = {:?}, expected {:?} (line {})",
                        stringify!($left),
                        l,
                        r,
                        line!()
                    )));
                }
            }
        }
    };
}
