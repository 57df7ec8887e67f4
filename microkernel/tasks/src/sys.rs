//! The microkernel's system calls, as a task makes them: the numbers and conventions
//! are `microkernel-abi`'s, declared once for the kernel and every task.

use ipc_proto::Errno;
pub use microkernel_abi::Sysnum;

/// Lets the other scheduled apps run; returns when it is this app's turn again.
pub fn yield_now() {
    // The kernel resumes the task after the call with every register it had (but rcx
    // and r11, as for any system call).
    syscall(Sysnum::Yield, 0, 0, 0, 0);
}

/// Forks the calling app (see [`Sysnum::ForkTask`]): `Ok(0)` in the child, `Ok(child)` in
/// the parent.
pub fn fork() -> Result<u64, Errno> {
    // The child resumes from this call later, on its copy of this stack, with the
    // caller's registers.
    check(syscall(Sysnum::ForkTask, 0, 0, 0, 0))
}

/// Answers the last message with `reply` and waits for the next one in `buf`; the
/// length the kernel wrote there.
pub fn receive(reply: &[u8], buf: &mut [u8]) -> usize {
    let (reply_at, reply_len) = (reply.as_ptr() as u64, reply.len() as u64);
    let (buf_at, cap) = (buf.as_mut_ptr() as u64, buf.len() as u64);
    // Both buffers are valid for their lengths; the kernel writes at most `buf.len()`
    // bytes into `buf` and resumes the task after the call with its registers.
    syscall(Sysnum::Receive, reply_at, reply_len, buf_at, cap) as usize
}

/// Makes system call `nr`.
pub fn syscall(nr: Sysnum, a0: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    let ret: u64;
    // SAFETY: `syscall` enters the kernel, which preserves every register but rax (the
    // result), rcx and r11 (clobbered by the instruction itself); it reads user memory
    // only through the pointers given, which the callers pass valid.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr as u64 => ret,
            in("rdi") a0,
            in("rsi") a1,
            in("rdx") a2,
            in("r10") a3,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// A result: `-errno` values are errors.
pub fn check(ret: u64) -> Result<u64, Errno> {
    microkernel_abi::decode_result(ret)
}

/// Ends the task with `code`.
pub fn exit(code: u64) -> ! {
    syscall(Sysnum::Exit, code, 0, 0, 0);
    unreachable!("exit returned")
}

/// Writes `s` to the serial console.
pub fn write(s: &str) {
    syscall(Sysnum::Write, s.as_ptr() as u64, s.len() as u64, 0, 0);
}
