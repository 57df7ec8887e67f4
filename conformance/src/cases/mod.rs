//! The cases, one module per topic, and the helpers they share.

use crate::harness::{Harness, Process, client};
use crate::runner::{Case, Fail};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Debug;
use ipc_proto::{ClientSpec, Errno, Fd, MapFlags, OFlags, PAGE_SIZE, Prot, RegionInfo, Signal};

mod advise;
mod banks;
mod devices;
mod fault;
mod files;
mod fork;
mod host_files;
mod lifecycle;
mod limits;
mod lock;
mod mmap;
mod mprotect;
mod msync;
mod munmap;
mod placement;
mod protocol;
mod regions;
mod remap;
mod sharing;
mod shm;

/// Every case of the suite, in a stable order.
pub fn all() -> Vec<Case> {
    let groups: &[&[Case]] = &[
        mmap::CASES,
        placement::CASES,
        munmap::CASES,
        mprotect::CASES,
        msync::CASES,
        remap::CASES,
        advise::CASES,
        fault::CASES,
        regions::CASES,
        shm::CASES,
        sharing::CASES,
        banks::CASES,
        devices::CASES,
        files::CASES,
        host_files::CASES,
        lock::CASES,
        limits::CASES,
        lifecycle::CASES,
        protocol::CASES,
    ];
    groups.iter().flat_map(|g| g.iter().copied()).collect()
}

/// The cases that need [`Process::fork`] (address-space
/// clone), for transports that provide it.
pub fn fork_cases() -> Vec<Case> {
    fork::CASES.to_vec()
}

/// Every case: [`all`] and [`fork_cases`].
pub fn everything() -> Vec<Case> {
    let mut v = all();
    v.extend(fork_cases());
    v
}

/// A module's `CASES` table from its case functions: each case is named after its
/// function, which says the behaviour it checks.
/// A case that needs something of the transport is written `name if Need`.
macro_rules! cases {
    ($($f:ident $(if $need:ident)?),* $(,)?) => {
        /// The cases of this module.
        pub const CASES: &[Case] = &[$(Case {
            name: stringify!($f),
            run: $f,
            needs: $crate::cases::need!($($need)?),
        }),*];
    };
}
pub(crate) use cases;

/// `None`, or the named [`Need`](crate::runner::Need).
macro_rules! need {
    () => {
        None
    };
    ($need:ident) => {
        Some($crate::runner::Need::$need)
    };
}
pub(crate) use need;

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

/// Passes if the access raised exactly `want`.
pub fn expect_signal<T: Debug>(r: Result<T, Signal>, want: Signal, what: &str) -> Result<(), Fail> {
    match r {
        Err(s) if s == want => Ok(()),
        other => Err(Fail(format!(
            "{what}: got {other:?}, expected the signal {want:?}"
        ))),
    }
}

/// `mmap(addr, len, prot, flags | MAP_FIXED)` of private anonymous memory.
pub fn fixed(p: &mut dyn Process, addr: u64, len: u64, prot: Prot) -> Result<u64, Errno> {
    client(p).mmap(addr, len, prot, PA | MapFlags::FIXED, None, 0)
}

/// The caller's regions, in address order.
pub fn regions(p: &mut dyn Process) -> Result<Vec<RegionInfo>, Fail> {
    client(p)
        .regions()
        .collect::<Result<Vec<_>, _>>()
        .ctx("regions")
}

/// The region containing `addr`, if any.
pub fn region_at(p: &mut dyn Process, addr: u64) -> Result<Option<RegionInfo>, Fail> {
    Ok(regions(p)?
        .into_iter()
        .find(|r| r.start <= addr && addr < r.end))
}

/// `O_CREAT | O_RDWR`.
pub const CREATE: OFlags = OFlags::CREAT.union(OFlags::RDWR);

/// Creates the shm object `/tag-base` (unique to the harness) of `size` bytes, opened
/// read-write; returns its name and fd. The case must unlink the name.
pub fn shm(
    h: &mut dyn Harness,
    p: &mut dyn Process,
    base: &str,
    size: u64,
) -> Result<(String, Fd), Fail> {
    let name = h.unique_name(base);
    let fd = client(p)
        .shm_open(&name, CREATE | OFlags::EXCL, 0o600)
        .ctx("shm_open")?;
    if size > 0 {
        client(p).ftruncate(fd, size as i64).ctx("ftruncate")?;
    }
    Ok((name, fd))
}

/// Maps `len` bytes of `fd` shared at `offset`, with `prot`.
pub fn map_shared(
    p: &mut dyn Process,
    fd: Fd,
    len: u64,
    prot: Prot,
    offset: u64,
) -> Result<u64, Errno> {
    client(p).mmap(0, len, prot, MapFlags::SHARED, Some(fd), offset)
}

/// Writes `value` at `addr`, failing the case if the access faults.
pub fn poke(p: &mut dyn Process, addr: u64, value: u8) -> Result<(), Fail> {
    p.write(addr, value)
        .map_err(|s| Fail(format!("write at {addr:#x} raised {s:?}")))
}

/// Reads the byte at `addr`, failing the case if the access faults.
pub fn peek(p: &mut dyn Process, addr: u64) -> Result<u8, Fail> {
    p.read(addr)
        .map_err(|s| Fail(format!("read at {addr:#x} raised {s:?}")))
}

/// The server's free-frame count, through the harness.
pub fn free_frames(h: &mut dyn Harness) -> u64 {
    let s = h.stats();
    s.free_frames + s.table_frames
}

/// A spec with `f` applied to the default one.
pub fn spec(f: impl FnOnce(&mut ClientSpec)) -> ClientSpec {
    let mut s = ClientSpec::DEFAULT;
    f(&mut s);
    s
}
