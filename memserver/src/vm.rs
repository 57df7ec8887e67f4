//! The calls that change or sync existing mappings: `munmap`, `mprotect`, `msync`, and
//! the removal of a range every path that unmaps goes through.
//!
//! Every call validates and checks every limit before it changes anything, so a failed
//! call leaves the address space exactly as it was.

use crate::frame_alloc::BankId;
use crate::kernel_stub::KernelStub;
use crate::object::ObjectId;
use crate::region::{Region, RegionBacking};
use crate::region_map::page_round_up;
use crate::server::Server;
use ipc_proto::{ClientId, Errno, MsyncFlags, PAGE_SIZE, Prot};

const PAGE_MASK: u64 = PAGE_SIZE - 1;

impl<K: KernelStub> Server<K> {
    /// Removes every mapping in `[start, end)` (page-aligned, limits already checked):
    /// page-table entries, private pages, commit, object references.
    pub(crate) fn release_range(&mut self, id: ClientId, start: u64, end: u64) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        // Every page installed in an anonymous region is one of the client's private
        // pages, so a range of anonymous regions without any needs no walk of the page
        // tables (the common munmap of memory never touched, and the benchmark pair).
        let mut other_backing = false;
        let mut touched: [Option<ObjectId>; 4] = [None; 4];
        let mut more_objects = alloc::vec::Vec::new();
        // Shared object ranges, whose dirty file pages go back once unmapped.
        let mut flush = alloc::vec::Vec::new();
        let (frames, objects) = (&mut self.mem.frames, &mut self.objects);
        let (mapped, locked) = (&mut c.mapped_bytes, &mut c.locked_bytes);
        c.regions.remove_range(start, end, |r| {
            other_backing |= !matches!(r.backing, RegionBacking::Anon { .. });
            *mapped -= r.len();
            if r.locked {
                *locked -= r.len();
            }
            if r.accounted {
                frames.uncharge(r.charge_bank(), r.pages());
            }
            if let RegionBacking::Object { obj, offset } = r.backing {
                if let Some(o) = objects.get_mut(&obj) {
                    if r.shared && o.file.is_some() {
                        let first = offset / PAGE_SIZE;
                        flush.push((obj, first..first + r.pages()));
                    }
                    o.mapped_pages -= r.pages();
                    if r.denywrite {
                        o.denywrite_pages -= r.pages();
                    }
                }
                match touched.iter_mut().find(|t| t.is_none() || **t == Some(obj)) {
                    Some(slot) => *slot = Some(obj),
                    None => more_objects.push(obj),
                }
            }
        });
        if other_backing || c.anon.range(start..end).next().is_some() {
            self.mem
                .stub
                .unmap(c.space, start, (end - start) / PAGE_SIZE);
        }
        // Private pages of the range.
        while let Some((&va, &f)) = c.anon.range(start..end).next() {
            c.anon.remove(&va);
            self.mem.release(f);
        }
        for (obj, pages) in flush {
            // A failing pager keeps the pages dirty; the object's release retries.
            let _ = self.write_back(obj, pages);
        }
        for obj in touched.into_iter().flatten().chain(more_objects) {
            self.destroy_if_orphan(obj);
        }
    }

    /// `munmap`.
    pub(crate) fn munmap(&mut self, id: ClientId, addr: u64, len: u64) -> Result<(), Errno> {
        if addr & PAGE_MASK != 0 || len == 0 {
            return Err(Errno::EINVAL);
        }
        let end = page_round_up(len)
            .and_then(|l| addr.checked_add(l))
            .filter(|&e| e <= self.cfg.mmap_max)
            .ok_or(Errno::EINVAL)?;
        let c = self.clients.get(&id).ok_or(Errno::ESRCH)?;
        let (overlap, splits) = c.regions.range_summary(addr, end);
        if overlap == 0 {
            // POSIX (seed 001): unmapping a range with no mappings succeeds.
            return Ok(());
        }
        // Unmapping the middle of a region makes two: Linux refuses at max_map_count.
        if c.regions.len() + splits - overlap > c.spec.limits.max_regions as usize {
            return Err(Errno::ENOMEM);
        }
        self.release_range(id, addr, end);
        Ok(())
    }

    /// `mprotect`: all-or-nothing (Linux applies the regions before a hole and then
    /// fails; we check first, so a failed call changes nothing).
    pub(crate) fn mprotect(
        &mut self,
        id: ClientId,
        addr: u64,
        len: u64,
        prot: Prot,
    ) -> Result<(), Errno> {
        if addr & PAGE_MASK != 0 {
            return Err(Errno::EINVAL);
        }
        if len == 0 {
            return Ok(());
        }
        let end = page_round_up(len)
            .and_then(|l| addr.checked_add(l))
            .ok_or(Errno::ENOMEM)?;
        let c = self.clients.get(&id).ok_or(Errno::ESRCH)?;
        if c.spec.deny_wx && prot.contains(Prot::WRITE | Prot::EXEC) {
            return Err(Errno::EACCES);
        }
        // One walk: holes, rights, splits, commit, and whether anything changes at all.
        let (mut at, mut splits, mut changes) = (addr, 0usize, false);
        let mut charges: alloc::vec::Vec<(BankId, u64)> = alloc::vec::Vec::new();
        for r in c.regions.overlapping(addr, end) {
            if r.start > at {
                return Err(Errno::ENOMEM);
            }
            if !r.max_prot.contains(prot) {
                return Err(Errno::EACCES);
            }
            if r.start < addr {
                splits += 1;
            }
            if r.end > end {
                splits += 1;
            }
            changes |= r.prot != prot;
            // Commit for private regions becoming writable for the first time.
            if (Region { prot, ..*r }).wants_commit() && !r.accounted {
                let pages = (r.end.min(end) - r.start.max(addr)) / PAGE_SIZE;
                charges.push((r.charge_bank(), pages));
            }
            at = r.end;
        }
        if at < end {
            return Err(Errno::ENOMEM);
        }
        if !changes {
            return Ok(());
        }
        if c.regions.len() + splits > c.spec.limits.max_regions as usize {
            return Err(Errno::ENOMEM);
        }
        for (i, &(bank, pages)) in charges.iter().enumerate() {
            if !self.mem.frames.charge(bank, pages) {
                for &(b, p) in &charges[..i] {
                    self.mem.frames.uncharge(b, p);
                }
                return Err(Errno::ENOMEM);
            }
        }
        let c = self.clients.get_mut(&id).ok_or(Errno::ESRCH)?;
        c.regions.update_range(addr, end, |r| {
            if (Region { prot, ..*r }).wants_commit() {
                r.accounted = true;
            }
            r.prot = prot;
        });
        // Page tables: drop everything for PROT_NONE; otherwise set the new rights, with
        // private pages read-only until a write fault shows they are not shared (the
        // fault upgrades them), so copy-on-write stays intact.
        for r in c.regions.overlapping(addr, end) {
            let (s, e) = (r.start.max(addr), r.end.min(end));
            let pages = (e - s) / PAGE_SIZE;
            // As in release_range: an anonymous range without private pages has nothing
            // installed, so there is no entry to change.
            if matches!(r.backing, RegionBacking::Anon { .. })
                && c.anon.range(s..e).next().is_none()
            {
                continue;
            }
            // A shared file page becomes writable again only through a write fault,
            // which marks it dirty.
            let file = match r.backing {
                RegionBacking::Object { obj, .. } => {
                    self.objects.get(&obj).is_some_and(|o| o.file.is_some())
                }
                _ => false,
            };
            if prot.is_empty() {
                self.mem.stub.unmap(c.space, s, pages);
            } else {
                self.mem
                    .stub
                    .protect(c.space, s, pages, r.page_attrs(r.shared && !file));
            }
        }
        Ok(())
    }

    /// `msync`: validates, then writes the dirty file pages of the range's shared
    /// mappings back to the pager (`EIO` if it fails); shm objects are their own backing
    /// store.
    pub(crate) fn msync(
        &mut self,
        id: ClientId,
        addr: u64,
        len: u64,
        flags: MsyncFlags,
    ) -> Result<(), Errno> {
        if addr & PAGE_MASK != 0 || flags.contains(MsyncFlags::SYNC | MsyncFlags::ASYNC) {
            return Err(Errno::EINVAL);
        }
        let end = page_round_up(len)
            .and_then(|l| addr.checked_add(l))
            .ok_or(Errno::ENOMEM)?;
        if end == addr {
            return Ok(());
        }
        let c = self.clients.get(&id).ok_or(Errno::ESRCH)?;
        // Linux: a locked mapping in the range is EBUSY even if the range also has a
        // hole (the hole's ENOMEM is only reported when nothing else failed).
        if flags.contains(MsyncFlags::INVALIDATE)
            && c.regions.overlapping(addr, end).any(|r| r.locked)
        {
            return Err(Errno::EBUSY);
        }
        if !c.regions.is_fully_mapped(addr, end) {
            return Err(Errno::ENOMEM);
        }
        // MS_ASYNC may only schedule the write; doing it now is allowed and simpler.
        let spans: alloc::vec::Vec<(ObjectId, core::ops::Range<u64>)> = c
            .regions
            .overlapping(addr, end)
            .filter_map(|r| match r.backing {
                RegionBacking::Object { obj, offset } if r.shared => {
                    let (s, e) = (r.start.max(addr), r.end.min(end));
                    let first = (offset + s - r.start) / PAGE_SIZE;
                    Some((obj, first..first + (e - s) / PAGE_SIZE))
                }
                _ => None,
            })
            .collect();
        for (obj, pages) in spans {
            self.write_back(obj, pages)?;
        }
        Ok(())
    }
}
