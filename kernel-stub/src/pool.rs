//! The pool of page-table frames: RAM frames the server donated, lent back on request.
//!
//! Pooled frames are linked through their own first entry, written as a *non-present*
//! entry (the address of the next frame with only the OS bit 9 set), so even a stale
//! paging-structure cache pointing at a freed table finds nothing mapped there.

use crate::cap::{FrameCap, FrameKind};
use crate::error::Error;
use crate::grant::{FrameState, StateStorage};
use crate::phys::PhysMemory;
use crate::stub::Stub;
use crate::tlb::Tlb;
use x86_64::structures::paging::{PageTableFlags, PhysFrame};

/// Marks a pool link entry.
const LINK: PageTableFlags = PageTableFlags::BIT_9;

/// The pool's free list and counters.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Pool {
    head: Option<PhysFrame>,
    free: u64,
    in_use: u64,
}

impl<P: PhysMemory, T: Tlb, S: StateStorage, const N: usize> Stub<P, T, S, N> {
    /// Lends the stub a RAM frame for page tables. Refuses a frame not granted
    /// ([`Error::NotGranted`]), a device frame ([`Error::NotRam`]), one already donated
    /// ([`Error::TableFrame`]), one still mapped ([`Error::FrameInUse`]), or one the
    /// physical memory cannot reach ([`Error::NotBacked`]).
    pub fn donate_table_frame(&mut self, cap: FrameCap) -> Result<(), Error> {
        self.grants.check(cap)?;
        if cap.kind != FrameKind::Ram {
            return Err(Error::NotRam);
        }
        match self.grants.state(cap.frame).and_then(FrameState::mappings) {
            None => return Err(Error::TableFrame),
            Some(0) => {}
            Some(_) => return Err(Error::FrameInUse),
        }
        if self.phys.table(cap.frame).is_none() {
            return Err(Error::NotBacked);
        }
        self.push(cap.frame);
        Ok(())
    }

    /// Takes back an unused table frame from the pool (zeroed), if there is one.
    pub fn reclaim_table_frame(&mut self) -> Option<FrameCap> {
        let frame = self.pop()?;
        self.grants.set_state(frame, FrameState::UNUSED);
        Some(FrameCap {
            frame,
            kind: FrameKind::Ram,
        })
    }

    /// Frames in the pool, ready to become page tables.
    pub fn pool_free(&self) -> u64 {
        self.pool.free
    }

    /// Frames in use as page tables, roots included.
    pub fn tables_in_use(&self) -> u64 {
        self.pool.in_use
    }

    /// A zeroed page-table frame from the pool.
    pub(crate) fn take_table(&mut self) -> Result<PhysFrame, Error> {
        let frame = self.pop().ok_or(Error::OutOfTableFrames)?;
        self.grants.set_state(frame, FrameState::TABLE);
        self.pool.in_use += 1;
        Ok(frame)
    }

    /// Returns a page-table frame that nothing points at any more to the pool.
    pub(crate) fn free_table(&mut self, frame: PhysFrame) {
        self.pool.in_use = self.pool.in_use.saturating_sub(1);
        self.push(frame);
    }

    fn push(&mut self, frame: PhysFrame) {
        if let Some(t) = self.phys.table_mut(frame) {
            t.zero();
            if let Some(next) = self.pool.head {
                t[0].set_addr(next.start_address(), LINK);
            }
        }
        self.grants.set_state(frame, FrameState::POOLED);
        self.pool.head = Some(frame);
        self.pool.free += 1;
    }

    /// Unlinks the head of the pool and zeroes it.
    fn pop(&mut self) -> Option<PhysFrame> {
        let frame = self.pool.head?;
        // Every pooled frame was checked to be backed when donated, so the link is there.
        let t = self.phys.table_mut(frame)?;
        let link = &t[0];
        self.pool.head = link
            .flags()
            .contains(LINK)
            .then(|| PhysFrame::containing_address(link.addr()));
        t.zero();
        self.pool.free = self.pool.free.saturating_sub(1);
        Some(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grant::FrameUse;
    use crate::testutil::{K, RAM, data, frames, fresh, stub};
    use x86_64::PhysAddr;

    #[test]
    fn donated_frames_come_back_last_in_first_out_and_zeroed() {
        let mut s = stub(0);
        let a = data(&s, 0);
        let b = data(&s, 1);
        s.write_frame(a, 0, &[0xaa; 64]).unwrap();
        s.donate_table_frame(a).unwrap();
        s.donate_table_frame(b).unwrap();
        assert_eq!((s.pool_free(), s.frame_use(a)), (2, Ok(FrameUse::Pooled)));
        assert_eq!(s.reclaim_table_frame(), Some(b));
        assert_eq!(s.reclaim_table_frame(), Some(a));
        assert_eq!(s.reclaim_table_frame(), None);
        assert_eq!(s.frame_use(a), Ok(FrameUse::Data { mappings: 0 }));
        let mut buf = [1u8; 64];
        s.read_frame(a, 0, &mut buf).unwrap();
        assert_eq!(
            buf, [0; 64],
            "a reclaimed frame carries nothing of the pool"
        );
    }

    #[test]
    fn donation_refuses_devices_tables_and_unbacked_frames() {
        let mut s = stub(1);
        let table = s.frame_cap(PhysAddr::new(RAM * 4096)).unwrap();
        assert_eq!(s.donate_table_frame(table), Err(Error::TableFrame));
        let dev = s
            .grant_device(&K, frames(0x9_0000, 1))
            .unwrap()
            .cap(0)
            .unwrap();
        assert_eq!(s.donate_table_frame(dev), Err(Error::NotRam));
        let far = s
            .grant_ram(&K, frames(0x10_0000, 1))
            .unwrap()
            .cap(0)
            .unwrap();
        assert_eq!(s.donate_table_frame(far), Err(Error::NotBacked));
        assert_eq!(s.pool_free(), 1);
        let mut other = fresh(4);
        let foreign = other
            .grant_ram(&K, frames(0x7000, 1))
            .unwrap()
            .cap(0)
            .unwrap();
        assert_eq!(s.donate_table_frame(foreign), Err(Error::NotGranted));
    }

    #[test]
    fn tables_are_taken_zeroed_and_counted() {
        let mut s = stub(3);
        let f = s.take_table().unwrap();
        assert!(s.phys.table(f).unwrap().is_empty());
        assert_eq!((s.pool_free(), s.tables_in_use()), (2, 1));
        assert_eq!(s.grants.state(f), Some(FrameState::TABLE));
        s.free_table(f);
        assert_eq!((s.pool_free(), s.tables_in_use()), (3, 0));
        let link = &s.phys.table(f).unwrap()[0];
        assert!(
            !link.flags().contains(PageTableFlags::PRESENT),
            "links are never present"
        );
        for _ in 0..3 {
            s.take_table().unwrap();
        }
        assert_eq!(s.take_table(), Err(Error::OutOfTableFrames));
    }
}
