//! Address-space clone: the memory half of `fork` (the kernel's `ClientCloned`).
//!
//! The child gets a copy of the parent's region map and fd table. Shared regions share
//! their pages (objects, device windows); private pages become shared copy-on-write
//! frames: both sides hold a reference, the parent's installed copies are made read-only,
//! and the first write on either side copies the page (the ordinary fault path does it,
//! since a private page whose frame has more than one holder is not exclusive). Nothing
//! is copied up front, and a page never written is never copied.

use crate::client_state::{ClientState, FutureLock};
use crate::fd::FdTarget;
use crate::kernel_stub::KernelStub;
use crate::region::RegionBacking;
use crate::server::Server;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use ipc_proto::{ClientId, ClientSpec, Errno, PAGE_SIZE, Prot};

impl<K: KernelStub> Server<K> {
    /// Makes `child` a copy-on-write clone of `parent` with identity and limits `spec`.
    /// Checks everything first: a failed clone changes nothing.
    pub(crate) fn client_cloned(
        &mut self,
        parent: ClientId,
        child: ClientId,
        spec: ClientSpec,
    ) -> Result<(), Errno> {
        if self.clients.contains_key(&child) {
            return Err(Errno::EEXIST);
        }
        let p = self.clients.get(&parent).ok_or(Errno::ESRCH)?;
        let lim = spec.limits;
        // MADV_DONTFORK: those regions stay out of the child.
        let inherited = || p.regions.iter().filter(|r| !r.dontfork);
        let child_bytes: u64 = inherited().map(|r| r.len()).sum();
        if inherited().count() > lim.max_regions as usize || child_bytes > lim.max_bytes {
            return Err(Errno::ENOMEM);
        }
        if p.fds.len() > lim.max_fds as usize {
            return Err(Errno::EMFILE);
        }
        let fds = p.fds.len() as u32;
        self.accounting.room_for(fds)?;
        // The child's private writable memory is charged again, as Linux does at fork:
        // either side may end up writing every page.
        let charges: Vec<_> = inherited()
            .filter(|r| r.accounted)
            .map(|r| (r.charge_bank(), r.pages()))
            .collect();
        for (i, &(bank, pages)) in charges.iter().enumerate() {
            if !self.mem.frames.charge(bank, pages) {
                for &(b, n) in &charges[..i] {
                    self.mem.frames.uncharge(b, n);
                }
                return Err(Errno::ENOMEM);
            }
        }
        let space = match self.new_space() {
            Ok(s) => s,
            Err(e) => {
                for &(b, n) in &charges {
                    self.mem.frames.uncharge(b, n);
                }
                return Err(e);
            }
        };
        // From here on nothing can fail.
        let Some(p) = self.clients.get(&parent) else {
            return Err(Errno::ESRCH);
        };
        let mut regions = self.new_region_map();
        let mut fds = self.new_fd_table();
        let mut objects_mapped: Vec<(crate::object::ObjectId, u64, bool)> = Vec::new();
        let mut to_protect = Vec::new();
        let mut anon: BTreeMap<u64, crate::kernel_stub::Frame> = BTreeMap::new();
        for r in p.regions.iter().filter(|r| !r.dontfork) {
            anon.extend(p.anon.range(r.start..r.end).map(|(&va, &f)| (va, f)));
            // POSIX: memory locks are not inherited by the child.
            regions.insert(crate::region::Region {
                locked: false,
                ..*r
            });
            if let RegionBacking::Object { obj, .. } = r.backing {
                objects_mapped.push((obj, r.pages(), r.denywrite));
            }
            if !r.shared && r.prot.contains(Prot::WRITE) {
                to_protect.push(*r);
            }
        }
        for (fd, e) in p.fds.iter() {
            fds.insert_at(fd, e);
        }
        let (parent_space, mapped_bytes) = (p.space, child_bytes);
        let entries: Vec<_> = fds.iter().map(|(_, e)| e).collect();

        for &f in anon.values() {
            self.mem.frames.incref(f);
        }
        // Private pages are no longer the parent's alone: its next write copies them.
        for r in &to_protect {
            self.mem.stub.protect(
                parent_space,
                r.start,
                (r.end - r.start) / PAGE_SIZE,
                r.page_attrs(false),
            );
        }
        for (obj, pages, denywrite) in objects_mapped {
            if let Some(o) = self.objects.get_mut(&obj) {
                o.mapped_pages += pages;
                if denywrite {
                    o.denywrite_pages += pages;
                }
            }
        }
        for e in entries {
            self.accounting.opened(1);
            if let FdTarget::Shm(obj) = e.target
                && let Some(o) = self.objects.get_mut(&obj)
            {
                o.open_fds += 1;
                if e.writable {
                    o.writers += 1;
                }
            }
        }
        self.clients.insert(
            child,
            ClientState {
                spec,
                space,
                regions,
                anon,
                fds,
                mapped_bytes,
                locked_bytes: 0,
                // POSIX: mlockall's MCL_FUTURE is not inherited either.
                future_lock: FutureLock::Off,
            },
        );
        Ok(())
    }
}
