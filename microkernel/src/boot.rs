//! From QEMU's PVH entry (32-bit protected mode, paging off) to `kmain` in long mode.
//!
//! The boot page tables map physical 0..4 GiB three times with 2 MiB pages: at 0
//! (identity, only for the jump), at [`DIRECT_MAP`] (PML4 entry 256: the direct map the
//! kernel stub reaches frames through) and the first GiB at [`KVMA`] (PML4 entry 511: the
//! kernel image, linked at `KVMA + 1 MiB`). Every address space the stub makes copies
//! entries 256..512 of this PML4, so the kernel stays mapped whichever space is loaded.

/// Where the kernel image is linked: physical `p` is at `KVMA + p`.
pub const KVMA: u64 = 0xffff_ffff_8000_0000;
/// Where all physical memory below 4 GiB is mapped: physical `p` is at `DIRECT_MAP + p`.
pub const DIRECT_MAP: u64 = 0xffff_8000_0000_0000;
/// How much physical memory the direct map covers.
pub const DIRECT_MAP_SIZE: u64 = 4 << 30;

core::arch::global_asm!(
    r#"
.set KVMA, 0xffffffff80000000

/* The PVH ELF note: XEN_ELFNOTE_PHYS32_ENTRY (18), the 32-bit physical entry point. */
.section .note.pvh, "a", @note
.p2align 2
.long 4
.long 4
.long 18
.asciz "Xen"
.p2align 2
.long pvh_start - KVMA

.section .boot, "ax"
.code32
.global pvh_start
pvh_start:
    cli
    cld
    mov %ebx, %esi
    /* zero .bss: page tables and the boot stack live there */
    mov $(__bss_start - KVMA), %edi
    mov $(__bss_end - KVMA), %ecx
    sub %edi, %ecx
    shr $2, %ecx
    xor %eax, %eax
    rep stosl
    /* four page directories: 0..4 GiB in 2 MiB pages (present, writable, large) */
    mov $(boot_pd - KVMA), %edi
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax
    mov %eax, (%edi,%ecx,8)
    movl $0, 4(%edi,%ecx,8)
    inc %ecx
    cmp $2048, %ecx
    jb 1b
    /* low PDPT: entries 0..3 -> the four directories */
    mov $(boot_pdpt - KVMA), %edi
    mov $(boot_pd - KVMA + 3), %eax
    mov %eax, 0(%edi)
    add $4096, %eax
    mov %eax, 8(%edi)
    add $4096, %eax
    mov %eax, 16(%edi)
    add $4096, %eax
    mov %eax, 24(%edi)
    /* high PDPT: entry 510 (-2 GiB) -> the first directory (physical 0..1 GiB) */
    mov $(boot_pdpt_hi - KVMA), %edi
    mov $(boot_pd - KVMA + 3), %eax
    mov %eax, 4080(%edi)
    /* PML4: 0 and 256 -> low PDPT, 511 -> high PDPT */
    mov $(boot_pml4 - KVMA), %edi
    mov $(boot_pdpt - KVMA + 3), %eax
    mov %eax, 0(%edi)
    mov %eax, 2048(%edi)
    mov $(boot_pdpt_hi - KVMA + 3), %eax
    mov %eax, 4088(%edi)
    /* PAE, then CR3, then EFER.LME|NXE, then paging with write protection */
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov $(boot_pml4 - KVMA), %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx
    rdmsr
    or $0x900, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80010001, %eax
    mov %eax, %cr0
    lgdt (boot_gdt_ptr32 - KVMA)
    ljmp $0x08, $(long_low - KVMA)

.code64
long_low:
    movabs $long_high, %rax
    jmp *%rax
long_high:
    movabs $boot_gdt_ptr64, %rax
    lgdt (%rax)
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    movabs $boot_stack_top, %rsp
    mov %esi, %edi
    call kmain
2:  hlt
    jmp 2b

.section .rodata
.p2align 3
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
boot_gdt_end:
boot_gdt_ptr32:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt - KVMA
.p2align 3
boot_gdt_ptr64:
    .word boot_gdt_end - boot_gdt - 1
    .quad boot_gdt

.section .bss
.p2align 12
.global boot_pml4
boot_pml4: .skip 4096
boot_pdpt: .skip 4096
boot_pdpt_hi: .skip 4096
boot_pd: .skip 4096 * 4
boot_stack: .skip 1048576
boot_stack_top:
"#,
    options(att_syntax)
);

unsafe extern "C" {
    static mut boot_pml4: [u64; 512];
    static __kernel_end: u8;
}

/// Physical address of the boot PML4: the kernel's own address space and the template
/// whose upper half every client space copies.
pub fn kernel_root_phys() -> u64 {
    let va = core::ptr::addr_of!(boot_pml4) as u64;
    va - KVMA
}

/// First physical address past the kernel image.
pub fn kernel_end_phys() -> u64 {
    let va = core::ptr::addr_of!(__kernel_end) as u64;
    va - KVMA
}
