//! [`Mem`]: the frame allocator and the kernel stub together, with the few operations
//! every part of the server needs (allocate a zeroed frame, install a page, free).

use crate::frame_alloc::{BankId, FrameAllocator, FrameUse};
use crate::kernel_stub::{Frame, KernelStub, PageAttrs, StubError};
use alloc::collections::BTreeSet;

/// Physical memory and the right to map it.
pub struct Mem<K> {
    /// The kernel stub.
    pub stub: K,
    /// The frames the server owns.
    pub frames: FrameAllocator,
    /// Frames currently lent to the stub for page tables.
    pub lent: BTreeSet<Frame>,
}

impl<K: KernelStub> Mem<K> {
    /// A frame from bank `b` for `use_`, zeroed, reference count 1.
    pub fn alloc_zeroed(&mut self, b: BankId, use_: FrameUse) -> Option<Frame> {
        let f = self.frames.alloc(b, use_)?;
        self.stub.zero_frame(f);
        Some(f)
    }

    /// A frame from bank `b` for `use_` holding a copy of `src`, reference count 1.
    pub fn alloc_copy(&mut self, b: BankId, use_: FrameUse, src: Frame) -> Option<Frame> {
        let f = self.frames.alloc(b, use_)?;
        self.stub.copy_frame(src, f);
        Some(f)
    }

    /// Drops one holder of `f`.
    pub fn release(&mut self, f: Frame) {
        self.frames.decref(f);
    }

    /// Installs `frame` at `vaddr`, lending the stub page-table frames as it asks.
    /// Fails only when no frame is left for a page table.
    pub fn install(
        &mut self,
        space: K::Space,
        vaddr: u64,
        frame: Frame,
        attrs: PageAttrs,
    ) -> Result<(), StubError> {
        loop {
            match self.stub.map(space, vaddr, frame, attrs) {
                Err(StubError::OutOfTableFrames) => self.lend_table_frame()?,
                other => return other,
            }
        }
    }

    /// Lends the stub one zeroed frame of the default bank for page tables.
    pub fn lend_table_frame(&mut self) -> Result<(), StubError> {
        let f = self
            .alloc_zeroed(BankId::DEFAULT, FrameUse::Table)
            .ok_or(StubError::OutOfTableFrames)?;
        match self.stub.donate_table_frame(f) {
            Ok(()) => {
                self.lent.insert(f);
                Ok(())
            }
            Err(e) => {
                self.frames.decref(f);
                Err(e)
            }
        }
    }

    /// Takes back every page-table frame the stub no longer uses.
    pub fn reclaim_table_frames(&mut self) {
        while let Some(f) = self.stub.reclaim_table_frame() {
            // Only frames we lent come back; anything else is a stub bug we refuse to
            // turn into a double free.
            if self.lent.remove(&f) {
                self.frames.decref(f);
            }
        }
    }

    /// Replaces whatever is installed at `vaddr` with `frame`.
    pub fn reinstall(
        &mut self,
        space: K::Space,
        vaddr: u64,
        frame: Frame,
        attrs: PageAttrs,
    ) -> Result<(), StubError> {
        self.stub.unmap(space, vaddr, 1);
        self.install(space, vaddr, frame, attrs)
    }
}
