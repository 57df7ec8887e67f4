//! The memory calls: the server's in its windows and for new mappings without an
//! address, the host's everywhere else.

use crate::guard::enter;
use crate::host;
use crate::log::debug;
use crate::route::{self, Route, Windows};
use libc::{c_int, c_void, off_t, size_t};
use memserver_hosted::c_abi;

/// Runs `ours` inside a call, or `host` when this thread already is in one.
pub fn guarded<T>(host: impl FnOnce() -> T, ours: impl FnOnce() -> T) -> T {
    match enter() {
        Some(_inside) => ours(),
        None => host(),
    }
}

pub(crate) use memserver_hosted::c_abi::set_errno;

pub(crate) fn errno() -> c_int {
    // SAFETY: as `set_errno`.
    unsafe { *libc::__errno_location() }
}

/// A range call (`munmap`, `mprotect`, ...): the server's part through `server`, the
/// host's through `host`; a range crossing a window's edge is cut there and the first
/// failure is the answer.
fn ranged(
    name: &str,
    addr: u64,
    len: u64,
    server: impl Fn(u64, u64) -> c_int,
    host: impl Fn(u64, u64) -> c_int,
) -> c_int {
    let (r, whose) = match route::range(addr, len) {
        Route::Server => (server(addr, len), "server"),
        Route::Host => (host(addr, len), "host"),
        Route::Split(pieces) => {
            let (mut r, mut e) = (0, 0);
            for ((a, b), servers) in pieces.into_iter().flatten() {
                let ri = if servers {
                    server(a, b - a)
                } else {
                    host(a, b - a)
                };
                if ri != 0 && r == 0 {
                    r = -1;
                    e = errno();
                }
            }
            set_errno(e);
            (r, "server and host")
        }
    };
    debug(format_args!(
        "{name}({addr:#x}, {len:#x}) -> {whose}: {r}{}",
        errno_note(r)
    ));
    r
}

fn errno_note(r: c_int) -> ErrnoNote {
    ErrnoNote((r == -1).then(errno))
}

struct ErrnoNote(Option<c_int>);

impl std::fmt::Display for ErrnoNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(e) => write!(f, " (errno {e})"),
            None => Ok(()),
        }
    }
}

/// `mmap(2)`: a new mapping without an address, or in a window, is the server's
/// (an fd the server does not map, `ENODEV`, is then the host's, anywhere);
/// one at or hinted at an address outside the windows is the host's.
///
/// # Safety
/// As `mmap(2)`: `MAP_FIXED` replaces whatever the caller had at `addr`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn mmap(
    addr: *mut c_void,
    len: size_t,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: off_t,
) -> *mut c_void {
    let Some(_inside) = enter() else {
        return host::mmap(addr as u64, len as u64, prot, flags, fd, off);
    };
    let fixed = flags & (libc::MAP_FIXED | libc::MAP_FIXED_NOREPLACE) != 0;
    let route = match route::new_mapping(addr as u64, len as u64, fixed) {
        Ok(r) => r,
        Err(e) => {
            debug(format_args!(
                "mmap({addr:p}, {len:#x}, fd {fd}) -> refused (errno {e})"
            ));
            set_errno(e);
            return libc::MAP_FAILED;
        }
    };
    if route == Route::Host {
        let r = host::mmap(addr as u64, len as u64, prot, flags, fd, off);
        debug(format_args!(
            "mmap({addr:p}, {len:#x}, fd {fd}) -> host (outside the windows): {r:p}"
        ));
        return r;
    }
    let r = c_abi::ms_mmap(addr, len, prot, flags, fd, off);
    if r == libc::MAP_FAILED && errno() == libc::ENODEV && fd >= 0 && !fixed {
        // An fd the server does not map (not a regular file: a device, a pipe): the
        // host maps it, where it likes.
        let r = host::mmap(0, len as u64, prot, flags, fd, off);
        debug(format_args!(
            "mmap({addr:p}, {len:#x}, fd {fd}) -> host (the server does not map this fd): {r:p}"
        ));
        return r;
    }
    debug(format_args!(
        "mmap({addr:p}, {len:#x}, fd {fd}) -> server: {r:p}{}",
        ErrnoNote((r == libc::MAP_FAILED).then(errno))
    ));
    r
}

/// `mmap64`: `mmap` (`off_t` is 64 bits on x86-64).
///
/// # Safety
/// As [`mmap`].
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn mmap64(
    addr: *mut c_void,
    len: size_t,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: off_t,
) -> *mut c_void {
    // SAFETY: the caller's contract is mmap's.
    unsafe { mmap(addr, len, prot, flags, fd, off) }
}

/// `munmap(2)`.
///
/// # Safety
/// As `munmap(2)`: the caller gives up the range.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn munmap(addr: *mut c_void, len: size_t) -> c_int {
    let (a, l) = (addr as u64, len as u64);
    guarded(
        || host::munmap(a, l),
        || {
            ranged(
                "munmap",
                a,
                l,
                |a, l| c_abi::ms_munmap(a as *mut c_void, l as size_t),
                host::munmap,
            )
        },
    )
}

/// `mprotect(2)`.
///
/// # Safety
/// As `mprotect(2)`: the caller changes its own memory's access.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn mprotect(addr: *mut c_void, len: size_t, prot: c_int) -> c_int {
    let (a, l) = (addr as u64, len as u64);
    guarded(
        || host::mprotect(a, l, prot),
        || {
            ranged(
                "mprotect",
                a,
                l,
                |a, l| c_abi::ms_mprotect(a as *mut c_void, l as size_t, prot),
                |a, l| host::mprotect(a, l, prot),
            )
        },
    )
}

/// `madvise(2)`.
///
/// # Safety
/// As `madvise(2)`: `MADV_DONTNEED` drops the caller's private bytes.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn madvise(addr: *mut c_void, len: size_t, advice: c_int) -> c_int {
    let (a, l) = (addr as u64, len as u64);
    guarded(
        || host::madvise(a, l, advice),
        || {
            ranged(
                "madvise",
                a,
                l,
                |a, l| c_abi::ms_madvise(a as *mut c_void, l as size_t, advice),
                |a, l| host::madvise(a, l, advice),
            )
        },
    )
}

/// `msync(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn msync(addr: *mut c_void, len: size_t, flags: c_int) -> c_int {
    let (a, l) = (addr as u64, len as u64);
    guarded(
        || host::msync(a, l, flags),
        || {
            ranged(
                "msync",
                a,
                l,
                |a, l| c_abi::ms_msync(a as *mut c_void, l as size_t, flags),
                |a, l| host::msync(a, l, flags),
            )
        },
    )
}

/// `mlock(2)`: the server pins its pages, the host its own.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn mlock(addr: *const c_void, len: size_t) -> c_int {
    let (a, l) = (addr as u64, len as u64);
    guarded(
        || host::mlock(a, l),
        || {
            ranged(
                "mlock",
                a,
                l,
                |a, l| c_abi::ms_mlock(a as *const c_void, l as size_t),
                host::mlock,
            )
        },
    )
}

/// `munlock(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn munlock(addr: *const c_void, len: size_t) -> c_int {
    let (a, l) = (addr as u64, len as u64);
    guarded(
        || host::munlock(a, l),
        || {
            ranged(
                "munlock",
                a,
                l,
                |a, l| c_abi::ms_munlock(a as *const c_void, l as size_t),
                host::munlock,
            )
        },
    )
}

/// `mremap(2)`: a mapping in a window is moved by the server, any other by the host.
/// `new_addr` is read only with `MREMAP_FIXED` (C passes it as the fifth, variadic
/// argument; a fixed fifth parameter is ABI-compatible on x86-64).
///
/// # Safety
/// As `mremap(2)`: the old range is the caller's to move.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn mremap(
    old: *mut c_void,
    old_len: size_t,
    new_len: size_t,
    flags: c_int,
    new_addr: *mut c_void,
) -> *mut c_void {
    guarded(
        || {
            host::mremap(
                old as u64,
                old_len as u64,
                new_len as u64,
                flags,
                new_addr as u64,
            )
        },
        || {
            let (r, whose) = match route::range(old as u64, old_len as u64) {
                Route::Server => (
                    c_abi::ms_mremap(old, old_len, new_len, flags, new_addr),
                    "server",
                ),
                Route::Host if moves_into_window(flags, new_addr as u64, new_len as u64) => {
                    // The host would place it over whatever the server has there.
                    set_errno(libc::EINVAL);
                    (libc::MAP_FAILED, "refused (a host mapping into a window)")
                }
                Route::Host => (
                    host::mremap(
                        old as u64,
                        old_len as u64,
                        new_len as u64,
                        flags,
                        new_addr as u64,
                    ),
                    "host",
                ),
                Route::Split(_) => {
                    // One mapping is never both's: the range names two.
                    set_errno(libc::EFAULT);
                    (libc::MAP_FAILED, "refused (crosses a window edge)")
                }
            };
            debug(format_args!(
                "mremap({old:p}, {old_len:#x}, {new_len:#x}) -> {whose}: {r:p}{}",
                ErrnoNote((r == libc::MAP_FAILED).then(errno))
            ));
            r
        },
    )
}

/// Whether an `mremap` with `flags` moves its mapping to `[new, new + len)` touching the
/// server's windows.
fn moves_into_window(flags: c_int, new: u64, len: u64) -> bool {
    flags & libc::MREMAP_FIXED != 0
        && route::windows().is_ok_and(|ws| route::classify(new, len, &ws) != Route::Host)
}

/// `mlockall(2)`: the server locks every mapping in its windows (and with `MCL_FUTURE`
/// each later one); the host's part is every mapping outside them now (the
/// program image, heap, stacks), locked with `mlock` (`mlock2(MLOCK_ONFAULT)` for
/// `MCL_ONFAULT`). `MCL_FUTURE` is not passed to the host: the host would then lock and
/// fill the windows' own host mappings as the runtime makes them, before the server
/// places their pages. So host mappings made after the call are not locked.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn mlockall(flags: c_int) -> c_int {
    guarded(
        // SAFETY: the raw system call with the caller's flags.
        || unsafe { libc::syscall(libc::SYS_mlockall, flags) as c_int },
        || {
            let windows = route::windows();
            let mut r = match windows {
                Ok(_) => c_abi::ms_mlockall(flags),
                // Nothing of this process is the server's: the host's part is all.
                Err(_) => 0,
            };
            if r == 0 && flags & libc::MCL_CURRENT != 0 {
                r = lock_host_mappings(windows.ok(), flags & libc::MCL_ONFAULT != 0);
            }
            debug(format_args!(
                "mlockall({flags:#x}) -> server and host: {r}{}",
                errno_note(r)
            ));
            r
        },
    )
}

/// Locks every accessible mapping of the process outside the server's `windows` (read
/// from `/proc/self/maps`): `0`, or `-1` with the first refusal's errno.
fn lock_host_mappings(windows: Option<Windows>, onfault: bool) -> c_int {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return -1;
    };
    let mut first_err = None;
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        let Some((s, e)) = range.split_once('-') else {
            continue;
        };
        let (Ok(s), Ok(e)) = (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16)) else {
            continue;
        };
        let in_window = windows.is_some_and(|ws| ws.iter().any(|&(lo, hi)| s >= lo && e <= hi));
        // Linux's mlockall skips what cannot be faulted in: PROT_NONE mappings (guard
        // pages, reservations) and the vsyscall page above user space.
        let no_access = perms.starts_with("---");
        if in_window || no_access || s >= 0x8000_0000_0000 {
            continue;
        }
        let r = if onfault {
            host::mlock_onfault(s, e - s)
        } else {
            host::mlock(s, e - s)
        };
        if r != 0 && first_err.is_none() {
            first_err = Some(errno());
        }
    }
    match first_err {
        Some(e) => {
            set_errno(e);
            -1
        }
        None => 0,
    }
}

/// `munlockall(2)`: the server's part and the host's.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn munlockall() -> c_int {
    guarded(host::munlockall, || {
        let server = match route::windows() {
            Ok(_) => c_abi::ms_munlockall(),
            Err(_) => 0,
        };
        let e = errno();
        let host = host::munlockall();
        let r = if server != 0 {
            set_errno(e);
            -1
        } else {
            host
        };
        debug(format_args!(
            "munlockall() -> server and host: {r}{}",
            errno_note(r)
        ));
        r
    })
}
