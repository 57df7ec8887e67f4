//! A `SYSCALL` that arrives as a page fault.
//!
//! Under the `/dev/kvm` of these machines (`kvm-pvm`, nested PVM inside a Firecracker
//! VM), `SYSCALL` from ring 3 loads `RIP` from `IA32_LSTAR`, `RCX` and `R11` and masks
//! `RFLAGS` with `IA32_FMASK`, but leaves the privilege level at 3: the first fetch of
//! the kernel's entry point then faults as a user access to a supervisor page (error
//! `P | U/S | I/D`, `CR2 = RIP = LSTAR`), and `INT n` from ring 3 raises `#UD`. A
//! minimal ring-3 `SYSCALL` in the boot page tables does the same, so no page-table
//! entry is at fault; exceptions from ring 3 do enter ring 0 through the IDT and the
//! TSS. The kernel therefore completes such a system call from the page fault's trap
//! frame, which holds every register `SYSCALL` left (its number and arguments, `RCX`
//! the return address, `R11` the flags), and returns with `iretq`. On a CPU whose
//! `SYSCALL` works the fast path is unchanged, and ring 3 gains nothing: jumping to the
//! entry point is one more way to make a system call, with the return address and the
//! flags checked here, since the task chose them itself.

/// Page-fault error code bits (Intel SDM vol. 3, 4.7).
pub mod pf {
    /// The access was a write.
    pub const WRITE: u64 = 1 << 1;
    /// The access was made in user mode.
    pub const USER: u64 = 1 << 2;
    /// A reserved bit was set in a paging-structure entry.
    pub const RESERVED: u64 = 1 << 3;
    /// The access was an instruction fetch.
    pub const FETCH: u64 = 1 << 4;
}

/// The page-fault vector.
pub const PAGE_FAULT: u64 = 14;

/// Whether an exception taken in ring 3 is a `SYSCALL` whose privilege change did not
/// happen: a user-mode instruction fetch fault at the kernel's entry point `lstar`.
pub fn is_syscall(vector: u64, error: u64, rip: u64, cr2: u64, lstar: u64) -> bool {
    vector == PAGE_FAULT
        && error & (pf::USER | pf::FETCH) == pf::USER | pf::FETCH
        && error & (pf::WRITE | pf::RESERVED) == 0
        && rip == lstar
        && cr2 == lstar
}

/// The flags ring 3 may set for itself: carry, parity, adjust, zero, sign, direction and
/// overflow. Never `IOPL`, `TF`, `NT`, `AC` or `IF` (the kernel decides that one).
pub const USER_FLAGS: u64 = 0x0cd5;
/// Bit 1 of `RFLAGS`, always set.
pub const RFLAGS_FIXED: u64 = 0x2;
/// `RFLAGS.IF`.
pub const RFLAGS_IF: u64 = 1 << 9;
/// The first address past the lower (user) half of a 48-bit address space.
pub const USER_END: u64 = 0x0000_8000_0000_0000;

/// Where and how the task resumes after the system call: `rcx` as its `RIP` (a
/// user-half address, or `None`: the task gets `SIGSEGV`, as a `sysret` to a
/// non-canonical address would fault) and `r11` as its flags, keeping only
/// [`USER_FLAGS`], with interrupts as `interrupts` says.
pub fn user_return(rcx: u64, r11: u64, interrupts: bool) -> Option<(u64, u64)> {
    if rcx >= USER_END {
        return None;
    }
    let flags = (r11 & USER_FLAGS) | RFLAGS_FIXED | if interrupts { RFLAGS_IF } else { 0 };
    Some((rcx, flags))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LSTAR: u64 = 0xffff_ffff_8011_77bc;
    /// The error code's P bit: the page was present (a protection fault).
    const PRESENT: u64 = 1 << 0;
    /// What kvm-pvm reported for the memory server task's first system call.
    const KVM_PVM_ERROR: u64 = 0x15;

    #[test]
    fn the_fault_kvm_pvm_raises_is_a_system_call() {
        assert!(is_syscall(14, KVM_PVM_ERROR, LSTAR, LSTAR, LSTAR));
        // Not present (no such page) is the same entry: still the entry point.
        assert!(is_syscall(14, pf::USER | pf::FETCH, LSTAR, LSTAR, LSTAR));
    }

    #[test]
    fn other_faults_are_not_system_calls() {
        // Elsewhere, a data access, a write, a reserved bit, another vector, a kernel fetch.
        assert!(!is_syscall(14, KVM_PVM_ERROR, LSTAR + 1, LSTAR + 1, LSTAR));
        assert!(!is_syscall(14, PRESENT | pf::USER, LSTAR, LSTAR, LSTAR));
        assert!(!is_syscall(
            14,
            KVM_PVM_ERROR | pf::WRITE,
            LSTAR,
            LSTAR,
            LSTAR
        ));
        assert!(!is_syscall(
            14,
            KVM_PVM_ERROR | pf::RESERVED,
            LSTAR,
            LSTAR,
            LSTAR
        ));
        assert!(!is_syscall(13, KVM_PVM_ERROR, LSTAR, LSTAR, LSTAR));
        assert!(!is_syscall(14, PRESENT | pf::FETCH, LSTAR, LSTAR, LSTAR));
        // A fetch at the entry point, but the fault was for another address.
        assert!(!is_syscall(14, KVM_PVM_ERROR, LSTAR, 0x1000, LSTAR));
    }

    #[test]
    fn the_return_keeps_only_the_flags_a_task_may_set() {
        // IOPL 3, TF, NT, AC and IF asked for by a task that jumped to the entry itself.
        let hostile = 0x3000 | 0x100 | 0x4000 | 0x4_0000 | RFLAGS_IF | 0x0cd5;
        let (rip, flags) = user_return(0x40_1000, hostile, false).expect("a user address");
        assert_eq!(rip, 0x40_1000);
        assert_eq!(flags, 0x0cd5 | RFLAGS_FIXED);
        let (_, flags) = user_return(0x40_1000, 0, true).expect("a user address");
        assert_eq!(flags, RFLAGS_FIXED | RFLAGS_IF);
    }

    #[test]
    fn a_return_into_the_kernel_half_or_a_hole_is_refused() {
        assert_eq!(user_return(LSTAR, 0x202, false), None);
        assert_eq!(user_return(USER_END, 0x202, false), None);
        assert_eq!(user_return(0x0000_8000_0000_1000, 0x202, false), None);
        assert!(user_return(USER_END - 1, 0x202, false).is_some());
    }
}
