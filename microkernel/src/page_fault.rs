//! A ring-3 task's page fault: the kernel's `PageFault` request to the memory server,
//! with the count of repeats that tells a resolved fault from a livelock.

use crate::{
    endpoint::server_request,
    state::{CURRENT, with},
};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use ipc_proto::{Access, ClientId, Reply, Request, Signal};

pub(crate) static RETRIES: AtomicU32 = AtomicU32::new(0);

/// The kernel's `PageFault` to the server for the current client. `None`: the page is
/// installed, retry; `Some(signal)`: deliver it.
pub(crate) fn user_fault(addr: u64, access: Access) -> Option<Signal> {
    // Two faults can be legitimate (read-install, then copy-on-write); more means the
    // server resolved a fault without installing anything.
    if RETRIES.fetch_add(1, Ordering::Relaxed) >= 3 {
        with(|m| m.livelocks += 1);
        return Some(Signal::Segv);
    }
    let client = ClientId(CURRENT.load(Ordering::Relaxed));
    match server_request(
        memserver::Sender::Kernel,
        &Request::PageFault {
            client,
            addr,
            access,
        },
    ) {
        Ok(Reply::FaultResolved) => None,
        Ok(Reply::Signal(s)) => Some(s),
        _ => Some(Signal::Segv),
    }
}

pub(crate) static LAST_TASK_FAULT: AtomicU64 = AtomicU64::new(u64::MAX);

/// A ring-3 task's page fault, with the repeat count kept per address.
pub fn task_fault(addr: u64, access: Access) -> Option<Signal> {
    if LAST_TASK_FAULT.swap(addr, Ordering::Relaxed) != addr {
        RETRIES.store(0, Ordering::Relaxed);
    }
    user_fault(addr, access)
}
