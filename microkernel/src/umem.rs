//! User memory: copies between the kernel and a task's pages through the direct map,
//! on ranges checked once where they enter the kernel ([`USlice`]).

use crate::boot::DIRECT_MAP;
use crate::uslice::USlice;
use crate::{
    endpoint::server_request,
    state::{CURRENT, KernelState, Space, caller_space, with},
};
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use ipc_proto::{Access, ClientId, Errno, Reply, Request};
use memserver::KernelStub;

/// The pages of `s` in `space`, through the direct map: calls `f` with each page's
/// piece. A page not mapped (or not writable, for `write`) is `EFAULT`: a task's pages
/// are faulted in first ([`fault_in`]); the serving tasks' are all populated.
fn user_pieces(
    m: &KernelState,
    space: Space,
    s: USlice,
    write: bool,
    mut f: impl FnMut(*mut u8, usize),
) -> Result<(), Errno> {
    for (page, offset, n) in s.pieces() {
        let (frame, attrs) = m.stub.query(space, page).ok_or(Errno::EFAULT)?;
        if write && !attrs.writable {
            return Err(Errno::EFAULT);
        }
        f((DIRECT_MAP + frame.addr() + offset) as *mut u8, n);
    }
    Ok(())
}

/// Copies `s` (bounded where it was made) out of `space`.
pub(crate) fn read_user(m: &KernelState, space: Space, s: USlice) -> Result<Vec<u8>, Errno> {
    let mut out = Vec::with_capacity(s.len() as usize);
    user_pieces(m, space, s, false, |p, n| {
        // SAFETY: `p..p + n` lies in one frame of the task's, mapped by the direct map.
        out.extend_from_slice(unsafe { core::slice::from_raw_parts(p, n) })
    })?;
    Ok(out)
}

/// Copies `bytes` to the start of `s` in `space`; `EMSGSIZE` if they do not fit.
pub(crate) fn write_user(
    m: &KernelState,
    space: Space,
    s: USlice,
    bytes: &[u8],
) -> Result<(), Errno> {
    if bytes.len() as u64 > s.len() {
        return Err(Errno::EMSGSIZE);
    }
    let mut from = 0;
    user_pieces(m, space, s.prefix(bytes.len() as u64), true, |p, n| {
        // SAFETY: `p..p + n` lies in one writable frame of the task's, in the direct map,
        // and `from + n` stays within `bytes` (the pieces add up to its length).
        unsafe { core::ptr::copy_nonoverlapping(bytes[from..].as_ptr(), p, n) };
        from += n;
    })
}

/// Makes the calling task's pages of `s` present (and writable, for `write`) as its own
/// accesses would: a page that is not gets the kernel's `PageFault` for it, and a
/// signal answer is `EFAULT`. Buffers on lazily mapped memory work.
pub(crate) fn fault_in(s: USlice, write: bool) -> Result<(), Errno> {
    if s.is_empty() {
        return Ok(());
    }
    let client = ClientId(CURRENT.load(Ordering::Relaxed));
    for page in s.pages() {
        let ready = with(|m| {
            let installed = m.stub.query(caller_space(m)?, page);
            Ok::<_, Errno>(installed.is_some_and(|(_, a)| a.writable || !write))
        })?;
        if ready {
            continue;
        }
        let access = if write { Access::Write } else { Access::Read };
        let fault = Request::PageFault {
            client,
            addr: page,
            access,
        };
        match server_request(memserver::Sender::Kernel, &fault) {
            Ok(Reply::FaultResolved) => {}
            _ => return Err(Errno::EFAULT),
        }
    }
    Ok(())
}

/// Copies `s` from the calling task.
pub(crate) fn copy_in(s: USlice) -> Result<Vec<u8>, Errno> {
    fault_in(s, false)?;
    with(|m| read_user(m, caller_space(m)?, s))
}

/// Copies `bytes` to the start of `s` in the calling task; `EMSGSIZE` if they do not fit.
pub(crate) fn copy_out(s: USlice, bytes: &[u8]) -> Result<(), Errno> {
    if bytes.len() as u64 > s.len() {
        return Err(Errno::EMSGSIZE);
    }
    let s = s.prefix(bytes.len() as u64);
    fault_in(s, true)?;
    with(|m| write_user(m, caller_space(m)?, s, bytes))
}

/// Copies as much of `bytes` as fits in `s`; the length copied.
pub(crate) fn copy_out_capped(s: USlice, bytes: &[u8]) -> Result<u64, Errno> {
    let n = bytes.len().min(s.len() as usize);
    copy_out(s, &bytes[..n])?;
    Ok(n as u64)
}
