//! Page-table plumbing: walking toward an address, finding the next populated 2 MiB chunk
//! of a range, building missing tables, splitting a huge page, pruning empty tables and
//! tearing a space down.
//!
//! Levels are numbered by their position on the path from the root: 0 is the PML4, 1 the
//! PDPT, 2 the PD (whose entries may be 2 MiB leaves), 3 the PT. Entries the stub writes
//! are either unused (zero) or present; an entry pointing at a table grants every right
//! (`TABLE_FLAGS`), so the rights of a mapping are decided by its leaf alone.

use crate::addr::{Span, user_va};
use crate::error::Error;
use crate::grant::{StateStorage, frame_after};
use crate::phys::PhysMemory;
use crate::stub::Stub;
use crate::tlb::Tlb;
use crate::{FRAMES_PER_HUGE_PAGE, HUGE_PAGE_SIZE, PAGE_SIZE};
use x86_64::structures::paging::{PageTable, PageTableFlags as F, PhysFrame};
use x86_64::{PhysAddr, VirtAddr};

/// Root entries that map the user half; the rest belong to the kernel.
pub(crate) const USER_ROOT_ENTRIES: usize = 256;
/// Entries in one table.
pub(crate) const ENTRIES: usize = 512;
/// Flags of an entry pointing at a lower table.
pub(crate) const TABLE_FLAGS: F = F::PRESENT.union(F::WRITABLE).union(F::USER_ACCESSIBLE);
/// Bytes one entry covers at each level.
pub(crate) const SPAN: [u64; 4] = [1 << 39, 1 << 30, HUGE_PAGE_SIZE, PAGE_SIZE];
/// The level whose entries may be 2 MiB leaves.
pub(crate) const PD: usize = 2;
/// The level of 4 KiB leaves.
pub(crate) const PT: usize = 3;

/// The four table indices of `va`, root first.
pub(crate) fn indices(va: VirtAddr) -> [usize; 4] {
    [
        usize::from(va.p4_index()),
        usize::from(va.p3_index()),
        usize::from(va.p2_index()),
        usize::from(va.p1_index()),
    ]
}

/// The tables on the way from the root toward an address.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Path {
    /// Table frames, root first; the first `depth` are real.
    pub(crate) tables: [PhysFrame; 4],
    /// How many tables exist on the way: 1 (only the root) to 4 (down to the PT).
    pub(crate) depth: usize,
    /// The PD entry is a 2 MiB leaf (then `depth` is 3).
    pub(crate) huge: bool,
}

/// A 2 MiB-aligned chunk of address space whose PD entry is present.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Chunk {
    /// Its first address.
    pub(crate) base: u64,
    /// The way to it: `huge`, or down to its PT.
    pub(crate) path: Path,
}

impl Chunk {
    /// The PD holding the chunk's entry.
    pub(crate) fn pd(&self) -> PhysFrame {
        self.path.tables[PD]
    }

    /// The chunk's index in its PD.
    pub(crate) fn pd_index(&self) -> usize {
        indices(user_va(self.base))[PD]
    }

    /// One past its last address.
    pub(crate) fn end(&self) -> u64 {
        self.base + HUGE_PAGE_SIZE
    }

    /// The PT index of `addr` (inside the chunk).
    pub(crate) fn pt_index(addr: u64) -> usize {
        ((addr % HUGE_PAGE_SIZE) / PAGE_SIZE) as usize
    }
}

/// The frame an entry points at.
pub(crate) fn entry_frame(addr: PhysAddr) -> PhysFrame {
    PhysFrame::containing_address(addr)
}

impl<P: PhysMemory, T: Tlb, S: StateStorage, const N: usize> Stub<P, T, S, N> {
    /// A table frame. Tables come from donated frames, which were checked to be backed,
    /// so [`Error::NotBacked`] here means a corrupted kernel template at worst.
    pub(crate) fn tab(&self, frame: PhysFrame) -> Result<&PageTable, Error> {
        self.phys.table(frame).ok_or(Error::NotBacked)
    }

    /// A table frame, mutable.
    pub(crate) fn tab_mut(&mut self, frame: PhysFrame) -> Result<&mut PageTable, Error> {
        self.phys.table_mut(frame).ok_or(Error::NotBacked)
    }

    /// The tables that exist on the way to user address `addr`.
    pub(crate) fn walk(&self, root: PhysFrame, addr: u64) -> Result<Path, Error> {
        let idx = indices(user_va(addr));
        let mut path = Path {
            tables: [root; 4],
            depth: 1,
            huge: false,
        };
        for (level, &i) in idx.iter().enumerate().take(PT) {
            let e = &self.tab(path.tables[level])?[i];
            if e.is_unused() {
                break;
            }
            if level == PD && e.flags().contains(F::HUGE_PAGE) {
                path.huge = true;
                break;
            }
            path.tables[level + 1] = entry_frame(e.addr());
            path.depth += 1;
        }
        Ok(path)
    }

    /// The first chunk at or after the one holding `from`, starting below `end`, whose PD
    /// entry is present. Absent tables are skipped whole, and the scan for the next used
    /// entry stays inside the table where the walk stopped, so sparse ranges cost little.
    pub(crate) fn next_chunk(
        &self,
        root: PhysFrame,
        from: u64,
        end: u64,
    ) -> Result<Option<Chunk>, Error> {
        let mut addr = from - from % HUGE_PAGE_SIZE;
        while addr < end {
            let path = self.walk(root, addr)?;
            if path.huge || path.depth == 4 {
                return Ok(Some(Chunk { base: addr, path }));
            }
            // The entry at level `depth - 1` is unused: move to that table's next used
            // entry, or past the table.
            let level = path.depth - 1;
            let span = SPAN[level];
            let index = indices(user_va(addr))[level];
            let limit = if level == 0 {
                USER_ROOT_ENTRIES
            } else {
                ENTRIES
            };
            let table = self.tab(path.tables[level])?;
            let next = (index + 1..limit)
                .find(|&i| !table[i].is_unused())
                .unwrap_or(ENTRIES);
            addr = addr - addr % span + (next - index) as u64 * span;
        }
        Ok(None)
    }

    /// How many tables mapping at `addr` down to level `leaf_level` would have to build.
    pub(crate) fn missing_tables(
        &self,
        root: PhysFrame,
        addr: u64,
        leaf_level: usize,
    ) -> Result<u64, Error> {
        let path = self.walk(root, addr)?;
        Ok((leaf_level + 1).saturating_sub(path.depth) as u64)
    }

    /// The table holding `addr`'s entry at `leaf_level`, building missing tables from the
    /// pool (callers checked there are enough). Refuses to descend through a huge page.
    pub(crate) fn ensure(
        &mut self,
        root: PhysFrame,
        addr: u64,
        leaf_level: usize,
    ) -> Result<PhysFrame, Error> {
        let idx = indices(user_va(addr));
        let mut table = root;
        for &i in idx.iter().take(leaf_level) {
            let (unused, flags, child) = {
                let e = &self.tab(table)?[i];
                (e.is_unused(), e.flags(), entry_frame(e.addr()))
            };
            if flags.contains(F::HUGE_PAGE) {
                return Err(Error::AlreadyMapped);
            }
            table = if unused {
                let new = self.take_table()?;
                self.tab_mut(table)?[i].set_frame(new, TABLE_FLAGS);
                new
            } else {
                child
            };
        }
        Ok(table)
    }

    /// Replaces the 2 MiB leaf at `pd[index]` by a PT of 512 equivalent 4 KiB entries
    /// (a table from the pool). Translations do not change; the caller flushes with the
    /// change it splits for.
    pub(crate) fn split(&mut self, pd: PhysFrame, index: usize) -> Result<(), Error> {
        let (base, flags) = {
            let e = &self.tab(pd)?[index];
            (e.addr().as_u64(), e.flags() - F::HUGE_PAGE)
        };
        let pt = self.take_table()?;
        let t = self.tab_mut(pt)?;
        for (k, entry) in t.iter_mut().enumerate() {
            // Inside a mapped, granted 2 MiB frame: a valid physical address.
            entry.set_addr(PhysAddr::new_truncate(base + k as u64 * PAGE_SIZE), flags);
        }
        self.tab_mut(pd)?[index].set_frame(pt, TABLE_FLAGS);
        Ok(())
    }

    /// Frees the tables on `path` toward `addr` that became empty, bottom up; never the
    /// root.
    pub(crate) fn prune(&mut self, path: &Path, addr: u64) -> Result<(), Error> {
        let idx = indices(user_va(addr));
        for level in (1..path.depth).rev() {
            if !self.tab(path.tables[level])?.is_empty() {
                break;
            }
            self.tab_mut(path.tables[level - 1])?[idx[level - 1]].set_unused();
            self.free_table(path.tables[level]);
        }
        Ok(())
    }

    /// The 2 MiB leaves `span` covers only in part (at most two: at its start and its
    /// end) whose flags `wanted` accepts: what an operation on `span` must split first.
    pub(crate) fn partial_huge(
        &self,
        root: PhysFrame,
        span: Span,
        wanted: impl Fn(F) -> bool,
    ) -> Result<[Option<Chunk>; 2], Error> {
        let mut out = [None, None];
        for (slot, addr) in [span.start, span.end - PAGE_SIZE].into_iter().enumerate() {
            let base = addr - addr % HUGE_PAGE_SIZE;
            let inside = base >= span.start && base + HUGE_PAGE_SIZE <= span.end;
            let counted = slot == 1 && out[0].is_some_and(|c: Chunk| c.base == base);
            if inside || counted {
                continue;
            }
            let path = self.walk(root, addr)?;
            if !path.huge {
                continue;
            }
            let chunk = Chunk { base, path };
            if wanted(self.tab(chunk.pd())?[chunk.pd_index()].flags()) {
                out[slot] = Some(chunk);
            }
        }
        Ok(out)
    }

    /// Splits the chunks `partial_huge` found, after checking the pool holds a table for
    /// each ([`Error::OutOfTableFrames`], nothing changed).
    pub(crate) fn split_all(&mut self, chunks: [Option<Chunk>; 2]) -> Result<(), Error> {
        let need = chunks.iter().flatten().count() as u64;
        if need > self.pool_free() {
            return Err(Error::OutOfTableFrames);
        }
        for chunk in chunks.into_iter().flatten() {
            self.split(chunk.pd(), chunk.pd_index())?;
        }
        Ok(())
    }

    /// Whether the user half of a root maps anything.
    pub(crate) fn has_user_entries(&self, root: PhysFrame) -> Result<bool, Error> {
        let t = self.tab(root)?;
        Ok(t.iter().take(USER_ROOT_ENTRIES).any(|e| !e.is_unused()))
    }

    /// Frees every table under the user half of `root` and drops the mapping counts of
    /// every frame mapped there (the root itself stays).
    pub(crate) fn free_user_half(&mut self, root: PhysFrame) -> Result<(), Error> {
        self.free_subtree(root, 0, USER_ROOT_ENTRIES)
    }

    fn free_subtree(&mut self, table: PhysFrame, level: usize, count: usize) -> Result<(), Error> {
        for i in 0..count {
            let (unused, flags, target) = {
                let e = &self.tab(table)?[i];
                (e.is_unused(), e.flags(), entry_frame(e.addr()))
            };
            if unused {
                continue;
            }
            if level == PT {
                self.grants.unmapped(target);
            } else if level == PD && flags.contains(F::HUGE_PAGE) {
                self.unmapped_huge(target);
            } else {
                self.free_subtree(target, level + 1, ENTRIES)?;
                self.free_table(target);
            }
        }
        Ok(())
    }

    /// Drops the mapping count of the 512 frames of a 2 MiB mapping.
    pub(crate) fn unmapped_huge(&mut self, first: PhysFrame) {
        for k in 0..FRAMES_PER_HUGE_PAGE {
            if let Some(f) = frame_after(first, k) {
                self.grants.unmapped(f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{RW, data, page, stub};

    #[test]
    fn walks_report_how_far_the_tables_go() {
        let mut s = stub(8);
        let sp = s.create_space().unwrap();
        let root = s.root(sp).unwrap();
        assert_eq!(s.walk(root, 0x40_0000).unwrap().depth, 1);
        assert_eq!(s.missing_tables(root, 0x40_0000, PT).unwrap(), 3);
        assert_eq!(s.missing_tables(root, 0x40_0000, PD).unwrap(), 2);
        s.map(sp, page(0x40_0000), data(&s, 0), RW).unwrap();
        assert_eq!(s.walk(root, 0x40_1000).unwrap().depth, 4);
        assert_eq!(s.walk(root, 0x60_0000).unwrap().depth, 3);
        assert_eq!(s.walk(root, 0x4000_0000).unwrap().depth, 2);
        assert_eq!(s.missing_tables(root, 0x60_0000, PT).unwrap(), 1);
    }

    #[test]
    fn next_chunk_skips_absent_tables_whole() {
        let mut s = stub(16);
        let sp = s.create_space().unwrap();
        let root = s.root(sp).unwrap();
        let far = 0x7f80_0000_0000;
        s.map(sp, page(0x40_3000), data(&s, 0), RW).unwrap();
        s.map(sp, page(far + 0x1000), data(&s, 1), RW).unwrap();
        let first = s
            .next_chunk(root, 0x1000, crate::KERNEL_HALF)
            .unwrap()
            .unwrap();
        assert_eq!(first.base, 0x40_0000);
        let second = s
            .next_chunk(root, first.end(), crate::KERNEL_HALF)
            .unwrap()
            .unwrap();
        assert_eq!(second.base, far);
        assert!(
            s.next_chunk(root, second.end(), crate::KERNEL_HALF)
                .unwrap()
                .is_none()
        );
        assert!(
            s.next_chunk(root, 0x60_0000, far).unwrap().is_none(),
            "end bounds the search"
        );
    }

    #[test]
    fn ensure_builds_tables_and_prune_frees_them() {
        let mut s = stub(8);
        let sp = s.create_space().unwrap();
        let root = s.root(sp).unwrap();
        let pt = s.ensure(root, 0x40_0000, PT).unwrap();
        assert_eq!(s.tables_in_use(), 4);
        assert_eq!(
            s.ensure(root, 0x40_1000, PT).unwrap(),
            pt,
            "existing tables are reused"
        );
        assert_eq!(s.tables_in_use(), 4);
        let path = s.walk(root, 0x40_0000).unwrap();
        s.prune(&path, 0x40_0000).unwrap();
        assert_eq!(s.tables_in_use(), 1, "only the root stays");
        assert!(!s.has_user_entries(root).unwrap());
    }

    #[test]
    fn splitting_keeps_every_translation() {
        let mut s = stub(8);
        let sp = s.create_space().unwrap();
        let root = s.root(sp).unwrap();
        let first = crate::testutil::cap(&s, crate::testutil::HUGE_RAM);
        let huge = x86_64::structures::paging::Page::from_start_address(VirtAddr::new(0x4000_0000))
            .unwrap();
        s.map_huge(sp, huge, first, RW).unwrap();
        let chunk = s
            .next_chunk(root, 0x4000_0000, 0x4020_0000)
            .unwrap()
            .unwrap();
        assert!(chunk.path.huge);
        assert_eq!(s.ensure(root, 0x4000_0000, PT), Err(Error::AlreadyMapped));
        let before = s.translate(sp, VirtAddr::new(0x4012_3456), crate::Access::Write, true);
        s.split(chunk.pd(), chunk.pd_index()).unwrap();
        assert_eq!(s.walk(root, 0x4012_3000).unwrap().depth, 4);
        let after = s.translate(sp, VirtAddr::new(0x4012_3456), crate::Access::Write, true);
        assert_eq!(before.map(|t| t.0), after.map(|t| t.0));
        assert_eq!(Chunk::pt_index(0x4012_3456), 0x123);
    }
}
