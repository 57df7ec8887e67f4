//! Entry, heap, panic and console for a ring-3 task.

use crate::sys;
use linked_list_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

// The kernel enters a task at `_start` with its arguments in rdi and rsi and the stack
// pointer at the top of its stack; `task_main` (each binary's) never returns.
core::arch::global_asm!(
    r#"
.section .text._start
.global _start
_start:
    and rsp, -16
    call task_main
    ud2
"#
);

/// Makes `[start, start + size)`, memory mapped read-write for this task alone, the heap.
///
/// # Safety
/// The range must be mapped read-write (populated or not) and used for nothing else,
/// and this must be the only call.
pub unsafe fn init_heap(start: u64, size: u64) {
    // SAFETY: the caller's promise.
    unsafe { HEAP.lock().init(start as *mut u8, size as usize) };
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    use core::fmt::Write as _;
    let _ = writeln!(Console, "task panic: {info}");
    sys::exit(255)
}

/// The serial console, through the `write` system call.
pub struct Console;

impl core::fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        sys::write(s);
        Ok(())
    }
}
