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
    /// `start_peer()`: the app's own image started as a new task (and client), entered
    /// with 1 as its argument; it serves calls once it waits in `receive`. Its endpoint.
    pub const START_PEER: u64 = 13;
    /// `ipc_call(endpoint, message, len, reply)`: a call to a peer the caller started
    /// (as `[caller: u64][message]`), waiting for its reply (at most 4096 bytes); the
    /// reply's length.
    pub const IPC_CALL: u64 = 14;
    /// `yield()`: a scheduled app lets the other apps have a turn.
    pub const YIELD: u64 = 15;
    /// `fork()`, for a scheduled app: a new app whose address space is a copy-on-write
    /// clone of the caller's and which resumes from this call with 0; the caller gets
    /// the child's client number.
    pub const FORK_TASK: u64 = 16;

    /// `receive(reply, len, buf, cap)`, for a task that serves calls (the memory server,
    /// an app's peer): answers the last message with `reply`, then waits for the next:
    /// `[sender: u64][message]` in `buf`; its total length.
    pub const RECEIVE: u64 = 20;

    // The memory server task's calls to the kernel stub.

    /// `create_space()`: a new address space's handle, `NONE` when the stub has no room
    /// for another, `NONE - 1` when it needs a table frame first.
    pub const CREATE_SPACE: u64 = 21;
    /// `destroy_space(space)`.
    pub const DESTROY_SPACE: u64 = 22;
    /// `map(space, vaddr, frame, attrs)`: 0, or a stub error code.
    pub const MAP: u64 = 23;
    /// `unmap(space, vaddr, pages)`.
    pub const UNMAP: u64 = 24;
    /// `protect(space, vaddr, pages, attrs)`.
    pub const PROTECT: u64 = 25;
    /// `query(space, vaddr)`: `frame << 12 | attrs`, or `NONE`.
    pub const QUERY: u64 = 26;
    /// `mappings(space, from, buf, n)`: up to `n` installed pages at or above `from`, as
    /// `[vaddr, frame << 12 | attrs]` pairs; how many.
    pub const MAPPINGS: u64 = 27;
    /// `zero_frame(frame)`.
    pub const ZERO_FRAME: u64 = 28;
    /// `copy_frame(src, dst)`.
    pub const COPY_FRAME: u64 = 29;
    /// `donate_table_frame(frame)`: 0, or a stub error code.
    pub const DONATE: u64 = 30;
    /// `reclaim_table_frame()`: a frame, or `NONE`.
    pub const RECLAIM: u64 = 31;
    /// `fill_frame(frame, buf, len)`: the frame becomes `len` (at most a page) bytes of
    /// the caller's `buf` followed by zeroes; 0, or `NONE` when refused.
    pub const FILL_FRAME: u64 = 32;
    /// `read_frame(frame, buf, len)`: copies the frame's first `len` bytes (at most a
    /// page) to the caller's `buf`; 0, or `NONE` when refused.
    pub const READ_FRAME: u64 = 33;
    /// `pager_call(request, len, reply, cap)`: the memory server task's call to its pager,
    /// the file server task; the reply's length, or `-errno`.
    pub const PAGER_CALL: u64 = 34;
    /// "Nothing" in the stub calls' results.
    pub const NONE: u64 = u64::MAX;
    /// The sender of the kernel's control messages to the memory server task (its
    /// configuration at start, then self-check switches): not a wire request.
    pub const CONTROL: u64 = u64::MAX;
}

core::arch::global_asm!(
    r#"
.section .text.ms_switch
/* ms_switch(a0, a1, a2, a3, nr): a system call after which the kernel resumes the task
   (later, after other tasks ran) with only rax set, so the callee-saved registers are
   kept on the task's own stack across it: `receive` and `yield`. */
.global ms_switch
ms_switch:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    mov r10, rcx
    mov rax, r8
    syscall
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret
"#
);

unsafe extern "C" {
    fn ms_switch(a0: u64, a1: u64, a2: u64, a3: u64, nr: u64) -> u64;
}

/// Lets the other scheduled apps run; returns when it is this app's turn again.
pub fn yield_now() {
    // SAFETY: no pointers; the kernel resumes the task after the call with every
    // callee-saved register restored by the wrapper from the task's own stack.
    unsafe { ms_switch(0, 0, 0, 0, nr::YIELD) };
}

/// Forks the calling app (see [`nr::FORK_TASK`]): `Ok(0)` in the child, `Ok(child)` in
/// the parent.
pub fn fork() -> Result<u64, Errno> {
    // SAFETY: no pointers; the child resumes from this call later, on its copy of this
    // stack, with the callee-saved registers the wrapper saved there.
    check(unsafe { ms_switch(0, 0, 0, 0, nr::FORK_TASK) })
}

/// Answers the last message with `reply` and waits for the next one in `buf`; the
/// length the kernel wrote there.
pub fn receive(reply: &[u8], buf: &mut [u8]) -> usize {
    let (reply_at, reply_len) = (reply.as_ptr() as u64, reply.len() as u64);
    let (buf_at, cap) = (buf.as_mut_ptr() as u64, buf.len() as u64);
    // SAFETY: both buffers are valid for their lengths; the kernel writes at most
    // `buf.len()` bytes into `buf` and resumes the task after the call, with every
    // callee-saved register restored by the wrapper from the task's own stack.
    unsafe { ms_switch(reply_at, reply_len, buf_at, cap, nr::RECEIVE) as usize }
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
