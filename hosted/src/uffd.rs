//! Linux's `userfaultfd`: page faults of one process delivered as messages to whoever
//! holds the descriptor, resolved with ioctls that place a page (copy, zero page, the
//! page a shared memory file already holds), change write protection or poison.
//!
//! The client creates its descriptor (faults of its own address space) and hands it to
//! `memserverd`; the server reads its faults and resolves them. Only the calls the
//! hosted runtime uses are here, with the kernel's structures (`linux/userfaultfd.h`).

use rustix::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::io;

const UFFDIO: u64 = 0xAA;

const fn iowr(nr: u64, size: usize) -> u64 {
    (3 << 30) | ((size as u64) << 16) | (UFFDIO << 8) | nr
}

const fn ior(nr: u64, size: usize) -> u64 {
    (2 << 30) | ((size as u64) << 16) | (UFFDIO << 8) | nr
}

/// `UFFD_API`.
const API: u64 = 0xAA;

/// Deliver `fork` as an event carrying the child's descriptor.
pub const FEATURE_EVENT_FORK: u64 = 1 << 1;
/// `MISSING` faults on shared memory files.
pub const FEATURE_MISSING_SHMEM: u64 = 1 << 5;
/// Faults report the faulting thread.
pub const FEATURE_THREAD_ID: u64 = 1 << 8;
/// `MINOR` faults (page in the file, not in the page table) on shared memory files.
pub const FEATURE_MINOR_SHMEM: u64 = 1 << 10;
/// Write protection on shared memory files.
pub const FEATURE_WP_SHMEM: u64 = 1 << 12;
/// `UFFDIO_POISON`.
pub const FEATURE_POISON: u64 = 1 << 14;
/// What the hosted runtime needs. Not fork events: a forked child makes a descriptor
/// of its own (its inherited mappings lose their registration at `fork`), so a `fork`
/// never waits for the server.
pub const FEATURES: u64 = FEATURE_MISSING_SHMEM
    | FEATURE_THREAD_ID
    | FEATURE_MINOR_SHMEM
    | FEATURE_WP_SHMEM
    | FEATURE_POISON;

/// Register for faults on absent pages.
pub const MODE_MISSING: u64 = 1;
/// Register for writes to write-protected pages.
pub const MODE_WP: u64 = 2;
/// Register for faults on pages the file holds but the page table lacks.
pub const MODE_MINOR: u64 = 4;

/// The fault was a write.
pub const FLAG_WRITE: u64 = 1;
/// The fault was a write to a write-protected page.
pub const FLAG_WP: u64 = 2;
/// The fault was minor (the file holds the page).
pub const FLAG_MINOR: u64 = 4;

const EVENT_PAGEFAULT: u8 = 0x12;
const EVENT_FORK: u8 = 0x13;

#[repr(C)]
#[derive(Default)]
struct ApiArg {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Range {
    start: u64,
    len: u64,
}

#[repr(C)]
#[derive(Default)]
struct RegisterArg {
    range: Range,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
#[derive(Default)]
struct CopyArg {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    copy: i64,
}

#[repr(C)]
#[derive(Default)]
struct RangeModeArg {
    range: Range,
    mode: u64,
    result: i64,
}

#[repr(C)]
#[derive(Default)]
struct WriteProtectArg {
    range: Range,
    mode: u64,
}

const IOC_API: u64 = iowr(0x3F, size_of::<ApiArg>());
const IOC_REGISTER: u64 = iowr(0x00, size_of::<RegisterArg>());
const IOC_WAKE: u64 = ior(0x02, size_of::<Range>());
const IOC_COPY: u64 = iowr(0x03, size_of::<CopyArg>());
const IOC_WRITEPROTECT: u64 = iowr(0x06, size_of::<WriteProtectArg>());
const IOC_CONTINUE: u64 = iowr(0x07, size_of::<RangeModeArg>());
const IOC_POISON: u64 = iowr(0x08, size_of::<RangeModeArg>());

/// One event read from a descriptor.
#[derive(Debug)]
pub enum Event {
    /// A thread faulted at `addr` (`FLAG_*` in `flags`) and waits.
    Fault {
        /// Faulting address.
        addr: u64,
        /// `FLAG_WRITE`, `FLAG_WP`, `FLAG_MINOR`.
        flags: u64,
        /// The faulting thread (its id in the process's pid namespace).
        tid: u32,
    },
    /// The process forked: the child's descriptor, now open in this process.
    Fork(OwnedFd),
    /// Something this runtime did not ask for.
    Other,
}

/// Why an ioctl failed, in the terms the server acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A page is there already.
    Exists,
    /// The range is not (or no longer) registered, or the address space changed:
    /// the thread will fault again.
    Gone,
    /// The file holds no page there (`UFFDIO_CONTINUE`).
    NoPage,
    /// Anything else (the errno).
    Other(i32),
}

/// A userfaultfd descriptor.
pub struct Uffd(OwnedFd);

fn ioctl<T>(fd: BorrowedFd<'_>, req: u64, arg: &mut T) -> Result<(), Refusal> {
    // SAFETY: `req` is one of the userfaultfd ioctls above, each taking a pointer to
    // the `repr(C)` structure `T` it was defined with; `arg` is valid for its duration.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, arg as *mut T) };
    if r == 0 {
        return Ok(());
    }
    match io::Error::last_os_error().raw_os_error().unwrap_or(0) {
        libc::EEXIST => Err(Refusal::Exists),
        libc::ENOENT | libc::EAGAIN | libc::ESRCH | libc::EINVAL => Err(Refusal::Gone),
        libc::EFAULT => Err(Refusal::NoPage),
        e => Err(Refusal::Other(e)),
    }
}

impl Uffd {
    /// A descriptor for this process's faults, with [`FEATURES`]. Faults in kernel
    /// mode (a `read(2)` into a lazily mapped buffer) need the privilege to ask for
    /// them; without it the descriptor reports user-mode faults only and the second value
    /// is `false`.
    pub fn create() -> io::Result<(Uffd, bool)> {
        Self::create_with(FEATURES)
    }

    /// [`create`](Self::create) asking for `features` instead.
    pub fn create_with(features: u64) -> io::Result<(Uffd, bool)> {
        let flags = libc::O_CLOEXEC | libc::O_NONBLOCK;
        // SAFETY: the userfaultfd system call takes only flags and returns a new fd.
        let mut fd = unsafe { libc::syscall(libc::SYS_userfaultfd, flags) };
        let mut kernel_faults = true;
        if fd < 0 {
            const USER_MODE_ONLY: i32 = 1;
            kernel_faults = false;
            // SAFETY: as above.
            fd = unsafe { libc::syscall(libc::SYS_userfaultfd, flags | USER_MODE_ONLY) };
        }
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is the new descriptor the kernel just returned, owned by nobody else.
        let u = Uffd(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        let mut api = ApiArg {
            api: API,
            features,
            ioctls: 0,
        };
        ioctl(u.0.as_fd(), IOC_API, &mut api)
            .map_err(|_| io::Error::other("userfaultfd lacks the features memserver needs"))?;
        Ok((u, kernel_faults))
    }

    /// Wraps a descriptor received from elsewhere.
    pub fn from_fd(fd: OwnedFd) -> Uffd {
        Uffd(fd)
    }

    /// Wraps a descriptor received from elsewhere if it is a userfaultfd (a client that
    /// hands over anything else is refused).
    pub fn checked(fd: OwnedFd) -> Option<Uffd> {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
        (link.as_os_str() == "anon_inode:[userfaultfd]").then_some(Uffd(fd))
    }

    /// The descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }

    /// Registers `[start, start + len)` (whole mappings) for the `MODE_*` in `mode`.
    pub fn register(&self, start: u64, len: u64, mode: u64) -> Result<(), Refusal> {
        let mut a = RegisterArg {
            range: Range { start, len },
            mode,
            ioctls: 0,
        };
        ioctl(self.fd(), IOC_REGISTER, &mut a)
    }

    /// Places a copy of the page at `src` at `dst`, write-protected if `wp`.
    pub fn copy(&self, dst: u64, src: &[u8; 4096], wp: bool) -> Result<(), Refusal> {
        let mut a = CopyArg {
            dst,
            src: src.as_ptr() as u64,
            len: 4096,
            mode: if wp { 2 } else { 0 },
            copy: 0,
        };
        ioctl(self.fd(), IOC_COPY, &mut a)
    }

    /// Maps the page the shared memory file already holds at `dst`, write-protected if
    /// `wp`.
    pub fn continue_at(&self, dst: u64, wp: bool) -> Result<(), Refusal> {
        let mut a = RangeModeArg {
            range: Range {
                start: dst,
                len: 4096,
            },
            mode: if wp { 2 } else { 0 },
            result: 0,
        };
        ioctl(self.fd(), IOC_CONTINUE, &mut a)
    }

    /// Sets (`wp`) or clears write protection of the present pages of the range.
    pub fn write_protect(&self, start: u64, len: u64, wp: bool) -> Result<(), Refusal> {
        let mut a = WriteProtectArg {
            range: Range { start, len },
            mode: u64::from(wp),
        };
        ioctl(self.fd(), IOC_WRITEPROTECT, &mut a)
    }

    /// Marks the page at `dst` poisoned: the access faulting there gets `SIGBUS`.
    pub fn poison(&self, dst: u64) -> Result<(), Refusal> {
        let mut a = RangeModeArg {
            range: Range {
                start: dst,
                len: 4096,
            },
            ..Default::default()
        };
        ioctl(self.fd(), IOC_POISON, &mut a)
    }

    /// Wakes the threads waiting on faults in the range.
    pub fn wake(&self, start: u64, len: u64) {
        let mut r = Range { start, len };
        let _ = ioctl(self.fd(), IOC_WAKE, &mut r);
    }

    /// Reads the next event; `None` when none is waiting (or the process is gone).
    pub fn read_event(&self) -> Option<Event> {
        let mut msg = [0u8; 32];
        match rustix::io::read(self.fd(), &mut msg) {
            Ok(32) => {}
            _ => return None,
        }
        let word = |i: usize| u64::from_le_bytes(msg[i..i + 8].try_into().unwrap_or([0; 8]));
        Some(match msg[0] {
            EVENT_PAGEFAULT => Event::Fault {
                flags: word(8),
                addr: word(16),
                tid: u32::from_le_bytes(msg[24..28].try_into().unwrap_or([0; 4])),
            },
            EVENT_FORK => {
                let fd = i32::from_le_bytes(msg[8..12].try_into().unwrap_or([0xff; 4]));
                if fd < 0 {
                    return Some(Event::Other);
                }
                // SAFETY: the kernel installed the child's descriptor in this process for
                // the reader of the event, which takes ownership of it here.
                Event::Fork(unsafe { OwnedFd::from_raw_fd(fd) })
            }
            _ => Event::Other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_are_the_kernels() {
        // From linux/userfaultfd.h on x86-64.
        assert_eq!(IOC_API, 0xc018_aa3f);
        assert_eq!(IOC_REGISTER, 0xc020_aa00);
        assert_eq!(IOC_WAKE, 0x8010_aa02);
        assert_eq!(IOC_COPY, 0xc028_aa03);
        assert_eq!(IOC_WRITEPROTECT, 0xc018_aa06);
        assert_eq!(IOC_CONTINUE, 0xc020_aa07);
        assert_eq!(IOC_POISON, 0xc020_aa08);
    }
}
