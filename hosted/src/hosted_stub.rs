//! [`HostedStub`]: the server side of the hosted kernel stub.
//!
//! "Physical memory" is a memfd the server maps whole; frame `f` is the page at offset
//! `(f - frame_base) * 4096`. The stub keeps each client's page table as a map and queues
//! every change as an [`Op`]; the connection hands a client the queue of its own space
//! with every reply, and the client runtime applies it with `mmap(MAP_FIXED)` of the
//! memfd, `mprotect`, and an inaccessible re-reservation for unmapped pages.
//!
//! A change to another client's space (`ftruncate` shrinking a shared object) is pushed
//! to that client at once by `memserverd` (its doorbell), before the request that caused
//! it is answered.

use crate::wire::Op;
use memserver::page_map::{PageMap, Spaces};
use memserver::{Frame, KernelStub, PageAttrs, StubError};
use std::ptr::NonNull;

const P: u64 = 4096;

/// The server's mapping of the memfd.
pub struct MemView {
    base: NonNull<u8>,
    len: u64,
}

// SAFETY: the view is a plain shared mapping owned by the server; the stub that holds it
// is used under the server's lock, one thread at a time.
unsafe impl Send for MemView {}

impl MemView {
    /// The view of `len` bytes mapped at `base`.
    ///
    /// # Safety
    /// `base .. base + len` must be a readable and writable mapping that stays mapped for
    /// the view's life and that no Rust reference points into.
    pub unsafe fn new(base: NonNull<u8>, len: u64) -> MemView {
        MemView { base, len }
    }

    fn page_ref(&self, index: u64) -> Option<&[u8]> {
        if index.checked_add(1)?.checked_mul(P)? > self.len {
            return None;
        }
        // SAFETY: in bounds (checked above) of the mapping `new`'s contract keeps valid;
        // the shared borrow of `self` excludes the `&mut` slices of `page`.
        Some(unsafe {
            std::slice::from_raw_parts(self.base.as_ptr().add((index * P) as usize), P as usize)
        })
    }

    fn page(&mut self, index: u64) -> Option<&mut [u8]> {
        if index.checked_add(1)?.checked_mul(P)? > self.len {
            return None;
        }
        // SAFETY: in bounds (checked above) of the mapping `new`'s contract keeps valid
        // and unaliased; the borrow of `self` keeps the slice unique.
        Some(unsafe {
            std::slice::from_raw_parts_mut(self.base.as_ptr().add((index * P) as usize), P as usize)
        })
    }
}

#[derive(Default)]
struct Space {
    pages: PageMap,
    ops: Vec<Op>,
}

/// The hosted kernel stub.
pub struct HostedStub {
    mem: MemView,
    frame_base: u64,
    spaces: Spaces<Space>,
}

impl HostedStub {
    /// A stub over `mem`, whose first page is frame `frame_base`.
    pub fn new(mem: MemView, frame_base: u64) -> HostedStub {
        HostedStub {
            mem,
            frame_base,
            spaces: Spaces::default(),
        }
    }

    /// Queues a fresh `Map` of what `space` has at `addr`, if anything: a client that
    /// faults on a page the server has installed missed (skipped) an operation.
    pub fn refresh(&mut self, space: u32, addr: u64) {
        let Some(s) = self.spaces.get_mut(space) else {
            return;
        };
        if let Some((frame, attrs)) = s.pages.get(addr) {
            s.ops.push(Op::Map {
                addr: addr & !(P - 1),
                frame: frame.0,
                write: attrs.writable,
                exec: attrs.executable,
            });
        }
    }

    /// How many operations wait for `space`.
    pub fn pending(&mut self, space: u32) -> usize {
        self.spaces.get(space).map_or(0, |s| s.ops.len())
    }

    /// Takes the operations queued for `space`, oldest first.
    pub fn take_ops(&mut self, space: u32) -> Vec<Op> {
        self.spaces
            .get_mut(space)
            .map(|s| std::mem::take(&mut s.ops))
            .unwrap_or_default()
    }

    fn index(&self, f: Frame) -> Option<u64> {
        let i = f.0.checked_sub(self.frame_base)?;
        (i < self.mem.len / P).then_some(i)
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
        if self.index(frame).is_none() {
            return Err(StubError::Refused);
        }
        let s = self.spaces.get_mut(space).ok_or(StubError::Refused)?;
        s.pages.insert(vaddr, frame, attrs)?;
        s.ops.push(Op::Map {
            addr: vaddr,
            frame: frame.0,
            write: attrs.writable,
            exec: attrs.executable,
        });
        Ok(())
    }

    fn unmap(&mut self, space: u32, vaddr: u64, pages: u64) {
        let Some(s) = self.spaces.get_mut(space) else {
            return;
        };
        let gone = s.pages.remove(vaddr, pages);
        if let (Some(&lo), Some(&last)) = (gone.first(), gone.last()) {
            s.ops.push(Op::Unmap {
                addr: lo,
                pages: (last + P - lo) / P,
            });
        }
    }

    fn protect(&mut self, space: u32, vaddr: u64, pages: u64, attrs: PageAttrs) {
        let Some(s) = self.spaces.get_mut(space) else {
            return;
        };
        // Only installed pages change: a run of them is one op.
        for run in s.pages.protect(vaddr, pages, attrs) {
            s.ops.push(Op::Protect {
                addr: run.start,
                pages: (run.end - run.start) / P,
                write: attrs.writable,
                exec: attrs.executable,
            });
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
        if let Some(p) = self.index(frame).and_then(|i| self.mem.page(i)) {
            p.fill(0);
        }
    }

    fn copy_frame(&mut self, src: Frame, dst: Frame) {
        let (Some(s), Some(d)) = (self.index(src), self.index(dst)) else {
            return;
        };
        let mut buf = vec![0u8; P as usize];
        if let Some(p) = self.mem.page(s) {
            buf.copy_from_slice(p);
        }
        if let Some(p) = self.mem.page(d) {
            p.copy_from_slice(&buf);
        }
    }

    fn fill_frame(&mut self, frame: Frame, data: &[u8]) {
        if let Some(p) = self.index(frame).and_then(|i| self.mem.page(i)) {
            let n = data.len().min(p.len());
            p[..n].copy_from_slice(&data[..n]);
            p[n..].fill(0);
        }
    }

    fn read_frame(&self, frame: Frame, out: &mut [u8]) {
        match self.index(frame).and_then(|i| self.mem.page_ref(i)) {
            Some(p) => {
                let n = out.len().min(p.len());
                out[..n].copy_from_slice(&p[..n]);
            }
            None => out.fill(0),
        }
    }

    fn donate_table_frame(&mut self, _frame: Frame) -> Result<(), StubError> {
        // The host kernel keeps the real page tables: the stub never asks for frames.
        Err(StubError::Refused)
    }

    fn reclaim_table_frame(&mut self) -> Option<Frame> {
        None
    }
}
