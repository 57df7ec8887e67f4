//! The host kernel's calls, as raw system calls: libc's own `mmap`, `close`, ... would
//! be ours again. Each returns what the C function returns (`-1` or `MAP_FAILED` with
//! `errno` set by `syscall`).

use libc::{c_int, c_long, c_void, off_t};

fn long(r: c_long) -> c_int {
    r as c_int
}

/// `mmap(2)`.
pub fn mmap(addr: u64, len: u64, prot: c_int, flags: c_int, fd: c_int, off: off_t) -> *mut c_void {
    // SAFETY: the raw system call with the caller's arguments; the kernel validates
    // them, and mapping over the caller's own memory is what the caller asked.
    unsafe { libc::syscall(libc::SYS_mmap, addr, len, prot, flags, fd, off) as *mut c_void }
}

/// `munmap(2)`.
pub fn munmap(addr: u64, len: u64) -> c_int {
    // SAFETY: as `mmap`: the caller's own request of the kernel.
    long(unsafe { libc::syscall(libc::SYS_munmap, addr, len) })
}

/// `mprotect(2)`.
pub fn mprotect(addr: u64, len: u64, prot: c_int) -> c_int {
    // SAFETY: as `mmap`.
    long(unsafe { libc::syscall(libc::SYS_mprotect, addr, len, prot) })
}

/// `madvise(2)`.
pub fn madvise(addr: u64, len: u64, advice: c_int) -> c_int {
    // SAFETY: as `mmap`.
    long(unsafe { libc::syscall(libc::SYS_madvise, addr, len, advice) })
}

/// `msync(2)`.
pub fn msync(addr: u64, len: u64, flags: c_int) -> c_int {
    // SAFETY: as `mmap`.
    long(unsafe { libc::syscall(libc::SYS_msync, addr, len, flags) })
}

/// `mlock(2)`.
pub fn mlock(addr: u64, len: u64) -> c_int {
    // SAFETY: as `mmap`.
    long(unsafe { libc::syscall(libc::SYS_mlock, addr, len) })
}

/// `mlock2(2)` with `MLOCK_ONFAULT`.
pub fn mlock_onfault(addr: u64, len: u64) -> c_int {
    // SAFETY: as `mmap`.
    long(unsafe { libc::syscall(libc::SYS_mlock2, addr, len, libc::MLOCK_ONFAULT) })
}

/// `munlock(2)`.
pub fn munlock(addr: u64, len: u64) -> c_int {
    // SAFETY: as `mmap`.
    long(unsafe { libc::syscall(libc::SYS_munlock, addr, len) })
}

/// `munlockall(2)`.
pub fn munlockall() -> c_int {
    // SAFETY: no arguments.
    long(unsafe { libc::syscall(libc::SYS_munlockall) })
}

/// `mremap(2)`.
pub fn mremap(old: u64, old_len: u64, new_len: u64, flags: c_int, new_addr: u64) -> *mut c_void {
    // SAFETY: as `mmap`.
    unsafe {
        libc::syscall(libc::SYS_mremap, old, old_len, new_len, flags, new_addr) as *mut c_void
    }
}

/// `close(2)`.
pub fn close(fd: c_int) -> c_int {
    // SAFETY: closing a descriptor is the caller's request.
    long(unsafe { libc::syscall(libc::SYS_close, fd) })
}

/// `ftruncate(2)`.
pub fn ftruncate(fd: c_int, len: off_t) -> c_int {
    // SAFETY: as `close`.
    long(unsafe { libc::syscall(libc::SYS_ftruncate, fd, len) })
}

/// `fstat(2)`: the kernel's `struct stat` is glibc's on x86-64.
///
/// # Safety
/// `st` must be valid for writes of a `struct stat` (or the kernel answers `EFAULT`).
pub unsafe fn fstat(fd: c_int, st: *mut libc::stat) -> c_int {
    // SAFETY: the kernel writes at most one `struct stat` to `st`, which the caller
    // vouches for (an invalid pointer is EFAULT, not undefined behaviour, for a system
    // call).
    long(unsafe { libc::syscall(libc::SYS_fstat, fd, st) })
}

/// `prlimit64(2)`: `new` and `old` may be null.
///
/// # Safety
/// `new` must be null or readable, `old` null or writable, as an `rlimit64`.
pub unsafe fn prlimit64(
    pid: libc::pid_t,
    resource: c_int,
    new: *const libc::rlimit64,
    old: *mut libc::rlimit64,
) -> c_int {
    // SAFETY: the kernel reads `new` and writes `old` (the caller's pointers, EFAULT if
    // bad).
    long(unsafe { libc::syscall(libc::SYS_prlimit64, pid, resource, new, old) })
}
