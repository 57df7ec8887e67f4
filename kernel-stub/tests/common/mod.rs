//! Fixtures shared by the integration tests: simulated RAM, a recording TLB hook.
#![allow(dead_code)]

use kernel_stub::*;
use x86_64::structures::paging::frame::PhysFrameRange;
use x86_64::structures::paging::{Page, PhysFrame, Size2MiB};
use x86_64::{PhysAddr, VirtAddr};

/// One call of the TLB hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Flush {
    Page(u64, u64),
    All(u64),
}

/// A TLB hook that records every call.
#[derive(Default)]
pub struct RecordingTlb {
    pub calls: Vec<Flush>,
}

impl Tlb for RecordingTlb {
    fn flush_page(&mut self, space: SpaceCap, addr: VirtAddr) {
        self.calls.push(Flush::Page(space.to_raw(), addr.as_u64()));
    }
    fn flush_all(&mut self, space: SpaceCap) {
        self.calls.push(Flush::All(space.to_raw()));
    }
}

pub type TestStub = Stub<RamPhys<Box<[FrameBytes]>>, RecordingTlb, Box<[FrameState]>, 4>;

/// The tests play the kernel.
pub struct Kernel;
// SAFETY: test code is the trusted kernel of its own simulated machine.
unsafe impl KernelCapability for Kernel {}

/// Simulated RAM: frames `RAM .. RAM + RAM_FRAMES`, all granted.
pub const RAM: u64 = 0x200;
pub const RAM_FRAMES: u64 = 1024;
/// Data frames the tests map 4 KiB at a time.
pub const DATA: u64 = RAM + 256;
pub const DATA_FRAMES: u64 = 64;
/// A 2 MiB-aligned run of 512 RAM frames.
pub const HUGE_RAM: u64 = RAM + 512;
/// Device frames, 2 MiB-aligned, not backed by the simulated RAM.
pub const DEV: u64 = 0x8_0000;
pub const DEV_FRAMES: u64 = 1024;
/// A 2 MiB-aligned device grant of only 256 frames: too short for a huge page.
pub const SHORT_DEV: u64 = 0x9_0000;
/// The user window of the test stubs.
pub const WINDOW_START: u64 = 0x1000;
pub const WINDOW_END: u64 = 1 << 40;

pub const RW: Attrs = Attrs::READ_WRITE;

pub fn frame(n: u64) -> PhysFrame {
    PhysFrame::containing_address(PhysAddr::new(n * PAGE_SIZE))
}

pub fn frames(start: u64, count: u64) -> PhysFrameRange {
    PhysFrame::range(frame(start), frame(start + count))
}

pub fn page(addr: u64) -> Page {
    page_at(addr).unwrap()
}

pub fn huge(addr: u64) -> Page<Size2MiB> {
    huge_page_at(addr).unwrap()
}

/// A stub with every test grant made and the first `tables` RAM frames donated.
pub fn stub(tables: u64, flush_threshold: usize) -> TestStub {
    let storage = vec![FrameBytes::ZERO; RAM_FRAMES as usize].into_boxed_slice();
    let cfg = Config {
        window: UserWindow::new(WINDOW_START, WINDOW_END).unwrap(),
        flush_threshold,
        kernel_template: None,
    };
    let mut s = Stub::new(
        RamPhys::new(frame(RAM), storage),
        RecordingTlb::default(),
        vec![FrameState::UNUSED; RAM_FRAMES as usize].into_boxed_slice(),
        cfg,
    );
    let ram = s.grant_ram(&Kernel, frames(RAM, RAM_FRAMES)).unwrap();
    s.grant_device(&Kernel, frames(DEV, DEV_FRAMES)).unwrap();
    s.grant_device(&Kernel, frames(SHORT_DEV, 256)).unwrap();
    for cap in ram.caps().take(tables as usize) {
        s.donate_table_frame(cap).unwrap();
    }
    s
}

/// The capability for frame number `n`.
pub fn cap(s: &TestStub, n: u64) -> FrameCap {
    s.frame_cap(PhysAddr::new(n * PAGE_SIZE)).unwrap()
}
