//! Physical memory as the stub sees it: frames it can read, write and use as page tables.

use core::mem::size_of;
use x86_64::structures::paging::{PageTable, PhysFrame};

/// The contents of one 4 KiB frame, aligned like a page table.
#[derive(Clone)]
#[repr(C, align(4096))]
pub struct FrameBytes(pub [u8; 4096]);

impl FrameBytes {
    /// A zeroed frame.
    pub const ZERO: FrameBytes = FrameBytes([0; 4096]);

    /// The frame viewed as a page table.
    pub fn as_table(&self) -> &PageTable {
        const { assert!(size_of::<PageTable>() == 4096 && align_of::<PageTable>() == 4096) };
        // SAFETY: `PageTable` is 512 `u64`-sized entries (repr(transparent) over u64) with
        // the same size and alignment as `FrameBytes` (checked above), every bit pattern is
        // a valid entry, and the borrow of `self` covers the whole lifetime.
        unsafe { &*(self as *const FrameBytes).cast::<PageTable>() }
    }

    /// The frame viewed as a mutable page table.
    pub fn as_table_mut(&mut self) -> &mut PageTable {
        // SAFETY: as in `as_table`; the exclusive borrow of `self` makes this the only
        // view of the bytes for its lifetime.
        unsafe { &mut *(self as *mut FrameBytes).cast::<PageTable>() }
    }
}

/// Access to physical frames.
pub trait PhysMemory {
    /// The frame's contents, if it exists in this physical address space.
    fn frame(&self, f: PhysFrame) -> Option<&FrameBytes>;
    /// The frame's contents, mutable.
    fn frame_mut(&mut self, f: PhysFrame) -> Option<&mut FrameBytes>;
}

/// Simulated RAM for host tests: frames `base .. base + storage.len()`.
pub struct RamPhys<S> {
    base: u64,
    storage: S,
}

impl<S: AsRef<[FrameBytes]> + AsMut<[FrameBytes]>> RamPhys<S> {
    /// RAM whose first frame is frame number `base_frame`.
    pub fn new(base_frame: u64, storage: S) -> Self {
        RamPhys {
            base: base_frame,
            storage,
        }
    }

    fn index(&self, f: PhysFrame) -> Option<usize> {
        let n = f.start_address().as_u64() / 4096;
        let i = usize::try_from(n.checked_sub(self.base)?).ok()?;
        (i < self.storage.as_ref().len()).then_some(i)
    }
}

impl<S: AsRef<[FrameBytes]> + AsMut<[FrameBytes]>> PhysMemory for RamPhys<S> {
    fn frame(&self, f: PhysFrame) -> Option<&FrameBytes> {
        let i = self.index(f)?;
        self.storage.as_ref().get(i)
    }
    fn frame_mut(&mut self, f: PhysFrame) -> Option<&mut FrameBytes> {
        let i = self.index(f)?;
        self.storage.as_mut().get_mut(i)
    }
}

/// Physical memory reachable through a direct map at `virt = phys + offset`: what the
/// microkernel uses.
pub struct DirectMap {
    offset: u64,
    limit: u64,
}

impl DirectMap {
    /// A direct map of physical addresses `0 .. limit` at `offset`.
    ///
    /// # Safety
    /// Every physical address below `limit` must be mapped readable and writable at
    /// `phys + offset` for as long as this value lives, and nothing else may hold Rust
    /// references into that memory while the stub uses it.
    pub unsafe fn new(offset: u64, limit: u64) -> DirectMap {
        DirectMap { offset, limit }
    }

    fn ptr(&self, f: PhysFrame) -> Option<*mut FrameBytes> {
        let pa = f.start_address().as_u64();
        (pa < self.limit).then(|| (pa + self.offset) as *mut FrameBytes)
    }
}

impl PhysMemory for DirectMap {
    fn frame(&self, f: PhysFrame) -> Option<&FrameBytes> {
        // SAFETY: `new`'s contract: the frame is mapped at this address, aligned (frames
        // are 4 KiB-aligned and the offset is page-aligned), and not otherwise referenced.
        self.ptr(f).map(|p| unsafe { &*p })
    }
    fn frame_mut(&mut self, f: PhysFrame) -> Option<&mut FrameBytes> {
        // SAFETY: as above; `&mut self` makes this the only reference handed out.
        self.ptr(f).map(|p| unsafe { &mut *p })
    }
}
