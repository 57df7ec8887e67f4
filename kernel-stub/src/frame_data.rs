//! Frame contents: zeroing, copying, reading and writing granted frames for the server.
//!
//! Page-table frames (pooled or in use) are refused ([`Error::TableFrame`]), so the server
//! can never read or forge a page table through these; so are frames never granted
//! ([`Error::NotGranted`]). Device frames are allowed when the physical memory backs them
//! (a [`DirectMap`](crate::DirectMap) usually does not: [`Error::NotBacked`]).

use crate::PAGE_SIZE;
use crate::cap::FrameCap;
use crate::error::Error;
use crate::grant::StateStorage;
use crate::phys::{PhysMemory, byte_span};
use crate::stub::Stub;
use crate::tlb::Tlb;
use x86_64::structures::paging::PhysFrame;

impl<P: PhysMemory, T: Tlb, S: StateStorage, const N: usize> Stub<P, T, S, N> {
    /// Fills a frame with zeroes.
    pub fn zero_frame(&mut self, cap: FrameCap) -> Result<(), Error> {
        let frame = self.data_frame(cap)?;
        self.phys.zero(frame)
    }

    /// Copies `src`'s contents to `dst`.
    pub fn copy_frame(&mut self, src: FrameCap, dst: FrameCap) -> Result<(), Error> {
        let from = self.data_frame(src)?;
        let to = self.data_frame(dst)?;
        self.phys.copy(from, to)
    }

    /// Reads `buf.len()` bytes at `offset` of a frame; beyond the frame's 4096 bytes is
    /// [`Error::OutOfBounds`].
    pub fn read_frame(&self, cap: FrameCap, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        let frame = self.data_frame(cap)?;
        byte_span(offset, buf.len())?;
        self.phys.read(frame, offset, buf)
    }

    /// Writes `data` at `offset` of a frame; beyond the frame's 4096 bytes is
    /// [`Error::OutOfBounds`].
    pub fn write_frame(&mut self, cap: FrameCap, offset: usize, data: &[u8]) -> Result<(), Error> {
        let frame = self.data_frame(cap)?;
        byte_span(offset, data.len())?;
        self.phys.write(frame, offset, data)
    }

    /// Writes `data` at the start of a frame and zeroes the rest of it, as a page read
    /// from a file whose end falls inside it must be: one pass over the frame, where
    /// zeroing first and writing then took two. More than a frame is
    /// [`Error::OutOfBounds`] and writes nothing.
    pub fn fill_frame(&mut self, cap: FrameCap, data: &[u8]) -> Result<(), Error> {
        static ZEROES: [u8; PAGE_SIZE as usize] = [0; PAGE_SIZE as usize];
        let frame = self.data_frame(cap)?;
        let span = byte_span(0, data.len())?;
        self.phys.write(frame, 0, data)?;
        self.phys.write(frame, span.end, &ZEROES[span.end..])
    }

    fn data_frame(&self, cap: FrameCap) -> Result<PhysFrame, Error> {
        self.grants.check(cap)?;
        if self.grants.is_table(cap.frame) {
            return Err(Error::TableFrame);
        }
        Ok(cap.frame)
    }
}

#[cfg(test)]
mod tests {
    use crate::error::Error;
    use crate::testutil::{DEV, RAM, cap, data, stub};

    #[test]
    fn frame_data_is_bounds_checked() {
        let mut s = stub(4);
        let f = data(&s, 3);
        s.write_frame(f, 4090, b"abcdef").unwrap();
        let mut buf = [0u8; 6];
        s.read_frame(f, 4090, &mut buf).unwrap();
        assert_eq!(&buf, b"abcdef");
        assert_eq!(s.write_frame(f, 4091, b"abcdef"), Err(Error::OutOfBounds));
        assert_eq!(
            s.read_frame(f, usize::MAX, &mut buf),
            Err(Error::OutOfBounds)
        );
        let g = data(&s, 4);
        s.copy_frame(f, g).unwrap();
        s.read_frame(g, 4090, &mut buf).unwrap();
        assert_eq!(&buf, b"abcdef");
        s.zero_frame(g).unwrap();
        s.read_frame(g, 4090, &mut buf).unwrap();
        assert_eq!(buf, [0; 6]);
        // A fill writes its bytes and zeroes the rest; more than a frame writes nothing.
        s.write_frame(g, 0, &[0xee; 4096]).unwrap();
        s.fill_frame(g, b"xyz").unwrap();
        let mut page = [0xffu8; 4096];
        s.read_frame(g, 0, &mut page).unwrap();
        assert_eq!(&page[..3], b"xyz");
        assert!(page[3..].iter().all(|&b| b == 0));
        assert_eq!(s.fill_frame(g, &[1; 4097]), Err(Error::OutOfBounds));
        s.read_frame(g, 0, &mut page).unwrap();
        assert_eq!(&page[..4], b"xyz\0");
    }

    #[test]
    fn table_frames_and_unbacked_frames_are_refused() {
        let mut s = stub(4);
        let table = cap(&s, RAM);
        let mut buf = [0u8; 8];
        assert_eq!(s.zero_frame(table), Err(Error::TableFrame));
        assert_eq!(s.read_frame(table, 0, &mut buf), Err(Error::TableFrame));
        assert_eq!(s.write_frame(table, 0, &buf), Err(Error::TableFrame));
        assert_eq!(s.copy_frame(data(&s, 0), table), Err(Error::TableFrame));
        assert_eq!(s.copy_frame(table, data(&s, 0)), Err(Error::TableFrame));
        assert_eq!(
            s.read_frame(cap(&s, DEV), 0, &mut buf),
            Err(Error::NotBacked)
        );
        // A root in use is a table frame too.
        let sp = s.create_space().unwrap();
        let root = s.root_table(sp).unwrap();
        let root_cap = s.frame_cap(root.start_address()).unwrap();
        assert_eq!(
            s.write_frame(root_cap, 0, &[0xff; 8]),
            Err(Error::TableFrame)
        );
    }
}
