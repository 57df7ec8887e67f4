//! [`StubDriver`]: the real `kernel-stub` as the server's [`KernelStub`], over any
//! physical memory. The microkernel drives it over its direct map; the test kit over
//! simulated RAM. Whoever builds the driver has granted the stub its frames first (the
//! kernel's part); the driver only turns the server's frame numbers into the stub's
//! capabilities and its attribute and error types into the server's.

use crate::kernel_stub::{CacheMode, Frame, KernelStub, PageAttrs, StubError};
use ipc_proto::PAGE_SIZE;
use kernel_stub::x86_64::PhysAddr;
use kernel_stub::x86_64::structures::paging::Page;
use kernel_stub::{Attrs, Cache, Error, FrameCap, PhysMemory, SpaceCap, StateStorage, Stub, Tlb};

/// The real kernel stub driven as the server's [`KernelStub`].
pub struct StubDriver<P, T, S, const N: usize> {
    stub: Stub<P, T, S, N>,
}

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

    /// The stub's capability for frame `f`, if the stub was granted it.
    pub fn cap(&self, f: Frame) -> Option<FrameCap> {
        self.stub.frame_cap(PhysAddr::try_new(f.addr()).ok()?).ok()
    }
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
