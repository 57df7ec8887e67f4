//! The round-robin scheduler of apps: each runs until it yields, is preempted or
//! ends; the apps they fork join the queue.

use crate::trap::TrapFrame;
use crate::{
    endpoint::{end_client, new_client},
    hold::Preempted,
    loader::load_app,
    run::{Entry, run_task},
    state::{CURRENT, NOT_AN_ENDPOINT, RUNNING, with},
};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
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
/// … when it must wait for the memory server (see [`may_use_server`]).
pub(crate) const BLOCKED: u64 = 0xB10C_0000;

/// The registers the last app to yield or be preempted left off with.
static LEFT_OFF: Mutex<Option<TrapFrame>> = Mutex::new(None);
/// Whether the scheduler runs apps preemptively now.
static PREEMPTIVE: AtomicBool = AtomicBool::new(false);
/// The app preempted in the middle of a piece of work with the memory server (it used
/// it since its last yield), which has the server to itself until it yields or ends
/// (0: none).
static HOLDER: AtomicU32 = AtomicU32::new(0);
/// Whether the running app used the memory server since its last yield.
static USED_SERVER: AtomicBool = AtomicBool::new(false);
/// Whether it used it in this run (since it was last started or resumed).
static USED_IN_RUN: AtomicBool = AtomicBool::new(false);
/// Timer ticks the running app has taken in this run.
static TICKS_IN_RUN: AtomicU32 = AtomicU32::new(0);
/// The tick that preempts an app: the first one of a run may have been pending since
/// before it (the kernel and the serving tasks run with interrupts off, and under
/// kvm-pvm one round of the others outlasts a tick), so on hardware an app gets at
/// least one tick's worth of its own before it is preempted. (QEMU's KVM PIT replays
/// lost ticks back to back, so there a run can end before the app ran at all: nothing
/// may count on a preemption meaning progress, see [`Preempted::holds`].)
const PREEMPTING_TICK: u32 = 2;
/// After this many preemptions in a row without a request of the server (1 s), a
/// background app that has not yielded no longer holds it ([`Preempted::holds`]).
const IDLE_RELEASE: u32 = crate::timer::HZ;

/// The app whose system call this is, if a scheduled app makes it (not a serving
/// task, a peer or a small task).
fn scheduled_caller() -> Option<u32> {
    let me = CURRENT.load(Ordering::Relaxed);
    let app = RUNNING.load(Ordering::Acquire) == NOT_AN_ENDPOINT && with(|m| m.apps.contains(&me));
    app.then_some(me)
}

/// Whether the calling task may make a request of the memory server now (a system call
/// or a page fault): anything but a scheduled app may; an app may unless another app
/// was preempted in the middle of its own piece of work with the server. The
/// conformance apps yield between cases and their leak checks need each case to run
/// alone: preemption must not let another app's requests into the middle of one. An
/// app that does not use the server (the spinner) is never held up.
pub fn may_use_server() -> bool {
    let Some(me) = scheduled_caller() else {
        return true;
    };
    let holder = HOLDER.load(Ordering::Relaxed);
    if PREEMPTIVE.load(Ordering::Relaxed) && holder != 0 && holder != me {
        return false;
    }
    USED_SERVER.store(true, Ordering::Relaxed);
    USED_IN_RUN.store(true, Ordering::Relaxed);
    true
}

/// Ends the calling app's run to wait for the server, resuming from `f` rewound by
/// `rewind` bytes: a system call (2 bytes) is made again, a faulting access retried.
pub fn wait_for_server(f: &TrapFrame, rewind: u64) -> ! {
    *LEFT_OFF.lock() = Some(TrapFrame {
        rip: f.rip - rewind,
        ..*f
    });
    crate::user::kill(BLOCKED)
}

/// Whether what runs in ring 3 now is a scheduled app the timer may preempt.
pub fn preemptible_now() -> bool {
    PREEMPTIVE.load(Ordering::Relaxed) && scheduled_caller().is_some()
}

/// The timer's tick in ring 3: a scheduled app's run ends here, to resume from `f`
/// after its turn comes again; anything else (a serving task, a small task, the agent
/// page) runs with interrupts off, so is never here.
pub fn preempt(f: &TrapFrame) {
    if !preemptible_now() || TICKS_IN_RUN.fetch_add(1, Ordering::Relaxed) + 1 < PREEMPTING_TICK {
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
    /// Whether it used the memory server since its last yield.
    used_server: bool,
    /// Preemptions in a row without a request of the server.
    idle: u32,
    /// Whether its last run ended waiting for the server.
    waiting: bool,
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
/// An app runs until it yields, ends, or (if `preemptive`) the timer preempts it, and
/// goes to the back of the queue: an app that never yields cannot starve the others.
/// One preempted in the middle of a piece of work with the memory server holds the
/// server until it yields (see [`may_use_server`]), or, a background app, until
/// [`IDLE_RELEASE`] of its preemptions in a row found it not using the server; another
/// app's request meanwhile ends its run to be made again later. When only background apps are left, they are
/// ended with [`ENDED_WITH_THE_OTHERS`].
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
                used_server: false,
                idle: 0,
                waiting: false,
                preemptions: 0,
                background,
            });
        }
    }
    HOLDER.store(0, Ordering::Relaxed);
    let mut ending = Vec::new();
    let mut skipped = 0;
    // The apps waiting for the server, longest first: when the holder lets it go, it
    // passes to the first (else two apps with long pieces of work could pass it back
    // and forth forever while a third waits).
    let mut waiters = alloc::collections::VecDeque::new();
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
        // An app waiting for the server is not run (to find it still held) until the
        // holder lets it go: every run is two address-space switches, and under
        // kvm-pvm each costs more than a round of the holder's work. If nothing in the
        // queue can run, the hold is dropped (the holder is gone).
        let holder = HOLDER.load(Ordering::Relaxed);
        if run.waiting && holder != 0 && holder != run.id.0 {
            skipped += 1;
            if skipped > ready.len() {
                HOLDER.store(waiters.pop_front().unwrap_or(0), Ordering::Relaxed);
                skipped = 0;
            }
            ready.push_back(run);
            continue;
        }
        skipped = 0;
        run.waiting = false;
        USED_SERVER.store(run.used_server, Ordering::Relaxed);
        USED_IN_RUN.store(false, Ordering::Relaxed);
        TICKS_IN_RUN.store(0, Ordering::Relaxed);
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
                used_server: false,
                idle: 0,
                waiting: false,
                preemptions: 0,
                background: run.background,
            });
        }
        let left_off = LEFT_OFF.lock().take();
        run.used_server = USED_SERVER.load(Ordering::Relaxed);
        match (code, left_off) {
            (Some(YIELDED), Some(regs)) => {
                run.regs = regs;
                run.used_server = false;
                release(run.id, &mut waiters);
                ready.push_back(run);
            }
            (Some(BLOCKED), Some(regs)) => {
                run.regs = regs;
                run.waiting = true;
                if !waiters.contains(&run.id.0) {
                    waiters.push_back(run.id.0);
                }
                ready.push_back(run);
            }
            (Some(PREEMPTED), Some(regs)) => {
                run.regs = regs;
                run.preemptions += 1;
                run.idle = if USED_IN_RUN.load(Ordering::Relaxed) {
                    0
                } else {
                    run.idle + 1
                };
                let preempted = Preempted {
                    used_server: run.used_server,
                    idle: run.idle,
                    background: run.background,
                };
                if preempted.holds(IDLE_RELEASE) {
                    // It used the server while nobody held it, or holds it already.
                    let _ =
                        HOLDER.compare_exchange(0, run.id.0, Ordering::Relaxed, Ordering::Relaxed);
                } else {
                    release(run.id, &mut waiters);
                }
                ready.push_back(run);
            }
            (code, _) => {
                codes[run.index] = code;
                waiters.retain(|&w| w != run.id.0);
                release(run.id, &mut waiters);
                ending.push(run.id);
            }
        }
        // An app that ended is ended with the server once no other app is in the
        // middle of a piece of work with it (holding it, or preempted after using it
        // since its last yield): ending its clients frees frames, which would land in
        // the middle of that piece (inside a conformance case's leak check).
        let mid_piece = ready.iter().any(|r| r.used_server && !r.background);
        if HOLDER.load(Ordering::Relaxed) == 0 && !mid_piece {
            for app in ending.drain(..) {
                end_app(app);
            }
        }
    }
    for app in ending {
        end_app(app);
    }
    PREEMPTIVE.store(false, Ordering::Relaxed);
    crate::timer::init(false);
    codes
}

/// The app's piece of work is over: if it held the server, the app that has waited
/// longest for it holds it now (or nobody).
fn release(app: ClientId, waiters: &mut alloc::collections::VecDeque<u32>) {
    if HOLDER.load(Ordering::Relaxed) == app.0 {
        HOLDER.store(waiters.pop_front().unwrap_or(0), Ordering::Relaxed);
    }
}
