//! Running a task in ring 3: its space loaded in CR3 (and the stub's TLB hook told),
//! nested on the kernel stack below whatever runs now, until it ends its run.

use crate::trap::TrapFrame;
use crate::{
    endpoint::end_client,
    page_fault::LAST_TASK_FAULT,
    state::{CURRENT, RUNNING, Space, with},
};
use core::sync::atomic::Ordering;
use ipc_proto::ClientId;
use kernel_stub::x86_64::structures::paging::PhysFrame;
use spin::Mutex;
use x86_64::registers::control::{Cr3, Cr3Flags};

/// A space loaded in CR3, and what to go back to.
pub(crate) struct Saved {
    root: PhysFrame,
    flags: Cr3Flags,
    active: Option<Space>,
}

/// Loads `space` in CR3 (and tells the stub's TLB hook); what was loaded before.
pub(crate) fn load_space(space: Space) -> Option<Saved> {
    let root = with(|m| {
        let root = m.stub.stub().root_table(space).ok()?;
        let tlb = m.stub.stub_mut().tlb_mut();
        let active = tlb.active.replace(space);
        Some((root, active))
    });
    let (root, active) = root?;
    let (outer, flags) = Cr3::read();
    // SAFETY: every space the stub makes shares the kernel half (entries 256..512) with
    // the kernel's, so the kernel's code, stack and heap stay mapped.
    unsafe { Cr3::write(root, Cr3Flags::empty()) };
    Some(Saved {
        root: outer,
        flags,
        active,
    })
}

/// Goes back to what [`load_space`] replaced.
pub(crate) fn restore(saved: Saved) {
    // SAFETY: a space that was loaded before, which shares the kernel half too.
    unsafe { Cr3::write(saved.root, saved.flags) };
    with(|m| m.stub.stub_mut().tlb_mut().active = saved.active);
}

/// Where a ring-3 run starts: the task's space and its registers.
pub(crate) struct Entry {
    pub(crate) space: Space,
    /// The endpoint it is (`NOT_AN_ENDPOINT`: a scheduled app).
    pub(crate) endpoint: u32,
    /// The client it is (none: the memory server itself).
    pub(crate) client: Option<ClientId>,
    /// Its registers: a fresh start, or where it left off.
    pub(crate) regs: TrapFrame,
}

/// Runs a task in ring 3 (nested below whatever runs now) until it ends its run —
/// `receive`, `yield`, `exit`, or a kill — with its space loaded and it current;
/// the code its run ended with (`None`: its space is gone). What ran before is current
/// again afterwards.
pub(crate) fn run_task(e: Entry) -> Option<u64> {
    let saved = load_space(e.space)?;
    let outer = RUNNING.swap(e.endpoint, Ordering::AcqRel);
    let outer_client = e.client.map(|c| CURRENT.swap(c.0, Ordering::Relaxed));
    let outer_fault = LAST_TASK_FAULT.swap(u64::MAX, Ordering::Relaxed);
    // SAFETY: the task's space is loaded, mapping its code and stack user-accessible (the
    // kernel loaded them, or the task left off there, its frame saved by the entry path
    // or made by `TrapFrame::start`, so ring 3's selectors); it comes back through the
    // `exit`, `receive` or `yield` system calls, a preemption, or `return_to_kernel`.
    let code = unsafe { crate::user::enter_user(&e.regs) };
    LAST_TASK_FAULT.store(outer_fault, Ordering::Relaxed);
    if let Some(c) = outer_client {
        CURRENT.store(c, Ordering::Relaxed);
    }
    RUNNING.store(outer, Ordering::Release);
    restore(saved);
    Some(code)
}

/// The kernel's own CR3 while a task runs.
pub(crate) static KERNEL_CR3: Mutex<Option<Saved>> = Mutex::new(None);

/// Loads `id`'s space in CR3 to run it as the current task.
pub(crate) fn enter_space(id: ClientId) -> Option<()> {
    let space = with(|m| m.space_of(id))?;
    let saved = load_space(space)?;
    *KERNEL_CR3.lock() = Some(saved);
    CURRENT.store(id.0, Ordering::Relaxed);
    LAST_TASK_FAULT.store(u64::MAX, Ordering::Relaxed);
    Some(())
}

/// After a small task ended: back to the kernel's space, and the client is gone.
pub fn end_task() {
    if let Some(saved) = KERNEL_CR3.lock().take() {
        restore(saved);
    }
    end_client(ClientId(CURRENT.load(Ordering::Relaxed)));
}
