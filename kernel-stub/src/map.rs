//! Mapping: 4 KiB pages singly or over a range, and 2 MiB pages.
//!
//! Everything is validated before anything changes: the space, the range, every frame
//! (granted, not a table, cache mode allowed, count not overflowing), that every target
//! slot is empty, and that the pool holds every table the mapping will build. Mapping
//! into empty slots changes no present entry, so it flushes nothing.

use crate::addr::Span;
use crate::attrs::Attrs;
use crate::cap::{FrameCap, SpaceCap};
use crate::error::Error;
use crate::grant::{StateStorage, frame_after};
use crate::phys::PhysMemory;
use crate::stub::Stub;
use crate::table::{Chunk, PD, PT, indices};
use crate::tlb::Tlb;
use crate::{FRAMES_PER_HUGE_PAGE, HUGE_PAGE_SIZE, PAGE_SIZE};
use x86_64::structures::paging::{Page, PageTableFlags as F, PhysFrame, Size2MiB};

impl<P: PhysMemory, T: Tlb, S: StateStorage, const N: usize> Stub<P, T, S, N> {
    /// Maps `frame` at `page`. Refuses an occupied page ([`Error::AlreadyMapped`]) and
    /// everything [`Stub::map_range`] refuses.
    pub fn map(
        &mut self,
        space: SpaceCap,
        page: Page,
        frame: FrameCap,
        attrs: Attrs,
    ) -> Result<(), Error> {
        self.map_range(space, page, &[frame], attrs)
    }

    /// Maps `frames[i]` at `start + i` pages, all or nothing. Checked in this order: the
    /// space; the range (see [`UserWindow`](crate::UserWindow)); each frame in turn
    /// ([`Error::NotGranted`], [`Error::TableFrame`], [`Error::CacheMode`],
    /// [`Error::TooManyMappings`]); every page empty ([`Error::AlreadyMapped`]); enough
    /// pooled table frames ([`Error::OutOfTableFrames`]).
    pub fn map_range(
        &mut self,
        space: SpaceCap,
        start: Page,
        frames: &[FrameCap],
        attrs: Attrs,
    ) -> Result<(), Error> {
        let root = self.root(space)?;
        let span = self
            .cfg
            .window
            .span(start.start_address(), frames.len() as u64)?;
        for &cap in frames {
            // Counting every frame of the batch as a repeat keeps the check O(n).
            self.check_mappable(cap, attrs, frames.len() as u64)?;
        }
        self.check_empty(root, span)?;
        if self.tables_to_build(root, span)? > self.pool_free() {
            return Err(Error::OutOfTableFrames);
        }
        let flags = attrs.flags();
        for (addr, &cap) in (span.start..span.end)
            .step_by(PAGE_SIZE as usize)
            .zip(frames)
        {
            let pt = self.ensure(root, addr, PT)?;
            self.tab_mut(pt)?[indices(crate::addr::user_va(addr))[PT]].set_frame(cap.frame, flags);
            self.grants.mapped(cap.frame);
        }
        Ok(())
    }

    /// Maps the 512 frames from `first` as one 2 MiB page at `page`. Refuses, after the
    /// space and the range: a `first` not 2 MiB-aligned ([`Error::Unaligned`]); any of the
    /// 512 frames not granted as `first`'s kind or otherwise unmappable (as in
    /// [`Stub::map_range`]); anything mapped in the 2 MiB ([`Error::AlreadyMapped`]); too
    /// few pooled table frames.
    pub fn map_huge(
        &mut self,
        space: SpaceCap,
        page: Page<Size2MiB>,
        first: FrameCap,
        attrs: Attrs,
    ) -> Result<(), Error> {
        let root = self.root(space)?;
        let span = self
            .cfg
            .window
            .span(page.start_address(), FRAMES_PER_HUGE_PAGE)?;
        if !first.frame.start_address().is_aligned(HUGE_PAGE_SIZE) {
            return Err(Error::Unaligned);
        }
        for k in 0..FRAMES_PER_HUGE_PAGE {
            let frame = frame_after(first.frame, k).ok_or(Error::NotGranted)?;
            self.check_mappable(FrameCap { frame, ..first }, attrs, 1)?;
        }
        self.check_empty(root, span)?;
        if self.missing_tables(root, span.start, PD)? > self.pool_free() {
            return Err(Error::OutOfTableFrames);
        }
        let pd = self.ensure(root, span.start, PD)?;
        let index = indices(crate::addr::user_va(span.start))[PD];
        self.tab_mut(pd)?[index]
            .set_addr(first.frame.start_address(), attrs.flags() | F::HUGE_PAGE);
        for k in 0..FRAMES_PER_HUGE_PAGE {
            if let Some(frame) = frame_after(first.frame, k) {
                self.grants.mapped(frame);
            }
        }
        Ok(())
    }

    /// Checks that `extra` more mappings of `cap`'s frame with `attrs` are allowed.
    fn check_mappable(&self, cap: FrameCap, attrs: Attrs, extra: u64) -> Result<PhysFrame, Error> {
        self.grants.check(cap)?;
        if self.grants.is_table(cap.frame) {
            return Err(Error::TableFrame);
        }
        if !attrs.cache.allowed_for(cap.kind) {
            return Err(Error::CacheMode);
        }
        self.grants.check_room(cap.frame, extra)?;
        Ok(cap.frame)
    }

    /// Refuses with [`Error::AlreadyMapped`] if anything is mapped in `span`.
    fn check_empty(&self, root: PhysFrame, span: Span) -> Result<(), Error> {
        let mut from = span.start;
        while let Some(chunk) = self.next_chunk(root, from, span.end)? {
            if chunk.path.huge {
                return Err(Error::AlreadyMapped);
            }
            let (lo, hi) = span.clamp(chunk.base, chunk.end());
            let pt = self.tab(chunk.path.tables[PT])?;
            let used = (Chunk::pt_index(lo)..=Chunk::pt_index(hi - 1)).any(|i| !pt[i].is_unused());
            if used {
                return Err(Error::AlreadyMapped);
            }
            from = chunk.end();
        }
        Ok(())
    }

    /// How many tables mapping every 4 KiB page of `span` would build: one PT per 2 MiB
    /// chunk without one, one PD per 1 GiB and one PDPT per 512 GiB without one.
    fn tables_to_build(&self, root: PhysFrame, span: Span) -> Result<u64, Error> {
        let mut need = 0;
        let mut new_pd_for = None;
        let mut new_pdpt_for = None;
        let mut addr = span.start - span.start % HUGE_PAGE_SIZE;
        while addr < span.end {
            let depth = self.walk(root, addr)?.depth;
            if depth < 4 {
                need += 1;
            }
            if depth < 3 && new_pd_for != Some(addr >> 30) {
                need += 1;
                new_pd_for = Some(addr >> 30);
            }
            if depth < 2 && new_pdpt_for != Some(addr >> 39) {
                need += 1;
                new_pdpt_for = Some(addr >> 39);
            }
            addr += HUGE_PAGE_SIZE;
        }
        Ok(need)
    }
}

#[cfg(test)]
mod tests {
    use crate::error::Error;
    use crate::testutil::{DEV, HUGE_RAM, K, RW, cap, data, frames, page, stub};
    use crate::{Attrs, Cache, FrameUse};
    use x86_64::VirtAddr;
    use x86_64::structures::paging::Page;

    fn huge(addr: u64) -> Page<x86_64::structures::paging::Size2MiB> {
        Page::from_start_address(VirtAddr::new(addr)).unwrap()
    }

    #[test]
    fn mapping_builds_tables_counts_frames_and_flushes_nothing() {
        let mut s = stub(8);
        let sp = s.create_space().unwrap();
        let f = data(&s, 0);
        s.map(sp, page(0x40_0000), f, RW).unwrap();
        s.map(sp, page(0x40_1000), f, RW).unwrap();
        assert_eq!(s.tables_in_use(), 4);
        assert_eq!(s.frame_use(f), Ok(FrameUse::Data { mappings: 2 }));
        assert_eq!(
            s.map(sp, page(0x40_0000), data(&s, 1), RW),
            Err(Error::AlreadyMapped)
        );
        assert_eq!(*s.tlb(), crate::CountingTlb::default());
    }

    #[test]
    fn frames_are_checked_before_anything_changes() {
        let mut s = stub(8);
        let sp = s.create_space().unwrap();
        let table = cap(&s, crate::testutil::RAM);
        let uc = Attrs {
            cache: Cache::Uncached,
            ..RW
        };
        assert_eq!(
            s.map(sp, page(0x40_0000), table, RW),
            Err(Error::TableFrame)
        );
        assert_eq!(
            s.map(sp, page(0x40_0000), data(&s, 0), uc),
            Err(Error::CacheMode)
        );
        assert_eq!(s.map(sp, page(0x40_0000), cap(&s, DEV), uc), Ok(()));
        let batch = [data(&s, 1), data(&s, 2), table];
        assert_eq!(
            s.map_range(sp, page(0x50_0000), &batch, RW),
            Err(Error::TableFrame)
        );
        assert_eq!(s.query(sp, page(0x50_0000)), Ok(None));
        assert_eq!(s.frame_use(data(&s, 1)), Ok(FrameUse::Data { mappings: 0 }));
    }

    #[test]
    fn a_batch_is_refused_whole_when_one_page_is_taken_or_tables_run_short() {
        let mut s = stub(5);
        let sp = s.create_space().unwrap();
        s.map(sp, page(0x40_2000), data(&s, 9), RW).unwrap();
        let batch: std::vec::Vec<_> = (0..4).map(|i| data(&s, i)).collect();
        assert_eq!(
            s.map_range(sp, page(0x40_0000), &batch, RW),
            Err(Error::AlreadyMapped)
        );
        // 0x3fff_f000 and 0x4000_0000 lie in different GiBs: the batch needs a PT in one
        // and a PD and a PT in the other, and the pool has one frame left.
        assert_eq!(s.pool_free(), 1);
        let far = [data(&s, 0), data(&s, 1)];
        assert_eq!(
            s.map_range(sp, page(0x4000_0000 - 0x1000), &far, RW),
            Err(Error::OutOfTableFrames)
        );
        assert_eq!(s.map_range(sp, page(0x5f_f000), &far, RW), Ok(()));
        assert_eq!(s.pool_free(), 0);
        assert_eq!(
            s.query(sp, page(0x60_0000)).unwrap().map(|q| q.0),
            Some(far[1].frame())
        );
    }

    #[test]
    fn huge_pages_need_alignment_a_whole_grant_and_an_empty_chunk() {
        let mut s = stub(8);
        let sp = s.create_space().unwrap();
        let first = cap(&s, HUGE_RAM);
        assert_eq!(
            s.map_huge(sp, huge(0x4000_0000), cap(&s, HUGE_RAM + 1), RW),
            Err(Error::Unaligned)
        );
        let short = s
            .grant_device(&K, frames(0x9_0000, 256))
            .unwrap()
            .cap(0)
            .unwrap();
        assert_eq!(
            s.map_huge(sp, huge(0x4000_0000), short, RW),
            Err(Error::NotGranted)
        );
        assert_eq!(
            s.map_huge(sp, huge(0x4000_0000), cap(&s, DEV + 512), RW),
            Ok(())
        );
        s.map(sp, page(0x4020_5000), data(&s, 0), RW).unwrap();
        assert_eq!(
            s.map_huge(sp, huge(0x4020_0000), first, RW),
            Err(Error::AlreadyMapped)
        );
        assert_eq!(
            s.map_huge(sp, huge(0x4000_0000), first, RW),
            Err(Error::AlreadyMapped)
        );
        assert_eq!(
            s.map(sp, page(0x4000_1000), data(&s, 1), RW),
            Err(Error::AlreadyMapped)
        );
        s.map_huge(sp, huge(0x4040_0000), first, RW).unwrap();
        assert_eq!(
            s.frame_use(cap(&s, HUGE_RAM + 511)),
            Ok(FrameUse::Data { mappings: 1 })
        );
        assert_eq!(
            s.map_huge(sp, huge(0x4060_0000), first, RW),
            Ok(()),
            "a frame may be mapped twice"
        );
        assert_eq!(
            s.frame_use(cap(&s, HUGE_RAM)),
            Ok(FrameUse::Data { mappings: 2 })
        );
    }

    #[test]
    fn huge_pages_refuse_a_table_frame_inside_the_run() {
        let mut s = stub(8);
        let sp = s.create_space().unwrap();
        s.donate_table_frame(cap(&s, HUGE_RAM + 100)).unwrap();
        assert_eq!(
            s.map_huge(sp, huge(0x4000_0000), cap(&s, HUGE_RAM), RW),
            Err(Error::TableFrame)
        );
        assert_eq!(
            s.frame_use(cap(&s, HUGE_RAM)),
            Ok(FrameUse::Data { mappings: 0 })
        );
    }

    #[test]
    fn ranges_outside_the_window_are_refused_up_front() {
        let mut s = stub(8);
        let sp = s.create_space().unwrap();
        let f = data(&s, 0);
        assert_eq!(s.map(sp, page(0), f, RW), Err(Error::OutsideWindow));
        assert_eq!(
            s.map(sp, page(0xffff_8000_0000_0000), f, RW),
            Err(Error::KernelHalf)
        );
        assert_eq!(
            s.map_range(sp, page(0x7fff_ffff_f000), &[f, f], RW),
            Err(Error::KernelHalf)
        );
        assert_eq!(s.map(sp, page(0x7fff_ffff_f000), f, RW), Ok(()));
        assert_eq!(s.map_range(sp, page(0x1000), &[], RW), Ok(()));
    }
}
