//! `mremap` (Linux), as [validate](Server::validate_mremap) → [plan](Server::plan_mremap)
//! → [commit](Server::commit_mremap): shrink in place, grow in place, or move.
//!
//! A move never copies a page: the private frames of the old range are re-keyed to the
//! new address and the frames installed there (private or the object's) are reinstalled
//! through the [`KernelStub`] at the new address with the rights they had; shared and
//! file mappings keep their object and offset. Every limit and charge is checked in the
//! plan, so a failed call changes nothing, and the commit cannot fail.

use crate::kernel_stub::{Frame, KernelStub, PageAttrs};
use crate::permission;
use crate::region::{Region, RegionBacking};
use crate::region_map::page_round_up;
use crate::server::Server;
use alloc::vec::Vec;
use ipc_proto::{ClientId, Errno, MremapFlags, PAGE_SIZE};

const PAGE_MASK: u64 = PAGE_SIZE - 1;

/// The arguments of an `mremap` after the checks that need no state.
#[derive(Clone, Copy, Debug)]
struct ValidMremap {
    old_addr: u64,
    /// Rounded up to pages; 0 duplicates a shared mapping.
    old_len: u64,
    /// Rounded up to pages, non-zero.
    new_len: u64,
    maymove: bool,
    /// The destination of `MREMAP_FIXED`.
    fixed: Option<u64>,
    dontunmap: bool,
}

/// What an `mremap` will do, every check passed.
enum RemapPlan {
    /// Unmap `[from, to)` (the tail of a shrink); the mapping stays at `addr`.
    Shrink { addr: u64, from: u64, to: u64 },
    /// Extend the region ending at `from` up to `to`.
    Grow { addr: u64, ext: Region },
    /// Move (or duplicate) to a new place.
    Move(MovePlan),
}

/// A move: the old region piece, where it goes and what is released first.
struct MovePlan {
    /// The old region (as found; its piece `[old_addr, old_addr + move_len)` moves).
    old: Region,
    old_addr: u64,
    /// Bytes whose pages move: `min(old_len, new_len)`; 0 for a duplicate.
    move_len: u64,
    /// The tail of a shrinking move, unmapped first.
    tail: Option<(u64, u64)>,
    /// The new region.
    new: Region,
    /// A `MREMAP_FIXED` destination replaces what is there.
    replaces: bool,
    /// The old range stays mapped (`MREMAP_DONTUNMAP`, or a duplicate).
    keep_old: bool,
}

/// Pages taken from a range about to move: the client's private frames (by offset from
/// the range's start), and every installed entry (offset, frame, rights).
type TakenPages = (Vec<(u64, Frame)>, Vec<(u64, Frame, PageAttrs)>);

/// What `[start, end)` of an address space holds: regions overlapping, splits at its
/// ends, bytes and locked bytes mapped.
#[derive(Clone, Copy, Default)]
struct Usage {
    count: usize,
    splits: usize,
    bytes: u64,
    locked: u64,
}

impl<K: KernelStub> Server<K> {
    /// `mremap`: the mapping's address afterwards.
    pub(crate) fn mremap(
        &mut self,
        id: ClientId,
        old_addr: u64,
        old_len: u64,
        new_len: u64,
        flags: MremapFlags,
        new_addr: u64,
    ) -> Result<u64, Errno> {
        let v = self.validate_mremap(old_addr, old_len, new_len, flags, new_addr)?;
        let plan = self.plan_mremap(id, &v)?;
        Ok(self.commit_mremap(id, plan))
    }

    /// The checks of the arguments alone, in Linux's order.
    fn validate_mremap(
        &self,
        old_addr: u64,
        old_len: u64,
        new_len: u64,
        flags: MremapFlags,
        new_addr: u64,
    ) -> Result<ValidMremap, Errno> {
        let maymove = flags.contains(MremapFlags::MAYMOVE);
        let fixed = flags.contains(MremapFlags::FIXED);
        let dontunmap = flags.contains(MremapFlags::DONTUNMAP);
        // Linux: FIXED and DONTUNMAP only with MAYMOVE.
        if (fixed || dontunmap) && !maymove {
            return Err(Errno::EINVAL);
        }
        if old_addr & PAGE_MASK != 0 {
            return Err(Errno::EINVAL);
        }
        let old_len = page_round_up(old_len).ok_or(Errno::EINVAL)?;
        let new_len = page_round_up(new_len)
            .filter(|&l| l != 0)
            .ok_or(Errno::EINVAL)?;
        if dontunmap && old_len != new_len {
            return Err(Errno::EINVAL);
        }
        // Linux: a length past the address space (TASK_SIZE) is EINVAL.
        let (lo, hi) = (self.cfg.mmap_min, self.cfg.mmap_max);
        if new_len > hi - lo || old_addr.checked_add(old_len).is_none_or(|e| e > hi) {
            return Err(Errno::EINVAL);
        }
        let fixed = if fixed {
            if new_addr & PAGE_MASK != 0 {
                return Err(Errno::EINVAL);
            }
            let new_end = new_addr.checked_add(new_len).ok_or(Errno::EINVAL)?;
            if new_end > hi {
                return Err(Errno::EINVAL);
            }
            // Linux: the old and new ranges may not overlap.
            if new_addr < old_addr + old_len && old_addr < new_end {
                return Err(Errno::EINVAL);
            }
            if new_addr < lo && !self.cfg.usable(new_addr, new_end) {
                return Err(Errno::EPERM);
            }
            Some(new_addr)
        } else {
            None
        };
        Ok(ValidMremap {
            old_addr,
            old_len,
            new_len,
            maymove,
            fixed,
            dontunmap,
        })
    }

    /// Decides shrink, grow or move and checks every limit and charge. Changes nothing
    /// (but the placement cursor).
    fn plan_mremap(&mut self, id: ClientId, v: &ValidMremap) -> Result<RemapPlan, Errno> {
        let c = self.clients.get(&id).ok_or(Errno::ESRCH)?;
        let old_end = v.old_addr + v.old_len;
        // Linux: EFAULT when nothing is mapped at old_addr.
        let r = *c.regions.find(v.old_addr).ok_or(Errno::EFAULT)?;
        if v.old_len == 0 && !r.shared {
            // Only a shared mapping can be duplicated.
            return Err(Errno::EINVAL);
        }
        // A shrink in place (or a no-op) unmaps the tail, whatever maps it, as Linux.
        if v.new_len <= v.old_len && v.fixed.is_none() && !v.dontunmap {
            let from = v.old_addr + v.new_len;
            let u = usage(c, from, old_end);
            if u.count > 0 && c.regions.len() + u.splits - u.count > self.max_regions(id) {
                return Err(Errno::ENOMEM);
            }
            return Ok(RemapPlan::Shrink {
                addr: v.old_addr,
                from,
                to: old_end,
            });
        }
        // Linux unmaps a fixed destination first: a duplicate whose destination covers
        // its own source finds nothing left to duplicate.
        if let Some(dest) = v.fixed
            && v.old_len == 0
            && dest <= v.old_addr
            && v.old_addr < dest + v.new_len
        {
            return Err(Errno::EFAULT);
        }
        let move_len = v.old_len.min(v.new_len);
        // Linux: what moves or grows must lie inside one mapping.
        if v.old_addr + move_len > r.end {
            return Err(Errno::EFAULT);
        }
        let device = matches!(r.backing, RegionBacking::Device { .. });
        // Linux: a device window (VM_PFNMAP) neither grows nor keeps its old range.
        if device && v.dontunmap {
            return Err(Errno::EINVAL);
        }
        if device && v.new_len > v.old_len {
            return Err(Errno::EFAULT);
        }
        // Grow in place when the old range ends the region and the space after is free.
        if v.fixed.is_none() && v.old_len > 0 && !v.dontunmap && old_end == r.end {
            let new_end = v.old_addr + v.new_len;
            if self.cfg.usable(r.start, new_end) && c.regions.is_free(old_end, new_end) {
                let ext = Region {
                    start: old_end,
                    end: new_end,
                    backing: r.backing_at(old_end),
                    ..r
                };
                self.check_growth(id, &r, ext.len(), Usage::default(), 0)?;
                return Ok(RemapPlan::Grow {
                    addr: v.old_addr,
                    ext,
                });
            }
        }
        if !v.maymove {
            return Err(Errno::ENOMEM);
        }
        self.plan_move(id, v, r, move_len)
    }

    /// The plan of a move (or duplicate) of `[old_addr, old_addr + move_len)` of `r`.
    fn plan_move(
        &mut self,
        id: ClientId,
        v: &ValidMremap,
        r: Region,
        move_len: u64,
    ) -> Result<RemapPlan, Errno> {
        let keep_old = v.dontunmap || v.old_len == 0;
        let tail =
            (v.old_len > v.new_len).then(|| (v.old_addr + v.new_len, v.old_addr + v.old_len));
        let dest = match v.fixed {
            Some(a) => a,
            None => {
                let (lo, hi) = (self.cfg.mmap_min, self.cfg.mmap_max);
                let c = self.clients.get_mut(&id).ok_or(Errno::ESRCH)?;
                c.regions
                    .find_free_top_down(v.new_len, lo, hi)
                    .ok_or(Errno::ENOMEM)?
            }
        };
        let c = self.clients.get(&id).ok_or(Errno::ESRCH)?;
        let freed = match v.fixed {
            Some(a) => usage(c, a, a + v.new_len),
            None => Usage::default(),
        };
        let t = tail.map_or(Usage::default(), |(s, e)| usage(c, s, e));
        let moved = usage(c, v.old_addr, v.old_addr + move_len);
        // Regions afterwards: the tail and the destination's old contents go, the old
        // piece goes (or, kept and unlocked, may split), the new one comes.
        let old_delta: isize = if keep_old {
            if r.locked && move_len > 0 {
                moved.splits as isize
            } else {
                0
            }
        } else {
            moved.splits as isize - 1
        };
        let after = c.regions.len() as isize + t.splits as isize - t.count as isize
            + freed.splits as isize
            - freed.count as isize
            + old_delta
            + 1;
        if after > self.max_regions(id) as isize {
            return Err(Errno::ENOMEM);
        }
        let released = Usage {
            bytes: freed.bytes + t.bytes + if keep_old { 0 } else { move_len },
            locked: freed.locked + t.locked + if r.locked { move_len } else { 0 },
            ..Usage::default()
        };
        let mut refund = 0;
        if r.accounted {
            let bank = r.charge_bank();
            let mut ranges = alloc::vec![];
            if let Some(a) = v.fixed {
                ranges.push((a, a + v.new_len));
            }
            if let Some(tr) = tail {
                ranges.push(tr);
            }
            for (s, e) in ranges {
                refund += self
                    .accounted_in(id, s, e)
                    .iter()
                    .filter(|(b, _)| *b == bank)
                    .map(|(_, p)| p)
                    .sum::<u64>();
            }
            if !keep_old {
                refund += move_len / PAGE_SIZE;
            }
        }
        self.check_growth(id, &r, v.new_len, released, refund)?;
        let new = Region {
            start: dest,
            end: dest + v.new_len,
            backing: r.backing_at(v.old_addr),
            ..r
        };
        Ok(RemapPlan::Move(MovePlan {
            old: r,
            old_addr: v.old_addr,
            move_len,
            tail,
            new,
            replaces: freed.count > 0,
            keep_old,
        }))
    }

    /// Whether `r`'s attributes on `grow` more bytes fit the client's limits once
    /// `released` is gone and `refund` pages of commit are refunded: `ENOMEM` for bytes
    /// and commit, `EAGAIN` for the lock limit (Linux's mremap of a locked mapping).
    fn check_growth(
        &self,
        id: ClientId,
        r: &Region,
        grow: u64,
        released: Usage,
        refund: u64,
    ) -> Result<(), Errno> {
        let c = self.clients.get(&id).ok_or(Errno::ESRCH)?;
        let lim = c.spec.limits;
        if c.mapped_bytes - released.bytes + grow > lim.max_bytes {
            return Err(Errno::ENOMEM);
        }
        if r.locked
            && !permission::unlimited_locking(&c.spec)
            && c.locked_bytes - released.locked + grow > lim.max_locked
        {
            return Err(Errno::EAGAIN);
        }
        if r.accounted
            && !self
                .mem
                .frames
                .can_charge(r.charge_bank(), grow / PAGE_SIZE, refund)
        {
            return Err(Errno::ENOMEM);
        }
        Ok(())
    }

    fn max_regions(&self, id: ClientId) -> usize {
        self.clients
            .get(&id)
            .map_or(0, |c| c.spec.limits.max_regions as usize)
    }

    /// Carries out the plan; returns the mapping's address. Nothing here can fail.
    fn commit_mremap(&mut self, id: ClientId, plan: RemapPlan) -> u64 {
        match plan {
            RemapPlan::Shrink { addr, from, to } => {
                if from < to {
                    self.release_range(id, from, to);
                }
                addr
            }
            RemapPlan::Grow { addr, ext } => {
                let (start, end) = (ext.start, ext.end);
                self.add_region(id, ext);
                if ext.locked {
                    // Best effort, as mmap's: a page that cannot be had now faults later.
                    let _ = self.populate(id, start, end);
                }
                addr
            }
            RemapPlan::Move(m) => self.commit_move(id, m),
        }
    }

    /// Adds `r` to the client's map in free space, with every counter it changes.
    fn add_region(&mut self, id: ClientId, r: Region) {
        let pages = r.pages();
        if r.accounted {
            let charged = self.mem.frames.charge(r.charge_bank(), pages);
            debug_assert!(charged, "checked by can_charge");
        }
        if let RegionBacking::Object { obj, .. } = r.backing
            && let Some(o) = self.objects.get_mut(&obj)
        {
            o.mapped_pages += pages;
            if r.denywrite {
                o.denywrite_pages += pages;
            }
        }
        if let Some(c) = self.clients.get_mut(&id) {
            c.mapped_bytes += r.len();
            if r.locked {
                c.locked_bytes += r.len();
            }
            c.regions.insert(r);
        }
    }

    /// Takes `[start, end)` (inside one region `r`) out of the map without releasing
    /// its pages or its object: they are about to move.
    fn detach_range(&mut self, id: ClientId, r: &Region, start: u64, end: u64) {
        let pages = (end - start) / PAGE_SIZE;
        if r.accounted {
            self.mem.frames.uncharge(r.charge_bank(), pages);
        }
        if let RegionBacking::Object { obj, .. } = r.backing
            && let Some(o) = self.objects.get_mut(&obj)
        {
            o.mapped_pages -= pages;
            if r.denywrite {
                o.denywrite_pages -= pages;
            }
        }
        if let Some(c) = self.clients.get_mut(&id) {
            c.regions.remove_range(start, end, |_| {});
            c.mapped_bytes -= end - start;
            if r.locked {
                c.locked_bytes -= end - start;
            }
        }
    }

    fn commit_move(&mut self, id: ClientId, m: MovePlan) -> u64 {
        let MovePlan {
            old,
            old_addr,
            move_len,
            tail,
            new,
            replaces,
            keep_old,
        } = m;
        let dest = new.start;
        if replaces {
            self.release_range(id, dest, new.end);
        }
        if let Some((s, e)) = tail {
            self.release_range(id, s, e);
        }
        let (private, installed) = self.take_pages(id, &old, old_addr, move_len);
        if keep_old {
            // DONTUNMAP: the old range stays, empty and (Linux) no longer locked.
            if old.locked
                && move_len > 0
                && let Some(c) = self.clients.get_mut(&id)
            {
                c.regions
                    .update_range(old_addr, old_addr + move_len, |r| r.locked = false);
                c.locked_bytes -= move_len;
            }
        } else {
            self.detach_range(id, &old, old_addr, old_addr + move_len);
        }
        self.add_region(id, new);
        let Some(c) = self.clients.get_mut(&id) else {
            return dest;
        };
        let space = c.space;
        for (off, f) in private {
            c.anon.insert(dest + off, f);
        }
        for (off, f, attrs) in installed {
            // A page table that cannot be had now is no error: the page is still the
            // client's (private) or the object's, and faults back in.
            if self.mem.install(space, dest + off, f, attrs).is_err() {
                break;
            }
        }
        if new.locked && new.len() > move_len {
            let _ = self.populate(id, dest + move_len, new.end);
        }
        dest
    }

    /// Removes the pages of `[start, start + len)` of region `r` from the old place: the
    /// client's private frames (by offset from `start`) and every installed entry
    /// (offset, frame, rights), then the entries themselves. Bounded by the pages that
    /// exist, not by the length of the range. Device pages are not collected: they
    /// fault back in at the new place from the window itself.
    fn take_pages(&mut self, id: ClientId, r: &Region, start: u64, len: u64) -> TakenPages {
        let (mut private, mut installed) = (Vec::new(), Vec::new());
        let Some(c) = self.clients.get_mut(&id) else {
            return (private, installed);
        };
        let end = start + len;
        let keys: Vec<u64> = c.anon.range(start..end).map(|(&va, _)| va).collect();
        for va in keys {
            if let Some(f) = c.anon.remove(&va) {
                private.push((va - start, f));
            }
        }
        let space = c.space;
        // A page may be both the client's copy and an object page's place: once.
        let mut candidates: alloc::collections::BTreeSet<u64> =
            private.iter().map(|&(off, _)| start + off).collect();
        if let RegionBacking::Object { obj, offset } = r.backing
            && let Some(o) = self.objects.get(&obj)
        {
            let idx_of = |va: u64| (offset + va - r.start) / PAGE_SIZE;
            for &idx in o.pages.range(idx_of(start)..idx_of(end)).map(|(i, _)| i) {
                candidates.insert(r.start + idx * PAGE_SIZE - offset);
            }
        }
        let other = !matches!(r.backing, RegionBacking::Anon { .. });
        for va in &candidates {
            if let Some((f, attrs)) = self.mem.stub.query(space, *va) {
                installed.push((va - start, f, attrs));
            }
        }
        if len > 0 && (other || !candidates.is_empty()) {
            self.mem.stub.unmap(space, start, len / PAGE_SIZE);
        }
        (private, installed)
    }
}

/// What `[start, end)` of `c` holds.
fn usage<S>(c: &crate::client_state::ClientState<S>, start: u64, end: u64) -> Usage {
    if start >= end {
        return Usage::default();
    }
    let (count, splits) = c.regions.range_summary(start, end);
    let (bytes, locked) = c
        .regions
        .overlapping(start, end)
        .fold((0u64, 0u64), |(b, l), r| {
            let part = r.end.min(end) - r.start.max(start);
            (b + part, l + if r.locked { part } else { 0 })
        });
    Usage {
        count,
        splits,
        bytes,
        locked,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, FrameRange};
    use crate::server::Server;
    use crate::test_stub::TestStub;
    use ipc_proto::{Errno, MremapFlags, PAGE_SIZE};

    const P: u64 = PAGE_SIZE;

    fn server() -> Server<TestStub> {
        let cfg = Config::with_ram(alloc::vec![FrameRange {
            start: 100,
            count: 64
        }]);
        Server::new(cfg, TestStub::default())
    }

    #[test]
    fn arguments_are_checked_in_linuxs_order() {
        let s = server();
        let (lo, hi) = (s.cfg.mmap_min, s.cfg.mmap_max);
        let v = |old, ol, nl, f, new| s.validate_mremap(old, ol, nl, f, new).map(|_| ());
        let mm = MremapFlags::MAYMOVE;
        let fx = MremapFlags::FIXED;
        let du = MremapFlags::DONTUNMAP;
        // FIXED and DONTUNMAP need MAYMOVE, before anything else is looked at.
        assert_eq!(v(lo + 1, 0, 0, fx, 0), Err(Errno::EINVAL));
        assert_eq!(v(lo, P, P, du, 0), Err(Errno::EINVAL));
        assert_eq!(v(lo + 1, P, P, mm, 0), Err(Errno::EINVAL));
        assert_eq!(v(lo, P, 0, mm, 0), Err(Errno::EINVAL));
        assert_eq!(v(lo, P, u64::MAX, mm, 0), Err(Errno::EINVAL));
        assert_eq!(v(lo, P, 2 * P, mm | du, 0), Err(Errno::EINVAL));
        assert_eq!(v(lo, P, hi - lo + P, mm, 0), Err(Errno::EINVAL));
        assert_eq!(v(hi, P, P, mm, 0), Err(Errno::EINVAL));
        // Fixed destinations: aligned, inside, not overlapping, not below the floor.
        assert_eq!(v(lo, P, P, mm | fx, lo + 8 * P + 1), Err(Errno::EINVAL));
        assert_eq!(v(lo, P, P, mm | fx, hi), Err(Errno::EINVAL));
        assert_eq!(v(lo + P, 2 * P, 2 * P, mm | fx, lo), Err(Errno::EINVAL));
        assert_eq!(v(lo, P, P, mm | fx, lo - P), Err(Errno::EPERM));
        assert_eq!(v(lo, P, P, mm | fx, lo + 8 * P), Ok(()));
        // Lengths are rounded up; old_len 0 is allowed here (a shared duplicate).
        let ok = s.validate_mremap(lo, 1, P + 1, mm, 0).unwrap();
        assert_eq!((ok.old_len, ok.new_len, ok.fixed), (P, 2 * P, None));
        assert_eq!(v(lo, 0, P, mm, 0), Ok(()));
    }
}
