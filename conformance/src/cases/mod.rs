//! The cases, one module per topic, and the helpers they share.

use crate::harness::{Harness, Process, client};
use crate::runner::{Case, Fail};
use alloc::boxed::Box;
use alloc::format;
use alloc::vec::Vec;
use core::fmt::Debug;
use ipc_proto::{ClientSpec, Errno, MapFlags, PAGE_SIZE, Prot};

mod mmap;

/// Every case of the suite, in a stable order.
pub fn all() -> Vec<Case> {
    let groups: &[&[Case]] = &[mmap::CASES];
    groups.iter().flat_map(|g| g.iter().copied()).collect()
}

/// One page.
pub const P: u64 = PAGE_SIZE;
/// `PROT_READ | PROT_WRITE`.
pub const RW: Prot = Prot::READ.union(Prot::WRITE);
/// `MAP_PRIVATE | MAP_ANONYMOUS`.
pub const PA: MapFlags = MapFlags::PRIVATE.union(MapFlags::ANONYMOUS);
/// `MAP_SHARED | MAP_ANONYMOUS`.
pub const SA: MapFlags = MapFlags::SHARED.union(MapFlags::ANONYMOUS);

/// Turns any error into a case failure naming what was being done.
pub trait Context<T> {
    /// Adds `what` to the error.
    fn ctx(self, what: &str) -> Result<T, Fail>;
}

impl<T, E: Debug> Context<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Result<T, Fail> {
        self.map_err(|e| Fail(format!("{what}: {e:?}")))
    }
}

/// Starts a client with the default spec.
pub fn proc(h: &mut dyn Harness) -> Result<Box<dyn Process>, Fail> {
    h.spawn(ClientSpec::DEFAULT).ctx("spawn")
}

/// Starts a client with `spec`.
pub fn proc_with(h: &mut dyn Harness, spec: ClientSpec) -> Result<Box<dyn Process>, Fail> {
    h.spawn(spec).ctx("spawn")
}

/// Maps `len` bytes of private anonymous memory anywhere.
pub fn anon(p: &mut dyn Process, len: u64, prot: Prot) -> Result<u64, Fail> {
    client(p)
        .mmap(0, len, prot, PA, None, 0)
        .ctx("mmap anonymous")
}

/// Reserves `pages` free pages and returns their address, so a case can place
/// `MAP_FIXED` mappings where nothing else is.
pub fn hole(p: &mut dyn Process, pages: u64) -> Result<u64, Fail> {
    let a = anon(p, pages * P, Prot::NONE)?;
    client(p).munmap(a, pages * P).ctx("munmap reservation")?;
    Ok(a)
}

/// Passes if `r` is exactly the error `want`.
pub fn expect_err<T: Debug>(r: Result<T, Errno>, want: Errno, what: &str) -> Result<(), Fail> {
    match r {
        Err(e) if e == want => Ok(()),
        other => Err(Fail(format!(
            "{what}: got {other:?}, expected Err({want:?})"
        ))),
    }
}
