//! What a client may ask about its own address space: its mappings one at a time
//! (`Regions`, like a line of `/proc/self/maps`) and what backs a page (`PageInfo`).

use crate::kernel_stub::{Frame, KernelStub};
use crate::object::ObjectId;
use crate::region::{Region, RegionBacking};
use crate::server::Server;
use alloc::vec::Vec;
use ipc_proto::{CacheMode, ClientId, PAGE_SIZE, PageInfo, RegionInfo};

const PAGE_MASK: u64 = PAGE_SIZE - 1;

impl<K: KernelStub> Server<K> {
    /// The region of `id` holding `addr`, for a kernel that keeps mappings of its own in
    /// step with the server's (the hosted runtime, whose host mappings mirror regions).
    pub fn region_at(&self, id: ClientId, addr: u64) -> Option<Region> {
        self.clients.get(&id)?.regions.find(addr).copied()
    }

    /// Every region of `id` overlapping `[start, end)`, in address order.
    pub fn regions_in(&self, id: ClientId, start: u64, end: u64) -> Vec<Region> {
        let Some(c) = self.clients.get(&id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut at = start;
        while let Some(r) = c.regions.first_ending_above(at) {
            if r.start >= end {
                break;
            }
            out.push(*r);
            at = r.end;
        }
        out
    }

    /// The frame holding page `idx` of memory object `object`, if it is resident.
    pub fn object_frame(&self, object: ObjectId, idx: u64) -> Option<Frame> {
        self.objects.get(&object)?.pages.get(&idx).copied()
    }

    /// The size in bytes of memory object `object`, if it exists.
    pub fn object_size(&self, object: ObjectId) -> Option<u64> {
        Some(self.objects.get(&object)?.size)
    }

    /// The identity, rights and limits `id` runs with (a forked child keeps its
    /// parent's).
    pub fn spec_of(&self, id: ClientId) -> Option<ipc_proto::ClientSpec> {
        Some(self.clients.get(&id)?.spec)
    }

    /// The first region of `id` ending above `after`.
    pub(crate) fn region_after(&self, id: ClientId, after: u64) -> Option<RegionInfo> {
        let c = self.clients.get(&id)?;
        let r = c.regions.first_ending_above(after)?;
        Some(r.info(|o| match self.objects.get(&o) {
            Some(obj) if obj.file.is_some() || obj.host.is_some() => ipc_proto::Backing::File(o.0),
            _ => ipc_proto::Backing::Shm(o.0),
        }))
    }

    /// What backs the page at `addr` of `id`.
    pub(crate) fn page_info(&self, id: ClientId, addr: u64) -> PageInfo {
        let mut info = PageInfo {
            mapped: false,
            resident: false,
            installed: false,
            writable: false,
            executable: false,
            cache: CacheMode::WriteBack,
            locked: false,
        };
        let Some(c) = self.clients.get(&id) else {
            return info;
        };
        let page = addr & !PAGE_MASK;
        let Some(r) = c.regions.find(page) else {
            return info;
        };
        info.mapped = true;
        info.locked = r.locked;
        info.resident = c.anon.contains_key(&page)
            || match r.backing {
                RegionBacking::Anon { .. } => false,
                RegionBacking::Object { obj, offset } => self.objects.get(&obj).is_some_and(|o| {
                    o.pages
                        .contains_key(&((offset + page - r.start) / PAGE_SIZE))
                }),
                RegionBacking::Device { .. } => true,
            };
        if let Some((_, a)) = self.mem.stub.query(c.space, page) {
            info.installed = true;
            info.writable = a.writable;
            info.executable = a.executable;
            info.cache = a.cache;
        }
        info
    }
}
