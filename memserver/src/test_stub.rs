//! A stub for the core's own unit tests: page tables as [`PageMap`]s and no frame
//! contents (these tests look at which frame is where, never at bytes). The test kit's
//! `ModelStub` and `Machine` are for everything else.

use crate::kernel_stub::{Frame, KernelStub, PageAttrs, StubError};
use crate::page_map::{PageMap, Spaces};

/// Page tables without contents or table frames; it records what the server tells a
/// stub about frames and objects, for the tests of those notices.
#[derive(Default)]
pub(crate) struct TestStub {
    spaces: Spaces<PageMap>,
    /// Every `frame_freed`, in order.
    pub freed: alloc::vec::Vec<Frame>,
    /// Every `object_resized` (object, size), in order.
    pub resized: alloc::vec::Vec<(u64, u64)>,
    /// Every `object_destroyed`, in order.
    pub destroyed: alloc::vec::Vec<u64>,
}

impl KernelStub for TestStub {
    type Space = u32;

    fn create_space(&mut self) -> Result<u32, StubError> {
        self.spaces.create(PageMap::default())
    }

    fn destroy_space(&mut self, space: u32) {
        self.spaces.destroy(space);
    }

    fn map(
        &mut self,
        space: u32,
        va: u64,
        frame: Frame,
        attrs: PageAttrs,
    ) -> Result<(), StubError> {
        let s = self.spaces.get_mut(space).ok_or(StubError::Refused)?;
        s.insert(va, frame, attrs)
    }

    fn unmap(&mut self, space: u32, vaddr: u64, pages: u64) {
        if let Some(s) = self.spaces.get_mut(space) {
            s.remove(vaddr, pages);
        }
    }

    fn protect(&mut self, space: u32, vaddr: u64, pages: u64, attrs: PageAttrs) {
        if let Some(s) = self.spaces.get_mut(space) {
            s.protect(vaddr, pages, attrs);
        }
    }

    fn query(&self, space: u32, vaddr: u64) -> Option<(Frame, PageAttrs)> {
        self.spaces.get(space)?.get(vaddr)
    }

    fn for_each_mapping(&self, space: u32, f: &mut dyn FnMut(u64, Frame, PageAttrs)) {
        for (va, fr, a) in self.spaces.get(space).into_iter().flat_map(PageMap::iter) {
            f(va, fr, a);
        }
    }

    fn frame_freed(&mut self, frame: Frame) {
        self.freed.push(frame);
    }

    fn object_resized(&mut self, object: u64, size: u64) {
        self.resized.push((object, size));
    }

    fn object_destroyed(&mut self, object: u64) {
        self.destroyed.push(object);
    }

    fn zero_frame(&mut self, _: Frame) {}
    fn copy_frame(&mut self, _: Frame, _: Frame) {}
    fn fill_frame(&mut self, _: Frame, _: &[u8]) {}
    fn read_frame(&self, _: Frame, out: &mut [u8]) {
        out.fill(0);
    }

    fn donate_table_frame(&mut self, _: Frame) -> Result<(), StubError> {
        Err(StubError::Refused)
    }

    fn reclaim_table_frame(&mut self) -> Option<Frame> {
        None
    }
}
