//! [`ModelStub`]: a reference model of the kernel stub in ordinary data structures, for
//! tests and fuzzing of the server core without page tables.
//!
//! It keeps each space's installed pages in a map and frame contents in memory, and
//! models page-table cost: a space needs one table frame for its root and one per
//! 2 MiB-aligned chunk holding mappings, taken from frames the server lends and given
//! back when the chunk empties, so the server's lending and reclaiming are exercised.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use memserver::page_map::{PageMap, Spaces};
use memserver::{Frame, KernelStub, PageAttrs, StubError};

const CHUNK: u64 = 2 << 20;

#[derive(Default)]
struct Space {
    pages: PageMap,
    /// Table frame of each 2 MiB chunk in use, plus the root under key `u64::MAX`.
    tables: BTreeMap<u64, Frame>,
}

/// The model stub.
#[derive(Default)]
pub struct ModelStub {
    spaces: Spaces<Space>,
    pool: Vec<Frame>,
    lent: BTreeSet<Frame>,
    data: BTreeMap<Frame, Box<[u8; 4096]>>,
}

impl ModelStub {
    /// An empty model.
    pub fn new() -> ModelStub {
        ModelStub::default()
    }

    /// Reads a byte of a frame (zero if never written).
    pub fn read_byte(&self, f: Frame, offset: usize) -> u8 {
        self.data.get(&f).map_or(0, |d| d[offset % 4096])
    }

    /// Writes a byte of a frame.
    pub fn write_byte(&mut self, f: Frame, offset: usize, v: u8) {
        self.data.entry(f).or_insert_with(|| Box::new([0; 4096]))[offset % 4096] = v;
    }

    fn take_table(&mut self) -> Result<Frame, StubError> {
        self.pool.pop().ok_or(StubError::OutOfTableFrames)
    }
}

impl KernelStub for ModelStub {
    type Space = u32;

    fn create_space(&mut self) -> Result<u32, StubError> {
        let root = self.take_table()?;
        let mut s = Space::default();
        s.tables.insert(u64::MAX, root);
        self.spaces.create(s).inspect_err(|_| self.pool.push(root))
    }

    fn destroy_space(&mut self, space: u32) {
        if let Some(s) = self.spaces.destroy(space) {
            self.pool.extend(s.tables.into_values());
        }
    }

    fn map(
        &mut self,
        space: u32,
        vaddr: u64,
        frame: Frame,
        attrs: PageAttrs,
    ) -> Result<(), StubError> {
        if self.lent.contains(&frame) {
            return Err(StubError::Refused);
        }
        let chunk = vaddr / CHUNK;
        let needs_table = match self.spaces.get(space) {
            None => return Err(StubError::Refused),
            Some(s) if s.pages.get(vaddr).is_some() => return Err(StubError::Refused),
            Some(s) => !s.tables.contains_key(&chunk),
        };
        let table = if needs_table {
            Some(self.take_table()?)
        } else {
            None
        };
        let s = self.spaces.get_mut(space).ok_or(StubError::Refused)?;
        s.pages.insert(vaddr, frame, attrs)?;
        if let Some(t) = table {
            s.tables.insert(chunk, t);
        }
        Ok(())
    }

    fn unmap(&mut self, space: u32, vaddr: u64, pages: u64) {
        let Some(s) = self.spaces.get_mut(space) else {
            return;
        };
        for va in s.pages.remove(vaddr, pages) {
            let chunk = va / CHUNK;
            if !s.pages.any_in(chunk * CHUNK..(chunk + 1) * CHUNK)
                && let Some(t) = s.tables.remove(&chunk)
            {
                self.pool.push(t);
            }
        }
    }

    fn protect(&mut self, space: u32, vaddr: u64, pages: u64, attrs: PageAttrs) {
        if let Some(s) = self.spaces.get_mut(space) {
            s.pages.protect(vaddr, pages, attrs);
        }
    }

    fn query(&self, space: u32, vaddr: u64) -> Option<(Frame, PageAttrs)> {
        self.spaces.get(space)?.pages.get(vaddr)
    }

    fn for_each_mapping(&self, space: u32, f: &mut dyn FnMut(u64, Frame, PageAttrs)) {
        if let Some(s) = self.spaces.get(space) {
            for (va, fr, a) in s.pages.iter() {
                f(va, fr, a);
            }
        }
    }

    fn zero_frame(&mut self, frame: Frame) {
        self.data.remove(&frame);
    }

    fn copy_frame(&mut self, src: Frame, dst: Frame) {
        match self.data.get(&src).cloned() {
            Some(d) => {
                self.data.insert(dst, d);
            }
            None => {
                self.data.remove(&dst);
            }
        }
    }

    fn fill_frame(&mut self, frame: Frame, data: &[u8]) {
        let mut page = Box::new([0u8; 4096]);
        let n = data.len().min(4096);
        page[..n].copy_from_slice(&data[..n]);
        self.data.insert(frame, page);
    }

    fn read_frame(&self, frame: Frame, out: &mut [u8]) {
        let n = out.len().min(4096);
        match self.data.get(&frame) {
            Some(d) => out[..n].copy_from_slice(&d[..n]),
            None => out.fill(0),
        }
    }

    fn donate_table_frame(&mut self, frame: Frame) -> Result<(), StubError> {
        if !self.lent.insert(frame) {
            return Err(StubError::Refused);
        }
        self.pool.push(frame);
        Ok(())
    }

    fn reclaim_table_frame(&mut self) -> Option<Frame> {
        let f = self.pool.pop()?;
        self.lent.remove(&f);
        Some(f)
    }
}
