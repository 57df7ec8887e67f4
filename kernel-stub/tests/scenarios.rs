//! Scenarios through the public API only: how the kernel, a syscall layer and the server
//! use the stub.

mod common;
use common::*;
use kernel_stub::*;
use x86_64::{PhysAddr, VirtAddr};

#[test]
fn a_whole_lifecycle_gives_every_table_back() {
    let mut s = stub(16, 16);
    let sp = s.create_space().unwrap();
    let f = cap(&s, DATA);
    s.map(sp, page(0x40_0000), f, RW).unwrap();
    s.write_frame(f, 0x10, b"hello").unwrap();
    let (pa, _) = s
        .translate(sp, VirtAddr::new(0x40_0010), Access::Read, true)
        .unwrap();
    assert_eq!(pa, f.frame().start_address() + 0x10);
    assert_eq!(s.frame_use(f), Ok(FrameUse::Data { mappings: 1 }));
    assert!(
        s.tlb().calls.is_empty(),
        "mapping into empty slots flushes nothing"
    );
    assert_eq!(s.unmap(sp, page(0x40_0000)), Ok(Some((f.frame(), RW))));
    assert_eq!(s.tlb().calls, [Flush::Page(sp.to_raw(), 0x40_0000)]);
    s.destroy_space(sp).unwrap();
    assert_eq!((s.pool_free(), s.tables_in_use()), (16, 0));
    let back: Vec<FrameCap> = std::iter::from_fn(|| s.reclaim_table_frame()).collect();
    assert_eq!(back.len(), 16);
    assert!(
        back.iter()
            .all(|&c| s.frame_use(c) == Ok(FrameUse::Data { mappings: 0 }))
    );
}

#[test]
fn a_syscall_layer_validates_every_raw_value() {
    let mut s = stub(16, 16);
    let sp = s.create_space().unwrap();
    let raw_space = sp.to_raw();
    // What a syscall handler does with the integers it was given.
    let mut map_raw = |space: u64, addr: u64, frame: u64| -> Result<(), Error> {
        let page = page_at(addr)?;
        let frame = s.frame_cap(PhysAddr::try_new(frame).map_err(|_| Error::NotGranted)?)?;
        s.map(SpaceCap::from_raw(space), page, frame, RW)
    };
    assert_eq!(map_raw(raw_space, 0x40_0000, DATA * PAGE_SIZE), Ok(()));
    assert_eq!(
        map_raw(raw_space, 0x40_0000, DATA * PAGE_SIZE),
        Err(Error::AlreadyMapped)
    );
    assert_eq!(
        map_raw(raw_space ^ (1 << 32), 0x40_1000, DATA * PAGE_SIZE),
        Err(Error::BadSpace)
    );
    assert_eq!(
        map_raw(raw_space, 0x8000_0000_0000, DATA * PAGE_SIZE),
        Err(Error::NonCanonical)
    );
    assert_eq!(
        map_raw(raw_space, 0xffff_8000_0000_0000, DATA * PAGE_SIZE),
        Err(Error::KernelHalf)
    );
    assert_eq!(
        map_raw(raw_space, WINDOW_END, DATA * PAGE_SIZE),
        Err(Error::OutsideWindow)
    );
    assert_eq!(
        map_raw(raw_space, 0x40_1001, DATA * PAGE_SIZE),
        Err(Error::Unaligned)
    );
    assert_eq!(
        map_raw(raw_space, 0x40_1000, 0x10_0000 * PAGE_SIZE),
        Err(Error::NotGranted)
    );
    assert_eq!(
        map_raw(raw_space, 0x40_1000, RAM * PAGE_SIZE),
        Err(Error::TableFrame)
    );
    assert_eq!(
        map_raw(raw_space, 0x40_1000, u64::MAX),
        Err(Error::NotGranted)
    );
}

#[test]
fn a_write_combining_framebuffer_maps_in_huge_pages() {
    let mut s = stub(16, 16);
    let sp = s.create_space().unwrap();
    let fb = Attrs {
        cache: Cache::WriteCombining,
        ..RW
    };
    for i in 0..2 {
        let first = cap(&s, DEV + i * 512);
        s.map_huge(sp, huge(0x1_0000_0000 + i * HUGE_PAGE_SIZE), first, fb)
            .unwrap();
    }
    let (pa, flags) = s
        .translate(sp, VirtAddr::new(0x1_0030_0008), Access::Write, true)
        .unwrap();
    assert_eq!(pa.as_u64(), (DEV + 0x300) * PAGE_SIZE + 8);
    assert_eq!(Attrs::from_flags(flags), fb);
    let mut n = 0;
    assert_eq!(
        s.unmap_range(sp, page(0x1_0000_0000), 1024, |_, _, _| n += 1),
        Ok(1024)
    );
    assert_eq!(n, 1024);
    assert_eq!(
        s.tlb().calls,
        [
            Flush::Page(sp.to_raw(), 0x1_0000_0000),
            Flush::Page(sp.to_raw(), 0x1_0020_0000)
        ],
        "one flush per 2 MiB entry"
    );
}

#[test]
fn the_stub_runs_unchanged_over_a_direct_map() {
    // Host memory posing as physical frames 0..64 behind a direct map, as in the kernel.
    let mut memory = vec![FrameBytes::ZERO; 64].into_boxed_slice();
    let offset = VirtAddr::from_ptr(memory.as_mut_ptr());
    // SAFETY: `memory` outlives the stub, is 4 KiB-aligned, and is only touched through
    // the stub while it lives.
    let phys = unsafe { DirectMap::new(offset, PhysAddr::new(64 * PAGE_SIZE)) }.unwrap();
    let mut s: Stub<_, _, _, 2> = Stub::new(
        phys,
        CountingTlb::default(),
        [FrameState::UNUSED; 64],
        Config::default(),
    );
    let ram = s.grant_ram(&Kernel, frames(0, 64)).unwrap();
    for c in ram.caps().take(8) {
        s.donate_table_frame(c).unwrap();
    }
    let sp = s.create_space().unwrap();
    let f = ram.cap(10).unwrap();
    s.map(sp, page(0x40_0000), f, RW).unwrap();
    s.write_frame(f, 0, b"direct").unwrap();
    let (pa, _) = s
        .translate(sp, VirtAddr::new(0x40_0000), Access::Write, true)
        .unwrap();
    assert_eq!(pa, PhysAddr::new(10 * PAGE_SIZE));
    let root = s.root_table(sp).unwrap();
    s.destroy_space(sp).unwrap();
    assert_eq!(s.pool_free(), 8);
    assert_eq!(&memory[10].0[..6], b"direct");
    assert!(
        root.start_address().as_u64() < 8 * PAGE_SIZE,
        "tables came from the donated frames"
    );
}

#[test]
fn the_kernel_alone_can_grant() {
    // `grant_ram` needs a `KernelCapability`, which is `unsafe` to implement: code that
    // cannot write `unsafe` cannot mint frames. (A compile-time property; this test shows
    // the sanctioned path works and that grants are checked.)
    let mut s = stub(0, 16);
    assert_eq!(
        s.grant_ram(&Kernel, frames(RAM + 5, 1)),
        Err(Error::GrantOverlap)
    );
    let g = s.grant_device(&Kernel, frames(0x10_0000, 4)).unwrap();
    assert_eq!(
        g.caps().map(|c| c.kind()).collect::<Vec<_>>(),
        [FrameKind::Device; 4]
    );
    assert_eq!(s.donate_table_frame(g.cap(0).unwrap()), Err(Error::NotRam));
}
