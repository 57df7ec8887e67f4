//! Running cases: each in a clean state, each followed by the invariant and leak checks.

use crate::harness::{Facts, Harness};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Why a case failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fail(pub String);

/// A case body's result.
pub type Outcome = Result<(), Fail>;

/// What the runner reports of one case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The case ran and everything it and the after-case checks asserted held.
    Passed,
    /// Something asserted did not hold: why.
    Failed(String),
    /// The transport cannot run the case: why. Never counted as passed.
    Skipped(&'static str),
}

/// What a transport must offer for a case to run at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Room for mappings below 2 GiB (`MAP_32BIT`).
    LowWindow,
    /// Regular files of a host kernel, mapped through the server (hosted only: the
    /// harness makes them, a process opens and maps them).
    HostFiles,
}

impl Need {
    /// Whether the server under test, as `facts` describe it, offers this; a need the
    /// facts cannot tell is the harness's to say ([`Harness::offers`]).
    pub fn met(self, facts: &Facts) -> bool {
        match self {
            Need::LowWindow => facts.mmap_min < 1 << 31 || facts.low_window.is_some(),
            Need::HostFiles => false,
        }
    }

    /// The skip reason when it does not.
    pub fn reason(self) -> &'static str {
        match self {
            Need::LowWindow => "the window starts above 2 GiB: nothing can be placed for MAP_32BIT",
            Need::HostFiles => "no host kernel's files here: host files are the hosted runtime's",
        }
    }
}

/// One conformance case.
#[derive(Clone, Copy)]
pub struct Case {
    /// Unique name saying the behaviour, e.g. `munmap_unmapped_range_succeeds`.
    pub name: &'static str,
    /// The case body. It must drop every process it starts and unlink every shm name it
    /// creates; the runner checks.
    pub run: fn(&mut dyn Harness) -> Outcome,
    /// What the transport must offer; without it the case is skipped, with the reason.
    pub needs: Option<Need>,
}

/// Totals of a run.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Cases that passed.
    pub passed: u32,
    /// Cases that failed.
    pub failed: u32,
    /// Cases the transport could not run.
    pub skipped: u32,
    /// Name and reason of each failure.
    pub failures: Vec<(&'static str, String)>,
}

impl Summary {
    /// The line every runner prints: `N passed, N failed, N skipped`.
    pub fn line(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }

    /// Counts one case's verdict.
    pub fn count(&mut self, name: &'static str, verdict: &Verdict) {
        match verdict {
            Verdict::Passed => self.passed += 1,
            Verdict::Skipped(_) => self.skipped += 1,
            Verdict::Failed(why) => {
                self.failed += 1;
                self.failures.push((name, why.clone()));
            }
        }
    }
}

/// Runs `cases` whose name contains `filter` (all if empty), reporting each result.
pub fn run(
    h: &mut dyn Harness,
    cases: &[Case],
    filter: &str,
    report: &mut dyn FnMut(&'static str, &Verdict),
) -> Summary {
    let mut sum = Summary::default();
    let facts = h.facts();
    for case in cases.iter().filter(|c| c.name.contains(filter)) {
        let verdict = match case.needs {
            Some(need) if !need.met(&facts) && !h.offers(need) => Verdict::Skipped(need.reason()),
            _ => {
                let before = h.stats();
                match (case.run)(h).and_then(|()| after_case(h, &before)) {
                    Ok(()) => Verdict::Passed,
                    Err(Fail(why)) => Verdict::Failed(why),
                }
            }
        };
        report(case.name, &verdict);
        sum.count(case.name, &verdict);
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
                "clients {} before, {} after",
                before.clients, after.clients
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
