//! Exceptions: an IDT whose entries all go through one assembly stub that saves the
//! registers into a [`TrapFrame`] and calls [`trap_handler`]. An exception in ring 3 is
//! the task's (a page fault goes to the memory server); one in the kernel is fatal.

use crate::syscall_fault;
use x86_64::VirtAddr;
use x86_64::registers::control::Cr2;
use x86_64::structures::idt::InterruptDescriptorTable;

/// The registers saved by the stub, in memory order.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rbp: u64,
    rdi: u64,
    rsi: u64,
    rdx: u64,
    rcx: u64,
    rbx: u64,
    rax: u64,
    vector: u64,
    error: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
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
    .quad isr10, isr11, isr12, isr13, isr14, isr16, isr17, isr18, isr19

"#
);

unsafe extern "C" {
    static isr_table: [u64; 18];
}

/// The exception vectors the stubs cover, in `isr_table` order.
const VECTORS: [u8; 18] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 16, 17, 18, 19,
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
                _ => drop(idt.simd_floating_point.set_handler_addr(addr)),
            }
        }
    }
    idt.load();
}

/// Called by the stub for every exception.
#[unsafe(no_mangle)]
extern "C" fn trap_handler(f: &mut TrapFrame) {
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
    if lstar_fault && let Some((rip, rflags)) = syscall_fault::user_return(f.rcx, f.r11, false) {
        // As `syscall_entry` would: [rflags, rip, rsp] where `receive`, `yield` and
        // `fork` resume the task, then the call itself, which may not return.
        let resume = [rflags, rip, f.rsp];
        f.rax = crate::user::syscall(f.rax, [f.rdi, f.rsi, f.rdx, f.r10], &resume);
        (f.rip, f.rflags) = (rip, rflags);
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
    let signal = if f.vector == 14 {
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
