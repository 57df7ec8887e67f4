//! Fixtures for the unit tests: a small stub over simulated RAM.

use crate::cap::{FrameCap, KernelCapability};
use crate::grant::FrameState;
use crate::phys::{FrameBytes, RamPhys};
use crate::stub::{Config, Stub};
use crate::tlb::CountingTlb;
use crate::{Attrs, Cache, PAGE_SIZE};
use std::boxed::Box;
use std::vec;
use x86_64::structures::paging::frame::PhysFrameRange;
use x86_64::structures::paging::{Page, PhysFrame};
use x86_64::{PhysAddr, VirtAddr};

/// The stub the unit tests use: 8 space slots.
pub(crate) type TestStub = Stub<RamPhys<Box<[FrameBytes]>>, CountingTlb, Box<[FrameState]>, 8>;

/// The tests play the kernel.
pub(crate) struct K;
// SAFETY: test code is the trusted kernel of its own simulated machine.
unsafe impl KernelCapability for K {}

/// First simulated RAM frame (2 MiB, so frame `RAM + 512` starts a huge page).
pub(crate) const RAM: u64 = 0x200;
/// Simulated RAM frames.
pub(crate) const RAM_FRAMES: u64 = 1024;
/// First data frame handed out by [`data`] (the frames below may be donated).
pub(crate) const DATA: u64 = RAM + 256;
/// First frame of a 2 MiB-aligned run of 512 RAM frames.
pub(crate) const HUGE_RAM: u64 = RAM + 512;
/// First device frame (2 MiB-aligned, 1024 frames, not backed by simulated RAM).
pub(crate) const DEV: u64 = 0x8_0000;

pub(crate) const RW: Attrs = Attrs::READ_WRITE;
pub(crate) const RX: Attrs = Attrs {
    writable: false,
    executable: true,
    cache: Cache::WriteBack,
};

pub(crate) fn frame(n: u64) -> PhysFrame {
    PhysFrame::containing_address(PhysAddr::new(n * PAGE_SIZE))
}

pub(crate) fn frames(start: u64, count: u64) -> PhysFrameRange {
    PhysFrame::range(frame(start), frame(start + count))
}

pub(crate) fn page(addr: u64) -> Page {
    Page::from_start_address(VirtAddr::new(addr)).unwrap()
}

/// A stub over simulated RAM with room for `states` RAM frames' state and no grants.
pub(crate) fn fresh(states: usize) -> TestStub {
    let storage = vec![FrameBytes::ZERO; RAM_FRAMES as usize].into_boxed_slice();
    Stub::new(
        RamPhys::new(frame(RAM), storage),
        CountingTlb::default(),
        vec![FrameState::UNUSED; states].into_boxed_slice(),
        Config::default(),
    )
}

/// A stub with all simulated RAM and 1024 device frames granted, and the first `tables`
/// RAM frames donated as page tables (with state room for 16 more RAM frames).
pub(crate) fn stub(tables: u64) -> TestStub {
    let mut s = fresh(RAM_FRAMES as usize + 16);
    let ram = s.grant_ram(&K, frames(RAM, RAM_FRAMES)).unwrap();
    s.grant_device(&K, frames(DEV, 1024)).unwrap();
    for cap in ram.caps().take(tables as usize) {
        s.donate_table_frame(cap).unwrap();
    }
    s
}

/// The `i`-th data frame.
pub(crate) fn data(s: &TestStub, i: u64) -> FrameCap {
    s.frame_cap(PhysAddr::new((DATA + i) * PAGE_SIZE)).unwrap()
}

/// The capability for frame `n`.
pub(crate) fn cap(s: &TestStub, n: u64) -> FrameCap {
    s.frame_cap(PhysAddr::new(n * PAGE_SIZE)).unwrap()
}
