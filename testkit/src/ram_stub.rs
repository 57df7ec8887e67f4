//! [`RamStub`]: the real kernel stub over simulated RAM, as the server's stub and the
//! simulated CPU of in-process runs (the microkernel drives the same
//! [`StubDriver`] over its direct map).
//!
//! The simulated physical memory spans every bank and device window of the configuration
//! (which must lie close together), so device windows are readable memory too. The
//! kernel's part is played here: granting the server its frames; everything else is the
//! stub itself, the same code the microkernel runs.

use crate::simulation::SimulatedCpu;
use alloc::boxed::Box;
use alloc::vec;
use ipc_proto::{Access, PAGE_SIZE};
use kernel_stub::x86_64::structures::paging::{PhysFrame, frame::PhysFrameRange};
use kernel_stub::x86_64::{PhysAddr, VirtAddr};
use kernel_stub::{
    CountingTlb, FrameBytes, FrameState, KernelCapability, PhysMemory, RamPhys, SpaceCap,
    StateStorage, Stub, Tlb,
};
use memserver::{Config, Frame, FrameRange, StubDriver};

/// The real kernel stub over simulated RAM.
pub type RamStub = StubDriver<RamPhys<Box<[FrameBytes]>>, CountingTlb, Box<[FrameState]>, 1024>;

/// Largest simulated physical span, to keep a mistaken configuration from allocating
/// gigabytes.
const MAX_SPAN_FRAMES: u64 = 1 << 16;

/// Simulated RAM covering every bank and device of `cfg`, granted to the server.
pub fn ram_stub(cfg: &Config) -> Result<RamStub, &'static str> {
    let ram: vec::Vec<FrameRange> = cfg
        .banks
        .iter()
        .flat_map(|b| b.ranges.iter().copied())
        .collect();
    let devices: vec::Vec<FrameRange> = cfg
        .devices
        .iter()
        .map(|d| d.frames)
        .filter(|f| f.count > 0)
        .collect();
    let all = || ram.iter().chain(devices.iter());
    let lo = all().map(|r| r.start).min().ok_or("no memory configured")?;
    let hi = all()
        .map(|r| r.start + r.count)
        .max()
        .ok_or("no memory configured")?;
    if hi - lo > MAX_SPAN_FRAMES {
        return Err("banks and devices are too far apart to simulate");
    }
    let ram_frames: u64 = ram.iter().map(|r| r.count).sum();
    let storage = vec![FrameBytes::ZERO; (hi - lo) as usize].into_boxed_slice();
    let states = vec![FrameState::UNUSED; ram_frames as usize].into_boxed_slice();
    let base = phys_frame(lo).ok_or("memory beyond the physical address space")?;
    let mut stub = Stub::new(
        RamPhys::new(base, storage),
        CountingTlb::default(),
        states,
        kernel_stub::Config::default(),
    );
    for r in &ram {
        let range = frame_range(*r).ok_or("memory beyond the physical address space")?;
        stub.grant_ram(&Kernel, range)
            .map_err(|_| "overlapping RAM ranges")?;
    }
    for d in &devices {
        let range = frame_range(*d).ok_or("device beyond the physical address space")?;
        stub.grant_device(&Kernel, range)
            .map_err(|_| "overlapping device ranges")?;
    }
    Ok(StubDriver::new(stub))
}

/// The in-process runtime plays the kernel: it alone grants the server its frames.
struct Kernel;

// SAFETY: `Kernel` is private to this module, and this module grants only the frames of
// the configuration it simulates, which is what the trait asks of a trusted kernel.
#[allow(unsafe_code)]
unsafe impl KernelCapability for Kernel {}

fn phys_frame(number: u64) -> Option<PhysFrame> {
    let addr = PhysAddr::try_new(number.checked_mul(PAGE_SIZE)?).ok()?;
    PhysFrame::from_start_address(addr).ok()
}

fn frame_range(r: FrameRange) -> Option<PhysFrameRange> {
    Some(PhysFrame::range(
        phys_frame(r.start)?,
        phys_frame(r.start.checked_add(r.count)?)?,
    ))
}

impl<P: PhysMemory, T: Tlb, S: StateStorage, const N: usize> SimulatedCpu
    for StubDriver<P, T, S, N>
{
    fn translate(&self, space: SpaceCap, vaddr: u64, access: Access) -> Option<Frame> {
        let access = match access {
            Access::Read => kernel_stub::Access::Read,
            Access::Write => kernel_stub::Access::Write,
            Access::Exec => kernel_stub::Access::Exec,
        };
        let va = VirtAddr::try_new(vaddr).ok()?;
        let (pa, _) = self.stub().translate(space, va, access, true).ok()?;
        Some(Frame(pa.as_u64() / PAGE_SIZE))
    }

    fn load(&self, frame: Frame, offset: usize) -> u8 {
        let mut b = [0u8];
        match self.cap(frame) {
            Some(c) if self.stub().read_frame(c, offset, &mut b).is_ok() => b[0],
            _ => 0,
        }
    }

    fn store(&mut self, frame: Frame, offset: usize, value: u8) {
        if let Some(c) = self.cap(frame) {
            let _ = self.stub_mut().write_frame(c, offset, &[value]);
        }
    }
}
