//! Scenario tests of the stub: mapping, refusals, table recycling, huge pages, TLB.

mod common;
use common::*;
use kernel_stub::*;

#[test]
fn map_translate_unmap_and_tables_come_back() {
    let mut s = stub(16);
    let sp = s.create_space().unwrap();
    assert_eq!(s.tables_in_use(), 1);
    let f = data(&s, 0);
    s.map(sp, 0x40_0000, f, RW).unwrap();
    assert_eq!(s.tables_in_use(), 4);
    assert_eq!(s.tlb().pages, 0, "mapping an empty slot needs no flush");
    let (pa, _) = s.translate(sp, 0x40_0123, Access::Write).unwrap();
    assert_eq!(pa.as_u64(), f.frame().start_address().as_u64() + 0x123);
    assert_eq!(
        s.translate(sp, 0x40_0000, Access::Exec),
        Err(Fault::Protection)
    );
    assert_eq!(
        s.translate(sp, 0x40_1000, Access::Read),
        Err(Fault::NotPresent)
    );
    assert_eq!(s.map_count(f), 1);
    assert_eq!(s.unmap(sp, 0x40_0000).unwrap(), Some((f.frame(), RW)));
    assert_eq!(s.tlb().pages, 1);
    assert_eq!(s.map_count(f), 0);
    assert_eq!(s.tables_in_use(), 1, "empty tables return to the pool");
    assert_eq!(s.unmap(sp, 0x40_0000).unwrap(), None);
    s.destroy_space(sp).unwrap();
    assert_eq!((s.tables_in_use(), s.pool_free()), (0, 16));
}

#[test]
fn protect_changes_rights_and_flushes_only_on_change() {
    let mut s = stub(16);
    let sp = s.create_space().unwrap();
    s.map(sp, 0x40_0000, data(&s, 0), RW).unwrap();
    assert_eq!(s.protect(sp, 0x40_0000, RW).unwrap(), Some(RW));
    assert_eq!(s.tlb().pages, 0);
    assert_eq!(s.protect(sp, 0x40_0000, RX).unwrap(), Some(RW));
    assert_eq!(s.tlb().pages, 1);
    assert_eq!(
        s.translate(sp, 0x40_0000, Access::Write),
        Err(Fault::Protection)
    );
    assert!(s.translate(sp, 0x40_0000, Access::Exec).is_ok());
    assert_eq!(s.protect(sp, 0x50_0000, RX).unwrap(), None);
}

#[test]
fn addresses_outside_user_space_are_refused() {
    let mut s = stub(16);
    let sp = s.create_space().unwrap();
    let f = data(&s, 0);
    assert_eq!(
        s.map(sp, 0xffff_8000_0000_0000, f, RW),
        Err(Error::KernelHalf)
    );
    assert_eq!(
        s.map(sp, 0x0000_8000_0000_0000, f, RW),
        Err(Error::NonCanonical)
    );
    assert_eq!(s.map(sp, 0x40_0001, f, RW), Err(Error::Unaligned));
    assert_eq!(s.map(sp, 0, f, RW), Err(Error::OutsideWindow));
    assert_eq!(s.map(sp, 0x7fff_ffff_f000, f, RW), Ok(()));
    assert_eq!(
        s.unmap_range(sp, 0x7fff_ffff_f000, 2, |_, _, _| {}),
        Err(Error::OutsideWindow)
    );
    assert_eq!(
        s.unmap_range(sp, 0x1000, u64::MAX, |_, _, _| {}),
        Err(Error::BadRange)
    );
    assert_eq!(s.query(sp, 0xffff_ffff_8000_0000), Err(Error::KernelHalf));
}

#[test]
fn frames_not_granted_or_used_as_tables_are_refused() {
    let mut s = stub(4);
    let sp = s.create_space().unwrap();
    assert_eq!(s.frame_cap(0x1000), Err(Error::NotGranted));
    assert_eq!(
        s.frame_cap((RAM + RAM_FRAMES) * PAGE_SIZE),
        Err(Error::NotGranted)
    );
    assert_eq!(s.frame_cap(RAM * PAGE_SIZE + 8), Err(Error::Unaligned));
    let table = s.frame_cap(RAM * PAGE_SIZE).unwrap();
    assert_eq!(s.map(sp, 0x40_0000, table, RW), Err(Error::TableFrame));
    assert_eq!(s.zero_frame(table), Err(Error::TableFrame));
    assert_eq!(s.donate_table_frame(table), Err(Error::TableFrame));
    let f = data(&s, 0);
    s.map(sp, 0x40_0000, f, RW).unwrap();
    assert_eq!(s.donate_table_frame(f), Err(Error::FrameInUse));
    assert_eq!(
        s.map(sp, 0x40_0000, data(&s, 1), RW),
        Err(Error::AlreadyMapped)
    );
    let uc = Attrs {
        cache: Cache::Uncached,
        ..RW
    };
    assert_eq!(s.map(sp, 0x41_0000, data(&s, 1), uc), Err(Error::CacheMode));
    let dev = s.frame_cap(DEV * PAGE_SIZE).unwrap();
    assert_eq!(dev.kind(), FrameKind::Device);
    assert_eq!(s.map(sp, 0x41_0000, dev, uc), Ok(()));
    assert_eq!(s.donate_table_frame(dev), Err(Error::NotGranted));
}

#[test]
fn forged_and_stale_spaces_are_refused() {
    let mut s = stub(8);
    let sp = s.create_space().unwrap();
    let f = data(&s, 0);
    assert_eq!(
        s.map(SpaceCap::from_raw(7), 0x40_0000, f, RW),
        Err(Error::BadSpace)
    );
    assert_eq!(
        s.map(SpaceCap::from_raw(0xffff), 0x40_0000, f, RW),
        Err(Error::BadSpace)
    );
    assert_eq!(
        s.map(
            SpaceCap::from_raw(sp.to_raw() + (5 << 16)),
            0x40_0000,
            f,
            RW
        ),
        Err(Error::BadSpace)
    );
    s.destroy_space(sp).unwrap();
    assert_eq!(s.map(sp, 0x40_0000, f, RW), Err(Error::StaleSpace));
    assert_eq!(s.destroy_space(sp), Err(Error::StaleSpace));
    let again = s.create_space().unwrap();
    assert_ne!(again, sp);
    assert_eq!(s.map(sp, 0x40_0000, f, RW), Err(Error::StaleSpace));
    assert_eq!(s.map(again, 0x40_0000, f, RW), Ok(()));
}

#[test]
fn pool_exhaustion_refuses_and_changes_nothing() {
    let mut s = stub(2);
    let sp = s.create_space().unwrap();
    let before = (s.pool_free(), s.tables_in_use());
    assert_eq!(
        s.map(sp, 0x40_0000, data(&s, 0), RW),
        Err(Error::OutOfTableFrames)
    );
    assert_eq!((s.pool_free(), s.tables_in_use()), before);
    assert_eq!(s.query(sp, 0x40_0000), Ok(None));
    let f = data(&s, 0);
    assert_eq!(s.map_count(f), 0);
    // A batched map that runs out part-way rolls back what it installed.
    let mut s = stub(4);
    let sp = s.create_space().unwrap();
    let frames = [data(&s, 0), data(&s, 1)];
    // The first page takes the last three pooled frames (levels 3, 2, 1); the second
    // lies in the next 2 MiB region and needs another level-1 table.
    let start = 0x40_0000 + (2 << 20) - 4096;
    assert_eq!(
        s.map_range(sp, start, &frames, RW),
        Err(Error::OutOfTableFrames)
    );
    assert_eq!(s.query(sp, start), Ok(None));
    assert_eq!(s.tables_in_use(), 1);
    assert_eq!(s.pool_free(), 3);
    assert_eq!(s.map_count(frames[0]), 0);
}

#[test]
fn huge_pages_map_translate_and_split() {
    let mut s = stub(16);
    let sp = s.create_space().unwrap();
    // A 2 MiB-aligned run of 512 device frames.
    let first = s.frame_cap(DEV * PAGE_SIZE).unwrap();
    let wc = Attrs {
        cache: Cache::WriteCombining,
        ..RW
    };
    assert_eq!(s.map_huge(sp, 0x40_1000, first, wc), Err(Error::Unaligned));
    s.map_huge(sp, 0x4000_0000, first, wc).unwrap();
    let (pa, _) = s.translate(sp, 0x4012_3456, Access::Write).unwrap();
    assert_eq!(pa.as_u64(), DEV * PAGE_SIZE + 0x12_3456);
    assert_eq!(
        s.query(sp, 0x4000_5000).unwrap().map(|q| q.2),
        Some(PageSize::Huge)
    );
    assert_eq!(
        s.map(sp, 0x4000_5000, data(&s, 0), RW),
        Err(Error::AlreadyMapped)
    );
    // Unmapping one 4 KiB page splits the huge page; the rest stays.
    let gone = s.unmap(sp, 0x4000_5000).unwrap();
    assert_eq!(
        gone.map(|g| g.0.start_address().as_u64()),
        Some((DEV + 5) * PAGE_SIZE)
    );
    assert_eq!(
        s.translate(sp, 0x4000_5000, Access::Read),
        Err(Fault::NotPresent)
    );
    let (pa, flags) = s.translate(sp, 0x4000_6000, Access::Read).unwrap();
    assert_eq!(pa.as_u64(), (DEV + 6) * PAGE_SIZE);
    assert_eq!(Attrs::from_flags(flags), wc);
    assert_eq!(
        s.query(sp, 0x4000_6000).unwrap().map(|q| q.2),
        Some(PageSize::Small)
    );
    let mut n = 0;
    s.unmap_range(sp, 0x4000_0000, 512, |_, _, _| n += 1)
        .unwrap();
    assert_eq!(n, 511);
    s.destroy_space(sp).unwrap();
    assert_eq!(s.pool_free(), 16);
}

#[test]
fn whole_huge_page_unmaps_in_one_step() {
    let mut s = stub(16);
    let sp = s.create_space().unwrap();
    let first = s.frame_cap(DEV * PAGE_SIZE).unwrap();
    s.map_huge(sp, 0x4000_0000, first, RW).unwrap();
    let mut n = 0;
    assert_eq!(
        s.unmap_range(sp, 0x4000_0000, 512, |_, _, _| n += 1),
        Ok(512)
    );
    assert_eq!(n, 512);
    assert_eq!(s.tables_in_use(), 1);
    assert_eq!(s.tlb().alls, 1);
}

#[test]
fn batched_operations_flush_once_past_the_threshold() {
    let mut s = stub(16);
    let sp = s.create_space().unwrap();
    let frames: Vec<FrameCap> = (0..40).map(|i| data(&s, i)).collect();
    s.map_range(sp, 0x40_0000, &frames[..8], RW).unwrap();
    s.map_range(sp, 0x50_0000, &frames[8..], RW).unwrap();
    assert_eq!(*s.tlb(), CountingTlb::default());
    assert_eq!(s.protect_range(sp, 0x40_0000, 8, RX), Ok(8));
    assert_eq!((s.tlb().pages, s.tlb().alls), (8, 0));
    assert_eq!(s.protect_range(sp, 0x40_0000, 8, RX), Ok(0));
    assert_eq!((s.tlb().pages, s.tlb().alls), (8, 0));
    let mut n = 0;
    assert_eq!(s.unmap_range(sp, 0x50_0000, 32, |_, _, _| n += 1), Ok(32));
    assert_eq!((s.tlb().pages, s.tlb().alls), (8, 1));
    // Unmapping a huge sparse range skips absent tables quickly and flushes nothing.
    assert_eq!(
        s.unmap_range(sp, 0x1000, (1 << 35) - 2, |_, _, _| {}),
        Ok(8)
    );
}

#[test]
fn frame_data_access_is_bounds_checked() {
    let mut s = stub(4);
    let f = data(&s, 3);
    s.write_frame(f, 4090, b"abcdef").unwrap();
    let mut buf = [0u8; 6];
    s.read_frame(f, 4090, &mut buf).unwrap();
    assert_eq!(&buf, b"abcdef");
    assert_eq!(s.write_frame(f, 4091, b"abcdef"), Err(Error::OutOfBounds));
    assert_eq!(
        s.read_frame(f, usize::MAX, &mut buf),
        Err(Error::OutOfBounds)
    );
    let g = data(&s, 4);
    s.copy_frame(f, g).unwrap();
    s.read_frame(g, 4090, &mut buf).unwrap();
    assert_eq!(&buf, b"abcdef");
    s.zero_frame(g).unwrap();
    s.read_frame(g, 4090, &mut buf).unwrap();
    assert_eq!(buf, [0; 6]);
}

#[test]
fn kernel_half_is_shared_from_the_template_and_never_freed() {
    let storage = vec![FrameBytes::ZERO; 64].into_boxed_slice();
    let mut phys = RamPhys::new(RAM, storage);
    // A template root whose entry 511 points at a (fake) kernel table.
    let template = x86_64::structures::paging::PhysFrame::containing_address(
        x86_64::PhysAddr::new(RAM * PAGE_SIZE),
    );
    let kernel_table = (RAM + 1) * PAGE_SIZE;
    phys.frame_mut(template).unwrap().as_table_mut()[511].set_addr(
        x86_64::PhysAddr::new(kernel_table),
        x86_64::structures::paging::PageTableFlags::PRESENT
            | x86_64::structures::paging::PageTableFlags::WRITABLE,
    );
    let cfg = Config {
        kernel_template: Some(template),
        ..Config::default()
    };
    let mut s: Stub<_, _, _, 4> = Stub::new(
        phys,
        CountingTlb::default(),
        vec![0; 62].into_boxed_slice(),
        cfg,
    );
    s.grant_ram(RAM + 2, 62).unwrap();
    for i in 0..8 {
        let c = s.frame_cap((RAM + 2 + i) * PAGE_SIZE).unwrap();
        s.donate_table_frame(c).unwrap();
    }
    let sp = s.create_space().unwrap();
    assert!(
        s.translate(sp, 0xffff_ff80_0000_0000, Access::Read)
            .is_err()
    );
    let mut seen = 0;
    s.for_each_mapping(sp, |_, _, _, _| seen += 1).unwrap();
    assert_eq!(seen, 0, "the kernel half is not a user mapping");
    s.destroy_space(sp).unwrap();
    assert_eq!(s.pool_free(), 8);
}
