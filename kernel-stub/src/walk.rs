//! Reading the tables: the CPU's walk ([`Stub::translate`]), what one page maps
//! ([`Stub::query`]), and every mapping of a space ([`Stub::for_each_mapping`]), so tests
//! and invariant checkers can compare the tables with what the server believes.

use crate::addr::user_va;
use crate::attrs::Attrs;
use crate::cap::SpaceCap;
use crate::error::Error;
use crate::grant::{StateStorage, frame_after};
use crate::phys::PhysMemory;
use crate::stub::Stub;
use crate::table::{ENTRIES, PD, PT, SPAN, entry_frame, indices};
use crate::tlb::Tlb;
use crate::{KERNEL_HALF, PAGE_SIZE};
use x86_64::structures::paging::{Page, PageTableFlags as F, PhysFrame};
use x86_64::{PhysAddr, VirtAddr};

/// The kind of access a translation is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// A data read.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Exec,
}

/// Why a translation faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Some level of the walk is not present (error code P = 0).
    NotPresent,
    /// Every level is present but forbids the access (error code P = 1).
    Protection,
    /// The space capability names no live space (no CPU equivalent: nothing to walk).
    BadSpace,
}

/// The size of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PageSize {
    /// 4 KiB.
    Small,
    /// 2 MiB.
    Huge,
}

impl<P: PhysMemory, T: Tlb, S: StateStorage, const N: usize> Stub<P, T, S, N> {
    /// Walks the tables for `access` to `addr` exactly as the CPU does, with CR0.WP = 1
    /// and without SMEP, SMAP or protection keys: every level must be present; a write
    /// needs `WRITABLE` at every level (from user or supervisor mode); a user access needs
    /// `USER_ACCESSIBLE` at every level; a fetch faults if any level has `NO_EXECUTE`.
    /// 1 GiB and 2 MiB leaves end the walk. Returns the physical address and the leaf's
    /// flags. Kernel-half addresses walk the kernel template's entries.
    pub fn translate(
        &self,
        space: SpaceCap,
        addr: VirtAddr,
        access: Access,
        user: bool,
    ) -> Result<(PhysAddr, F), Fault> {
        let root = self.root(space).map_err(|_| Fault::BadSpace)?;
        let idx = indices(addr);
        let (mut table, mut writable, mut user_ok, mut nx) = (root, true, true, false);
        for (level, &i) in idx.iter().enumerate() {
            let e = &self.tab(table).map_err(|_| Fault::NotPresent)?[i];
            let flags = e.flags();
            if !flags.contains(F::PRESENT) {
                return Err(Fault::NotPresent);
            }
            writable &= flags.contains(F::WRITABLE);
            user_ok &= flags.contains(F::USER_ACCESSIBLE);
            nx |= flags.contains(F::NO_EXECUTE);
            let huge = flags.contains(F::HUGE_PAGE);
            if level == 0 && huge {
                // PS is reserved in a PML4 entry: the CPU faults with RSVD set.
                return Err(Fault::Protection);
            }
            if level == PT || huge {
                let allowed = (user_ok || !user)
                    && match access {
                        Access::Read => true,
                        Access::Write => writable,
                        Access::Exec => !nx,
                    };
                if !allowed {
                    return Err(Fault::Protection);
                }
                let size = SPAN[level];
                let base = e.addr().align_down(size).as_u64();
                return Ok((PhysAddr::new_truncate(base + addr.as_u64() % size), flags));
            }
            table = entry_frame(e.addr());
        }
        Err(Fault::NotPresent)
    }

    /// What `page` maps: the 4 KiB frame behind it (inside a 2 MiB frame for a huge
    /// page), its attributes and the mapping's size; `None` if nothing. Refuses a
    /// kernel-half page ([`Error::KernelHalf`]).
    pub fn query(
        &self,
        space: SpaceCap,
        page: Page,
    ) -> Result<Option<(PhysFrame, Attrs, PageSize)>, Error> {
        let root = self.root(space)?;
        let addr = page.start_address().as_u64();
        if addr >= KERNEL_HALF {
            return Err(Error::KernelHalf);
        }
        let path = self.walk(root, addr)?;
        let idx = indices(user_va(addr));
        if path.huge {
            let e = &self.tab(path.tables[PD])?[idx[PD]];
            let frame =
                frame_after(entry_frame(e.addr()), idx[PT] as u64).ok_or(Error::NotBacked)?;
            return Ok(Some((frame, Attrs::from_flags(e.flags()), PageSize::Huge)));
        }
        if path.depth < 4 {
            return Ok(None);
        }
        let e = &self.tab(path.tables[PT])?[idx[PT]];
        if e.is_unused() {
            return Ok(None);
        }
        Ok(Some((
            entry_frame(e.addr()),
            Attrs::from_flags(e.flags()),
            PageSize::Small,
        )))
    }

    /// Calls `f(start, frame, attrs, size)` for every user mapping of `space`, in address
    /// order; a 2 MiB mapping comes once, with its first 4 KiB frame.
    pub fn for_each_mapping(
        &self,
        space: SpaceCap,
        mut f: impl FnMut(VirtAddr, PhysFrame, Attrs, PageSize),
    ) -> Result<(), Error> {
        let root = self.root(space)?;
        let mut from = 0;
        while let Some(chunk) = self.next_chunk(root, from, KERNEL_HALF)? {
            if chunk.path.huge {
                let e = &self.tab(chunk.pd())?[chunk.pd_index()];
                f(
                    user_va(chunk.base),
                    entry_frame(e.addr()),
                    Attrs::from_flags(e.flags()),
                    PageSize::Huge,
                );
            } else {
                let pt = self.tab(chunk.path.tables[PT])?;
                for (i, e) in pt.iter().enumerate().take(ENTRIES) {
                    if !e.is_unused() {
                        let start = user_va(chunk.base + i as u64 * PAGE_SIZE);
                        f(
                            start,
                            entry_frame(e.addr()),
                            Attrs::from_flags(e.flags()),
                            PageSize::Small,
                        );
                    }
                }
            }
            from = chunk.end();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cap::{FrameCap, KernelCapability};
    use crate::phys::{FrameBytes, RamPhys};
    use crate::stub::Config;
    use crate::testutil::{DEV, RAM, RW, RX, cap, data, frame, frames, page, stub};
    use crate::{CountingTlb, FrameState};
    use std::vec;
    use x86_64::structures::paging::Size2MiB;

    fn huge(addr: u64) -> Page<Size2MiB> {
        Page::from_start_address(VirtAddr::new(addr)).unwrap()
    }

    #[test]
    fn translation_honours_every_right() {
        let mut s = stub(8);
        let sp = s.create_space().unwrap();
        let f = data(&s, 0);
        s.map(sp, page(0x40_0000), f, RW).unwrap();
        s.map(sp, page(0x40_1000), f, RX).unwrap();
        let t = |a, access, user| {
            s.translate(sp, VirtAddr::new(a), access, user)
                .map(|t| t.0.as_u64())
        };
        let pa = f.frame().start_address().as_u64();
        assert_eq!(t(0x40_0123, Access::Write, true), Ok(pa + 0x123));
        assert_eq!(t(0x40_0000, Access::Exec, true), Err(Fault::Protection));
        assert_eq!(t(0x40_1000, Access::Exec, true), Ok(pa));
        assert_eq!(t(0x40_1000, Access::Write, true), Err(Fault::Protection));
        assert_eq!(
            t(0x40_1000, Access::Write, false),
            Err(Fault::Protection),
            "CR0.WP = 1"
        );
        assert_eq!(t(0x40_1000, Access::Read, false), Ok(pa), "no SMAP");
        assert_eq!(t(0x40_2000, Access::Read, true), Err(Fault::NotPresent));
        assert_eq!(t(0x8000_0000, Access::Read, true), Err(Fault::NotPresent));
        assert_eq!(
            s.translate(SpaceCap::from_raw(77), VirtAddr::new(0), Access::Read, true),
            Err(Fault::BadSpace)
        );
    }

    #[test]
    fn rights_are_the_and_of_every_level_and_nx_the_or() {
        let mut s = stub(8);
        let sp = s.create_space().unwrap();
        let exec = Attrs {
            writable: true,
            executable: true,
            ..RW
        };
        s.map(sp, page(0x40_0000), data(&s, 0), exec).unwrap();
        let root = s.root(sp).unwrap();
        let path = s.walk(root, 0x40_0000).unwrap();
        let t = |s: &crate::testutil::TestStub, access, user| {
            s.translate(sp, VirtAddr::new(0x40_0000), access, user)
                .map(|t| t.0.as_u64())
        };
        assert!(t(&s, Access::Write, true).is_ok() && t(&s, Access::Exec, true).is_ok());
        // Take one right away at the PD level: the leaf alone no longer decides.
        for (take, access, user) in [
            (F::WRITABLE, Access::Write, true),
            (F::USER_ACCESSIBLE, Access::Read, true),
        ] {
            let e = &mut s.tab_mut(path.tables[PD]).unwrap()[2];
            let flags = e.flags();
            e.set_flags(flags - take);
            assert_eq!(t(&s, access, user), Err(Fault::Protection), "{take:?}");
            let e = &mut s.tab_mut(path.tables[PD]).unwrap()[2];
            e.set_flags(flags);
        }
        let e = &mut s.tab_mut(path.tables[1]).unwrap()[0];
        let flags = e.flags();
        e.set_flags(flags | F::NO_EXECUTE);
        assert_eq!(t(&s, Access::Exec, true), Err(Fault::Protection));
        assert!(
            t(&s, Access::Read, false).is_ok(),
            "supervisor ignores USER"
        );
    }

    #[test]
    fn huge_pages_translate_with_their_offset_and_query_names_the_4k_frame() {
        let mut s = stub(8);
        let sp = s.create_space().unwrap();
        s.map_huge(sp, huge(0x4000_0000), cap(&s, DEV), RW).unwrap();
        let (pa, flags) = s
            .translate(sp, VirtAddr::new(0x4012_3456), Access::Write, true)
            .unwrap();
        assert_eq!(pa.as_u64(), DEV * 4096 + 0x12_3456);
        assert!(flags.contains(F::HUGE_PAGE));
        assert_eq!(
            s.query(sp, page(0x4012_3000)),
            Ok(Some((frame(DEV + 0x123), RW, PageSize::Huge)))
        );
        let mut seen = std::vec::Vec::new();
        s.for_each_mapping(sp, |va, f, a, size| seen.push((va.as_u64(), f, a, size)))
            .unwrap();
        assert_eq!(seen, [(0x4000_0000, frame(DEV), RW, PageSize::Huge)]);
        assert_eq!(
            s.query(sp, page(0xffff_8000_0000_0000)),
            Err(Error::KernelHalf)
        );
        assert_eq!(
            s.query(SpaceCap::from_raw(9), page(0x1000)),
            Err(Error::BadSpace)
        );
    }

    #[test]
    fn for_each_mapping_lists_in_address_order() {
        let mut s = stub(16);
        let sp = s.create_space().unwrap();
        let addrs = [
            0x7fff_ffff_f000,
            0x1000,
            0x40_0000,
            0x80_0000_0000,
            0x40_1000,
        ];
        for (i, &a) in addrs.iter().enumerate() {
            s.map(sp, page(a), data(&s, i as u64), RW).unwrap();
        }
        let mut seen = std::vec::Vec::new();
        s.for_each_mapping(sp, |va, _, _, size| {
            assert_eq!(size, PageSize::Small);
            seen.push(va.as_u64());
        })
        .unwrap();
        assert_eq!(
            seen,
            [
                0x1000,
                0x40_0000,
                0x40_1000,
                0x80_0000_0000,
                0x7fff_ffff_f000
            ]
        );
    }

    #[test]
    fn the_kernel_half_is_copied_from_the_template_and_never_freed() {
        struct Kernel;
        // SAFETY: test code plays the kernel.
        unsafe impl KernelCapability for Kernel {}
        let mut phys = RamPhys::new(frame(RAM), vec![FrameBytes::ZERO; 64].into_boxed_slice());
        let template = frame(RAM);
        let kernel_pdpt = frame(RAM + 1);
        phys.table_mut(template).unwrap()[511].set_frame(kernel_pdpt, F::PRESENT | F::WRITABLE);
        // A 1 GiB supervisor page at 0xffff_ffff_c000_0000.
        phys.table_mut(kernel_pdpt).unwrap()[511].set_addr(
            PhysAddr::new(0x4000_0000),
            F::PRESENT | F::WRITABLE | F::HUGE_PAGE,
        );
        let cfg = Config {
            kernel_template: Some(template),
            ..Config::default()
        };
        let mut s: Stub<_, _, _, 4> = Stub::new(
            phys,
            CountingTlb::default(),
            vec![FrameState::UNUSED; 62].into_boxed_slice(),
            cfg,
        );
        let ram = s.grant_ram(&Kernel, frames(RAM + 2, 62)).unwrap();
        let tables: std::vec::Vec<FrameCap> = ram.caps().take(8).collect();
        for &c in &tables {
            s.donate_table_frame(c).unwrap();
        }
        let sp = s.create_space().unwrap();
        let high = VirtAddr::new(0xffff_ffff_c000_1234);
        assert_eq!(
            s.translate(sp, high, Access::Read, true),
            Err(Fault::Protection),
            "not user"
        );
        assert_eq!(
            s.translate(sp, high, Access::Write, false)
                .map(|t| t.0.as_u64()),
            Ok(0x4000_1234)
        );
        assert_eq!(
            s.translate(sp, high, Access::Exec, false)
                .map(|t| t.0.as_u64()),
            Ok(0x4000_1234)
        );
        let mut seen = 0;
        s.for_each_mapping(sp, |_, _, _, _| seen += 1).unwrap();
        assert_eq!(seen, 0, "the kernel half is no user mapping");
        s.destroy_space(sp).unwrap();
        assert_eq!(s.pool_free(), 8);
        assert!(
            !s.phys.table(kernel_pdpt).unwrap()[511].is_unused(),
            "kernel tables untouched"
        );
    }
}
