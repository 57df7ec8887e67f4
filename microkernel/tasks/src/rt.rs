//! Entry, heap, panic and console for a ring-3 task.

use crate::sys;
use alloc::vec;
use linked_list_allocator::LockedHeap;
use microkernel_abi::Header;

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
    let _ = writeln!(Console::line(), "task panic: {info}");
    sys::exit(255)
}

/// The serial console, through the `write` system call: a line at a time (one write
/// per `writeln!`, flushed when the value is dropped), so a preempted app's line is not
/// cut by another's.
pub struct Console {
    buf: [u8; 256],
    len: usize,
}

impl Console {
    /// An empty line, written when dropped (or when it fills).
    pub fn line() -> Self {
        Console {
            buf: [0; 256],
            len: 0,
        }
    }

    fn flush(&mut self) {
        if let Ok(s) = core::str::from_utf8(&self.buf[..self.len]) {
            sys::write(s);
        }
        self.len = 0;
    }
}

impl core::fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for c in s.chars() {
            let mut utf8 = [0; 4];
            let c = c.encode_utf8(&mut utf8).as_bytes();
            if self.len + c.len() > self.buf.len() {
                self.flush();
            }
            self.buf[self.len..self.len + c.len()].copy_from_slice(c);
            self.len += c.len();
        }
        Ok(())
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The life of a serving task (the memory server, the file server): makes its heap,
/// its state with `init`, then answers each message `receive` brings with `handle`
/// (the sender, the message, the reply buffer; the reply's length), forever. Messages
/// are at most `max_message` bytes, replies `max_reply`.
///
/// # Safety
/// As [`init_heap`]'s: `[heap, heap + heap_len)` is mapped read-write for this task
/// alone and nothing else uses it, and this is called once (the kernel starts a serving
/// task at its entry with exactly that heap).
pub unsafe fn serve<S>(
    heap: u64,
    heap_len: u64,
    max_message: usize,
    max_reply: usize,
    init: impl FnOnce() -> S,
    mut handle: impl FnMut(&mut S, Header, &[u8], &mut [u8]) -> usize,
) -> ! {
    // SAFETY: the caller's promise.
    unsafe { init_heap(heap, heap_len) };
    let mut state = init();
    let mut buf = vec![0u8; Header::LEN + max_message];
    let mut out = vec![0u8; max_reply];
    let mut reply = 0;
    loop {
        let n = sys::receive(&out[..reply], &mut buf).min(buf.len());
        reply = match Header::decode(&buf[..n]) {
            Some((sender, message)) => handle(&mut state, sender, message, &mut out).min(out.len()),
            None => 0,
        };
    }
}
