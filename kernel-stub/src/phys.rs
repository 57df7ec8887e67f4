//! Physical memory as the stub sees it: frames it can use as page tables, and frames whose
//! bytes it reads and writes for the server.
//!
//! Page-table frames belong to the stub alone, so it holds Rust references to them. Data
//! frames may be mapped into running user tasks, so [`PhysMemory`] moves their bytes with
//! copies and never hands out references to them.

use crate::PAGE_SIZE;
use crate::error::Error;
use core::ops::Range;
use core::ptr::{self, NonNull};
use x86_64::structures::paging::{PageTable, PhysFrame};
use x86_64::{PhysAddr, VirtAddr};

/// The contents of one 4 KiB frame, aligned like a page table.
#[derive(Clone)]
#[repr(C, align(4096))]
pub struct FrameBytes(pub [u8; 4096]);

const _: () = assert!(size_of::<PageTable>() == size_of::<FrameBytes>());
const _: () = assert!(align_of::<PageTable>() == align_of::<FrameBytes>());

impl FrameBytes {
    /// A zeroed frame.
    pub const ZERO: FrameBytes = FrameBytes([0; 4096]);

    /// The frame viewed as a page table.
    pub fn as_table(&self) -> &PageTable {
        // SAFETY: `PageTable` is 512 entries, each `repr(transparent)` over `u64`, with the
        // same size and alignment as `FrameBytes` (asserted above); every bit pattern is a
        // valid entry, and the result borrows `self`.
        unsafe { &*ptr::from_ref(self).cast::<PageTable>() }
    }

    /// The frame viewed as a mutable page table.
    pub fn as_table_mut(&mut self) -> &mut PageTable {
        // SAFETY: as in `as_table`; the exclusive borrow of `self` makes this the only view
        // of the bytes while it lives.
        unsafe { &mut *ptr::from_mut(self).cast::<PageTable>() }
    }
}

/// The byte range `offset .. offset + len` of a frame, or [`Error::OutOfBounds`].
pub(crate) fn byte_span(offset: usize, len: usize) -> Result<Range<usize>, Error> {
    match offset.checked_add(len) {
        Some(end) if end <= PAGE_SIZE as usize => Ok(offset..end),
        _ => Err(Error::OutOfBounds),
    }
}

/// Access to physical frames. Every method refuses a frame this memory does not back with
/// [`Error::NotBacked`] (or `None`), and an access beyond 4096 bytes with
/// [`Error::OutOfBounds`].
pub trait PhysMemory {
    /// The frame viewed as a page table.
    fn table(&self, frame: PhysFrame) -> Option<&PageTable>;
    /// The frame viewed as a mutable page table.
    fn table_mut(&mut self, frame: PhysFrame) -> Option<&mut PageTable>;
    /// Copies `buf.len()` bytes from `offset` in the frame into `buf`.
    fn read(&self, frame: PhysFrame, offset: usize, buf: &mut [u8]) -> Result<(), Error>;
    /// Copies `data` to `offset` in the frame.
    fn write(&mut self, frame: PhysFrame, offset: usize, data: &[u8]) -> Result<(), Error>;
    /// Fills the frame with zeroes.
    fn zero(&mut self, frame: PhysFrame) -> Result<(), Error>;
    /// Copies the whole of `src` to `dst`.
    fn copy(&mut self, src: PhysFrame, dst: PhysFrame) -> Result<(), Error>;
    /// Where the frame can be reached in the current address space, if this memory is a
    /// direct map. The pointer is only as valid as the memory's own guarantees.
    fn frame_ptr(&self, frame: PhysFrame) -> Option<NonNull<FrameBytes>> {
        let _ = frame;
        None
    }
}

/// Simulated RAM for host tests: frames `base .. base + storage.len()`, held in `storage`
/// (a `Box<[FrameBytes]>`, a static slice, ...).
pub struct RamPhys<S> {
    base: PhysFrame,
    storage: S,
}

impl<S: AsRef<[FrameBytes]> + AsMut<[FrameBytes]>> RamPhys<S> {
    /// RAM whose first frame is `base`.
    pub fn new(base: PhysFrame, storage: S) -> Self {
        RamPhys { base, storage }
    }

    fn index(&self, frame: PhysFrame) -> Option<usize> {
        let n = frame
            .start_address()
            .as_u64()
            .checked_sub(self.base.start_address().as_u64())?
            / PAGE_SIZE;
        let i = usize::try_from(n).ok()?;
        (i < self.storage.as_ref().len()).then_some(i)
    }

    fn bytes(&self, frame: PhysFrame) -> Result<&FrameBytes, Error> {
        let i = self.index(frame).ok_or(Error::NotBacked)?;
        Ok(&self.storage.as_ref()[i])
    }

    fn bytes_mut(&mut self, frame: PhysFrame) -> Result<&mut FrameBytes, Error> {
        let i = self.index(frame).ok_or(Error::NotBacked)?;
        Ok(&mut self.storage.as_mut()[i])
    }
}

impl<S: AsRef<[FrameBytes]> + AsMut<[FrameBytes]>> PhysMemory for RamPhys<S> {
    fn table(&self, frame: PhysFrame) -> Option<&PageTable> {
        self.bytes(frame).ok().map(FrameBytes::as_table)
    }

    fn table_mut(&mut self, frame: PhysFrame) -> Option<&mut PageTable> {
        self.bytes_mut(frame).ok().map(FrameBytes::as_table_mut)
    }

    fn read(&self, frame: PhysFrame, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        let span = byte_span(offset, buf.len())?;
        buf.copy_from_slice(&self.bytes(frame)?.0[span]);
        Ok(())
    }

    fn write(&mut self, frame: PhysFrame, offset: usize, data: &[u8]) -> Result<(), Error> {
        let span = byte_span(offset, data.len())?;
        self.bytes_mut(frame)?.0[span].copy_from_slice(data);
        Ok(())
    }

    fn zero(&mut self, frame: PhysFrame) -> Result<(), Error> {
        self.bytes_mut(frame)?.0.fill(0);
        Ok(())
    }

    fn copy(&mut self, src: PhysFrame, dst: PhysFrame) -> Result<(), Error> {
        let s = self.index(src).ok_or(Error::NotBacked)?;
        let d = self.index(dst).ok_or(Error::NotBacked)?;
        if s == d {
            return Ok(());
        }
        let [from, to] = self
            .storage
            .as_mut()
            .get_disjoint_mut([s, d])
            .map_err(|_| Error::NotBacked)?;
        to.0.copy_from_slice(&from.0);
        Ok(())
    }
}

/// Physical memory reachable through a direct map at `virt = phys + offset`: what the
/// microkernel uses.
pub struct DirectMap {
    offset: u64,
    limit: u64,
}

impl DirectMap {
    /// A direct map of physical addresses `0 .. limit` at `offset`. `None` when `offset`
    /// is not 4 KiB-aligned or the map would not fit in the canonical address space.
    ///
    /// # Safety
    /// For as long as the value lives:
    /// - every physical address below `limit` is mapped readable and writable, write-back,
    ///   at `phys + offset` in every address space the stub runs in;
    /// - frames the stub uses as page tables (the donated pool and the tables built from
    ///   it, and the kernel template) are not accessed through any other Rust reference;
    /// - there is one `DirectMap` per stub (it is not `Clone`), and the stub runs on one
    ///   CPU at a time (the kernel holds a lock around it).
    pub unsafe fn new(offset: VirtAddr, limit: PhysAddr) -> Option<DirectMap> {
        let offset = offset.as_u64();
        if !offset.is_multiple_of(PAGE_SIZE) {
            return None;
        }
        let last = offset.checked_add(limit.as_u64().checked_sub(1)?)?;
        VirtAddr::try_new(last).ok()?;
        Some(DirectMap {
            offset,
            limit: limit.as_u64(),
        })
    }

    /// Where `frame` is mapped, if below the limit.
    fn ptr(&self, frame: PhysFrame) -> Option<NonNull<FrameBytes>> {
        let pa = frame.start_address().as_u64();
        if pa >= self.limit {
            return None;
        }
        // `new` checked that `offset + pa` neither overflows nor leaves canonical space.
        NonNull::new((self.offset + pa) as *mut FrameBytes)
    }
}

impl PhysMemory for DirectMap {
    fn table(&self, frame: PhysFrame) -> Option<&PageTable> {
        let p = self.ptr(frame)?;
        // SAFETY: `new`'s contract: the frame is mapped at `p` (4 KiB-aligned: the offset
        // and the frame are), readable, and no other reference to it exists while the stub
        // uses it as a table; the result borrows `self`.
        Some(unsafe { p.cast::<PageTable>().as_ref() })
    }

    fn table_mut(&mut self, frame: PhysFrame) -> Option<&mut PageTable> {
        let p = self.ptr(frame)?;
        // SAFETY: as in `table`, and `&mut self` makes this the only reference the stub
        // holds.
        Some(unsafe { p.cast::<PageTable>().as_mut() })
    }

    fn read(&self, frame: PhysFrame, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        let span = byte_span(offset, buf.len())?;
        let p = self.ptr(frame).ok_or(Error::NotBacked)?;
        // SAFETY: `new`'s contract makes the frame's 4096 bytes readable at `p`, and
        // `byte_span` keeps the copy inside them; `buf` is a distinct, writable slice.
        unsafe {
            let src = p.cast::<u8>().as_ptr().add(span.start);
            ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), span.len());
        }
        Ok(())
    }

    fn write(&mut self, frame: PhysFrame, offset: usize, data: &[u8]) -> Result<(), Error> {
        let span = byte_span(offset, data.len())?;
        let p = self.ptr(frame).ok_or(Error::NotBacked)?;
        // SAFETY: as in `read`, writable by `new`'s contract.
        unsafe {
            let dst = p.cast::<u8>().as_ptr().add(span.start);
            ptr::copy_nonoverlapping(data.as_ptr(), dst, span.len());
        }
        Ok(())
    }

    fn zero(&mut self, frame: PhysFrame) -> Result<(), Error> {
        let p = self.ptr(frame).ok_or(Error::NotBacked)?;
        // SAFETY: the frame's 4096 bytes are writable at `p` by `new`'s contract.
        unsafe { ptr::write_bytes(p.as_ptr(), 0, 1) };
        Ok(())
    }

    fn copy(&mut self, src: PhysFrame, dst: PhysFrame) -> Result<(), Error> {
        let s = self.ptr(src).ok_or(Error::NotBacked)?;
        let d = self.ptr(dst).ok_or(Error::NotBacked)?;
        if s == d {
            return Ok(());
        }
        // SAFETY: both frames are mapped by `new`'s contract; distinct frames are distinct
        // 4096-byte blocks of the direct map, so they do not overlap.
        unsafe { ptr::copy_nonoverlapping(s.as_ptr(), d.as_ptr(), 1) };
        Ok(())
    }

    fn frame_ptr(&self, frame: PhysFrame) -> Option<NonNull<FrameBytes>> {
        self.ptr(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::boxed::Box;
    use std::vec;

    fn frame(n: u64) -> PhysFrame {
        PhysFrame::containing_address(PhysAddr::new(n * PAGE_SIZE))
    }

    /// Exercises every method of `m`, whose backed frames are exactly `first .. first + 3`.
    fn exercise(m: &mut impl PhysMemory, first: u64) {
        let (a, b) = (frame(first), frame(first + 1));
        m.write(a, 4090, b"abcdef").unwrap();
        let mut buf = [0u8; 6];
        m.read(a, 4090, &mut buf).unwrap();
        assert_eq!(&buf, b"abcdef");
        assert_eq!(m.write(a, 4091, b"abcdef"), Err(Error::OutOfBounds));
        assert_eq!(m.read(a, usize::MAX, &mut buf), Err(Error::OutOfBounds));
        m.copy(a, b).unwrap();
        m.read(b, 4090, &mut buf).unwrap();
        assert_eq!(&buf, b"abcdef");
        m.copy(a, a).unwrap();
        m.zero(b).unwrap();
        m.read(b, 4090, &mut buf).unwrap();
        assert_eq!(buf, [0; 6]);
        m.table_mut(a).unwrap()[3].set_unused();
        assert!(m.table(a).unwrap()[3].is_unused());
        assert!(
            !m.table(a).unwrap()[511].is_unused(),
            "bytes 4090.. are entry 511"
        );
        for outside in [frame(first + 3), frame(first.wrapping_sub(1) & 0xff_ffff)] {
            assert!(m.table(outside).is_none());
            assert_eq!(m.zero(outside), Err(Error::NotBacked));
            assert_eq!(m.read(outside, 0, &mut buf), Err(Error::NotBacked));
            assert_eq!(m.copy(a, outside), Err(Error::NotBacked));
        }
    }

    #[test]
    fn ram_phys_backs_exactly_its_frames() {
        let storage = vec![FrameBytes::ZERO; 3].into_boxed_slice();
        let mut m = RamPhys::new(frame(0x100), storage);
        exercise(&mut m, 0x100);
        assert!(m.frame_ptr(frame(0x100)).is_none());
    }

    #[test]
    fn direct_map_reaches_frames_at_the_offset() {
        let mut storage: Box<[FrameBytes]> = vec![FrameBytes::ZERO; 4].into_boxed_slice();
        let base = storage.as_mut_ptr() as u64;
        // Physical frames 0..4 live at `base`; the limit makes frames 0..3 backed, so
        // `exercise`'s "outside" frames (3 and 0xff_ffff) are not.
        // SAFETY: `storage` outlives `m`, is only accessed through `m` while it lives, and
        // is 4 KiB-aligned (`FrameBytes` is).
        let mut m =
            unsafe { DirectMap::new(VirtAddr::new(base), PhysAddr::new(3 * PAGE_SIZE)) }.unwrap();
        exercise(&mut m, 0);
        assert_eq!(
            m.frame_ptr(frame(1)).map(|p| p.as_ptr() as u64),
            Some(base + PAGE_SIZE)
        );
        assert_eq!(
            &storage[0].0[4090..],
            b"abcdef",
            "the bytes went to the mapped memory"
        );
    }

    #[test]
    fn direct_map_refuses_a_bad_offset() {
        // SAFETY: refused values are never used.
        unsafe {
            assert!(DirectMap::new(VirtAddr::new(0x1001), PhysAddr::new(PAGE_SIZE)).is_none());
            assert!(
                DirectMap::new(
                    VirtAddr::new(0x7fff_ffff_f000),
                    PhysAddr::new(2 * PAGE_SIZE)
                )
                .is_none()
            );
            assert!(DirectMap::new(VirtAddr::new(0x1000), PhysAddr::new(0)).is_none());
        }
    }
}
