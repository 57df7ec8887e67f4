//! [`Stub`]: address spaces, grants, the page-table pool, and every operation on them.

use crate::attrs::{Attrs, Cache};
use crate::cap::{FrameCap, FrameKind, SpaceCap};
use crate::error::{Access, Error, Fault};
use crate::phys::PhysMemory;
use crate::tlb::Tlb;
use crate::{HUGE_PAGE_SIZE, KERNEL_HALF, PAGE_SIZE};
use x86_64::structures::paging::{PageTable, PageTableFlags as F, PhysFrame};
use x86_64::{PhysAddr, VirtAddr};

/// Per-frame state of granted RAM: bit 31 marks a page-table frame (pooled or in use),
/// the low bits count the user mappings of the frame.
pub type FrameState = u32;
const TABLE: FrameState = 1 << 31;

/// How many grants the stub can hold.
pub const MAX_GRANTS: usize = 32;
/// Most pages flushed one by one before a batched operation flushes everything.
const MAX_BATCH_FLUSH: usize = 32;
/// Flags of an entry pointing at a lower-level table: rights are decided at the leaf.
const TABLE_FLAGS: F = F::PRESENT.union(F::WRITABLE).union(F::USER_ACCESSIBLE);

/// The size of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSize {
    /// 4 KiB.
    Small,
    /// 2 MiB.
    Huge,
}

/// Fixed settings of a stub.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Lowest user address a mapping may use.
    pub user_start: u64,
    /// One past the highest (at most [`KERNEL_HALF`]).
    pub user_end: u64,
    /// Batched operations changing more pages than this flush the whole space once.
    pub flush_threshold: usize,
    /// A root table whose upper half (entries 256..512, the kernel) is copied into every
    /// new space; `None` in host tests.
    pub kernel_template: Option<PhysFrame>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            user_start: 0,
            user_end: KERNEL_HALF,
            flush_threshold: 16,
            kernel_template: None,
        }
    }
}

#[derive(Clone, Copy)]
struct Grant {
    start: u64,
    count: u64,
    kind: FrameKind,
    /// Index of the grant's first frame in the state storage (RAM only).
    state_base: usize,
}

#[derive(Clone, Copy)]
struct Slot {
    root: Option<PhysFrame>,
    generation: u32,
}

/// TLB flushes collected during one operation, issued once at its end.
struct Flush {
    space: SpaceCap,
    pages: [u64; MAX_BATCH_FLUSH],
    n: usize,
    limit: usize,
    all: bool,
}

impl Flush {
    fn new(space: SpaceCap, limit: usize) -> Flush {
        Flush {
            space,
            pages: [0; MAX_BATCH_FLUSH],
            n: 0,
            limit: limit.min(MAX_BATCH_FLUSH),
            all: false,
        }
    }
    fn page(&mut self, va: u64) {
        if self.n < self.limit {
            self.pages[self.n] = va;
            self.n += 1;
        } else {
            self.all = true;
        }
    }
    fn issue(self, tlb: &mut impl Tlb) {
        if self.all {
            tlb.flush_all(self.space);
        } else {
            for &va in &self.pages[..self.n] {
                tlb.flush_page(self.space, va);
            }
        }
    }
}

/// The kernel stub over physical memory `P`, TLB hook `T`, per-frame state storage `S`,
/// with `N` address-space slots.
pub struct Stub<P, T, S, const N: usize = 1024> {
    phys: P,
    tlb: T,
    states: S,
    cfg: Config,
    grants: [Option<Grant>; MAX_GRANTS],
    states_used: usize,
    slots: [Slot; N],
    pool_head: Option<PhysFrame>,
    pool_len: u64,
    tables_in_use: u64,
}

fn frame_at(n: u64) -> Option<PhysFrame> {
    PhysFrame::from_start_address(PhysAddr::try_new(n.checked_mul(PAGE_SIZE)?).ok()?).ok()
}

fn frame_number(f: PhysFrame) -> u64 {
    f.start_address().as_u64() / PAGE_SIZE
}

/// The four table indices of `va`, root first.
fn indices(va: VirtAddr) -> [usize; 4] {
    [
        usize::from(va.p4_index()),
        usize::from(va.p3_index()),
        usize::from(va.p2_index()),
        usize::from(va.p1_index()),
    ]
}

/// Bytes one entry covers at each level, root first.
const SPAN: [u64; 4] = [1 << 39, 1 << 30, 1 << 21, 1 << 12];

impl<P: PhysMemory, T: Tlb, S: AsRef<[FrameState]> + AsMut<[FrameState]>, const N: usize>
    Stub<P, T, S, N>
{
    /// A stub with no grants, no spaces and an empty pool.
    pub fn new(phys: P, tlb: T, states: S, cfg: Config) -> Self {
        Stub {
            phys,
            tlb,
            states,
            cfg,
            grants: [None; MAX_GRANTS],
            states_used: 0,
            slots: [Slot {
                root: None,
                generation: 0,
            }; N],
            pool_head: None,
            pool_len: 0,
            tables_in_use: 0,
        }
    }

    /// The TLB hook (e.g. to read test counters).
    pub fn tlb(&self) -> &T {
        &self.tlb
    }

    /// The TLB hook, mutable.
    pub fn tlb_mut(&mut self) -> &mut T {
        &mut self.tlb
    }

    /// Frames in the pool, ready to become page tables.
    pub fn pool_free(&self) -> u64 {
        self.pool_len
    }

    /// Frames in use as page tables (roots included).
    pub fn tables_in_use(&self) -> u64 {
        self.tables_in_use
    }

    // ---- grants and frame capabilities (trusted: the kernel calls these) ----

    /// Grants RAM frames `start .. start + count` to the server.
    pub fn grant_ram(&mut self, start: u64, count: u64) -> Result<(), Error> {
        let need = usize::try_from(count).map_err(|_| Error::BadGrant)?;
        if self
            .states_used
            .checked_add(need)
            .is_none_or(|n| n > self.states.as_ref().len())
        {
            return Err(Error::BadGrant);
        }
        let base = self.states_used;
        self.add_grant(Grant {
            start,
            count,
            kind: FrameKind::Ram,
            state_base: base,
        })?;
        self.states.as_mut()[base..base + need].fill(0);
        self.states_used += need;
        Ok(())
    }

    /// Grants device frames `start .. start + count` to the server.
    pub fn grant_device(&mut self, start: u64, count: u64) -> Result<(), Error> {
        self.add_grant(Grant {
            start,
            count,
            kind: FrameKind::Device,
            state_base: 0,
        })
    }

    fn add_grant(&mut self, g: Grant) -> Result<(), Error> {
        let end = g.start.checked_add(g.count).ok_or(Error::BadGrant)?;
        if g.count == 0 || frame_at(end - 1).is_none() {
            return Err(Error::BadGrant);
        }
        let overlaps = self
            .grants
            .iter()
            .flatten()
            .any(|o| g.start < o.start + o.count && o.start < end);
        let slot = self
            .grants
            .iter_mut()
            .find(|s| s.is_none())
            .ok_or(Error::BadGrant)?;
        if overlaps {
            return Err(Error::BadGrant);
        }
        *slot = Some(g);
        Ok(())
    }

    fn grant_of(&self, frame: u64) -> Option<&Grant> {
        self.grants
            .iter()
            .flatten()
            .find(|g| frame >= g.start && frame < g.start + g.count)
    }

    /// The capability for the frame at physical address `addr`, if it was granted.
    pub fn frame_cap(&self, addr: u64) -> Result<FrameCap, Error> {
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(Error::Unaligned);
        }
        let n = addr / PAGE_SIZE;
        let g = self.grant_of(n).ok_or(Error::NotGranted)?;
        let frame = frame_at(n).ok_or(Error::NotGranted)?;
        Ok(FrameCap {
            frame,
            kind: g.kind,
        })
    }

    fn state_index(&self, f: PhysFrame) -> Option<usize> {
        let n = frame_number(f);
        let g = self.grant_of(n)?;
        (g.kind == FrameKind::Ram).then(|| g.state_base + (n - g.start) as usize)
    }

    fn state(&self, f: PhysFrame) -> FrameState {
        self.state_index(f).map_or(0, |i| self.states.as_ref()[i])
    }

    fn set_state(&mut self, f: PhysFrame, s: FrameState) {
        if let Some(i) = self.state_index(f) {
            self.states.as_mut()[i] = s;
        }
    }

    /// How many user mappings point at `cap`'s frame.
    pub fn map_count(&self, cap: FrameCap) -> u32 {
        self.state(cap.frame) & !TABLE
    }

    /// Re-validates a capability (it may name a frame that became a page table since).
    fn usable(&self, cap: FrameCap, cache: Cache) -> Result<PhysFrame, Error> {
        let g = self
            .grant_of(frame_number(cap.frame))
            .ok_or(Error::NotGranted)?;
        if g.kind != cap.kind {
            return Err(Error::NotGranted);
        }
        if cap.kind == FrameKind::Ram && cache == Cache::Uncached {
            return Err(Error::CacheMode);
        }
        let s = self.state(cap.frame);
        if s & TABLE != 0 {
            return Err(Error::TableFrame);
        }
        if s & !TABLE == !TABLE {
            return Err(Error::TooManyMappings);
        }
        Ok(cap.frame)
    }

    fn add_mapping(&mut self, f: PhysFrame, delta: i32) {
        if let Some(i) = self.state_index(f) {
            let s = &mut self.states.as_mut()[i];
            *s = if delta > 0 {
                *s + 1
            } else {
                s.saturating_sub(1)
            };
        }
    }

    // ---- the page-table pool ----

    /// Lends the stub a RAM frame for page tables. It must not be mapped or pooled.
    pub fn donate_table_frame(&mut self, cap: FrameCap) -> Result<(), Error> {
        let g = self
            .grant_of(frame_number(cap.frame))
            .ok_or(Error::NotGranted)?;
        if g.kind != FrameKind::Ram || cap.kind != FrameKind::Ram {
            return Err(Error::NotGranted);
        }
        match self.state(cap.frame) {
            0 => {}
            s if s & TABLE != 0 => return Err(Error::TableFrame),
            _ => return Err(Error::FrameInUse),
        }
        self.set_state(cap.frame, TABLE);
        self.push_pool(cap.frame);
        Ok(())
    }

    /// Takes back a pooled table frame, if any.
    pub fn reclaim_table_frame(&mut self) -> Option<FrameCap> {
        let f = self.pop_pool()?;
        self.set_state(f, 0);
        Some(FrameCap {
            frame: f,
            kind: FrameKind::Ram,
        })
    }

    fn push_pool(&mut self, f: PhysFrame) {
        let next = self.pool_head.map_or(0, |h| frame_number(h) + 1);
        if let Some(b) = self.phys.frame_mut(f) {
            b.0[..8].copy_from_slice(&next.to_le_bytes());
        }
        self.pool_head = Some(f);
        self.pool_len += 1;
    }

    fn pop_pool(&mut self) -> Option<PhysFrame> {
        let f = self.pool_head?;
        let next = self.phys.frame(f).map_or(0, |b| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b.0[..8]);
            u64::from_le_bytes(w)
        });
        self.pool_head = next.checked_sub(1).and_then(frame_at);
        self.pool_len -= 1;
        Some(f)
    }

    /// A zeroed table frame from the pool (callers checked `pool_len` first).
    fn take_table(&mut self) -> Result<PhysFrame, Error> {
        let f = self.pop_pool().ok_or(Error::OutOfTableFrames)?;
        if let Some(b) = self.phys.frame_mut(f) {
            b.0.fill(0);
        }
        self.tables_in_use += 1;
        Ok(f)
    }

    fn free_table(&mut self, f: PhysFrame) {
        self.tables_in_use -= 1;
        self.push_pool(f);
    }

    fn table(&self, f: PhysFrame) -> Result<&PageTable, Error> {
        self.phys
            .frame(f)
            .map(|b| b.as_table())
            .ok_or(Error::NotGranted)
    }

    fn table_mut(&mut self, f: PhysFrame) -> Result<&mut PageTable, Error> {
        self.phys
            .frame_mut(f)
            .map(|b| b.as_table_mut())
            .ok_or(Error::NotGranted)
    }

    // ---- spaces ----

    /// Makes an empty address space (its root table comes from the pool).
    pub fn create_space(&mut self) -> Result<SpaceCap, Error> {
        let slot = self
            .slots
            .iter()
            .position(|s| s.root.is_none())
            .ok_or(Error::OutOfSpaces)?;
        let root = self.take_table()?;
        if let Some(t) = self.cfg.kernel_template {
            let mut upper = [0u64; 256];
            if let Ok(tt) = self.table(t) {
                for (i, e) in tt.iter().skip(256).enumerate() {
                    upper[i] = e.addr().as_u64() | e.flags().bits();
                }
            }
            let rt = self.table_mut(root)?;
            for (i, raw) in upper.iter().enumerate() {
                if *raw != 0 {
                    rt[256 + i].set_addr(
                        PhysAddr::new(raw & 0x000f_ffff_ffff_f000),
                        F::from_bits_truncate(*raw),
                    );
                }
            }
        }
        self.slots[slot].root = Some(root);
        Ok(SpaceCap {
            slot: slot as u16,
            generation: self.slots[slot].generation,
        })
    }

    fn root(&self, cap: SpaceCap) -> Result<PhysFrame, Error> {
        let slot = self
            .slots
            .get(usize::from(cap.slot))
            .ok_or(Error::BadSpace)?;
        if cap.generation < slot.generation {
            return Err(Error::StaleSpace);
        }
        match slot.root {
            Some(r) if cap.generation == slot.generation => Ok(r),
            _ => Err(Error::BadSpace),
        }
    }

    /// The physical root table of a space (for loading CR3).
    pub fn root_table(&self, cap: SpaceCap) -> Result<PhysFrame, Error> {
        self.root(cap)
    }

    /// Destroys a space: every mapping goes, every table page returns to the pool.
    pub fn destroy_space(&mut self, cap: SpaceCap) -> Result<(), Error> {
        let root = self.root(cap)?;
        self.free_tree(root, 0)?;
        let slot = &mut self.slots[usize::from(cap.slot)];
        slot.root = None;
        slot.generation = slot.generation.wrapping_add(1);
        self.tlb.flush_all(cap);
        Ok(())
    }

    fn free_tree(&mut self, t: PhysFrame, level: usize) -> Result<(), Error> {
        // Only the user half belongs to the space; the kernel half is shared.
        let top = if level == 0 { 256 } else { 512 };
        for i in 0..top {
            let e = &self.table(t)?[i];
            if e.is_unused() {
                continue;
            }
            let (addr, flags) = (e.addr(), e.flags());
            let Ok(child) = PhysFrame::from_start_address(addr) else {
                continue;
            };
            if level == 3 || (level == 2 && flags.contains(F::HUGE_PAGE)) {
                let n = if level == 3 { 1 } else { 512 };
                for k in 0..n {
                    if let Some(f) = frame_at(frame_number(child) + k) {
                        self.add_mapping(f, -1);
                    }
                }
            } else {
                self.free_tree(child, level + 1)?;
            }
        }
        self.free_table(t);
        Ok(())
    }

    fn check_vaddr(&self, va: u64, align: u64) -> Result<VirtAddr, Error> {
        let v = VirtAddr::try_new(va).map_err(|_| Error::NonCanonical)?;
        if va >= KERNEL_HALF {
            return Err(Error::KernelHalf);
        }
        if !va.is_multiple_of(align) {
            return Err(Error::Unaligned);
        }
        if va < self.cfg.user_start || va.checked_add(align).is_none_or(|e| e > self.cfg.user_end) {
            return Err(Error::OutsideWindow);
        }
        Ok(v)
    }

    /// Checks `[start, start + pages * 4096)` lies in the user window.
    fn check_range(&self, start: u64, pages: u64) -> Result<u64, Error> {
        self.check_vaddr(start, PAGE_SIZE)?;
        let end = pages
            .checked_mul(PAGE_SIZE)
            .and_then(|l| start.checked_add(l))
            .ok_or(Error::BadRange)?;
        if end > self.cfg.user_end {
            return Err(Error::OutsideWindow);
        }
        Ok(end)
    }

    // ---- walking ----

    /// The table frames on the way to `va` and how far the walk got: `depth` tables exist
    /// (1 = only the root); `huge` if level 2 holds a 2 MiB leaf.
    fn walk(&self, root: PhysFrame, va: VirtAddr) -> Result<([PhysFrame; 4], usize, bool), Error> {
        let idx = indices(va);
        let mut path = [root; 4];
        for level in 0..3 {
            let e = &self.table(path[level])?[idx[level]];
            if e.is_unused() {
                return Ok((path, level + 1, false));
            }
            if level == 2 && e.flags().contains(F::HUGE_PAGE) {
                return Ok((path, 3, true));
            }
            path[level + 1] =
                PhysFrame::from_start_address(e.addr()).map_err(|_| Error::NotGranted)?;
        }
        Ok((path, 4, false))
    }

    /// Creates the missing tables down to level 1 (the caller checked the pool).
    fn ensure_tables(
        &mut self,
        root: PhysFrame,
        va: VirtAddr,
        down_to: usize,
    ) -> Result<[PhysFrame; 4], Error> {
        let idx = indices(va);
        let mut path = [root; 4];
        for level in 0..down_to {
            let e = &self.table(path[level])?[idx[level]];
            let child = if e.is_unused() {
                let t = self.take_table()?;
                self.table_mut(path[level])?[idx[level]].set_addr(t.start_address(), TABLE_FLAGS);
                t
            } else {
                PhysFrame::from_start_address(e.addr()).map_err(|_| Error::NotGranted)?
            };
            path[level + 1] = child;
        }
        Ok(path)
    }

    /// Replaces the 2 MiB leaf at `pd[i]` with a table of 512 equivalent 4 KiB entries.
    fn split_huge(&mut self, space: SpaceCap, pd: PhysFrame, i: usize) -> Result<(), Error> {
        if self.pool_len == 0 {
            return Err(Error::OutOfTableFrames);
        }
        let e = &self.table(pd)?[i];
        let (base, flags) = (e.addr(), e.flags() - F::HUGE_PAGE);
        let t = self.take_table()?;
        let tab = self.table_mut(t)?;
        for (k, entry) in tab.iter_mut().enumerate() {
            entry.set_addr(base + k as u64 * PAGE_SIZE, flags);
        }
        self.table_mut(pd)?[i].set_addr(t.start_address(), TABLE_FLAGS);
        // A present huge entry changed: drop every cached translation of the space.
        self.tlb.flush_all(space);
        Ok(())
    }

    /// Frees empty tables along `path` from level 1 up (never the root).
    fn prune(&mut self, path: [PhysFrame; 4], va: VirtAddr, depth: usize) -> Result<(), Error> {
        let idx = indices(va);
        for level in (1..depth).rev() {
            if self.table(path[level])?.iter().any(|e| !e.is_unused()) {
                break;
            }
            self.free_table(path[level]);
            self.table_mut(path[level - 1])?[idx[level - 1]].set_unused();
        }
        Ok(())
    }

    // ---- map ----

    /// Maps the frame of `cap` at `vaddr` (4 KiB). Refuses an occupied address.
    pub fn map(
        &mut self,
        space: SpaceCap,
        vaddr: u64,
        cap: FrameCap,
        attrs: Attrs,
    ) -> Result<(), Error> {
        let root = self.root(space)?;
        let va = self.check_vaddr(vaddr, PAGE_SIZE)?;
        let frame = self.usable(cap, attrs.cache)?;
        let (path, depth, huge) = self.walk(root, va)?;
        if huge || (depth == 4 && !self.table(path[3])?[indices(va)[3]].is_unused()) {
            return Err(Error::AlreadyMapped);
        }
        if self.pool_len < (4 - depth) as u64 {
            return Err(Error::OutOfTableFrames);
        }
        let path = self.ensure_tables(root, va, 3)?;
        self.table_mut(path[3])?[indices(va)[3]].set_addr(frame.start_address(), attrs.flags());
        self.add_mapping(frame, 1);
        Ok(())
    }

    /// Maps `frames` at consecutive pages from `vaddr`; all or nothing.
    pub fn map_range(
        &mut self,
        space: SpaceCap,
        vaddr: u64,
        frames: &[FrameCap],
        attrs: Attrs,
    ) -> Result<(), Error> {
        self.check_range(vaddr, frames.len() as u64)?;
        for (i, &cap) in frames.iter().enumerate() {
            let va = vaddr + i as u64 * PAGE_SIZE;
            if let Err(e) = self.map(space, va, cap, attrs) {
                // Roll back: these entries were empty before, so no flush is owed.
                for k in 0..i {
                    let _ = self.unmap_quiet(space, vaddr + k as u64 * PAGE_SIZE);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Maps 512 frames starting at `first` as one 2 MiB page at `vaddr` (both 2 MiB
    /// aligned, all 512 frames granted alike).
    pub fn map_huge(
        &mut self,
        space: SpaceCap,
        vaddr: u64,
        first: FrameCap,
        attrs: Attrs,
    ) -> Result<(), Error> {
        let root = self.root(space)?;
        let va = self.check_vaddr(vaddr, HUGE_PAGE_SIZE)?;
        let start = frame_number(first.frame);
        if !start.is_multiple_of(512) {
            return Err(Error::Unaligned);
        }
        let g = *self.grant_of(start).ok_or(Error::NotGranted)?;
        if g.kind != first.kind || start + 512 > g.start + g.count {
            return Err(Error::NotGranted);
        }
        for k in 0..512 {
            let cap = FrameCap {
                frame: frame_at(start + k).ok_or(Error::NotGranted)?,
                kind: g.kind,
            };
            self.usable(cap, attrs.cache)?;
        }
        let (_, depth, huge) = self.walk(root, va)?;
        if huge || depth == 4 {
            return Err(Error::AlreadyMapped);
        }
        if self.pool_len < (3 - depth) as u64 {
            return Err(Error::OutOfTableFrames);
        }
        let path = self.ensure_tables(root, va, 2)?;
        self.table_mut(path[2])?[indices(va)[2]]
            .set_addr(first.frame.start_address(), attrs.flags() | F::HUGE_PAGE);
        for k in 0..512 {
            if let Some(f) = frame_at(start + k) {
                self.add_mapping(f, 1);
            }
        }
        Ok(())
    }

    // ---- unmap ----

    /// Removes the 4 KiB mapping at `vaddr` (splitting a 2 MiB page around it), returning
    /// what was there.
    pub fn unmap(
        &mut self,
        space: SpaceCap,
        vaddr: u64,
    ) -> Result<Option<(PhysFrame, Attrs)>, Error> {
        let mut flush = Flush::new(space, self.cfg.flush_threshold);
        let out = self.unmap_one(space, vaddr, &mut flush);
        flush.issue(&mut self.tlb);
        out
    }

    fn unmap_quiet(
        &mut self,
        space: SpaceCap,
        vaddr: u64,
    ) -> Result<Option<(PhysFrame, Attrs)>, Error> {
        let mut flush = Flush::new(space, 0);
        self.unmap_one(space, vaddr, &mut flush)
    }

    fn unmap_one(
        &mut self,
        space: SpaceCap,
        vaddr: u64,
        flush: &mut Flush,
    ) -> Result<Option<(PhysFrame, Attrs)>, Error> {
        let root = self.root(space)?;
        let va = self.check_vaddr(vaddr, PAGE_SIZE)?;
        let (path, depth, huge) = self.walk(root, va)?;
        if huge {
            self.split_huge(space, path[2], indices(va)[2])?;
            return self.unmap_one(space, vaddr, flush);
        }
        if depth < 4 {
            return Ok(None);
        }
        let i = indices(va)[3];
        let e = &self.table(path[3])?[i];
        if e.is_unused() {
            return Ok(None);
        }
        let (frame, attrs) = (
            PhysFrame::containing_address(e.addr()),
            Attrs::from_flags(e.flags()),
        );
        self.table_mut(path[3])?[i].set_unused();
        self.add_mapping(frame, -1);
        self.prune(path, va, 4)?;
        flush.page(vaddr);
        Ok(Some((frame, attrs)))
    }

    /// Removes every mapping in `[vaddr, vaddr + pages * 4096)`, calling `f(va, frame,
    /// attrs)` for each 4 KiB page removed. Unmapped pages are skipped, absent tables in
    /// whole strides.
    pub fn unmap_range(
        &mut self,
        space: SpaceCap,
        vaddr: u64,
        pages: u64,
        mut f: impl FnMut(u64, PhysFrame, Attrs),
    ) -> Result<u64, Error> {
        let root = self.root(space)?;
        let end = self.check_range(vaddr, pages)?;
        let mut flush = Flush::new(space, self.cfg.flush_threshold);
        let mut removed = 0;
        let mut va = vaddr;
        while va < end {
            let v = VirtAddr::new(va);
            let (path, depth, huge) = self.walk(root, v)?;
            if huge {
                let base = va & !(HUGE_PAGE_SIZE - 1);
                if base == va && va + HUGE_PAGE_SIZE <= end {
                    let i = indices(v)[2];
                    let e = &self.table(path[2])?[i];
                    let (first, attrs) = (
                        frame_number(PhysFrame::containing_address(e.addr())),
                        Attrs::from_flags(e.flags()),
                    );
                    self.table_mut(path[2])?[i].set_unused();
                    for k in 0..512 {
                        if let Some(fr) = frame_at(first + k) {
                            self.add_mapping(fr, -1);
                            f(va + k * PAGE_SIZE, fr, attrs);
                        }
                    }
                    self.prune(path, v, 3)?;
                    flush.all = true;
                    removed += 512;
                    va += HUGE_PAGE_SIZE;
                } else if let Err(e) = self.split_huge(space, path[2], indices(v)[2]) {
                    flush.issue(&mut self.tlb);
                    return Err(e);
                }
                continue;
            }
            if depth < 4 {
                // Skip to the next entry of the level that was missing.
                let span = SPAN[depth - 1];
                va = (va & !(span - 1)).saturating_add(span);
                continue;
            }
            if let Some((fr, attrs)) = self.unmap_one(space, va, &mut flush)? {
                f(va, fr, attrs);
                removed += 1;
            }
            va += PAGE_SIZE;
        }
        flush.issue(&mut self.tlb);
        Ok(removed)
    }

    // ---- protect ----

    /// Changes the attributes of the mapping at `vaddr`, returning the old ones.
    pub fn protect(
        &mut self,
        space: SpaceCap,
        vaddr: u64,
        attrs: Attrs,
    ) -> Result<Option<Attrs>, Error> {
        let mut flush = Flush::new(space, self.cfg.flush_threshold);
        let out = self.protect_one(space, vaddr, attrs, &mut flush);
        flush.issue(&mut self.tlb);
        out
    }

    fn protect_one(
        &mut self,
        space: SpaceCap,
        vaddr: u64,
        attrs: Attrs,
        flush: &mut Flush,
    ) -> Result<Option<Attrs>, Error> {
        let root = self.root(space)?;
        let va = self.check_vaddr(vaddr, PAGE_SIZE)?;
        let (path, depth, huge) = self.walk(root, va)?;
        if huge {
            let e = &self.table(path[2])?[indices(va)[2]];
            if Attrs::from_flags(e.flags() - F::HUGE_PAGE) == attrs {
                return Ok(Some(attrs));
            }
            self.split_huge(space, path[2], indices(va)[2])?;
            return self.protect_one(space, vaddr, attrs, flush);
        }
        if depth < 4 {
            return Ok(None);
        }
        let i = indices(va)[3];
        let e = &self.table(path[3])?[i];
        if e.is_unused() {
            return Ok(None);
        }
        let (frame, old) = (
            PhysFrame::containing_address(e.addr()),
            Attrs::from_flags(e.flags()),
        );
        if old == attrs {
            return Ok(Some(old));
        }
        let kind = self.grant_of(frame_number(frame)).map(|g| g.kind);
        if kind == Some(FrameKind::Ram) && attrs.cache == Cache::Uncached {
            return Err(Error::CacheMode);
        }
        self.table_mut(path[3])?[i].set_addr(frame.start_address(), attrs.flags());
        flush.page(vaddr);
        Ok(Some(old))
    }

    /// Sets `attrs` on every mapping in the range; returns how many pages changed.
    pub fn protect_range(
        &mut self,
        space: SpaceCap,
        vaddr: u64,
        pages: u64,
        attrs: Attrs,
    ) -> Result<u64, Error> {
        let root = self.root(space)?;
        let end = self.check_range(vaddr, pages)?;
        let mut flush = Flush::new(space, self.cfg.flush_threshold);
        let mut changed = 0;
        let mut va = vaddr;
        while va < end {
            let v = VirtAddr::new(va);
            let (_, depth, huge) = self.walk(root, v)?;
            if !huge && depth < 4 {
                let span = SPAN[depth - 1];
                va = (va & !(span - 1)).saturating_add(span);
                continue;
            }
            match self.protect_one(space, va, attrs, &mut flush) {
                Ok(Some(old)) if old != attrs => changed += 1,
                Ok(_) => {}
                Err(e) => {
                    flush.issue(&mut self.tlb);
                    return Err(e);
                }
            }
            va += PAGE_SIZE;
        }
        flush.issue(&mut self.tlb);
        Ok(changed)
    }

    // ---- looking ----

    /// What is mapped at `vaddr`: the 4 KiB frame holding it, its attributes, its size.
    pub fn query(
        &self,
        space: SpaceCap,
        vaddr: u64,
    ) -> Result<Option<(PhysFrame, Attrs, PageSize)>, Error> {
        let root = self.root(space)?;
        let va = VirtAddr::try_new(vaddr).map_err(|_| Error::NonCanonical)?;
        if vaddr >= KERNEL_HALF {
            return Err(Error::KernelHalf);
        }
        let (path, depth, huge) = self.walk(root, va)?;
        if huge {
            let e = &self.table(path[2])?[indices(va)[2]];
            let off = (vaddr & (HUGE_PAGE_SIZE - 1)) & !(PAGE_SIZE - 1);
            let f = PhysFrame::containing_address(e.addr() + off);
            return Ok(Some((
                f,
                Attrs::from_flags(e.flags() - F::HUGE_PAGE),
                PageSize::Huge,
            )));
        }
        if depth < 4 {
            return Ok(None);
        }
        let e = &self.table(path[3])?[indices(va)[3]];
        if e.is_unused() {
            return Ok(None);
        }
        Ok(Some((
            PhysFrame::containing_address(e.addr()),
            Attrs::from_flags(e.flags()),
            PageSize::Small,
        )))
    }

    /// Calls `f(vaddr, frame, attrs, size)` for every user mapping, in address order
    /// (a 2 MiB mapping once, with its first frame).
    pub fn for_each_mapping(
        &self,
        space: SpaceCap,
        mut f: impl FnMut(u64, PhysFrame, Attrs, PageSize),
    ) -> Result<(), Error> {
        let root = self.root(space)?;
        self.visit(root, 0, 0, &mut f)
    }

    fn visit(
        &self,
        t: PhysFrame,
        level: usize,
        base: u64,
        f: &mut impl FnMut(u64, PhysFrame, Attrs, PageSize),
    ) -> Result<(), Error> {
        let top = if level == 0 { 256 } else { 512 };
        for i in 0..top {
            let e = &self.table(t)?[i];
            if e.is_unused() {
                continue;
            }
            let va = base + i as u64 * SPAN[level];
            let frame = PhysFrame::containing_address(e.addr());
            if level == 3 {
                f(va, frame, Attrs::from_flags(e.flags()), PageSize::Small);
            } else if level == 2 && e.flags().contains(F::HUGE_PAGE) {
                f(
                    va,
                    frame,
                    Attrs::from_flags(e.flags() - F::HUGE_PAGE),
                    PageSize::Huge,
                );
            } else {
                self.visit(frame, level + 1, va, f)?;
            }
        }
        Ok(())
    }

    /// Walks the tables for a user-mode `access` at `vaddr` exactly as the CPU does:
    /// present at every level, writable and user at every level, NX at none.
    pub fn translate(
        &self,
        space: SpaceCap,
        vaddr: u64,
        access: Access,
    ) -> Result<(PhysAddr, F), Fault> {
        let root = self.root(space).map_err(|_| Fault::NotPresent)?;
        let va = VirtAddr::try_new(vaddr).map_err(|_| Fault::Protection)?;
        let idx = indices(va);
        let (mut t, mut writable, mut user, mut nx) = (root, true, true, false);
        for (level, &i) in idx.iter().enumerate() {
            let e = &self.table(t).map_err(|_| Fault::NotPresent)?[i];
            let flags = e.flags();
            if !flags.contains(F::PRESENT) {
                return Err(Fault::NotPresent);
            }
            writable &= flags.contains(F::WRITABLE);
            user &= flags.contains(F::USER_ACCESSIBLE);
            nx |= flags.contains(F::NO_EXECUTE);
            let leaf = level == 3 || (level == 2 && flags.contains(F::HUGE_PAGE));
            if leaf {
                let ok = user
                    && match access {
                        Access::Read => true,
                        Access::Write => writable,
                        Access::Exec => !nx,
                    };
                if !ok {
                    return Err(Fault::Protection);
                }
                let mask = if level == 3 {
                    PAGE_SIZE - 1
                } else {
                    HUGE_PAGE_SIZE - 1
                };
                return Ok((e.addr() + (vaddr & mask), flags));
            }
            t = PhysFrame::from_start_address(e.addr()).map_err(|_| Fault::NotPresent)?;
        }
        Err(Fault::NotPresent)
    }

    // ---- frame contents ----

    fn data_frame(&self, cap: FrameCap) -> Result<PhysFrame, Error> {
        self.grant_of(frame_number(cap.frame))
            .ok_or(Error::NotGranted)?;
        if self.state(cap.frame) & TABLE != 0 {
            return Err(Error::TableFrame);
        }
        Ok(cap.frame)
    }

    /// Fills a frame with zeroes.
    pub fn zero_frame(&mut self, cap: FrameCap) -> Result<(), Error> {
        let f = self.data_frame(cap)?;
        self.phys.frame_mut(f).ok_or(Error::NotGranted)?.0.fill(0);
        Ok(())
    }

    /// Copies `src`'s contents to `dst`.
    pub fn copy_frame(&mut self, src: FrameCap, dst: FrameCap) -> Result<(), Error> {
        let (s, d) = (self.data_frame(src)?, self.data_frame(dst)?);
        if s == d {
            return Ok(());
        }
        let tmp = self.phys.frame(s).ok_or(Error::NotGranted)?.0;
        self.phys.frame_mut(d).ok_or(Error::NotGranted)?.0 = tmp;
        Ok(())
    }

    /// Reads `buf.len()` bytes at `offset` of a frame.
    pub fn read_frame(&self, cap: FrameCap, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        let f = self.data_frame(cap)?;
        let end = offset
            .checked_add(buf.len())
            .filter(|&e| e <= 4096)
            .ok_or(Error::OutOfBounds)?;
        buf.copy_from_slice(&self.phys.frame(f).ok_or(Error::NotGranted)?.0[offset..end]);
        Ok(())
    }

    /// Writes `data` at `offset` of a frame.
    pub fn write_frame(&mut self, cap: FrameCap, offset: usize, data: &[u8]) -> Result<(), Error> {
        let f = self.data_frame(cap)?;
        let end = offset
            .checked_add(data.len())
            .filter(|&e| e <= 4096)
            .ok_or(Error::OutOfBounds)?;
        self.phys.frame_mut(f).ok_or(Error::NotGranted)?.0[offset..end].copy_from_slice(data);
        Ok(())
    }
}
