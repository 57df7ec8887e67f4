//! `setrlimit`, `setrlimit64`, `prlimit`, `prlimit64`: the host's call, then, when it
//! changed `RLIMIT_MEMLOCK` or `RLIMIT_AS`, a word to the server, which reads the
//! process's limits again from `/proc` (it never takes the process's word for them).

use crate::host;
use crate::log::debug;
use crate::mem::guarded;
use libc::{c_int, pid_t};
use memserver_hosted::c_abi;

/// After a successful change of `resource` for `pid` (0: this process).
fn tell_server(pid: pid_t, resource: c_int) {
    if resource != libc::RLIMIT_MEMLOCK as c_int && resource != libc::RLIMIT_AS as c_int {
        return;
    }
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let which = (pid != 0 && pid != me).then_some(pid);
    // ESRCH: that process is no client of the server; nothing to tell.
    let r = c_abi::limits_changed(which);
    debug(format_args!(
        "limits of {} changed (resource {resource}) -> server re-read them: {r:?}",
        which.unwrap_or(me)
    ));
}

/// `prlimit64(2)`.
///
/// # Safety
/// `new` null or readable, `old` null or writable, as an `rlimit64`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn prlimit64(
    pid: pid_t,
    resource: c_int,
    new: *const libc::rlimit64,
    old: *mut libc::rlimit64,
) -> c_int {
    // SAFETY: the caller's contract passes through.
    let r = unsafe { host::prlimit64(pid, resource, new, old) };
    if r == 0 && !new.is_null() {
        guarded(|| (), || tell_server(pid, resource));
    }
    r
}

/// `prlimit(2)`: `prlimit64` (`rlim_t` is 64 bits on x86-64).
///
/// # Safety
/// As [`prlimit64`].
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn prlimit(
    pid: pid_t,
    resource: c_int,
    new: *const libc::rlimit64,
    old: *mut libc::rlimit64,
) -> c_int {
    // SAFETY: the caller's contract is prlimit64's.
    unsafe { prlimit64(pid, resource, new, old) }
}

/// `setrlimit(2)`.
///
/// # Safety
/// `rlim` must be readable as an `rlimit`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn setrlimit(resource: c_int, rlim: *const libc::rlimit64) -> c_int {
    // SAFETY: the caller's contract passes through.
    unsafe { prlimit64(0, resource, rlim, std::ptr::null_mut()) }
}

/// `setrlimit64`: `setrlimit`.
///
/// # Safety
/// As [`setrlimit`].
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn setrlimit64(resource: c_int, rlim: *const libc::rlimit64) -> c_int {
    // SAFETY: the caller's contract passes through.
    unsafe { prlimit64(0, resource, rlim, std::ptr::null_mut()) }
}
