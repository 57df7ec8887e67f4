//! File-backed memory objects: the memory server as the client of a *pager* (a file
//! server speaking [`ipc_proto::pager`]), in the Mach / L4Re way.
//!
//! A file opened with [`Request::FileOpen`](ipc_proto::Request::FileOpen) becomes a
//! [`MemObject`] whose pages are a cache of the file: every mapping of the same file, in
//! every client, shares one frame per page. A page comes in from the pager on its first
//! fault (the tail past the end of the file zero-filled); a shared writable mapping
//! installs it read-only until the first write, which marks it dirty, so only pages
//! really written go back. Dirty pages are written back by `msync`, by `munmap` and exit
//! of the range, and when the object is forgotten (its last fd and mapping gone), after
//! which the pager hears `Release`. Under memory pressure a fault evicts a cached page
//! (a clean one first; a dirty one after writing it back) rather than failing.

use crate::fd::{FdEntry, FdTarget};
use crate::frame_alloc::{BankId, FrameUse};
use crate::kernel_stub::{Frame, KernelStub, PageAttrs};
use crate::object::{FileInfo, MemObject, ObjectId};
use crate::region::RegionBacking;
use crate::server::Server;
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use ipc_proto::pager::{ObjectKey, PageData, PagerReply, PagerRequest};
use ipc_proto::{
    ClientId, Errno, Fd, FilePath, MAX_PAGER_REQUEST_LEN, MAX_PAGER_RESPONSE_LEN, Mode, OFlags,
    PAGE_SIZE, decode_pager_response, encode_pager_request,
};

/// A transport to the file server. The server hands it one encoded pager request at a
/// time and waits for the answer: the pager is trusted to answer, not to answer well
/// (anything undecodable or of the wrong kind is `EIO`).
///
/// Any `FnMut(&[u8], &mut [u8]) -> Result<usize, Errno> + Send` closure is a pager, so an
/// in-process file server is `move |req, out| Ok(fs.handle_message(req, out))`.
pub trait Pager: Send {
    /// Delivers the encoded `request` and writes the encoded response into `reply`
    /// ([`MAX_PAGER_RESPONSE_LEN`] bytes); returns the response's length, or the errno
    /// of a transport that could not reach the pager.
    fn call(&mut self, request: &[u8], reply: &mut [u8]) -> Result<usize, Errno>;
}

impl<F: FnMut(&[u8], &mut [u8]) -> Result<usize, Errno> + Send> Pager for F {
    fn call(&mut self, request: &[u8], reply: &mut [u8]) -> Result<usize, Errno> {
        self(request, reply)
    }
}

/// The connection to the file server: the pager, once set, its message buffers (a
/// request and a reply of a page each), made when it is set and reused, and the counts of
/// its traffic.
#[derive(Default)]
pub(crate) struct PagerLink {
    pager: Option<Box<dyn Pager>>,
    // On the heap, made once: a page-carrying message is bigger than a small task's
    // stack likes, and zeroing two fresh buffers per page-in cost more than the copy.
    request: Box<[u8]>,
    reply: Box<[u8]>,
    counters: PagerCounters,
}

/// The page cache's eviction state.
#[derive(Default)]
pub(crate) struct Eviction {
    /// Where the next eviction starts looking: just past the last page evicted.
    hand: (ObjectId, u64),
    /// The range an `mlock`/`mlockall` is populating before it marks it locked:
    /// eviction spares it as if it were locked already.
    pub pinning: Option<(ClientId, u64, u64)>,
}

impl PagerLink {
    fn connect(&mut self, pager: Box<dyn Pager>) {
        self.pager = Some(pager);
        self.request = vec![0u8; MAX_PAGER_REQUEST_LEN].into_boxed_slice();
        self.reply = vec![0u8; MAX_PAGER_RESPONSE_LEN].into_boxed_slice();
    }

    fn is_connected(&self) -> bool {
        self.pager.is_some()
    }

    /// One round trip. The pager's own errno passes through; a pager that cannot be
    /// reached or answers garbage is `EIO`; no pager at all is `ENODEV`. A page in the
    /// reply stays in the reply buffer, borrowed until the next call.
    fn call(&mut self, req: &PagerRequest<'_>) -> Result<PagerReply<'_>, Errno> {
        let pager = self.pager.as_mut().ok_or(Errno::ENODEV)?;
        let n = encode_pager_request(req, &mut self.request).map_err(|_| Errno::EIO)?;
        let m = pager
            .call(&self.request[..n], &mut self.reply)
            .map_err(|_| Errno::EIO)?;
        let reply = self.reply.get(..m).ok_or(Errno::EIO)?;
        decode_pager_response(reply).map_err(|_| Errno::EIO)?
    }
}

/// Counters of the pager traffic, for tests and tools.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PagerCounters {
    /// Pages read from the pager.
    pub page_ins: u64,
    /// Dirty pages written back.
    pub page_outs: u64,
    /// Cached pages evicted under memory pressure.
    pub evictions: u64,
}

impl<K: KernelStub> Server<K> {
    /// Connects the server to a file server: `FileOpen` is `ENODEV` until one is set.
    /// Replacing a pager while files are open would strand their objects, so it is refused
    /// (`EBUSY`) then.
    pub fn set_pager(&mut self, pager: Box<dyn Pager>) -> Result<(), Errno> {
        if self.objects.has_files() {
            return Err(Errno::EBUSY);
        }
        self.pager.connect(pager);
        Ok(())
    }

    /// The pager traffic so far.
    pub fn pager_counters(&self) -> PagerCounters {
        self.pager.counters
    }

    /// `FileOpen`: looks the path up at the pager with the caller's identity and opens
    /// an fd on the file's object (one object per file, shared by every opener).
    pub(crate) fn file_open(
        &mut self,
        id: ClientId,
        path: &FilePath,
        oflag: OFlags,
    ) -> Result<Fd, Errno> {
        let write = crate::permission::access_mode(oflag)?;
        // Files are created at the file server, not through the memory server.
        if oflag.intersects(OFlags::CREAT | OFlags::EXCL) {
            return Err(Errno::EINVAL);
        }
        let trunc = oflag.contains(OFlags::TRUNC);
        let c = self.clients.get(&id).ok_or(Errno::ESRCH)?;
        let (uid, gid) = (c.spec.uid, c.spec.gid);
        self.check_fd_room(id)?;
        if !self.pager.is_connected() {
            return Err(Errno::ENODEV);
        }
        let reply = self.pager.call(&PagerRequest::Lookup {
            path: path.clone(),
            write: write || trunc,
            uid,
            gid,
        })?;
        let PagerReply::Object {
            object,
            size,
            mode,
            uid: owner,
            gid: group,
        } = reply
        else {
            return Err(Errno::EIO);
        };
        let obj = match self.objects.by_file(&object) {
            Some(obj) => obj,
            None => {
                let mode = Mode::from_raw(mode & 0o7777).unwrap_or_default();
                let mut o = MemObject::new(None, mode, owner, group, BankId::DEFAULT);
                o.size = size;
                o.file = Some(FileInfo {
                    key: object,
                    dirty: Default::default(),
                });
                self.objects.insert(o)
            }
        };
        let busy = self
            .objects
            .get(&obj)
            .is_some_and(|o| write && o.denywrite_pages > 0);
        let truncated = if busy {
            Err(Errno::ETXTBSY)
        } else if trunc {
            self.file_set_size(obj, 0)
        } else {
            Ok(())
        };
        if let Err(e) = truncated {
            // A file nobody else had open is forgotten again.
            self.destroy_if_orphan(obj);
            return Err(e);
        }
        Ok(self.open_fd(
            id,
            FdEntry {
                target: FdTarget::Shm(obj),
                writable: write,
            },
        ))
    }

    /// `ftruncate` of a file: the pager changes the file first, then the cache follows.
    pub(crate) fn file_set_size(&mut self, obj: ObjectId, len: u64) -> Result<(), Errno> {
        let key = self.file_key(obj).ok_or(Errno::EBADF)?;
        match self.pager.call(&PagerRequest::SetSize {
            object: key,
            size: len,
        })? {
            PagerReply::Done => {}
            _ => return Err(Errno::EIO),
        }
        self.truncate_object(obj, len);
        Ok(())
    }

    /// The pager key of a file object.
    pub(crate) fn file_key(&self, obj: ObjectId) -> Option<ObjectKey> {
        self.objects.get(&obj)?.file.as_ref().map(|f| f.key)
    }

    /// The frame holding page `idx` of `obj`: resident already, paged in from the pager
    /// (a file), or a fresh zeroed frame (shm). `ENOMEM` when no frame is free, `EIO`
    /// when the pager fails.
    pub(crate) fn object_page(&mut self, obj: ObjectId, idx: u64) -> Result<Frame, Errno> {
        let o = self.objects.get(&obj).ok_or(Errno::EIO)?;
        if let Some(&f) = o.pages.get(&idx) {
            return Ok(f);
        }
        let bank = o.bank;
        let f = match o.file.as_ref().map(|f| f.key) {
            None => self
                .mem
                .alloc_zeroed(bank, FrameUse::Uncommitted)
                .ok_or(Errno::ENOMEM)?,
            Some(key) => {
                let data = match self.pager.call(&PagerRequest::PageIn {
                    object: key,
                    offset: idx * PAGE_SIZE,
                })? {
                    PagerReply::Data(d) => d,
                    _ => return Err(Errno::EIO),
                };
                let f = self
                    .mem
                    .frames
                    .alloc(bank, FrameUse::Cache)
                    .ok_or(Errno::ENOMEM)?;
                // Straight from the reply buffer into the frame: the only copy here.
                self.mem.stub.fill_frame(f, data.as_slice());
                self.pager.counters.page_ins += 1;
                f
            }
        };
        match self.objects.get_mut(&obj) {
            Some(o) => {
                o.pages.insert(idx, f);
                Ok(f)
            }
            None => {
                self.mem.release(f);
                Err(Errno::EIO)
            }
        }
    }

    /// Records that page `idx` of file object `obj` was written.
    pub(crate) fn mark_dirty(&mut self, obj: ObjectId, idx: u64) {
        if let Some(f) = self.objects.get_mut(&obj).and_then(|o| o.file.as_mut()) {
            f.dirty.insert(idx);
        }
    }

    /// Whether page `idx` of `obj` is a dirty file page.
    pub(crate) fn is_dirty(&self, obj: ObjectId, idx: u64) -> bool {
        self.objects
            .get(&obj)
            .and_then(|o| o.file.as_ref())
            .is_some_and(|f| f.dirty.contains(&idx))
    }

    /// Writes the dirty pages of `obj` with index in `pages` back to the pager, then
    /// write-protects them everywhere so the next write marks them again. Stops at the
    /// first failure (`EIO`), leaving that page and the rest dirty.
    pub(crate) fn write_back(
        &mut self,
        obj: ObjectId,
        pages: core::ops::Range<u64>,
    ) -> Result<(), Errno> {
        let Some(o) = self.objects.get(&obj) else {
            return Ok(());
        };
        let Some(file) = o.file.as_ref() else {
            return Ok(());
        };
        let (key, size) = (file.key, o.size);
        let dirty: Vec<u64> = file.dirty.range(pages).copied().collect();
        for idx in dirty {
            let Some(&f) = self.objects.get(&obj).and_then(|o| o.pages.get(&idx)) else {
                continue;
            };
            self.page_out(key, f, size, idx)?;
            if let Some(file) = self.objects.get_mut(&obj).and_then(|o| o.file.as_mut()) {
                file.dirty.remove(&idx);
            }
            for (space, va, attrs) in self.installed_object_pages(obj, idx, f) {
                if attrs.writable {
                    let ro = PageAttrs {
                        writable: false,
                        ..attrs
                    };
                    self.mem.stub.protect(space, va, 1, ro);
                }
            }
        }
        Ok(())
    }

    /// Every installed entry mapping page `idx` of `obj` (frame `f`): `(space, vaddr,
    /// attributes)`. Private copies at the same address are not the object's page.
    fn installed_object_pages(
        &self,
        obj: ObjectId,
        idx: u64,
        f: Frame,
    ) -> Vec<(K::Space, u64, PageAttrs)> {
        let at = idx * PAGE_SIZE;
        let mut out = Vec::new();
        for c in self.clients.values() {
            for r in c.regions.iter() {
                let RegionBacking::Object { obj: o, offset } = r.backing else {
                    continue;
                };
                if o != obj || at < offset || at - offset >= r.len() {
                    continue;
                }
                let va = r.start + (at - offset);
                if let Some((g, a)) = self.mem.stub.query(c.space, va)
                    && g == f
                {
                    out.push((c.space, va, a));
                }
            }
        }
        out
    }

    /// Whether a locked region maps page `idx` of `obj` (it must stay resident), or the
    /// range an `mlock` is populating right now (it is about to be locked).
    fn page_locked(&self, obj: ObjectId, idx: u64) -> bool {
        let at = idx * PAGE_SIZE;
        self.clients.iter().any(|(&id, c)| {
            c.regions.iter().any(|r| {
                let RegionBacking::Object { obj: o, offset } = r.backing else {
                    return false;
                };
                if o != obj || at < offset || at - offset >= r.len() {
                    return false;
                }
                let va = r.start + (at - offset);
                r.locked
                    || self
                        .eviction
                        .pinning
                        .is_some_and(|(p, s, e)| p == id && (s..e).contains(&va))
            })
        })
    }

    /// Frees one cached file page of `bank` to relieve memory pressure there: a clean
    /// page if there is one, else a dirty one written back first; never a page a locked
    /// region maps. Whether a frame was freed.
    ///
    /// The search is a clock: it starts where the last eviction left off and wraps, so
    /// evictions rotate through the cache. Always taking the lowest page instead would
    /// evict the start of the oldest file at every fault, however hot it is.
    pub(crate) fn evict_one(&mut self, bank: BankId) -> bool {
        let (hand_obj, hand_idx) = self.eviction.hand;
        // An object's pages all come from its bank (`object_page`).
        let from_hand = self
            .objects
            .range(hand_obj..)
            .filter(|(_, o)| o.bank == bank);
        let from_hand = from_hand.flat_map(|(obj, o)| {
            let start = if obj == hand_obj { hand_idx } else { 0 };
            cached_file_pages(obj, o, start..u64::MAX)
        });
        let before_hand = self
            .objects
            .range(..=hand_obj)
            .filter(|(_, o)| o.bank == bank);
        let before_hand = before_hand.flat_map(|(obj, o)| {
            let end = if obj == hand_obj { hand_idx } else { u64::MAX };
            cached_file_pages(obj, o, 0..end)
        });
        let mut dirty_choice = None;
        let mut clean_choice = None;
        for (obj, idx, dirty) in from_hand.chain(before_hand) {
            if self.page_locked(obj, idx) {
                continue;
            }
            if !dirty {
                clean_choice = Some((obj, idx));
                break;
            }
            dirty_choice.get_or_insert((obj, idx));
        }
        let Some((obj, idx)) = clean_choice.or(dirty_choice) else {
            return false;
        };
        if self.write_back(obj, idx..idx + 1).is_err() {
            return false;
        }
        let Some(f) = self
            .objects
            .get_mut(&obj)
            .and_then(|o| o.pages.remove(&idx))
        else {
            return false;
        };
        for (space, va, _) in self.installed_object_pages(obj, idx, f) {
            self.mem.stub.unmap(space, va, 1);
        }
        self.mem.release(f);
        self.pager.counters.evictions += 1;
        self.eviction.hand = (obj, idx + 1);
        true
    }

    /// Writes page `idx` (held in `f`) of the file `key` of `size` bytes back: only the
    /// bytes up to the end of the file, since the pager drops the rest anyway.
    fn page_out(&mut self, key: ObjectKey, f: Frame, size: u64, idx: u64) -> Result<(), Errno> {
        let len = size.saturating_sub(idx * PAGE_SIZE).min(PAGE_SIZE) as usize;
        let mut buf = vec![0u8; len];
        self.mem.stub.read_frame(f, &mut buf);
        let data = PageData::new(&buf).map_err(|_| Errno::EIO)?;
        match self.pager.call(&PagerRequest::PageOut {
            object: key,
            offset: idx * PAGE_SIZE,
            data,
        }) {
            Ok(PagerReply::Done) => {
                self.pager.counters.page_outs += 1;
                Ok(())
            }
            _ => Err(Errno::EIO),
        }
    }

    /// Forgets a file object nothing refers to any more (already out of the object
    /// table): its dirty pages go back, then the pager hears `Release`. A pager failing
    /// here loses those writes, as a failed write-back at `close` does on Linux; the
    /// frames are freed by the caller regardless.
    pub(crate) fn release_file(&mut self, o: &MemObject) {
        let Some(file) = o.file.as_ref() else {
            return;
        };
        for &idx in &file.dirty {
            if let Some(&f) = o.pages.get(&idx) {
                let _ = self.page_out(file.key, f, o.size, idx);
            }
        }
        let _ = self.pager.call(&PagerRequest::Release { object: file.key });
    }
}

/// The cached pages of `o` with index in `range`, if it is a file: `(object, index,
/// dirty)`.
fn cached_file_pages(
    obj: ObjectId,
    o: &MemObject,
    range: core::ops::Range<u64>,
) -> impl Iterator<Item = (ObjectId, u64, bool)> + '_ {
    o.file.iter().flat_map(move |f| {
        o.pages
            .range(range.clone())
            .map(move |(&idx, _)| (obj, idx, f.dirty.contains(&idx)))
    })
}
