//! Makes the host mappings the server decided: each region of the window one host
//! mapping (private anonymous memory, or a memory object's memfd), registered with the
//! process's userfaultfd so its pages come from the server alone; or the process's own
//! regular file, which is not registered (the kernel refuses it: the host's page cache
//! serves its faults).
//!
//! Only the window is touched: an operation outside it (which the server never sends)
//! is ignored, so a forged one cannot clobber the program's own memory.

use crate::uffd::{MODE_MINOR, MODE_MISSING, MODE_WP, Uffd};
use crate::wire::{HostOp, HostProt, RemapBacking, Setup};
use ipc_proto::Errno;
use rustix::fd::BorrowedFd;
use rustix::mm::{MapFlags, MprotectFlags, MremapFlags, ProtFlags};

/// Registration of private anonymous memory: absent pages and write protection.
pub const ANON_MODE: u64 = MODE_MISSING | MODE_WP;
/// Registration of a memfd mapping: also pages the memfd holds but the process's page
/// table lacks (so the server sees every first touch, and dirty tracking works).
pub const OBJECT_MODE: u64 = MODE_MISSING | MODE_MINOR | MODE_WP;

fn prot(p: HostProt) -> ProtFlags {
    ProtFlags::from_bits_truncate(u32::from(p) & 0x7)
}

/// Leaves nothing at `[addr, addr + len)`: an access there is the host's `SIGSEGV` with
/// `SEGV_MAPERR`, as on Linux after `munmap`.
fn unmap(addr: u64, len: u64) {
    // SAFETY: inside the window (checked by every caller), which the runtime owns.
    let _ = unsafe { rustix::mm::munmap(addr as *mut _, len as usize) };
}

/// Applies one operation; `fd` is the descriptor a `MapObject` or `MapFile` takes. Only
/// a host file the host will not map (a file system without `mmap`) is an error: the
/// caller takes the server's mapping back.
pub fn apply(
    uffd: &Uffd,
    setup: &Setup,
    op: HostOp,
    fd: Option<BorrowedFd<'_>>,
) -> Result<(), Errno> {
    // SAFETY (for every block below): the ranges lie in the window (checked first),
    // which the runtime reserved and alone maps into; the program reaches it only
    // through addresses the server gave it, and changing what they map is exactly what
    // the server decided.
    match op {
        HostOp::MapAnon { addr, len, prot: p } if setup.owns(addr, len) => {
            // SAFETY: see above.
            let made = unsafe {
                rustix::mm::mmap_anonymous(
                    addr as *mut _,
                    len as usize,
                    prot(p),
                    MapFlags::PRIVATE | MapFlags::NORESERVE | MapFlags::FIXED,
                )
            };
            if made.is_ok() {
                let _ = uffd.register(addr, len, ANON_MODE);
            }
        }
        HostOp::MapObject {
            addr,
            len,
            prot: p,
            shared,
            offset,
        } if setup.owns(addr, len) => {
            let Some(fd) = fd else {
                return Err(Errno::EPROTO);
            };
            let made = map_fd(addr, len, p, shared, fd, offset);
            if made.is_ok() {
                let _ = uffd.register(addr, len, OBJECT_MODE);
            }
        }
        HostOp::MapFile {
            addr,
            len,
            prot: p,
            shared,
            offset,
        } if setup.owns(addr, len) => {
            let Some(fd) = fd else {
                return Err(Errno::EPROTO);
            };
            let made = map_fd(addr, len, p, shared, fd, offset);
            if let Err(e) = made {
                // Nothing of the old mapping may stay: the server forgets the range.
                unmap(addr, len);
                let raw = u16::try_from(e.raw_os_error()).ok();
                return Err(raw.and_then(Errno::from_raw).unwrap_or(Errno::ENODEV));
            }
        }
        HostOp::Reserve { addr, len } if setup.owns(addr, len) => unmap(addr, len),
        HostOp::Protect { addr, len, prot: p } if setup.owns(addr, len) => {
            // SAFETY: see above.
            let _ = unsafe {
                rustix::mm::mprotect(
                    addr as *mut _,
                    len as usize,
                    MprotectFlags::from_bits_truncate(prot(p).bits()),
                )
            };
        }
        HostOp::Remap {
            old,
            old_len,
            new,
            new_len,
            dont_unmap,
            backing,
        } if setup.owns(old, old_len.max(1)) && setup.owns(new, new_len) => {
            remap(uffd, old, old_len, new, new_len, dont_unmap, backing);
        }
        HostOp::Advise { addr, len, advice } if setup.owns(addr, len) => {
            // SAFETY: see above; advice is Linux's number for what the server did.
            unsafe { libc::madvise(addr as *mut _, len as usize, i32::from(advice)) };
        }
        _ => {}
    }
    Ok(())
}

/// Maps `fd` from `offset` at `[addr, addr + len)` (in the window, checked by the
/// caller), shared or private, replacing what was there.
fn map_fd(
    addr: u64,
    len: u64,
    p: HostProt,
    shared: bool,
    fd: BorrowedFd<'_>,
    offset: u64,
) -> rustix::io::Result<()> {
    let kind = if shared {
        MapFlags::SHARED
    } else {
        MapFlags::PRIVATE
    };
    // SAFETY: the range lies in the window, which the runtime reserved and alone maps
    // into; replacing what is there is what the server decided.
    unsafe {
        rustix::mm::mmap(
            addr as *mut _,
            len as usize,
            prot(p),
            kind | MapFlags::FIXED,
            fd,
            offset,
        )
    }
    .map(|_| ())
}

/// Moves or resizes a mapping as the server did, its pages with it.
fn remap(
    uffd: &Uffd,
    old: u64,
    old_len: u64,
    new: u64,
    new_len: u64,
    keep: bool,
    backing: RemapBacking,
) {
    let mode = match backing {
        RemapBacking::Anon => ANON_MODE,
        RemapBacking::Object => OBJECT_MODE,
        // A host file's mapping is never registered, wherever it moves.
        RemapBacking::HostFile => 0,
    };
    let moved = if new == old {
        // SAFETY: in place; the server found the room it grows into free.
        let r = unsafe {
            rustix::mm::mremap(
                old as *mut _,
                old_len as usize,
                new_len as usize,
                MremapFlags::empty(),
            )
        };
        r.is_ok()
    } else {
        let mut flags = MremapFlags::MAYMOVE;
        if keep {
            flags |= MremapFlags::DONTUNMAP;
        }
        // SAFETY: moves the mapping onto the destination the server chose (which it
        // replaces).
        let r = unsafe {
            rustix::mm::mremap_fixed(
                old as *mut _,
                old_len as usize,
                new_len as usize,
                flags,
                new as *mut _,
            )
        };
        r.is_ok()
    };
    // A moved mapping loses its registration (no remap events are asked for).
    if moved && mode != 0 {
        let _ = uffd.register(new, new_len, mode);
        if keep && old_len > 0 {
            let _ = uffd.register(old, old_len, mode);
        }
    }
}
