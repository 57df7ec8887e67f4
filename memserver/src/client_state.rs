//! [`ClientState`]: what the server keeps for one client, and the client's life cycle
//! as the kernel reports it (`ClientStarted`, `ClientExited`; `ClientCloned` is in
//! `clone.rs`).

use crate::fd::FdTable;
use crate::kernel_stub::{Frame, KernelStub};
use crate::region_map::RegionMap;
use crate::server::Server;
use alloc::collections::BTreeMap;
use ipc_proto::{ClientId, ClientSpec, Errno, Limits};

/// `mlockall(MCL_FUTURE)`: whether mappings made from now on are locked, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FutureLock {
    /// Not in force.
    Off,
    /// New mappings are locked and populated.
    Populate,
    /// ... locked without populating (`MCL_ONFAULT`).
    OnFault,
}

/// Everything the server knows about one client.
pub(crate) struct ClientState<S> {
    /// Identity, rights and limits, from the kernel.
    pub spec: ClientSpec,
    /// Its address space at the stub.
    pub space: S,
    /// Its mappings.
    pub regions: RegionMap,
    /// Private pages (anonymous memory, copy-on-write copies) by page address.
    pub anon: BTreeMap<u64, Frame>,
    /// Its open fds.
    pub fds: FdTable,
    /// Bytes of all its regions (`RLIMIT_AS`).
    pub mapped_bytes: u64,
    /// Bytes of its locked regions (`RLIMIT_MEMLOCK`).
    pub locked_bytes: u64,
    /// `mlockall(MCL_FUTURE)`.
    pub future_lock: FutureLock,
}

impl<S> ClientState<S> {
    /// A client with nothing mapped or open yet.
    pub fn new(spec: ClientSpec, space: S, regions: RegionMap, fds: FdTable) -> ClientState<S> {
        ClientState {
            spec,
            space,
            regions,
            anon: BTreeMap::new(),
            fds,
            mapped_bytes: 0,
            locked_bytes: 0,
            future_lock: FutureLock::Off,
        }
    }

    /// The span from its lowest mapping's start to its highest's end, if it has any.
    pub fn mapped_span(&self) -> Option<(u64, u64)> {
        let lo = self.regions.iter().next()?.start;
        let hi = self.regions.iter().next_back()?.end;
        Some((lo, hi))
    }
}

impl<K: KernelStub> Server<K> {
    /// Registers a client (the kernel's `ClientStarted`).
    pub(crate) fn client_started(&mut self, id: ClientId, spec: ClientSpec) -> Result<(), Errno> {
        if self.clients.contains_key(&id) {
            return Err(Errno::EEXIST);
        }
        let space = self.new_space()?;
        let client = ClientState::new(spec, space, self.new_region_map(), self.new_fd_table());
        self.clients.insert(id, client);
        Ok(())
    }

    /// New resource limits for a live client, as `setrlimit` gives a process: what it
    /// holds stays, only later grants are checked. A limit lowered below what the
    /// client holds is kept as what it holds (nothing more is granted either way), so
    /// usage never exceeds a limit; a locked-memory limit of 0 stays 0 when nothing is
    /// locked (`EPERM` for every lock, as Linux).
    pub fn set_limits(&mut self, id: ClientId, limits: Limits) -> Result<(), Errno> {
        let c = self.clients.get_mut(&id).ok_or(Errno::ESRCH)?;
        c.spec.limits = Limits {
            max_regions: limits.max_regions.max(c.regions.len() as u32),
            max_bytes: limits.max_bytes.max(c.mapped_bytes),
            max_fds: limits.max_fds.max(c.fds.len() as u32),
            max_locked: limits.max_locked.max(c.locked_bytes),
        };
        Ok(())
    }

    /// An empty region map over the configured window.
    pub(crate) fn new_region_map(&self) -> RegionMap {
        RegionMap::new(self.cfg.mmap_min, self.cfg.mmap_max)
    }

    /// An empty fd table numbering from the configured first fd.
    pub(crate) fn new_fd_table(&self) -> FdTable {
        FdTable::new(self.cfg.first_fd)
    }

    /// A fresh address space, lending the stub a frame for its root table if needed.
    pub(crate) fn new_space(&mut self) -> Result<K::Space, Errno> {
        self.mem.stub.create_space().or_else(|_| {
            self.mem.lend_table_frame().map_err(|_| Errno::ENOMEM)?;
            self.mem.stub.create_space().map_err(|_| Errno::ENOMEM)
        })
    }

    /// Reclaims everything a client held (the kernel's `ClientExited`).
    pub(crate) fn client_exited(&mut self, id: ClientId) -> Result<(), Errno> {
        let span = self.clients.get(&id).ok_or(Errno::ESRCH)?.mapped_span();
        if let Some((lo, hi)) = span {
            self.release_range(id, lo, hi);
        }
        let Some(mut c) = self.clients.remove(&id) else {
            return Err(Errno::ESRCH);
        };
        let mut closed = alloc::vec::Vec::new();
        c.fds.drain(|e| closed.push(e));
        for e in closed {
            self.drop_fd_entry(e.target, e.writable);
        }
        self.mem.stub.destroy_space(c.space);
        self.mem.reclaim_table_frames();
        Ok(())
    }
}
