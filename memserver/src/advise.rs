//! `madvise` (Linux): drop pages (`MADV_DONTNEED`, `MADV_FREE`), page them in
//! (`MADV_WILLNEED`), mark ranges to leave out of a clone (`MADV_DONTFORK`/`DOFORK`), and
//! record the access-pattern hints (which change nothing else, but split mappings where
//! Linux's split, so `mremap`'s one-mapping rule agrees with Linux's).
//!
//! As every call here, it checks the whole range before it changes anything: a hole is
//! `ENOMEM` with nothing done (Linux advises the mapped parts before it reports the
//! hole).

use crate::kernel_stub::KernelStub;
use crate::region::{AccessPattern, Region, RegionBacking};
use crate::region_map::page_round_up;
use crate::server::Server;
use alloc::vec::Vec;
use ipc_proto::{Access, Advice, ClientId, Errno, PAGE_SIZE};

const PAGE_MASK: u64 = PAGE_SIZE - 1;

impl<K: KernelStub> Server<K> {
    /// `madvise`.
    pub(crate) fn madvise(
        &mut self,
        id: ClientId,
        addr: u64,
        len: u64,
        advice: Advice,
    ) -> Result<(), Errno> {
        if addr & PAGE_MASK != 0 {
            return Err(Errno::EINVAL);
        }
        if len == 0 {
            return Ok(());
        }
        // Linux: a length that wraps is EINVAL.
        let end = page_round_up(len)
            .and_then(|l| addr.checked_add(l))
            .ok_or(Errno::EINVAL)?;
        let c = self.clients.get(&id).ok_or(Errno::ESRCH)?;
        if matches!(advice, Advice::DontNeed | Advice::Free) {
            for r in c.regions.overlapping(addr, end) {
                // Linux: locked pages and device windows (VM_PFNMAP) cannot be dropped;
                // MADV_FREE is for private anonymous memory only. Linux reports this
                // before a hole's ENOMEM (found by the differential test).
                let anon = matches!(r.backing, RegionBacking::Anon { .. });
                let device = matches!(r.backing, RegionBacking::Device { .. });
                if r.locked || device || (advice == Advice::Free && (r.shared || !anon)) {
                    return Err(Errno::EINVAL);
                }
            }
        }
        if !c.regions.is_fully_mapped(addr, end) {
            return Err(Errno::ENOMEM);
        }
        match advice {
            Advice::DontNeed | Advice::Free => {
                self.drop_pages(id, addr, end);
                Ok(())
            }
            Advice::WillNeed => {
                self.page_in(id, addr, end);
                Ok(())
            }
            Advice::Normal => self.set_attr(id, addr, end, |r| r.access = AccessPattern::Normal),
            Advice::Random => self.set_attr(id, addr, end, |r| r.access = AccessPattern::Random),
            Advice::Sequential => {
                self.set_attr(id, addr, end, |r| r.access = AccessPattern::Sequential)
            }
            Advice::DontFork => self.set_attr(id, addr, end, |r| r.dontfork = true),
            Advice::DoFork => self.set_attr(id, addr, end, |r| r.dontfork = false),
        }
    }

    /// Applies `set` to every region piece of `[start, end)` (mapped without a hole),
    /// splitting at the ends: `ENOMEM` when the splits would pass the region limit, as
    /// Linux's `max_map_count`. Nothing changes when `set` changes nothing.
    fn set_attr(
        &mut self,
        id: ClientId,
        start: u64,
        end: u64,
        set: impl Fn(&mut Region),
    ) -> Result<(), Errno> {
        let c = self.clients.get_mut(&id).ok_or(Errno::ESRCH)?;
        let changes = c.regions.overlapping(start, end).any(|r| {
            let mut n = *r;
            set(&mut n);
            n != *r
        });
        if !changes {
            return Ok(());
        }
        if c.regions.len() + c.regions.splits(start, end) > c.spec.limits.max_regions as usize {
            return Err(Errno::ENOMEM);
        }
        c.regions.update_range(start, end, set);
        Ok(())
    }

    /// `MADV_DONTNEED` (and `MADV_FREE`, which may free at once): removes every
    /// installed entry of `[start, end)` and frees the client's private pages there, so
    /// private anonymous memory reads as zero and the rest re-reads its object (or the
    /// file) at the next fault. Shared pages stay in their object.
    fn drop_pages(&mut self, id: ClientId, start: u64, end: u64) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let objects = c
            .regions
            .overlapping(start, end)
            .any(|r| !matches!(r.backing, RegionBacking::Anon { .. }));
        let private: Vec<u64> = c.anon.range(start..end).map(|(&va, _)| va).collect();
        // As in release_range: anonymous memory with no private page has nothing
        // installed.
        if objects || !private.is_empty() {
            self.mem
                .stub
                .unmap(c.space, start, (end - start) / PAGE_SIZE);
        }
        for va in private {
            if let Some(f) = c.anon.remove(&va) {
                self.mem.release(f);
            }
        }
    }

    /// `MADV_WILLNEED`: pages in and installs (for reading) the object pages of the
    /// range's object mappings, up to each object's end. Anonymous memory has nothing to
    /// page in (as Linux, which only reads swap back). Best effort: memory running out
    /// stops it quietly.
    fn page_in(&mut self, id: ClientId, start: u64, end: u64) {
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        let spans: Vec<(u64, u64)> = c
            .regions
            .overlapping(start, end)
            .filter(|r| !r.prot.is_empty() && !self.is_host_backed(r))
            .filter_map(|r| match r.backing {
                RegionBacking::Object { obj, offset } => {
                    let size = self.objects.get(&obj)?.size;
                    let s = r.start.max(start);
                    // The first address past the object's last page (saturating: a
                    // file's size comes from the pager, not trusted to be small).
                    let obj_end = r
                        .start
                        .saturating_add(size.div_ceil(PAGE_SIZE).saturating_mul(PAGE_SIZE))
                        .saturating_sub(offset);
                    let e = r.end.min(end).min(obj_end);
                    (s < e).then_some((s, e))
                }
                _ => None,
            })
            .collect();
        for (s, e) in spans {
            let mut va = s;
            while va < e {
                match self.resolve_evicting(id, va, Access::Read) {
                    Ok(None) => va += PAGE_SIZE,
                    // Past the end, or memory ran out: nothing more to do here.
                    _ => break,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::KernelStub;
    use crate::config::{Config, FrameRange};
    use crate::server::{Sender, Server};
    use crate::test_stub::TestStub;
    use ipc_proto::{
        Access, Advice, ClientId, ClientSpec, Errno, MapFlags, MmapArgs, PAGE_SIZE, Prot, Reply,
        Request,
    };

    const P: u64 = PAGE_SIZE;

    /// A server with one client holding `pages` touched private pages at the returned
    /// address.
    fn touched(pages: u64) -> (Server<TestStub>, ClientId, u64) {
        let cfg = Config::with_ram(alloc::vec![FrameRange {
            start: 100,
            count: 64
        }]);
        let mut s = Server::new(cfg, TestStub::default());
        s.set_self_check(true);
        let c = ClientId(1);
        let spec = ClientSpec::DEFAULT;
        let started = Request::ClientStarted { client: c, spec };
        assert_eq!(s.handle(Sender::Kernel, &started), Ok(Reply::Done));
        let args = MmapArgs {
            addr: 0,
            len: pages * P,
            prot: Prot::READ | Prot::WRITE,
            flags: MapFlags::PRIVATE | MapFlags::ANONYMOUS,
            fd: None,
            offset: 0,
        };
        let Ok(Reply::Mapped { addr }) = s.handle(Sender::Client(c), &Request::Mmap(args)) else {
            panic!("mmap failed");
        };
        for i in 0..pages {
            let addr = addr + i * P;
            let fault = Request::PageFault {
                client: c,
                addr,
                access: Access::Write,
            };
            assert_eq!(s.handle(Sender::Kernel, &fault), Ok(Reply::FaultResolved));
        }
        (s, c, addr)
    }

    #[test]
    fn dontneed_frees_the_private_frames_and_their_entries() {
        let (mut s, c, a) = touched(3);
        let free = s.stats().free_frames;
        assert_eq!(s.madvise(c, a + P, 2 * P, Advice::DontNeed), Ok(()));
        assert_eq!(s.stats().free_frames, free + 2);
        let space = s.space_of(c).unwrap();
        assert!(s.stub().query(space, a).is_some());
        assert!(s.stub().query(space, a + P).is_none());
        assert!(s.stub().query(space, a + 2 * P).is_none());
        assert_eq!(s.clients[&c].anon.len(), 1);
        assert_eq!(s.check_invariants(), Ok(()));
    }

    #[test]
    fn a_hole_or_a_locked_page_changes_nothing() {
        let (mut s, c, a) = touched(2);
        assert_eq!(s.madvise(c, a, 3 * P, Advice::DontNeed), Err(Errno::ENOMEM));
        assert_eq!(s.mlock(c, a, P, true), Ok(()));
        assert_eq!(s.madvise(c, a, 2 * P, Advice::DontNeed), Err(Errno::EINVAL));
        assert_eq!(s.clients[&c].anon.len(), 2);
        assert_eq!(s.madvise(c, a, 2 * P, Advice::DontFork), Ok(()));
        assert!(s.clients[&c].regions.iter().all(|r| r.dontfork));
        assert_eq!(s.check_invariants(), Ok(()));
    }
}
