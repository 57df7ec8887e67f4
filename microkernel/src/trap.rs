//! Every entry into the kernel from ring 3 — exceptions, the timer's interrupt and
//! system calls (`syscall_entry` in `user` builds the same frame and jumps here) — goes
//! through one assembly path that saves every register into a [`TrapFrame`], calls
//! [`trap_handler`], and restores them with `iretq` (`isr_return`, which `enter_user`
//! also uses to start or resume a task from a saved frame). An exception in ring 3 is
//! the task's (a page fault goes to the memory server); one in the kernel is fatal.

use crate::syscall_fault;
use x86_64::VirtAddr;
use x86_64::registers::control::Cr2;
use x86_64::structures::idt::InterruptDescriptorTable;

/// A task's registers as the entry path saves them, in memory order: what a preempted,
/// yielding, receiving or forked task resumes from.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// The vector ([`SYSCALL`] for a system call).
    pub vector: u64,
    /// The exception's error code (0 if it has none).
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// Its size in 8-byte words (`enter_user` copies it).
pub const FRAME_WORDS: usize = core::mem::size_of::<TrapFrame>() / 8;
/// The vector a system call's frame carries: none the CPU delivers.
pub const SYSCALL: u64 = 0x100;
/// The timer's vector: IRQ 0 of the legacy PIC, remapped past the exceptions.
pub const TIMER: u8 = 0x20;
/// Ring 3's code and stack selectors (the GDT `user::init` loads).
pub const USER_CS: u64 = 0x23;
pub const USER_SS: u64 = 0x1b;

impl TrapFrame {
    /// A task's first frame: ring 3 at `rip` with stack `rsp`, `rdi` and `rsi` its
    /// arguments, every other register zero (no kernel value reaches ring 3), interrupts
    /// on if it may be preempted.
    pub fn start(rip: u64, rsp: u64, rdi: u64, rsi: u64, preemptible: bool) -> Self {
        TrapFrame {
            rip,
            rsp,
            rdi,
            rsi,
            cs: USER_CS,
            ss: USER_SS,
            rflags: crate::syscall_fault::RFLAGS_FIXED
                | if preemptible {
                    crate::syscall_fault::RFLAGS_IF
                } else {
                    0
                },
            ..TrapFrame::default()
        }
    }

    /// The same task, resuming with `rax` as its system call's result.
    pub fn returning(&self, rax: u64) -> Self {
        TrapFrame { rax, ..*self }
    }
}

core::arch::global_asm!(
    r#"
.macro ISR_NOERR n
isr\n:
    push 0
    push \n
    jmp isr_common
.endm
.macro ISR_ERR n
isr\n:
    push \n
    jmp isr_common
.endm

.section .text
ISR_NOERR 0
ISR_NOERR 1
ISR_NOERR 2
ISR_NOERR 3
ISR_NOERR 4
ISR_NOERR 5
ISR_NOERR 6
ISR_NOERR 7
ISR_ERR 8
ISR_ERR 10
ISR_ERR 11
ISR_ERR 12
ISR_ERR 13
ISR_ERR 14
ISR_NOERR 16
ISR_ERR 17
ISR_NOERR 18
ISR_NOERR 19
ISR_NOERR 32

isr_common:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    mov rdi, rsp
    cld
    call trap_handler
.global isr_return
isr_return:
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 16
    iretq

.section .rodata
.p2align 3
.global isr_table
isr_table:
    .quad isr0, isr1, isr2, isr3, isr4, isr5, isr6, isr7, isr8
    .quad isr10, isr11, isr12, isr13, isr14, isr16, isr17, isr18, isr19, isr32

"#
);

unsafe extern "C" {
    static isr_table: [u64; 19];
}

/// The vectors the stubs cover, in `isr_table` order: the exceptions and the timer.
const VECTORS: [u8; 19] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 16, 17, 18, 19, TIMER,
];

/// Loads an IDT routing every exception to [`trap_handler`].
pub fn init() {
    let idt = alloc::boxed::Box::leak(alloc::boxed::Box::new(InterruptDescriptorTable::new()));
    for (i, &v) in VECTORS.iter().enumerate() {
        // SAFETY: reading the table of stub addresses the assembly above defines.
        let addr = VirtAddr::new(unsafe { isr_table[i] });
        // SAFETY: in each arm, the address is one of the stubs above, which save every
        // register, call `trap_handler` and return with `iretq` after dropping the vector
        // and error code, as an exception handler must.
        unsafe {
            match v {
                0 => drop(idt.divide_error.set_handler_addr(addr)),
                1 => drop(idt.debug.set_handler_addr(addr)),
                2 => drop(idt.non_maskable_interrupt.set_handler_addr(addr)),
                3 => drop(idt.breakpoint.set_handler_addr(addr)),
                4 => drop(idt.overflow.set_handler_addr(addr)),
                5 => drop(idt.bound_range_exceeded.set_handler_addr(addr)),
                6 => drop(idt.invalid_opcode.set_handler_addr(addr)),
                7 => drop(idt.device_not_available.set_handler_addr(addr)),
                8 => drop(idt.double_fault.set_handler_addr(addr)),
                10 => drop(idt.invalid_tss.set_handler_addr(addr)),
                11 => drop(idt.segment_not_present.set_handler_addr(addr)),
                12 => drop(idt.stack_segment_fault.set_handler_addr(addr)),
                13 => drop(idt.general_protection_fault.set_handler_addr(addr)),
                14 => drop(idt.page_fault.set_handler_addr(addr)),
                16 => drop(idt.x87_floating_point.set_handler_addr(addr)),
                17 => drop(idt.alignment_check.set_handler_addr(addr)),
                18 => drop(idt.machine_check.set_handler_addr(addr)),
                19 => drop(idt.simd_floating_point.set_handler_addr(addr)),
                _ => drop(idt[v].set_handler_addr(addr)),
            }
        }
    }
    idt.load();
}

/// Called by the entry path for every exception, interrupt and system call.
#[unsafe(no_mangle)]
extern "C" fn trap_handler(f: &mut TrapFrame) {
    if f.vector == SYSCALL {
        f.rax = crate::syscall::dispatch(f);
        return;
    }
    if f.vector == u64::from(TIMER) {
        crate::timer::acknowledge();
        // Only ring 3 runs with interrupts on; a scheduled app there is preempted.
        if f.cs & 3 == 3 {
            crate::scheduler::preempt(f);
        }
        return;
    }
    if f.cs & 3 == 3 {
        return user_trap(f);
    }
    crate::kprintln!(
        "kernel: exception {} (error {:#x}) at {:#x}, cr2 {:#x}\n{f:#x?}",
        f.vector,
        f.error,
        f.rip,
        Cr2::read_raw()
    );
    crate::serial::exit_qemu(crate::serial::EXIT_FAILURE);
}

/// An exception in a ring-3 task: a `SYSCALL` that arrived as a page fault is completed
/// ([`syscall_fault`]); any other page fault goes to the memory server; its signal, or
/// any other exception, goes to the task's handler or ends the task.
fn user_trap(f: &mut TrapFrame) {
    let lstar = crate::user::syscall_entry_address();
    let lstar_fault = syscall_fault::is_syscall(f.vector, f.error, f.rip, Cr2::read_raw(), lstar);
    // A return address outside the user half is refused: the task gets SIGSEGV below.
    // The interrupt flag the task ran with (R11, as SYSCALL saved it), for an app the
    // timer may preempt; never for anything else.
    let interrupts = f.r11 & syscall_fault::RFLAGS_IF != 0 && crate::scheduler::preemptible_now();
    let resume = syscall_fault::user_return(f.rcx, f.r11, interrupts);
    if lstar_fault && let Some((rip, rflags)) = resume {
        // The frame `syscall_entry` would have built: the task resumes after the
        // `syscall` (where `receive`, `yield` and `fork` resume it too), keeping the
        // interrupt flag it ran with.
        (f.rip, f.rflags, f.vector, f.error) = (rip, rflags, SYSCALL, 0);
        f.rax = crate::syscall::dispatch(f);
        return;
    }
    if crate::endpoint::kernel_task_running() {
        // The serving tasks' memory is never lazy: any exception there is a bug, and
        // nothing could resolve their faults anyway.
        crate::kprintln!(
            "kernel: a serving task (memory or file server) took exception {} (error {:#x}) at {:#x}, cr2 {:#x}",
            f.vector,
            f.error,
            f.rip,
            Cr2::read_raw()
        );
        crate::serial::exit_qemu(crate::serial::EXIT_FAILURE);
    }
    let signal = if f.vector == syscall_fault::PAGE_FAULT {
        if !crate::scheduler::may_use_server() {
            // Another app's piece of work holds the server: the access is retried later.
            crate::scheduler::wait_for_server(f, 0);
        }
        let addr = Cr2::read_raw();
        let access = if f.error & syscall_fault::pf::FETCH != 0 {
            ipc_proto::Access::Exec
        } else if f.error & syscall_fault::pf::WRITE != 0 {
            ipc_proto::Access::Write
        } else {
            ipc_proto::Access::Read
        };
        match crate::page_fault::task_fault(addr, access) {
            None => return,
            Some(s) => s.number(),
        }
    } else if f.vector == 6 {
        // SIGILL: no server involved, and no handler for it in this small runtime.
        crate::user::kill(128 + 4);
    } else {
        ipc_proto::Signal::Segv.number()
    };
    f.rip = crate::user::deliver(signal);
    f.rdi = u64::from(signal);
    // A fresh, aligned frame below the interrupted one for the handler.
    f.rsp = (f.rsp - 256) & !0xf;
}
