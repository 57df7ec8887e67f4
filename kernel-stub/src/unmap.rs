//! Unmapping: one 4 KiB page or a range, splitting a 2 MiB page the range covers only in
//! part, and returning emptied tables to the pool.
//!
//! Unmapping what is not mapped is not an error: those pages are skipped (POSIX: munmap
//! of an unmapped range succeeds). The only refusal after the space and range checks is
//! [`Error::OutOfTableFrames`] when a partly covered 2 MiB page must be split and the pool
//! is short, checked before anything changes.

use crate::addr::{Span, user_page, user_va};
use crate::attrs::Attrs;
use crate::cap::SpaceCap;
use crate::error::Error;
use crate::grant::{StateStorage, frame_after};
use crate::phys::PhysMemory;
use crate::stub::Stub;
use crate::table::{Chunk, PT, entry_frame};
use crate::tlb::{FlushBatch, Tlb};
use crate::{FRAMES_PER_HUGE_PAGE, PAGE_SIZE};
use x86_64::structures::paging::{Page, PhysFrame};

impl<P: PhysMemory, T: Tlb, S: StateStorage, const N: usize> Stub<P, T, S, N> {
    /// Removes the mapping of `page`, returning what was there (the 4 KiB frame and its
    /// attributes) so the server can free or recount it. A 2 MiB page around it is split
    /// and keeps the rest mapped.
    pub fn unmap(
        &mut self,
        space: SpaceCap,
        page: Page,
    ) -> Result<Option<(PhysFrame, Attrs)>, Error> {
        let mut old = None;
        self.unmap_range(space, page, 1, |_, frame, attrs| old = Some((frame, attrs)))?;
        Ok(old)
    }

    /// Removes every mapping in the `pages` pages from `start`, calling
    /// `removed(page, frame, attrs)` for each 4 KiB page removed, in address order, and
    /// returns how many there were. A 2 MiB page inside the range goes whole; one at an
    /// edge is split first. Absent tables are skipped whole, so a huge sparse range is
    /// cheap.
    pub fn unmap_range(
        &mut self,
        space: SpaceCap,
        start: Page,
        pages: u64,
        mut removed: impl FnMut(Page, PhysFrame, Attrs),
    ) -> Result<u64, Error> {
        let root = self.root(space)?;
        let span = self.cfg.window.span(start.start_address(), pages)?;
        if span.is_empty() {
            return Ok(0);
        }
        let partial = self.partial_huge(root, span, |_| true)?;
        self.split_all(partial)?;
        let mut batch = FlushBatch::new(space, self.cfg.flush_threshold);
        let result = self.unmap_chunks(root, span, &mut batch, &mut removed);
        // Whatever happened, the entries already changed are owed their flush.
        batch.issue(&mut self.tlb);
        result
    }

    fn unmap_chunks(
        &mut self,
        root: PhysFrame,
        span: Span,
        batch: &mut FlushBatch,
        removed: &mut impl FnMut(Page, PhysFrame, Attrs),
    ) -> Result<u64, Error> {
        let mut count = 0;
        let mut from = span.start;
        while let Some(chunk) = self.next_chunk(root, from, span.end)? {
            count += if chunk.path.huge {
                self.unmap_huge_chunk(&chunk, batch, removed)?
            } else {
                self.unmap_in_pt(&chunk, span, batch, removed)?
            };
            from = chunk.end();
        }
        Ok(count)
    }

    /// Removes a whole 2 MiB leaf (the range covers it: edges were split).
    fn unmap_huge_chunk(
        &mut self,
        chunk: &Chunk,
        batch: &mut FlushBatch,
        removed: &mut impl FnMut(Page, PhysFrame, Attrs),
    ) -> Result<u64, Error> {
        let index = chunk.pd_index();
        let (first, attrs) = {
            let e = &self.tab(chunk.pd())?[index];
            (entry_frame(e.addr()), Attrs::from_flags(e.flags()))
        };
        self.tab_mut(chunk.pd())?[index].set_unused();
        self.prune(&chunk.path, chunk.base)?;
        self.unmapped_huge(first);
        batch.changed(user_va(chunk.base));
        for k in 0..FRAMES_PER_HUGE_PAGE {
            if let Some(frame) = frame_after(first, k) {
                removed(user_page(chunk.base + k * PAGE_SIZE), frame, attrs);
            }
        }
        Ok(FRAMES_PER_HUGE_PAGE)
    }

    /// Removes the 4 KiB leaves of a chunk's PT inside `span`.
    fn unmap_in_pt(
        &mut self,
        chunk: &Chunk,
        span: Span,
        batch: &mut FlushBatch,
        removed: &mut impl FnMut(Page, PhysFrame, Attrs),
    ) -> Result<u64, Error> {
        let pt = chunk.path.tables[PT];
        let (lo, hi) = span.clamp(chunk.base, chunk.end());
        let mut count = 0;
        for addr in (lo..hi).step_by(PAGE_SIZE as usize) {
            let i = Chunk::pt_index(addr);
            let (unused, frame, attrs) = {
                let e = &self.tab(pt)?[i];
                (
                    e.is_unused(),
                    entry_frame(e.addr()),
                    Attrs::from_flags(e.flags()),
                )
            };
            if unused {
                continue;
            }
            self.tab_mut(pt)?[i].set_unused();
            self.grants.unmapped(frame);
            batch.changed(user_va(addr));
            removed(user_page(addr), frame, attrs);
            count += 1;
        }
        if count > 0 {
            self.prune(&chunk.path, chunk.base)?;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use crate::error::Error;
    use crate::testutil::{DEV, RW, RX, cap, data, page, stub};
    use crate::{Access, CountingTlb, Fault, FrameUse, PageSize};
    use x86_64::VirtAddr;
    use x86_64::structures::paging::Page;

    fn huge(addr: u64) -> Page<x86_64::structures::paging::Size2MiB> {
        Page::from_start_address(VirtAddr::new(addr)).unwrap()
    }

    #[test]
    fn unmapping_returns_what_was_there_and_the_tables() {
        let mut s = stub(8);
        let sp = s.create_space().unwrap();
        let f = data(&s, 0);
        s.map(sp, page(0x40_0000), f, RX).unwrap();
        assert_eq!(s.unmap(sp, page(0x40_0000)), Ok(Some((f.frame(), RX))));
        assert_eq!((s.tables_in_use(), s.tlb().pages), (1, 1));
        assert_eq!(s.frame_use(f), Ok(FrameUse::Data { mappings: 0 }));
        assert_eq!(
            s.unmap(sp, page(0x40_0000)),
            Ok(None),
            "unmapping nothing is no error"
        );
        assert_eq!(s.tlb().pages, 1, "and flushes nothing");
    }

    #[test]
    fn a_page_inside_a_huge_page_splits_it_and_the_rest_stays() {
        let mut s = stub(8);
        let sp = s.create_space().unwrap();
        s.map_huge(sp, huge(0x4000_0000), cap(&s, DEV), RW).unwrap();
        let tables = s.tables_in_use();
        let gone = s.unmap(sp, page(0x4000_5000)).unwrap();
        assert_eq!(gone.map(|g| g.0), Some(cap(&s, DEV + 5).frame()));
        assert_eq!(s.tables_in_use(), tables + 1, "the split took a PT");
        assert_eq!(*s.tlb(), CountingTlb { pages: 1, alls: 0 });
        let t = |a| {
            s.translate(sp, VirtAddr::new(a), Access::Read, true)
                .map(|t| t.0.as_u64())
        };
        assert_eq!(t(0x4000_5000), Err(Fault::NotPresent));
        assert_eq!(t(0x4000_6008), Ok((DEV + 6) * 4096 + 8));
        assert_eq!(
            s.query(sp, page(0x4000_6000)).unwrap().map(|q| q.2),
            Some(PageSize::Small)
        );
        let mut n = 0;
        assert_eq!(
            s.unmap_range(sp, page(0x4000_0000), 512, |_, _, _| n += 1),
            Ok(511)
        );
        assert_eq!((n, s.tables_in_use()), (511, 1));
    }

    #[test]
    fn a_split_needs_a_table_and_refuses_cleanly_without_one() {
        let mut s = stub(3);
        let sp = s.create_space().unwrap();
        s.map_huge(sp, huge(0x4000_0000), cap(&s, DEV), RW).unwrap();
        assert_eq!(s.pool_free(), 0);
        assert_eq!(s.unmap(sp, page(0x4000_5000)), Err(Error::OutOfTableFrames));
        assert_eq!(
            s.unmap_range(sp, page(0x3fff_f000), 2, |_, _, _| {}),
            Err(Error::OutOfTableFrames)
        );
        assert_eq!(
            s.query(sp, page(0x4000_5000)).unwrap().map(|q| q.2),
            Some(PageSize::Huge)
        );
        assert_eq!(*s.tlb(), CountingTlb::default());
        let mut n = 0;
        assert_eq!(
            s.unmap_range(sp, page(0x3fe0_0000), 1024, |_, _, _| n += 1),
            Ok(512)
        );
        assert_eq!(
            (n, s.tlb().pages, s.pool_free()),
            (512, 1, 2),
            "one entry, one flush"
        );
    }

    #[test]
    fn two_splits_need_two_tables_or_nothing_changes() {
        let mut s = stub(5);
        let sp = s.create_space().unwrap();
        s.map_huge(sp, huge(0x4000_0000), cap(&s, DEV), RW).unwrap();
        s.map_huge(sp, huge(0x4020_0000), cap(&s, DEV + 512), RW)
            .unwrap();
        s.map(sp, page(0x4040_0000), data(&s, 0), RW).unwrap();
        let (tables, free) = (s.tables_in_use(), s.pool_free());
        assert_eq!(free, 1);
        // Half of each huge page: two splits, one table in the pool.
        assert_eq!(
            s.unmap_range(sp, page(0x4010_0000), 512, |_, _, _| {}),
            Err(Error::OutOfTableFrames)
        );
        assert_eq!(
            s.protect_range(sp, page(0x4010_0000), 512, crate::testutil::RX),
            Err(Error::OutOfTableFrames)
        );
        assert_eq!((s.tables_in_use(), s.pool_free()), (tables, free));
        for a in [0x4000_0000, 0x4010_0000, 0x4020_0000, 0x4030_0000] {
            assert_eq!(
                s.query(sp, page(a)).unwrap().map(|q| q.2),
                Some(PageSize::Huge)
            );
        }
        assert_eq!(*s.tlb(), CountingTlb::default());
        s.donate_table_frame(data(&s, 1)).unwrap();
        assert_eq!(
            s.unmap_range(sp, page(0x4010_0000), 512, |_, _, _| {}),
            Ok(512)
        );
        assert_eq!((s.tables_in_use(), s.pool_free()), (tables + 2, 0));
        assert_eq!(s.tlb().alls, 1, "512 entries changed: past the threshold");
    }

    #[test]
    fn ranges_flush_page_by_page_then_all_at_once() {
        let mut s = stub(16);
        let sp = s.create_space().unwrap();
        let frames: std::vec::Vec<_> = (0..40).map(|i| data(&s, i)).collect();
        s.map_range(sp, page(0x40_0000), &frames[..16], RW).unwrap();
        s.map_range(sp, page(0x50_0000), &frames[16..], RW).unwrap();
        assert_eq!(s.unmap_range(sp, page(0x40_0000), 16, |_, _, _| {}), Ok(16));
        assert_eq!(*s.tlb(), CountingTlb { pages: 16, alls: 0 });
        assert_eq!(s.unmap_range(sp, page(0x50_0000), 17, |_, _, _| {}), Ok(17));
        assert_eq!(*s.tlb(), CountingTlb { pages: 16, alls: 1 });
        // A vast sparse range skips absent tables and finds the 7 pages left.
        assert_eq!(
            s.unmap_range(sp, page(0x1000), (1 << 35) - 2, |_, _, _| {}),
            Ok(7)
        );
        assert_eq!(s.tables_in_use(), 1);
    }
}
