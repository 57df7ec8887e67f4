//! The round-robin scheduler of apps: each runs until it yields, is preempted or
//! ends; the apps they fork join the queue.

use crate::{
    endpoint::{end_client, new_client},
    loader::load_app,
    run::{Entry, run_task},
    state::{CURRENT, NOT_AN_ENDPOINT, RUNNING, with},
};
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
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

/// What a task's `yield` ends its run with, and where it resumes.
pub(crate) const YIELDED: u64 = 0x91E1_D000;

pub(crate) static YIELD_AT: Mutex<(u64, u64)> = Mutex::new((0, 0));

/// The `yield` system call of a scheduled app: its run ends here, to resume at
/// `user_rip` / `user_rsp` (its wrapper keeps its other registers) after the others had
/// their turn. Anything else (a serving task, a small task) may not yield.
pub fn yield_now(user_rip: u64, user_rsp: u64) -> u64 {
    let me = CURRENT.load(Ordering::Relaxed);
    let scheduled =
        RUNNING.load(Ordering::Acquire) == NOT_AN_ENDPOINT && with(|m| m.apps.contains(&me));
    if !scheduled {
        return encode_result(Err(Errno::EPERM));
    }
    *YIELD_AT.lock() = (user_rip, user_rsp);
    crate::user::kill(YIELDED)
}

/// Apps forked since the scheduler last looked, with where each resumes.
pub(crate) static FORKED: Mutex<Vec<(ClientId, u64, u64)>> = Mutex::new(Vec::new());

/// The `fork` system call of a scheduled app: a new app whose address space is a
/// copy-on-write clone of the caller's (the server's `ClientCloned`), queued to resume
/// at `user_rip` / `user_rsp` (the call's return, its wrapper restoring the callee-saved
/// registers from its copy of the stack) with 0; the caller gets the child's number.
/// The child is a process of its own: it outlives its parent and is not its to end.
pub fn task_fork(user_rip: u64, user_rsp: u64) -> u64 {
    let me = CURRENT.load(Ordering::Relaxed);
    let scheduled =
        RUNNING.load(Ordering::Acquire) == NOT_AN_ENDPOINT && with(|m| m.apps.contains(&me));
    if !scheduled {
        return encode_result(Err(Errno::EPERM));
    }
    match new_client(ClientSpec::DEFAULT, Some(ClientId(me))) {
        Ok(child) => {
            with(|m| m.apps.insert(child.0));
            FORKED.lock().push((child, user_rip, user_rsp));
            u64::from(child.0)
        }
        Err(e) => encode_result(Err(e)),
    }
}

/// The scheduler: runs one app of `image` per entry of `args` (its `rdi` and `rsi` at
/// start), round robin, each until it yields or ends, and the apps they fork; their exit
/// codes (`None`: it did not load), the forked apps' after the others, in the order they
/// were forked. Apps yield only between pieces of work (the conformance app between
/// cases), so each runs alone while it works.
pub fn run_apps(image: &'static [u8], args: &[(u64, u64)]) -> Vec<Option<u64>> {
    struct Run {
        index: usize,
        id: ClientId,
        rip: u64,
        rsp: u64,
        /// `rdi`, `rsi` and `rax` at its next start.
        regs: [u64; 3],
    }
    let mut codes = alloc::vec![None; args.len()];
    let mut ready = alloc::collections::VecDeque::new();
    for (index, &a) in args.iter().enumerate() {
        if let Some((id, rip, rsp)) = load_app(image) {
            ready.push_back(Run {
                index,
                id,
                rip,
                rsp,
                regs: [a.0, a.1, 0],
            });
        }
    }
    while let Some(mut run) = ready.pop_front() {
        let code = with(|m| m.space_of(run.id)).and_then(|space| {
            run_task(Entry {
                space,
                endpoint: NOT_AN_ENDPOINT,
                client: Some(run.id),
                rip: run.rip,
                rsp: run.rsp,
                regs: run.regs,
            })
        });
        // A child resumes from its `fork` with 0 in rax.
        for (id, rip, rsp) in core::mem::take(&mut *FORKED.lock()) {
            codes.push(None);
            ready.push_back(Run {
                index: codes.len() - 1,
                id,
                rip,
                rsp,
                regs: [0; 3],
            });
        }
        let Some(code) = code else {
            end_app(run.id);
            continue;
        };
        if code == YIELDED {
            (run.rip, run.rsp) = *YIELD_AT.lock();
            run.regs = [0; 3];
            ready.push_back(run);
        } else {
            codes[run.index] = Some(code);
            end_app(run.id);
        }
    }
    codes
}
