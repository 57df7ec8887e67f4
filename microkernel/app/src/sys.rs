//! The microkernel's system calls, as the app makes them: `rax` the number, `rdi`, `rsi`,
//! `rdx`, `r10` the arguments, `rax` the result (`-errno` on failure).

use ipc_proto::Errno;

/// The call numbers (the kernel's `user::Syscall`).
pub mod nr {
    /// `exit(code)`: ends the task.
    pub const EXIT: u64 = 0;
    /// `write(ptr, len)`: bytes to the serial console.
    pub const WRITE: u64 = 4;
    /// `call(client, request, len, response)`: one wire request to the memory server as
    /// `client` (0: the task itself); the response's length.
    pub const CALL: u64 = 5;
    /// `spawn(spec, len)`: a new client with the encoded `ClientSpec`; its handle.
    pub const SPAWN: u64 = 6;
    /// `fork(client, spec, len)`: a copy-on-write clone of `client`; its handle.
    pub const FORK: u64 = 7;
    /// `end(client)`: the client exits.
    pub const END: u64 = 8;
    /// `access(client, op, addr, value)`: one ring-3 access in the client's space.
    pub const ACCESS: u64 = 9;
    /// `stats(buf, cap)`: the server's encoded `ServerStats`.
    pub const STATS: u64 = 10;
    /// `check(buf, cap)`: 0, or the length of the invariant violation's text.
    pub const CHECK: u64 = 11;
    /// `facts(buf, cap)`: the encoded conformance `Facts` of this machine.
    pub const FACTS: u64 = 12;
}

/// Makes system call `nr`.
pub fn syscall(nr: u64, a0: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    let ret: u64;
    // SAFETY: `syscall` enters the kernel, which preserves every register but rax (the
    // result), rcx and r11 (clobbered by the instruction itself); it reads user memory
    // only through the pointers given, which the callers pass valid.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr => ret,
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
    let v = ret as i64;
    if (-4095..0).contains(&v) {
        Err(Errno::from_raw((-v) as u16).unwrap_or(Errno::EPROTO))
    } else {
        Ok(ret)
    }
}

/// Ends the task with `code`.
pub fn exit(code: u64) -> ! {
    syscall(nr::EXIT, code, 0, 0, 0);
    unreachable!("exit returned")
}

/// Writes `s` to the serial console.
pub fn write(s: &str) {
    syscall(nr::WRITE, s.as_ptr() as u64, s.len() as u64, 0, 0);
}
