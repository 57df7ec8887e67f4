//! The server's invariants, checked from scratch: what tests, the conformance runner and
//! the fuzzers assert after every step.
//!
//! - regions are page-aligned, non-empty, inside the window, non-overlapping, and no two
//!   neighbours could have been merged;
//! - every installed page-table entry lies in a region, allows no more than the region,
//!   has its caching mode, and maps exactly the frame the region's backing says (a
//!   writable private entry only on a frame owned exclusively);
//! - every frame's reference count equals the number of holders found (private pages,
//!   object pages, lent page tables), and nothing else is allocated;
//! - byte, lock, fd, commit and object counters equal their recomputation, and limits
//!   hold.

use crate::fd::FdTarget;
use crate::kernel_stub::{Frame, KernelStub};
use crate::object::ObjectId;
use crate::region::RegionBacking;
use crate::server::Server;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use ipc_proto::{PAGE_SIZE, Prot};

/// Counts recomputed for one object.
#[derive(Default)]
struct ObjCounts {
    mapped: u64,
    deny: u64,
    fds: u32,
    writers: u32,
}

impl<K: KernelStub> Server<K> {
    /// Checks every invariant; the first violation found is described in the error.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.check(true)
    }

    /// The check after every request (`Config::self_check`): every invariant, but the
    /// frame allocator is checked against the frames something holds, in time
    /// proportional to those, rather than by a scan of every frame it manages (which
    /// [`check_invariants`](Self::check_invariants) adds, and which dominates on a big
    /// machine where each request touches a few pages).
    pub(crate) fn check_after_request(&self) -> Result<(), String> {
        self.check(false)
    }

    fn check(&self, full: bool) -> Result<(), String> {
        let mut refs: BTreeMap<Frame, u32> = BTreeMap::new();
        let mut objs: BTreeMap<ObjectId, ObjCounts> = BTreeMap::new();
        let mut commit: BTreeMap<u8, u64> = BTreeMap::new();
        let mut open_files = 0u32;
        for (id, c) in &self.clients {
            let mut prev: Option<&crate::region::Region> = None;
            let (mut mapped, mut locked) = (0u64, 0u64);
            for r in c.regions.iter() {
                if r.start % PAGE_SIZE != 0 || r.end % PAGE_SIZE != 0 || r.start >= r.end {
                    return Err(format!("{id:?}: malformed region {r:?}"));
                }
                if !self.cfg.usable(r.start, r.end) {
                    return Err(format!("{id:?}: region outside the window {r:?}"));
                }
                if let Some(p) = prev {
                    if p.end > r.start {
                        return Err(format!("{id:?}: overlapping regions {p:?} {r:?}"));
                    }
                    if p.can_merge(r) {
                        return Err(format!("{id:?}: unmerged neighbours {p:?} {r:?}"));
                    }
                }
                prev = Some(r);
                mapped += r.len();
                if r.locked {
                    locked += r.len();
                }
                if r.accounted {
                    if !(r.wants_commit() || r.prot.contains(Prot::WRITE) || !r.shared) {
                        return Err(format!("{id:?}: accounted shared region {r:?}"));
                    }
                    *commit.entry(r.charge_bank().0).or_default() += r.pages();
                } else if r.wants_commit() {
                    return Err(format!(
                        "{id:?}: private writable region not accounted {r:?}"
                    ));
                }
                match r.backing {
                    RegionBacking::Object { obj, offset } => {
                        if !self.objects.contains(&obj) || offset % PAGE_SIZE != 0 {
                            return Err(format!("{id:?}: region of a dead object {r:?}"));
                        }
                        let e = objs.entry(obj).or_default();
                        e.mapped += r.pages();
                        if r.denywrite {
                            e.deny += r.pages();
                        }
                    }
                    RegionBacking::Device { dev, offset } => {
                        let ok = self
                            .cfg
                            .devices
                            .get(dev.0 as usize)
                            .is_some_and(|d| offset + r.len() <= d.frames.count * PAGE_SIZE);
                        if !ok || !r.shared {
                            return Err(format!("{id:?}: bad device region {r:?}"));
                        }
                    }
                    RegionBacking::Anon { .. } if r.shared => {
                        return Err(format!("{id:?}: shared anonymous region without object"));
                    }
                    RegionBacking::Anon { .. } => {}
                }
            }
            if mapped != c.mapped_bytes || locked != c.locked_bytes {
                return Err(format!(
                    "{id:?}: counters mapped {} (real {mapped}) locked {} (real {locked})",
                    c.mapped_bytes, c.locked_bytes
                ));
            }
            let lim = c.spec.limits;
            if c.regions.len() > lim.max_regions as usize
                || mapped > lim.max_bytes
                || c.fds.len() > lim.max_fds as usize
                || (!crate::permission::unlimited_locking(&c.spec) && locked > lim.max_locked)
            {
                return Err(format!("{id:?}: over a limit"));
            }
            for (&va, &f) in &c.anon {
                match c.regions.find(va) {
                    Some(r) if !r.shared && va % PAGE_SIZE == 0 => {}
                    _ => {
                        return Err(format!(
                            "{id:?}: private page {va:#x} outside a private region"
                        ));
                    }
                }
                *refs.entry(f).or_default() += 1;
            }
            let mut bad: Option<String> = None;
            self.mem.stub.for_each_mapping(c.space, &mut |va, f, a| {
                if bad.is_none() {
                    bad = self.check_pte(c, va, f, a).err();
                }
            });
            if let Some(b) = bad {
                return Err(format!("{id:?}: {b}"));
            }
            for (_, e) in c.fds.iter() {
                open_files += 1;
                if let FdTarget::Shm(obj) = e.target {
                    let o = objs.entry(obj).or_default();
                    o.fds += 1;
                    if e.writable {
                        o.writers += 1;
                    }
                }
            }
        }
        for (obj, o) in self.objects.iter() {
            let want = objs.remove(&obj).unwrap_or_default();
            if (o.mapped_pages, o.denywrite_pages, o.open_fds, o.writers)
                != (want.mapped, want.deny, want.fds, want.writers)
            {
                return Err(format!(
                    "object {obj:?}: mapped/deny/fds/writers {:?}, recomputed {:?}",
                    (o.mapped_pages, o.denywrite_pages, o.open_fds, o.writers),
                    (want.mapped, want.deny, want.fds, want.writers)
                ));
            }
            if o.is_orphan() {
                return Err(format!("object {obj:?}: orphan not freed"));
            }
            if o.pages.keys().any(|&i| i >= o.size.div_ceil(PAGE_SIZE)) {
                return Err(format!("object {obj:?}: page beyond its size"));
            }
            if o.anonymous {
                open_files += 1;
            }
            if o.host.is_some() && !o.pages.is_empty() {
                return Err(format!("host file object {obj:?}: holds pages of its own"));
            }
            if let Some(file) = &o.file
                && let Some(i) = file.dirty.iter().find(|i| !o.pages.contains_key(i))
            {
                return Err(format!("file object {obj:?}: dirty page {i} not resident"));
            }
            for &f in o.pages.values() {
                *refs.entry(f).or_default() += 1;
            }
        }
        if !objs.is_empty() {
            return Err(String::from("regions or fds refer to a missing object"));
        }
        self.objects.check_indexes()?;
        if open_files != self.accounting.open_files() {
            return Err(format!(
                "open files {} (real {open_files})",
                self.accounting.open_files()
            ));
        }
        for &f in &self.mem.lent {
            *refs.entry(f).or_default() += 1;
        }
        let mut allocated = 0u64;
        if full {
            let mut bad: Option<String> = None;
            self.mem.frames.for_each_allocated(|f, n| {
                allocated += 1;
                let want = refs.remove(&f).unwrap_or(0);
                if n != want && bad.is_none() {
                    bad = Some(format!("frame {f:?}: refcount {n}, holders {want}"));
                }
            });
            if let Some(b) = bad {
                return Err(b);
            }
            if let Some((f, n)) = refs.iter().next() {
                return Err(format!("frame {f:?} held {n} times but free"));
            }
            self.mem.frames.check_tags()?;
        } else {
            // Every held frame has the count its holders say; with the free count, that
            // leaves no frame allocated without a holder.
            for (&f, &want) in &refs {
                match self.mem.frames.refcount(f) {
                    0 => return Err(format!("frame {f:?} held {want} times but free")),
                    n if n != want => {
                        return Err(format!("frame {f:?}: refcount {n}, holders {want}"));
                    }
                    _ => allocated += 1,
                }
            }
        }
        if allocated + self.mem.frames.free_frames() != self.mem.frames.total_frames() {
            return Err(String::from("allocated + free != total"));
        }
        for b in 0..self.mem.frames.bank_count() {
            let want = commit.get(&(b as u8)).copied().unwrap_or(0);
            let got = self
                .mem
                .frames
                .committed(crate::frame_alloc::BankId(b as u8));
            if want != got {
                return Err(format!("bank {b}: committed {got}, regions charge {want}"));
            }
        }
        Ok(())
    }

    /// One installed entry against the region map.
    fn check_pte(
        &self,
        c: &crate::client_state::ClientState<K::Space>,
        va: u64,
        f: Frame,
        a: crate::kernel_stub::PageAttrs,
    ) -> Result<(), String> {
        let r = c
            .regions
            .find(va)
            .ok_or_else(|| format!("page {va:#x} installed outside any region"))?;
        if r.prot.is_empty()
            || (a.writable && !r.prot.contains(Prot::WRITE))
            || (a.executable && !r.prot.contains(Prot::EXEC))
            || a.cache != r.cache
        {
            return Err(format!("page {va:#x} allows more than {r:?}: {a:?}"));
        }
        if let Some(&own) = c.anon.get(&va) {
            if own != f {
                return Err(format!("page {va:#x} maps {f:?}, owns {own:?}"));
            }
            if a.writable && self.mem.frames.refcount(f) != 1 {
                return Err(format!("page {va:#x} writable on a shared frame"));
            }
            return Ok(());
        }
        match r.backing {
            RegionBacking::Anon { .. } => {
                Err(format!("anonymous page {va:#x} installed but not owned"))
            }
            RegionBacking::Object { obj, offset } => {
                let idx = (offset + va - r.start) / PAGE_SIZE;
                let page = self.objects.get(&obj).and_then(|o| o.pages.get(&idx));
                if page != Some(&f) {
                    return Err(format!("page {va:#x} maps {f:?}, object has {page:?}"));
                }
                if !r.shared && a.writable {
                    return Err(format!(
                        "private page {va:#x} writable on the object's frame"
                    ));
                }
                // Dirty tracking: a file page is writable only once marked dirty.
                if a.writable && !self.is_dirty(obj, idx) && self.file_key(obj).is_some() {
                    return Err(format!("clean file page {va:#x} installed writable"));
                }
                Ok(())
            }
            RegionBacking::Device { dev, offset } => {
                let want = self
                    .cfg
                    .devices
                    .get(dev.0 as usize)
                    .map(|d| d.frames.start + (offset + va - r.start) / PAGE_SIZE);
                if want != Some(f.0) {
                    return Err(format!("device page {va:#x} maps {f:?}"));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, FrameRange};
    use crate::frame_alloc::BankId;
    use crate::server::{Sender, Server};
    use crate::test_stub::TestStub;
    use crate::{Frame, KernelStub};
    use ipc_proto::{Access, ClientId, ClientSpec, MapFlags, MmapArgs, Prot, Reply, Request};

    /// A server with one client holding three touched private pages, and the frame of
    /// the first.
    fn server() -> (Server<TestStub>, Frame) {
        let cfg = Config::with_ram(alloc::vec![FrameRange {
            start: 100,
            count: 64
        }]);
        let mut s = Server::new(cfg, TestStub::default());
        let c = ClientId(1);
        let started = Request::ClientStarted {
            client: c,
            spec: ClientSpec::DEFAULT,
        };
        assert_eq!(s.handle(Sender::Kernel, &started), Ok(Reply::Done));
        let args = MmapArgs {
            addr: 0,
            len: 3 * 4096,
            prot: Prot::READ | Prot::WRITE,
            flags: MapFlags::PRIVATE | MapFlags::ANONYMOUS,
            fd: None,
            offset: 0,
        };
        let Ok(Reply::Mapped { addr }) = s.handle(Sender::Client(c), &Request::Mmap(args)) else {
            panic!("mmap failed");
        };
        for i in 0..3 {
            let fault = Request::PageFault {
                client: c,
                addr: addr + i * 4096,
                access: Access::Write,
            };
            assert_eq!(s.handle(Sender::Kernel, &fault), Ok(Reply::FaultResolved));
        }
        let space = s.space_of(c).expect("a space");
        let (held, _) = s.stub().query(space, addr).expect("installed");
        (s, held)
    }

    #[test]
    fn both_checks_pass_on_a_sound_server() {
        let (s, _) = server();
        assert_eq!(s.check_invariants(), Ok(()));
        assert_eq!(s.check_after_request(), Ok(()));
    }

    #[test]
    fn both_checks_catch_a_frame_allocated_without_a_holder() {
        let (mut s, _) = server();
        s.mem
            .alloc_zeroed(BankId::DEFAULT, crate::frame_alloc::FrameUse::Uncommitted)
            .expect("a free frame");
        assert!(s.check_invariants().is_err());
        assert!(s.check_after_request().is_err());
    }

    #[test]
    fn both_checks_catch_a_held_frame_with_the_wrong_count() {
        let (mut s, held) = server();
        s.mem.frames.incref(held);
        // (Found first as a writable page on a frame that looks shared.)
        assert!(s.check_invariants().is_err());
        assert!(s.check_after_request().is_err());
    }

    #[test]
    fn both_checks_catch_a_held_frame_that_is_free() {
        let (mut s, held) = server();
        assert!(s.mem.frames.decref(held), "the last reference");
        assert!(s.check_invariants().is_err());
        assert!(s.check_after_request().is_err());
    }
}
