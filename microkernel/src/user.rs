//! Ring 3: a GDT with user segments and a TSS, `syscall`/`sysret`, and test tasks that
//! run in user mode in their own address spaces, make system calls the kernel turns into
//! requests to the memory server, take real page faults the server resolves, and get
//! the server's signals in a handler they registered.
//!
//! Besides the memory server task and the conformance app (ELF images, see
//! [`crate::loader`]), the tasks are small position-independent programs (below) the
//! kernel loads into memory the server maps for them. A task runs to its `exit`, or
//! until the kernel kills it for an exception no handler takes; a task may be run from
//! inside another's system call (the server, the agent page), nesting on the kernel
//! stack below it.

use crate::trap::TrapFrame;
use alloc::boxed::Box;
use core::sync::atomic::{AtomicU64, Ordering};
use microkernel_abi::{ACCESS_OK, AccessOp};
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::registers::model_specific::{Efer, EferFlags, LStar, SFMask, Star};
use x86_64::registers::rflags::RFlags;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

core::arch::global_asm!(
    r#"
.section .bss
.p2align 4
user_rsp_save: .skip 8
kernel_ctx_rsp: .skip 8
/* Where the running task's system calls and exceptions enter the kernel: just below the
   `enter_user` frame that started it, so a task started from inside another task's
   system call (the agent page, run for the conformance app) nests on the same stack. */
kstack_top: .skip 8
.global tss_rsp0
tss_rsp0: .skip 8

.section .text
/* syscall: rax = number, rdi, rsi, rdx, r10 = arguments; rax = result; rcx, r11
   clobbered; every other register kept (so no kernel value reaches ring 3). On the
   task's kernel stack it builds the frame an interrupt from ring 3 would have pushed
   (the return address and flags SYSCALL left in rcx and r11) and takes the one entry
   path every trap takes (`isr_common` in trap.rs), back through `iretq`. */
.global syscall_entry
syscall_entry:
    mov [rip + user_rsp_save], rsp
    mov rsp, [rip + kstack_top]
    push {user_ss}
    push qword ptr [rip + user_rsp_save]
    push r11
    push {user_cs}
    push rcx
    push 0
    push {syscall_vector}
    jmp isr_common

/* enter_user(frame): runs a task in ring 3 from the saved registers at `frame` until its
   run ends (`return_to_kernel`); returns the code it ended with. Nests: the outer task's
   context is kept and restored. The frame is copied to the top of the task's kernel
   stack and restored by the entry path's own `isr_return`. */
.global enter_user
enter_user:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    push qword ptr [rip + kernel_ctx_rsp]
    push qword ptr [rip + kstack_top]
    mov [rip + kernel_ctx_rsp], rsp
    lea rax, [rsp - 128]
    and rax, -16
    mov [rip + kstack_top], rax
    mov r11, [rip + tss_rsp0]
    mov [r11], rax
    sub rax, {frame_bytes}
    mov rsi, rdi
    mov rdi, rax
    mov rsp, rax
    mov ecx, {frame_words}
    cld
    rep movsq
    jmp isr_return

/* return_to_kernel(code): abandons the task; its enter_user returns `code`. */
.global return_to_kernel
return_to_kernel:
    mov rsp, [rip + kernel_ctx_rsp]
    mov rax, rdi
    pop rdx
    mov [rip + kstack_top], rdx
    mov rcx, [rip + tss_rsp0]
    mov [rcx], rdx
    pop qword ptr [rip + kernel_ctx_rsp]
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    ret

/* The user program (position-independent; rdi = scenario, rsi = the kernel's SYSCALL
   entry point). System calls: 0 exit(code),
   1 mmap(len, prot, flags) -> address or -errno, 2 munmap(addr, len), 3 on_signal(rip). */
.global user_prog_start
user_prog_start:
    mov r15, rdi
    mov r14, rsi
    lea rdi, [rip + user_on_signal]
    mov eax, 3
    syscall
    cmp r15, 0
    je 10f
    cmp r15, 1
    je 20f
    cmp r15, 2
    je 30f
    cmp r15, 4
    je 50f
    cmp r15, 5
    je 70f
    cmp r15, 6
    jae 60f
    jmp 90f
10: /* map a page, use it, then touch an address with no mapping: SIGSEGV */
    mov edi, 4096
    mov esi, 3
    mov edx, 0x22
    mov eax, 1
    syscall
    mov rbx, rax
    mov byte ptr [rbx], 42
    movzx ecx, byte ptr [rbx]
    cmp ecx, 42
    jne 90f
    mov rax, 0x10000000
    mov byte ptr [rax], 1
    jmp 90f
20: /* write to a read-only page: SIGSEGV */
    mov edi, 4096
    mov esi, 1
    mov edx, 0x22
    mov eax, 1
    syscall
    movzx ecx, byte ptr [rax]
    test ecx, ecx
    jnz 90f
    mov byte ptr [rax], 1
    jmp 90f
30: /* touch 64 pages, then die of an invalid opcode */
    mov edi, 0x40000
    mov esi, 3
    mov edx, 0x22
    mov eax, 1
    syscall
    mov rbx, rax
    mov r12d, 64
31: mov byte ptr [rbx], 1
    add rbx, 4096
    dec r12d
    jnz 31b
    ud2
50: /* read the kernel's own image: the U/S bit faults, SIGSEGV */
    movabs rax, 0xffffffff80100000
    movzx ecx, byte ptr [rax]
    jmp 90f
60: /* scenario N >= 6: N-6 rounds of map 4 pages, touch them, unmap every other
       mapping; then die of an invalid opcode in the middle of it all */
    lea r13, [r15 - 6]
61: test r13, r13
    jz 62f
    mov edi, 0x4000
    mov esi, 3
    mov edx, 0x22
    mov eax, 1
    syscall
    mov rbx, rax
    mov byte ptr [rbx], 1
    mov byte ptr [rbx + 0x1000], 2
    mov byte ptr [rbx + 0x3000], 3
    test r13, 1
    jz 63f
    mov rdi, rbx
    mov esi, 0x4000
    mov eax, 2
    syscall
63: dec r13
    jmp 61b
62: ud2
70: /* enter the kernel as kvm-pvm delivers a SYSCALL: still in ring 3, at the entry
       point (r14), with RCX and R11 set as SYSCALL sets them but R11 asking for IOPL 3;
       the mmap is made, and `cli` then faults (IOPL stayed 0): SIGSEGV, exit 111 */
    mov edi, 4096
    mov esi, 3
    mov edx, 0x22
    mov eax, 1
    lea rcx, [rip + 71f]
    mov r11d, 0x3202
    jmp r14
71: cmp rax, -4096
    ja 90f
    mov byte ptr [rax], 7
    cmp byte ptr [rax], 7
    jne 90f
    cli
    mov edi, 77
    mov eax, 0
    syscall
90: mov edi, 99
    mov eax, 0
    syscall
user_on_signal: /* rdi = signal number: exit(100 + signal) */
    add rdi, 100
    mov eax, 0
    syscall
.global user_prog_end
user_prog_end:

/* The agent page: the only page of the kernel image a ring-3 task may touch (read and
   execute, never write), mapped at USER_AGENT in every client's space. Each routine makes one access on a
   client's behalf in ring 3 and exits with 0x10000 | the byte read (or 0x10000); a
   fault the server answers with a signal ends it with 128 + signal instead. */
.section .text.user_agent, "ax"
.p2align 12
.global user_agent_start
user_agent_start:
.global agent_read
agent_read: /* rdi = address */
    movzx edi, byte ptr [rdi]
    or edi, 0x10000
    xor eax, eax
    syscall
.global agent_write
agent_write: /* rdi = address, rsi = value */
    mov byte ptr [rdi], sil
    mov edi, 0x10000
    xor eax, eax
    syscall
.global agent_exec
agent_exec: /* rdi = address of a `ret`; rsp = agent_slot, so it returns to agent_back */
    jmp rdi
agent_back:
    mov edi, 0x10000
    xor eax, eax
    syscall
.p2align 3
.global agent_slot
agent_slot:
    .quad {agent} + (agent_back - user_agent_start)
.p2align 12
.global user_agent_end
user_agent_end:
"#,
    agent = const USER_AGENT,
    user_ss = const crate::trap::USER_SS,
    user_cs = const crate::trap::USER_CS,
    syscall_vector = const crate::trap::SYSCALL,
    frame_words = const crate::trap::FRAME_WORDS,
    frame_bytes = const crate::trap::FRAME_WORDS * 8,
);

unsafe extern "C" {
    static mut tss_rsp0: u64;
    static user_prog_start: u8;
    static user_prog_end: u8;
    fn syscall_entry();
    static user_agent_start: u8;
    static user_agent_end: u8;
    static agent_read: u8;
    static agent_write: u8;
    static agent_exec: u8;
    static agent_slot: u8;
    /// Runs a task in ring 3 from `frame` until it ends through [`kill`] or the `exit`
    /// system call; the code it ended with. The current space must map its code and
    /// stack user-accessible, and the frame's selectors and flags must be ring 3's.
    pub fn enter_user(frame: &TrapFrame) -> u64;
    fn return_to_kernel(code: u64) -> !;
}

/// Loads a GDT with user segments and a TSS (whose ring-0 stack `enter_user` sets for
/// each task) and enables `syscall`.
pub fn init() {
    let tss = Box::leak(Box::new(TaskStateSegment::new()));
    // SAFETY: boot code, one CPU, no task yet: `enter_user` keeps the TSS's ring-0 stack
    // through this pointer to the (leaked, never moved) TSS's field.
    unsafe {
        tss_rsp0 = core::ptr::addr_of_mut!(tss.privilege_stack_table) as u64;
    }
    let gdt = Box::leak(Box::new(GlobalDescriptorTable::new()));
    let kcode = gdt.append(Descriptor::kernel_code_segment());
    let kdata = gdt.append(Descriptor::kernel_data_segment());
    let udata = gdt.append(Descriptor::user_data_segment());
    let ucode = gdt.append(Descriptor::user_code_segment());
    let tss_sel = gdt.append(Descriptor::tss_segment(tss));
    gdt.load();
    // SAFETY: the selectors are the GDT's just loaded; the kernel's code and data
    // segments are what the CPU already uses (same layout as the boot GDT).
    unsafe {
        CS::set_reg(kcode);
        SS::set_reg(kdata);
        DS::set_reg(SegmentSelector(0));
        ES::set_reg(SegmentSelector(0));
        load_tss(tss_sel);
    }
    let user_cs = SegmentSelector(ucode.0 | 3);
    let user_ss = SegmentSelector(udata.0 | 3);
    // The entry path and every task's frame name them as constants.
    assert_eq!(
        (u64::from(user_cs.0), u64::from(user_ss.0)),
        (crate::trap::USER_CS, crate::trap::USER_SS)
    );
    Star::write(user_cs, user_ss, kcode, kdata).expect("sysret-compatible GDT layout");
    LStar::write(VirtAddr::new(syscall_entry as *const () as u64));
    // Interrupts stay off in the kernel; the direction flag is clear on entry.
    SFMask::write(RFlags::INTERRUPT_FLAG | RFlags::DIRECTION_FLAG | RFlags::TRAP_FLAG);
    // SAFETY: enabling `syscall` with LSTAR/STAR/SFMASK set just above.
    unsafe { Efer::update(|f| f.insert(EferFlags::SYSTEM_CALL_EXTENSIONS)) };
}

/// The task's registered signal handler (0: none).
static HANDLER: AtomicU64 = AtomicU64::new(0);

/// Where `SYSCALL` enters the kernel (`IA32_LSTAR`).
pub fn syscall_entry_address() -> u64 {
    syscall_entry as *const () as u64
}

/// Registers the current small task's signal handler (0: none).
pub fn set_handler(rip: u64) {
    HANDLER.store(rip, Ordering::Relaxed);
}

/// What a ring-3 exception turns into: the registered handler gets `signal` in `rdi`
/// at `rip` (the returned value), or the task ends with `128 + signal`.
pub fn deliver(signal: u8) -> u64 {
    let h = HANDLER.load(Ordering::Relaxed);
    if h == 0 {
        // SAFETY: ends the task.
        unsafe { return_to_kernel(128 + u64::from(signal)) }
    }
    h
}

/// Ends the current task with `code`.
pub fn kill(code: u64) -> ! {
    // SAFETY: ends the task; its address space is reclaimed by the caller of `run`.
    unsafe { return_to_kernel(code) }
}

/// Runs the user program with `scenario` as a new client; returns its exit code.
pub fn run(scenario: u64) -> u64 {
    HANDLER.store(0, Ordering::Relaxed);
    let (start, end) = (
        core::ptr::addr_of!(user_prog_start),
        core::ptr::addr_of!(user_prog_end),
    );
    // SAFETY: the program's bytes, between two labels of the same section.
    let code = unsafe { core::slice::from_raw_parts(start, end as usize - start as usize) };
    let Some((entry, stack_top)) = crate::loader::load_task(code) else {
        return u64::MAX;
    };
    let frame = TrapFrame::start(entry, stack_top, scenario, syscall_entry_address(), false);
    // SAFETY: `load_task` loaded the task's space in CR3 with the program and a stack
    // mapped user-accessible; the task returns through `return_to_kernel`.
    let code = unsafe { enter_user(&frame) };
    crate::run::end_task();
    code
}

/// Runs one app of the ELF `image` per entry of `args` under the scheduler
/// ([`crate::scheduler::run_apps`]), preempted by the timer if `preemptive`; their exit
/// codes.
pub fn run_apps(
    image: &'static [u8],
    args: &[(u64, u64, bool)],
    preemptive: bool,
) -> alloc::vec::Vec<Option<u64>> {
    HANDLER.store(0, Ordering::Relaxed);
    crate::scheduler::run_apps(image, args, preemptive)
}

/// Where the agent page is mapped, user read-execute, in every client's address space:
/// the last page of the lower half, which no client may map (the server's `mmap_max`
/// ends below it, as Linux keeps it unmapped). It was in the kernel half (PML4 entry
/// 320) until kvm-pvm showed that ring 3 may not reach the upper half there at all.
pub const USER_AGENT: u64 = 0x7fff_ffff_f000;

/// Where `sym`, a label of the agent page, is mapped for ring 3.
fn agent_alias(sym: *const u8) -> u64 {
    USER_AGENT + (sym as u64 - core::ptr::addr_of!(user_agent_start) as u64)
}

/// Physical address of the agent page (it lies in the kernel image, linked at KVMA).
pub fn agent_page_phys() -> u64 {
    let (start, end) = (
        core::ptr::addr_of!(user_agent_start) as u64,
        core::ptr::addr_of!(user_agent_end) as u64,
    );
    assert_eq!(end - start, 4096, "the agent page is one page");
    start - crate::boot::KVMA
}

/// Makes `op` at `addr` in ring 3 with the current address space, as the client whose
/// space it is; `Ok(byte)` (0 for a write or an exec) or the signal it died of.
pub fn run_agent(op: AccessOp, addr: u64) -> Result<u8, ipc_proto::Signal> {
    // The agent takes no signal handler; the task it runs inside of keeps its own.
    let outer = HANDLER.swap(0, Ordering::Relaxed);
    let (rip, value) = match op {
        AccessOp::Read => (agent_alias(core::ptr::addr_of!(agent_read)), 0),
        AccessOp::Write(v) => (agent_alias(core::ptr::addr_of!(agent_write)), v),
        AccessOp::Exec => (agent_alias(core::ptr::addr_of!(agent_exec)), 0),
    };
    let slot = agent_alias(core::ptr::addr_of!(agent_slot));
    let frame = TrapFrame::start(rip, slot, addr, u64::from(value), false);
    // SAFETY: the agent page is mapped user-executable at USER_AGENT in every client's
    // space (`loader::map_agent`); its routines exit through the `exit` system call, and
    // any exception they take ends them through `return_to_kernel`.
    let code = unsafe { enter_user(&frame) };
    HANDLER.store(outer, Ordering::Relaxed);
    match code {
        c if c & ACCESS_OK != 0 => Ok(c as u8),
        c if c == 128 + u64::from(ipc_proto::Signal::Bus.number()) => Err(ipc_proto::Signal::Bus),
        _ => Err(ipc_proto::Signal::Segv),
    }
}
