//! [`HostedStub`]: the server side of the hosted kernel stub.
//!
//! The server's page tables for each client are kept here as a [`PageMap`] (what the
//! server has installed), and the host's page tables follow them lazily: a client's
//! window is made of host mappings that mirror its regions, registered with its
//! userfaultfd, so the first access to a page the host lacks reaches the server, which
//! places exactly the page its own tables say (or resolves the fault first). Frames are
//! the server's accounting; their bytes live where the host can enforce who reaches
//! them:
//! - a private page's bytes live in its client's own process (placed with
//!   `UFFDIO_COPY`; copied on write by the host after `fork`);
//! - a memory object's or device's page lives in that object's memfd
//!   ([`ObjectMemory`]), mapped only by clients allowed to, and placed with
//!   `UFFDIO_CONTINUE`;
//! - contents the server made but nobody has placed yet (a page filled from the pager, a
//!   private copy of an object page) wait in [`HostedStub`]; a frame with none is zero.
//!
//! Taking write access away (copy-on-write after a clone, dirty tracking after a
//! write-back) is write protection through the client's userfaultfd, applied at once,
//! in any client; removing pages is the host's, through the memfd (truncation, holes)
//! or the client's own calls.

use crate::object_memory::ObjectMemory;
use crate::uffd::Uffd;
use memserver::object::ObjectId;
use memserver::page_map::{PageMap, Spaces};
use memserver::{Frame, KernelStub, PageAttrs, StubError};
use std::collections::BTreeMap;
use std::sync::Arc;

const P: u64 = 4096;

/// Where a frame's bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Home {
    /// Page `idx` of an object's memfd.
    Object(ObjectId, u64),
    /// Page `idx` of a device window's memfd.
    Device(u8, u64),
}

#[derive(Default)]
struct Space {
    pages: PageMap,
    uffd: Option<Arc<Uffd>>,
}

/// The hosted kernel stub.
#[derive(Default)]
pub struct HostedStub {
    spaces: Spaces<Space>,
    /// Bytes made but not placed yet; a frame with no entry (and no home) is zero.
    pending: BTreeMap<Frame, Box<[u8; P as usize]>>,
    /// Frames whose bytes are a page of a memfd.
    homes: BTreeMap<Frame, Home>,
    /// The memfds of objects and devices.
    pub memory: ObjectMemory,
}

impl HostedStub {
    /// A stub with no spaces.
    pub fn new() -> HostedStub {
        HostedStub::default()
    }

    /// Faults of `space` are now served through `uffd`.
    pub fn attach(&mut self, space: u32, uffd: Arc<Uffd>) {
        if let Some(s) = self.spaces.get_mut(space) {
            s.uffd = Some(uffd);
        }
    }

    /// The userfaultfd of `space`.
    pub fn uffd(&self, space: u32) -> Option<Arc<Uffd>> {
        self.spaces.get(space)?.uffd.clone()
    }

    /// The bytes of `frame`, wherever they are.
    pub fn bytes(&self, frame: Frame, out: &mut [u8; P as usize]) {
        if let Some(p) = self.pending.get(&frame) {
            out.copy_from_slice(&p[..]);
            return;
        }
        match self.homes.get(&frame) {
            Some(&Home::Object(obj, idx)) => self.memory.read_page(obj, idx, out),
            Some(&Home::Device(dev, idx)) => self.memory.read_device_page(dev, idx, out),
            None => out.fill(0),
        }
    }

    /// Makes page `idx` of `obj`'s memfd hold `frame` (the object's page there): its
    /// bytes, unless it is there already. The memfd must exist.
    ///
    /// A frame with no bytes yet (a new zero page) takes what the memfd holds there:
    /// nothing (a hole, which reads zero) unless the program wrote it through its
    /// descriptor of the object, and those bytes are the object's, as on Linux.
    pub fn place_in_object(
        &mut self,
        frame: Frame,
        obj: ObjectId,
        idx: u64,
    ) -> std::io::Result<()> {
        let home = Home::Object(obj, idx);
        if self.homes.get(&frame) == Some(&home) {
            return Ok(());
        }
        if self.pending.contains_key(&frame) || self.homes.contains_key(&frame) {
            let mut page = [0u8; P as usize];
            self.bytes(frame, &mut page);
            self.memory.write_page(obj, idx, &page)?;
        } else {
            self.memory.touch_page(obj, idx)?;
        }
        self.pending.remove(&frame);
        self.homes.insert(frame, home);
        Ok(())
    }

    /// Records that `frame` is page `idx` of device `dev` (whose memfd holds it);
    /// pending bytes are written there first.
    pub fn place_in_device(&mut self, frame: Frame, dev: u8, idx: u64) -> std::io::Result<()> {
        match self.pending.remove(&frame) {
            Some(p) => self.memory.write_device_page(dev, idx, &p[..])?,
            None => self.memory.touch_device_page(dev, idx)?,
        }
        self.homes.insert(frame, Home::Device(dev, idx));
        Ok(())
    }

    fn set_bytes(&mut self, frame: Frame, page: &[u8; P as usize]) {
        match self.homes.get(&frame) {
            Some(&Home::Object(obj, idx)) => {
                let _ = self.memory.write_page(obj, idx, page);
            }
            Some(&Home::Device(dev, idx)) => {
                let _ = self.memory.write_device_page(dev, idx, page);
            }
            None if page.iter().all(|&b| b == 0) => {
                self.pending.remove(&frame);
            }
            None => {
                self.pending.insert(frame, Box::new(*page));
            }
        }
    }
}

impl KernelStub for HostedStub {
    type Space = u32;

    fn create_space(&mut self) -> Result<u32, StubError> {
        self.spaces.create(Space::default())
    }

    fn destroy_space(&mut self, space: u32) {
        self.spaces.destroy(space);
    }

    fn map(
        &mut self,
        space: u32,
        vaddr: u64,
        frame: Frame,
        attrs: PageAttrs,
    ) -> Result<(), StubError> {
        // The host follows when the client touches the page (its fault finds this).
        let s = self.spaces.get_mut(space).ok_or(StubError::Refused)?;
        s.pages.insert(vaddr, frame, attrs)
    }

    fn unmap(&mut self, space: u32, vaddr: u64, pages: u64) {
        if let Some(s) = self.spaces.get_mut(space) {
            s.pages.remove(vaddr, pages);
        }
    }

    fn protect(&mut self, space: u32, vaddr: u64, pages: u64, attrs: PageAttrs) {
        let Some(s) = self.spaces.get_mut(space) else {
            return;
        };
        let runs = s.pages.protect(vaddr, pages, attrs);
        // Taking write access away cannot wait for the client: write-protect the host's
        // pages now (pages the host lacks get the protection when they are placed).
        if !attrs.writable
            && let Some(u) = &s.uffd
        {
            for run in runs {
                let _ = u.write_protect(run.start, run.end - run.start, true);
            }
        }
    }

    fn query(&self, space: u32, vaddr: u64) -> Option<(Frame, PageAttrs)> {
        self.spaces.get(space)?.pages.get(vaddr)
    }

    fn for_each_mapping(&self, space: u32, f: &mut dyn FnMut(u64, Frame, PageAttrs)) {
        for (a, fr, at) in self
            .spaces
            .get(space)
            .into_iter()
            .flat_map(|s| s.pages.iter())
        {
            f(a, fr, at);
        }
    }

    fn zero_frame(&mut self, frame: Frame) {
        self.set_bytes(frame, &[0; P as usize]);
    }

    fn copy_frame(&mut self, src: Frame, dst: Frame) {
        let mut page = [0u8; P as usize];
        self.bytes(src, &mut page);
        self.set_bytes(dst, &page);
    }

    fn fill_frame(&mut self, frame: Frame, data: &[u8]) {
        let mut page = [0u8; P as usize];
        let n = data.len().min(page.len());
        page[..n].copy_from_slice(&data[..n]);
        self.set_bytes(frame, &page);
    }

    fn read_frame(&self, frame: Frame, out: &mut [u8]) {
        let mut page = [0u8; P as usize];
        self.bytes(frame, &mut page);
        let n = out.len().min(page.len());
        out[..n].copy_from_slice(&page[..n]);
        out[n..].fill(0);
    }

    fn donate_table_frame(&mut self, _frame: Frame) -> Result<(), StubError> {
        // The host kernel keeps the real page tables: the stub never asks for frames.
        Err(StubError::Refused)
    }

    fn reclaim_table_frame(&mut self) -> Option<Frame> {
        None
    }

    fn frame_freed(&mut self, frame: Frame) {
        self.pending.remove(&frame);
        if let Some(Home::Object(obj, idx)) = self.homes.remove(&frame) {
            self.memory.punch(obj, idx);
        }
    }

    fn object_resized(&mut self, object: u64, size: u64) {
        self.memory.resize(ObjectId(object), size);
    }

    fn object_destroyed(&mut self, object: u64) {
        self.memory.destroy(ObjectId(object));
    }
}
