//! [`StubDriver`]: the real `kernel-stub` as the server's [`KernelStub`], over any
//! physical memory; [`InProcStub`] is it over simulated RAM, as the in-process runtime's
//! stub and simulated CPU (the microkernel uses the same driver over its direct map).
//!
//! The simulated physical memory spans every bank and device window of the configuration
//! (which must lie close together), so device windows are readable memory too. The
//! kernel's part is played here: granting the server its frames and turning frame numbers
//! into capabilities; everything else is the stub itself, the same code the microkernel
//! runs.

use crate::config::{Config, FrameRange};
use crate::machine::SimulatedCpu;
use crate::stub::{CacheMode, Frame, KernelStub, PageAttrs, StubError};
use alloc::boxed::Box;
use alloc::vec;
use ipc_proto::{Access, PAGE_SIZE};
use kernel_stub::x86_64::structures::paging::{Page, PhysFrame, frame::PhysFrameRange};
use kernel_stub::x86_64::{PhysAddr, VirtAddr};
use kernel_stub::{
    Attrs, Cache, CountingTlb, Error, FrameBytes, FrameCap, FrameState, KernelCapability,
    PhysMemory, RamPhys, SpaceCap, StateStorage, Stub, Tlb,
};

/// The stub type the in-process runtime uses.
pub type RealStub = Stub<RamPhys<Box<[FrameBytes]>>, CountingTlb, Box<[FrameState]>, 1024>;

/// The real kernel stub driven as the server's [`KernelStub`].
pub struct StubDriver<P, T, S, const N: usize> {
    stub: Stub<P, T, S, N>,
}

/// The real kernel stub over simulated RAM.
pub type InProcStub = StubDriver<RamPhys<Box<[FrameBytes]>>, CountingTlb, Box<[FrameState]>, 1024>;

impl<P: PhysMemory, T: Tlb, S: StateStorage, const N: usize> StubDriver<P, T, S, N> {
    /// Drives `stub`, already granted the frames the server's configuration names.
    pub fn new(stub: Stub<P, T, S, N>) -> Self {
        StubDriver { stub }
    }

    /// The stub itself (TLB counters, table counts).
    pub fn stub(&self) -> &Stub<P, T, S, N> {
        &self.stub
    }

    /// The stub itself, mutably (a kernel updates its TLB hook on a context switch).
    pub fn stub_mut(&mut self) -> &mut Stub<P, T, S, N> {
        &mut self.stub
    }

    fn cap(&self, f: Frame) -> Option<FrameCap> {
        self.stub.frame_cap(PhysAddr::try_new(f.addr()).ok()?).ok()
    }
}

/// Largest simulated physical span, to keep a mistaken configuration from allocating
/// gigabytes.
const MAX_SPAN_FRAMES: u64 = 1 << 16;

impl InProcStub {
    /// Simulated RAM covering every bank and device of `cfg`, granted to the server.
    pub fn for_config(cfg: &Config) -> Result<InProcStub, &'static str> {
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
        Ok(StubDriver { stub })
    }
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

fn page(vaddr: u64) -> Result<Page, StubError> {
    kernel_stub::page_at(vaddr).map_err(|_| StubError::Refused)
}

fn to_attrs(a: PageAttrs) -> Attrs {
    Attrs {
        writable: a.writable,
        executable: a.executable,
        cache: match a.cache {
            CacheMode::WriteBack => Cache::WriteBack,
            CacheMode::WriteCombining => Cache::WriteCombining,
            CacheMode::Uncached => Cache::Uncached,
        },
    }
}

fn from_attrs(a: Attrs) -> PageAttrs {
    PageAttrs {
        writable: a.writable,
        executable: a.executable,
        cache: match a.cache {
            Cache::WriteBack => CacheMode::WriteBack,
            Cache::WriteCombining => CacheMode::WriteCombining,
            Cache::Uncached => CacheMode::Uncached,
        },
    }
}

fn stub_error(e: Error) -> StubError {
    match e {
        Error::OutOfTableFrames => StubError::OutOfTableFrames,
        Error::OutOfSpaces => StubError::OutOfSpaces,
        _ => StubError::Refused,
    }
}

fn frame_of(f: x86_64::structures::paging::PhysFrame) -> Frame {
    Frame(f.start_address().as_u64() / PAGE_SIZE)
}

impl<P: PhysMemory, T: Tlb, S: StateStorage, const N: usize> KernelStub for StubDriver<P, T, S, N> {
    type Space = SpaceCap;

    fn create_space(&mut self) -> Result<SpaceCap, StubError> {
        self.stub.create_space().map_err(stub_error)
    }

    fn destroy_space(&mut self, space: SpaceCap) {
        let _ = self.stub.destroy_space(space);
    }

    fn map(
        &mut self,
        space: SpaceCap,
        vaddr: u64,
        frame: Frame,
        attrs: PageAttrs,
    ) -> Result<(), StubError> {
        let cap = self.cap(frame).ok_or(StubError::Refused)?;
        self.stub
            .map(space, page(vaddr)?, cap, to_attrs(attrs))
            .map_err(stub_error)
    }

    fn unmap(&mut self, space: SpaceCap, vaddr: u64, pages: u64) {
        // The server maps only 4 KiB pages, so unmapping never needs a table frame.
        if let Ok(p) = page(vaddr) {
            let _ = self.stub.unmap_range(space, p, pages, |_, _, _| {});
        }
    }

    fn protect(&mut self, space: SpaceCap, vaddr: u64, pages: u64, attrs: PageAttrs) {
        if let Ok(p) = page(vaddr) {
            let _ = self.stub.protect_range(space, p, pages, to_attrs(attrs));
        }
    }

    fn query(&self, space: SpaceCap, vaddr: u64) -> Option<(Frame, PageAttrs)> {
        let (f, a, _) = self.stub.query(space, page(vaddr).ok()?).ok()??;
        Some((frame_of(f), from_attrs(a)))
    }

    fn for_each_mapping(&self, space: SpaceCap, f: &mut dyn FnMut(u64, Frame, PageAttrs)) {
        let _ = self.stub.for_each_mapping(space, |va, fr, a, size| {
            let n = if size == kernel_stub::PageSize::Huge {
                512
            } else {
                1
            };
            for k in 0..n {
                f(
                    va.as_u64() + k * PAGE_SIZE,
                    Frame(frame_of(fr).0 + k),
                    from_attrs(a),
                );
            }
        });
    }

    fn zero_frame(&mut self, frame: Frame) {
        if let Some(c) = self.cap(frame) {
            let _ = self.stub.zero_frame(c);
        }
    }

    fn copy_frame(&mut self, src: Frame, dst: Frame) {
        if let (Some(s), Some(d)) = (self.cap(src), self.cap(dst)) {
            let _ = self.stub.copy_frame(s, d);
        }
    }

    fn fill_frame(&mut self, frame: Frame, data: &[u8]) {
        if let Some(c) = self.cap(frame)
            && self.stub.fill_frame(c, data).is_err()
        {
            // Never hand out a frame's old contents: more than a page reads as zeroes.
            let _ = self.stub.zero_frame(c);
        }
    }

    fn read_frame(&self, frame: Frame, out: &mut [u8]) {
        let read = self
            .cap(frame)
            .is_some_and(|c| self.stub.read_frame(c, 0, out).is_ok());
        if !read {
            out.fill(0);
        }
    }

    fn donate_table_frame(&mut self, frame: Frame) -> Result<(), StubError> {
        let cap = self.cap(frame).ok_or(StubError::Refused)?;
        self.stub.donate_table_frame(cap).map_err(stub_error)
    }

    fn reclaim_table_frame(&mut self) -> Option<Frame> {
        self.stub.reclaim_table_frame().map(|c| frame_of(c.frame()))
    }
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
        let (pa, _) = self.stub.translate(space, va, access, true).ok()?;
        Some(Frame(pa.as_u64() / PAGE_SIZE))
    }

    fn load(&self, frame: Frame, offset: usize) -> u8 {
        let mut b = [0u8];
        match self.cap(frame) {
            Some(c) if self.stub.read_frame(c, offset, &mut b).is_ok() => b[0],
            _ => 0,
        }
    }

    fn store(&mut self, frame: Frame, offset: usize, value: u8) {
        if let Some(c) = self.cap(frame) {
            let _ = self.stub.write_frame(c, offset, &[value]);
        }
    }
}
