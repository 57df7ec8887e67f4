//! What a client may ask about its own address space: its mappings one at a time
//! (`Regions`, like a line of `/proc/self/maps`) and what backs a page (`PageInfo`).

use crate::kernel_stub::KernelStub;
use crate::region::RegionBacking;
use crate::server::Server;
use ipc_proto::{CacheMode, ClientId, PAGE_SIZE, PageInfo, RegionInfo};

const PAGE_MASK: u64 = PAGE_SIZE - 1;

impl<K: KernelStub> Server<K> {
    /// The first region of `id` ending above `after`.
    pub(crate) fn region_after(&self, id: ClientId, after: u64) -> Option<RegionInfo> {
        let c = self.clients.get(&id)?;
        let r = c.regions.first_ending_above(after)?;
        Some(r.info(|o| match self.objects.get(&o) {
            Some(obj) if obj.file.is_some() => ipc_proto::Backing::File(o.0),
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
