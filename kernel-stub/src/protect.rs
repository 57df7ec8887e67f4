//! Protecting: changing the attributes of one mapped page or of every mapping in a range.
//!
//! Pages that are not mapped are skipped, not refused. Checked before anything changes:
//! the space, the range, that every frame whose mapping would change accepts the new
//! cache mode ([`Error::CacheMode`]), and that the pool can split a 2 MiB page the range
//! covers only in part when its attributes must change ([`Error::OutOfTableFrames`]).
//! The accessed and dirty bits the CPU set are kept.

use crate::addr::{Span, user_va};
use crate::attrs::Attrs;
use crate::cap::{FrameKind, SpaceCap};
use crate::error::Error;
use crate::grant::StateStorage;
use crate::phys::PhysMemory;
use crate::stub::Stub;
use crate::table::{Chunk, PT, entry_frame};
use crate::tlb::{FlushBatch, Tlb};
use crate::{FRAMES_PER_HUGE_PAGE, PAGE_SIZE};
use x86_64::structures::paging::{Page, PageTableFlags as F, PhysFrame};

/// Bits the CPU sets in a leaf, kept across a change of attributes.
const CPU_BITS: F = F::ACCESSED.union(F::DIRTY);

impl<P: PhysMemory, T: Tlb, S: StateStorage, const N: usize> Stub<P, T, S, N> {
    /// Sets the attributes of `page`'s mapping, returning the old ones (`None`: nothing
    /// mapped, nothing done). A 2 MiB page around it is split if they differ.
    pub fn protect(
        &mut self,
        space: SpaceCap,
        page: Page,
        attrs: Attrs,
    ) -> Result<Option<Attrs>, Error> {
        let mut old = None;
        self.protect_each(space, page, 1, attrs, |a| old = Some(a))?;
        Ok(old)
    }

    /// Sets `attrs` on every mapping in the `pages` pages from `start`; returns how many
    /// 4 KiB pages changed (a 2 MiB page changed whole counts 512).
    pub fn protect_range(
        &mut self,
        space: SpaceCap,
        start: Page,
        pages: u64,
        attrs: Attrs,
    ) -> Result<u64, Error> {
        self.protect_each(space, start, pages, attrs, |_| {})
    }

    /// Protects the range, telling `seen` the old attributes of every mapped page in it.
    fn protect_each(
        &mut self,
        space: SpaceCap,
        start: Page,
        pages: u64,
        attrs: Attrs,
        mut seen: impl FnMut(Attrs),
    ) -> Result<u64, Error> {
        let root = self.root(space)?;
        let span = self.cfg.window.span(start.start_address(), pages)?;
        if span.is_empty() {
            return Ok(0);
        }
        self.check_cache(root, span, attrs)?;
        let partial = self.partial_huge(root, span, |flags| Attrs::from_flags(flags) != attrs)?;
        self.split_all(partial)?;
        let mut batch = FlushBatch::new(space, self.cfg.flush_threshold);
        let result = self.protect_chunks(root, span, attrs, &mut batch, &mut seen);
        // Whatever happened, the entries already changed are owed their flush.
        batch.issue(&mut self.tlb);
        result
    }

    /// Refuses with [`Error::CacheMode`] if a mapping in `span` that `attrs` would change
    /// maps a frame whose kind does not allow `attrs.cache`.
    fn check_cache(&self, root: PhysFrame, span: Span, attrs: Attrs) -> Result<(), Error> {
        if attrs.cache.allowed_for(FrameKind::Ram) && attrs.cache.allowed_for(FrameKind::Device) {
            return Ok(());
        }
        let mut from = span.start;
        while let Some(chunk) = self.next_chunk(root, from, span.end)? {
            let (lo, hi) = span.clamp(chunk.base, chunk.end());
            let (table, indices) = if chunk.path.huge {
                (chunk.pd(), chunk.pd_index()..chunk.pd_index() + 1)
            } else {
                (
                    chunk.path.tables[PT],
                    Chunk::pt_index(lo)..Chunk::pt_index(hi - 1) + 1,
                )
            };
            for i in indices {
                let e = &self.tab(table)?[i];
                if e.is_unused() || Attrs::from_flags(e.flags()) == attrs {
                    continue;
                }
                let kind = self
                    .grants
                    .kind_of(entry_frame(e.addr()))
                    .ok_or(Error::NotGranted)?;
                if !attrs.cache.allowed_for(kind) {
                    return Err(Error::CacheMode);
                }
            }
            from = chunk.end();
        }
        Ok(())
    }

    fn protect_chunks(
        &mut self,
        root: PhysFrame,
        span: Span,
        attrs: Attrs,
        batch: &mut FlushBatch,
        seen: &mut impl FnMut(Attrs),
    ) -> Result<u64, Error> {
        let mut changed = 0;
        let mut from = span.start;
        while let Some(chunk) = self.next_chunk(root, from, span.end)? {
            let (lo, hi) = span.clamp(chunk.base, chunk.end());
            let (table, first, last, step) = if chunk.path.huge {
                (
                    chunk.pd(),
                    chunk.pd_index(),
                    chunk.pd_index(),
                    FRAMES_PER_HUGE_PAGE,
                )
            } else {
                (
                    chunk.path.tables[PT],
                    Chunk::pt_index(lo),
                    Chunk::pt_index(hi - 1),
                    1,
                )
            };
            for i in first..=last {
                let (unused, flags) = {
                    let e = &self.tab(table)?[i];
                    (e.is_unused(), e.flags())
                };
                if unused {
                    continue;
                }
                let old = Attrs::from_flags(flags);
                let addr = if chunk.path.huge {
                    chunk.base
                } else {
                    chunk.base + i as u64 * PAGE_SIZE
                };
                let covered = if chunk.path.huge {
                    (hi - lo) / PAGE_SIZE
                } else {
                    1
                };
                for _ in 0..covered {
                    seen(old);
                }
                // A huge leaf reaching here in part has the wanted attributes already
                // (otherwise it was split).
                if old == attrs || covered != step {
                    continue;
                }
                let keep = flags & (CPU_BITS | F::HUGE_PAGE);
                self.tab_mut(table)?[i].set_flags(attrs.flags() | keep);
                batch.changed(user_va(addr));
                changed += step;
            }
            from = chunk.end();
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use crate::error::Error;
    use crate::testutil::{DEV, HUGE_RAM, RW, RX, cap, data, page, stub};
    use crate::{Access, Attrs, Cache, CountingTlb, Fault, PageSize};
    use x86_64::VirtAddr;
    use x86_64::structures::paging::{Page, PageTableFlags as F};

    fn huge(addr: u64) -> Page<x86_64::structures::paging::Size2MiB> {
        Page::from_start_address(VirtAddr::new(addr)).unwrap()
    }

    #[test]
    fn protect_changes_rights_and_flushes_only_on_change() {
        let mut s = stub(8);
        let sp = s.create_space().unwrap();
        s.map(sp, page(0x40_0000), data(&s, 0), RW).unwrap();
        assert_eq!(s.protect(sp, page(0x40_0000), RW), Ok(Some(RW)));
        assert_eq!(s.tlb().pages, 0);
        assert_eq!(s.protect(sp, page(0x40_0000), RX), Ok(Some(RW)));
        assert_eq!(s.tlb().pages, 1);
        let write = s.translate(sp, VirtAddr::new(0x40_0001), Access::Write, true);
        assert_eq!(
            write.map(|t| t.0),
            Err(Fault::Protection),
            "no longer writable"
        );
        assert!(
            s.translate(sp, VirtAddr::new(0x40_0000), Access::Exec, true)
                .is_ok()
        );
        assert_eq!(s.protect(sp, page(0x50_0000), RX), Ok(None));
        assert_eq!(s.protect_range(sp, page(0x40_0000), 0, RW), Ok(0));
    }

    #[test]
    fn uncached_ram_is_refused_before_anything_changes() {
        let mut s = stub(8);
        let sp = s.create_space().unwrap();
        s.map(sp, page(0x40_0000), cap(&s, DEV), RW).unwrap();
        s.map(sp, page(0x40_1000), data(&s, 0), RW).unwrap();
        let uc = Attrs {
            cache: Cache::Uncached,
            ..RW
        };
        assert_eq!(
            s.protect_range(sp, page(0x40_0000), 2, uc),
            Err(Error::CacheMode)
        );
        assert_eq!(s.query(sp, page(0x40_0000)).unwrap().map(|q| q.1), Some(RW));
        assert_eq!(s.protect_range(sp, page(0x40_0000), 1, uc), Ok(1));
        let wc = Attrs {
            cache: Cache::WriteCombining,
            ..RW
        };
        assert_eq!(s.protect_range(sp, page(0x40_0000), 2, wc), Ok(2));
        assert_eq!(s.tlb().pages, 3);
    }

    #[test]
    fn a_whole_huge_page_changes_in_place_a_part_splits_it() {
        let mut s = stub(8);
        let sp = s.create_space().unwrap();
        s.map_huge(sp, huge(0x4000_0000), cap(&s, HUGE_RAM), RW)
            .unwrap();
        let tables = s.tables_in_use();
        assert_eq!(s.protect_range(sp, page(0x3ff0_0000), 1024, RX), Ok(512));
        assert_eq!(
            (s.tables_in_use(), *s.tlb()),
            (tables, CountingTlb { pages: 1, alls: 0 })
        );
        assert_eq!(
            s.query(sp, page(0x4000_0000)).unwrap().map(|q| (q.1, q.2)),
            Some((RX, PageSize::Huge))
        );
        assert_eq!(
            s.protect_range(sp, page(0x4010_0000), 16, RX),
            Ok(0),
            "same attributes: no split"
        );
        assert_eq!(s.tables_in_use(), tables);
        assert_eq!(s.protect(sp, page(0x4010_0000), RW), Ok(Some(RX)));
        assert_eq!(s.tables_in_use(), tables + 1);
        assert_eq!(
            s.query(sp, page(0x4010_0000)).unwrap().map(|q| (q.1, q.2)),
            Some((RW, PageSize::Small))
        );
        assert_eq!(
            s.query(sp, page(0x4010_1000)).unwrap().map(|q| (q.1, q.2)),
            Some((RX, PageSize::Small))
        );
    }

    #[test]
    fn accessed_and_dirty_bits_survive() {
        let mut s = stub(8);
        let sp = s.create_space().unwrap();
        s.map(sp, page(0x40_0000), data(&s, 0), RW).unwrap();
        let root = s.root(sp).unwrap();
        let pt = s.walk(root, 0x40_0000).unwrap().tables[3];
        let flags = s.tab(pt).unwrap()[0].flags();
        s.tab_mut(pt).unwrap()[0].set_flags(flags | F::ACCESSED | F::DIRTY);
        s.protect(sp, page(0x40_0000), RX).unwrap();
        let (_, after) = s
            .translate(sp, VirtAddr::new(0x40_0000), Access::Read, true)
            .unwrap();
        assert!(after.contains(F::ACCESSED | F::DIRTY));
        assert_eq!(Attrs::from_flags(after), RX);
    }

    #[test]
    fn splitting_for_protect_needs_a_table() {
        let mut s = stub(3);
        let sp = s.create_space().unwrap();
        s.map_huge(sp, huge(0x4000_0000), cap(&s, DEV), RW).unwrap();
        assert_eq!(
            s.protect(sp, page(0x4000_0000), RX),
            Err(Error::OutOfTableFrames)
        );
        assert_eq!(
            s.protect(sp, page(0x4000_0000), RW),
            Ok(Some(RW)),
            "no change needs no split"
        );
        assert_eq!(*s.tlb(), CountingTlb::default());
    }
}
