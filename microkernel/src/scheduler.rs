//! The round-robin scheduler of apps: each runs until it yields, is preempted or
//! ends; the apps they fork join the queue.

use crate::trap::TrapFrame;
use crate::{
    endpoint::{end_client, new_client},
    loader::load_app,
    run::{Entry, run_task},
    state::{CURRENT, NOT_AN_ENDPOINT, RUNNING, with},
};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use ipc_proto::{ClientId, ClientSpec, Errno};
use microkernel_abi::encode_result;
use spin::Mutex;

/// Ends an app: the clients it started and its peers first (as a process group), then
/// the app itself.
pub(crate) fn end_app(app: ClientId) {
    let owned: Vec<ClientId> = with(|m| {
        m.apps.remove(&app.0);
        for e in m.endpoints.iter_mut().skip(1) {
            if e.owner == Some(app) {
                e.dead = true;
            }
        }
        let mine: Vec<u32> = m
            .owned
            .iter()
            .filter(|&(_, &owner)| owner == app.0)
            .map(|(&c, _)| c)
            .collect();
        for c in &mine {
            m.owned.remove(c);
        }
        mine.into_iter().map(ClientId).collect()
    });
    for c in owned.into_iter().chain([app]) {
        end_client(c);
    }
}

/// What an app's run ends with when it yields, and its registers to resume from.
pub(crate) const YIELDED: u64 = 0x91E1_D000;
/// … when the timer preempts it.
pub(crate) const PREEMPTED: u64 = 0x9EE3_0000;
/// The exit code of a background app the scheduler ended once every other app had
/// (the spinner), with the number of times the timer preempted it in the low 16 bits.
pub const ENDED_WITH_THE_OTHERS: u64 = 0x5917_0000;
/// How many preemptions in a row an app that yields keeps its place at the front of
/// the queue for (see [`run_apps`]): 10 s.
const FRONT_PREEMPTIONS: u32 = 10 * crate::timer::HZ;
/// The same for an app that has not yielded yet (its first turn): 1 s.
const FIRST_TURN_PREEMPTIONS: u32 = crate::timer::HZ;

/// The registers the last app to yield or be preempted left off with.
static LEFT_OFF: Mutex<Option<TrapFrame>> = Mutex::new(None);
/// Whether the scheduler runs apps preemptively now.
static PREEMPTIVE: AtomicBool = AtomicBool::new(false);

/// The app whose system call this is, if a scheduled app makes it (not a serving
/// task, a peer or a small task).
fn scheduled_caller() -> Option<u32> {
    let me = CURRENT.load(Ordering::Relaxed);
    let app = RUNNING.load(Ordering::Acquire) == NOT_AN_ENDPOINT && with(|m| m.apps.contains(&me));
    app.then_some(me)
}

/// Whether what runs in ring 3 now is a scheduled app the timer may preempt.
pub fn preemptible_now() -> bool {
    PREEMPTIVE.load(Ordering::Relaxed) && scheduled_caller().is_some()
}

/// The timer's tick in ring 3: a scheduled app's run ends here, to resume from `f`
/// after its turn comes again; anything else (a serving task, a small task, the agent
/// page) runs with interrupts off, so is never here.
pub fn preempt(f: &TrapFrame) {
    if !preemptible_now() {
        return;
    }
    *LEFT_OFF.lock() = Some(*f);
    crate::user::kill(PREEMPTED)
}

/// The `yield` system call of a scheduled app: its run ends here, to resume after the
/// call (with 0) once the others had their turn. Anything else (a serving task, a small
/// task) may not yield.
pub fn yield_now(f: &TrapFrame) -> u64 {
    if scheduled_caller().is_none() {
        return encode_result(Err(Errno::EPERM));
    }
    *LEFT_OFF.lock() = Some(f.returning(0));
    crate::user::kill(YIELDED)
}

/// Apps forked since the scheduler last looked, with the registers each resumes from.
static FORKED: Mutex<Vec<(ClientId, TrapFrame)>> = Mutex::new(Vec::new());

/// The `fork` system call of a scheduled app: a new app whose address space is a
/// copy-on-write clone of the caller's (the server's `ClientCloned`), queued to resume
/// from the call with the caller's registers and 0; the caller gets the child's number.
/// The child is a process of its own: it outlives its parent and is not its to end.
pub fn task_fork(f: &TrapFrame) -> u64 {
    let Some(me) = scheduled_caller() else {
        return encode_result(Err(Errno::EPERM));
    };
    match new_client(ClientSpec::DEFAULT, Some(ClientId(me))) {
        Ok(child) => {
            with(|m| m.apps.insert(child.0));
            FORKED.lock().push((child, f.returning(0)));
            u64::from(child.0)
        }
        Err(e) => encode_result(Err(e)),
    }
}

/// One app in the ready queue.
struct Run {
    /// Where its exit code goes.
    index: usize,
    id: ClientId,
    /// Its registers at its next start.
    regs: TrapFrame,
    /// Whether it has ever yielded: an app that works in pieces.
    yields: bool,
    /// Preemptions since it last yielded.
    preempted: u32,
    /// Preemptions in all.
    preemptions: u32,
    /// Whether it runs only as long as the others (it is ended once they all are).
    background: bool,
}

/// The scheduler: runs one app of `image` per entry of `args` (its `rdi` and `rsi` at
/// start, and whether it is a background app), round robin, and the apps they fork;
/// their exit codes (`None`: it did not load), the forked apps' after the others, in the
/// order they were forked.
///
/// An app runs until it yields, ends, or (if `preemptive`) the timer preempts it. A
/// preempted app keeps its place at the front of the queue while it has been preempted
/// fewer than [`FRONT_PREEMPTIONS`] times since it last yielded (fewer than
/// [`FIRST_TURN_PREEMPTIONS`] before its first yield), and goes to the back after: an
/// app that yields between pieces of work finishes each piece alone (the conformance
/// apps yield between cases, and their leak checks count on a case running alone),
/// while one that never yields is preempted to the back at every tick once its first
/// turn is over, so it cannot starve the others. When only background apps are left,
/// they are ended with [`ENDED_WITH_THE_OTHERS`].
pub fn run_apps(
    image: &'static [u8],
    args: &[(u64, u64, bool)],
    preemptive: bool,
) -> Vec<Option<u64>> {
    crate::timer::init(preemptive);
    PREEMPTIVE.store(preemptive, Ordering::Relaxed);
    let mut codes = alloc::vec![None; args.len()];
    let mut ready = alloc::collections::VecDeque::new();
    for (index, &(rdi, rsi, background)) in args.iter().enumerate() {
        if let Some((id, rip, rsp)) = load_app(image) {
            let regs = TrapFrame::start(rip, rsp, rdi, rsi, preemptive);
            ready.push_back(Run {
                index,
                id,
                regs,
                yields: false,
                preempted: 0,
                preemptions: 0,
                background,
            });
        }
    }
    while let Some(mut run) = ready.pop_front() {
        if ready.iter().chain([&run]).all(|r| r.background) {
            // Only background apps are left: the run is over for them.
            for r in ready.drain(..).chain([run]) {
                let preemptions = u64::from(r.preemptions.min(0xffff));
                codes[r.index] = Some(ENDED_WITH_THE_OTHERS | preemptions);
                end_app(r.id);
            }
            break;
        }
        let code = with(|m| m.space_of(run.id)).and_then(|space| {
            run_task(Entry {
                space,
                endpoint: NOT_AN_ENDPOINT,
                client: Some(run.id),
                regs: run.regs,
            })
        });
        // A child resumes from its `fork` with 0 in rax.
        for (id, regs) in core::mem::take(&mut *FORKED.lock()) {
            codes.push(None);
            ready.push_back(Run {
                index: codes.len() - 1,
                id,
                regs,
                yields: run.yields,
                preempted: 0,
                preemptions: 0,
                background: run.background,
            });
        }
        let left_off = LEFT_OFF.lock().take();
        match (code, left_off) {
            (Some(YIELDED), Some(regs)) => {
                (run.regs, run.yields, run.preempted) = (regs, true, 0);
                ready.push_back(run);
            }
            (Some(PREEMPTED), Some(regs)) => {
                run.regs = regs;
                run.preempted += 1;
                run.preemptions += 1;
                let budget = if run.yields {
                    FRONT_PREEMPTIONS
                } else {
                    FIRST_TURN_PREEMPTIONS
                };
                if run.preempted < budget {
                    ready.push_front(run);
                } else {
                    ready.push_back(run);
                }
            }
            (Some(code), _) => {
                codes[run.index] = Some(code);
                end_app(run.id);
            }
            (None, _) => end_app(run.id),
        }
    }
    PREEMPTIVE.store(false, Ordering::Relaxed);
    crate::timer::init(false);
    codes
}
