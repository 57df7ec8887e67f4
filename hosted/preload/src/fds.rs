//! The calls on descriptors that must know the server's: `shm_open` and `shm_unlink`
//! (POSIX shared memory lives in the server), and `close`, `ftruncate`, `fstat` (and
//! their large-file aliases), which the C ABI's `ms_*` give to the server for its fds
//! and to the host for every other.

use crate::host;
use crate::log::debug;
use crate::mem::guarded;
use crate::route;
use libc::{c_char, c_int, mode_t, off_t};
use memserver_hosted::c_abi;

/// `shm_open(3)`: an object of the server's (`-1` with the connection's errno when the
/// server cannot be reached).
///
/// # Safety
/// `name` must be a NUL-terminated string.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn shm_open(name: *const c_char, oflag: c_int, mode: mode_t) -> c_int {
    guarded(
        || {
            // Inside the runtime nothing opens shm objects: refuse rather than guess.
            crate::mem::set_errno(libc::ENOSYS);
            -1
        },
        || {
            if let Err(e) = route::windows() {
                crate::mem::set_errno(e);
                return -1;
            }
            let fd = c_abi::ms_shm_open(name, oflag, mode);
            debug(format_args!("shm_open -> server: fd {fd}"));
            fd
        },
    )
}

/// `shm_unlink(3)`: a name of the server's.
///
/// # Safety
/// `name` must be a NUL-terminated string.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn shm_unlink(name: *const c_char) -> c_int {
    guarded(
        || {
            crate::mem::set_errno(libc::ENOSYS);
            -1
        },
        || {
            if let Err(e) = route::windows() {
                crate::mem::set_errno(e);
                return -1;
            }
            let r = c_abi::ms_shm_unlink(name);
            debug(format_args!("shm_unlink -> server: {r}"));
            r
        },
    )
}

/// `close(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn close(fd: c_int) -> c_int {
    guarded(|| host::close(fd), || c_abi::ms_close(fd))
}

/// `ftruncate(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn ftruncate(fd: c_int, len: off_t) -> c_int {
    guarded(|| host::ftruncate(fd, len), || c_abi::ms_ftruncate(fd, len))
}

/// `ftruncate64`: `ftruncate` (`off_t` is 64 bits on x86-64).
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn ftruncate64(fd: c_int, len: off_t) -> c_int {
    ftruncate(fd, len)
}

/// `fstat(2)`.
///
/// # Safety
/// `st` must be valid for writes of a `struct stat`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn fstat(fd: c_int, st: *mut libc::stat) -> c_int {
    guarded(
        // SAFETY: the caller's contract passes through.
        || unsafe { host::fstat(fd, st) },
        // SAFETY: the caller's contract passes through.
        || unsafe { c_abi::ms_fstat(fd, st) },
    )
}

/// `fstat64`: `fstat` (`struct stat64` is `struct stat` on x86-64).
///
/// # Safety
/// As [`fstat`].
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn fstat64(fd: c_int, st: *mut libc::stat) -> c_int {
    // SAFETY: the caller's contract is fstat's.
    unsafe { fstat(fd, st) }
}
