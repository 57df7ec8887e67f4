//! The address-space calls: `mmap`, `munmap`, `mprotect`, `msync`, `mlock` and friends,
//! and the listing/introspection requests.
//!
//! Every call validates and checks every limit before it changes anything, so a failed
//! call leaves the address space exactly as it was (`MAP_FIXED` replacement included).

use crate::fd::FdTarget;
use crate::frame_alloc::BankId;
use crate::kernel_stub::{KernelStub, PageAttrs};
use crate::object::{MAY_READ, MAY_WRITE, MemObject, ObjectId};
use crate::region::{DeviceId, Region, RegionBacking};
use crate::region_map::page_round_up;
use crate::server::Server;
use ipc_proto::{
    Access, CacheMode, ClientId, Errno, MapFlags, MlockallFlags, MmapArgs, MsyncFlags, PAGE_SIZE,
    PageInfo, Prot, RegionInfo,
};

const PAGE_MASK: u64 = PAGE_SIZE - 1;
/// `MAP_32BIT` places mappings below 2 GiB.
const LOW_2G: u64 = 1 << 31;
/// Largest offset + length of a mapping (`off_t` is signed).
const MAX_OFFSET: u64 = i64::MAX as u64;

/// What a new mapping will be backed by, once its fd has been checked.
struct Resolved {
    backing: Backing,
    max_prot: Prot,
    cache: CacheMode,
}

enum Backing {
    Anon(BankId),
    /// Shared anonymous memory: a fresh hidden object from this bank.
    NewSharedAnon(BankId),
    Object(ObjectId),
    Device(DeviceId),
}

impl<K: KernelStub> Server<K> {
    /// `mmap`: validate everything, then replace (`MAP_FIXED`) and insert atomically.
    pub(crate) fn mmap(&mut self, id: ClientId, a: &MmapArgs) -> Result<u64, Errno> {
        let f = a.flags;
        // POSIX/DESIGN: exactly one of MAP_SHARED and MAP_PRIVATE.
        let shared = f.contains(MapFlags::SHARED);
        if shared == f.contains(MapFlags::PRIVATE) {
            return Err(Errno::EINVAL);
        }
        if a.len == 0 {
            return Err(Errno::EINVAL);
        }
        let len = page_round_up(a.len).ok_or(Errno::ENOMEM)?;
        if a.offset & PAGE_MASK != 0 {
            return Err(Errno::EINVAL);
        }
        match a.offset.checked_add(len) {
            Some(end) if end <= MAX_OFFSET => {}
            _ => return Err(Errno::EOVERFLOW),
        }
        let fixed = f.intersects(MapFlags::FIXED | MapFlags::FIXED_NOREPLACE);
        if fixed && a.addr & PAGE_MASK != 0 {
            return Err(Errno::EINVAL);
        }
        // Linux: a growing stack cannot be shared.
        if shared && f.contains(MapFlags::GROWSDOWN) {
            return Err(Errno::EINVAL);
        }
        let c = self.clients.get(&id).ok_or(Errno::ESRCH)?;
        if c.spec.deny_wx && a.prot.contains(Prot::WRITE | Prot::EXEC) {
            // Seed 002: "EACCES: MAC disallowed this".
            return Err(Errno::EACCES);
        }
        let res = self.resolve_backing(id, a, shared, len)?;
        let c = self.clients.get(&id).ok_or(Errno::ESRCH)?;

        // Placement.
        let start = if fixed {
            if a.addr < self.cfg.mmap_min {
                return Err(Errno::EPERM);
            }
            match a.addr.checked_add(len) {
                Some(end) if end <= self.cfg.mmap_max => {}
                _ => return Err(Errno::ENOMEM),
            }
            if f.contains(MapFlags::FIXED_NOREPLACE) && !c.regions.is_free(a.addr, a.addr + len) {
                return Err(Errno::EEXIST);
            }
            a.addr
        } else {
            self.place(id, a.addr, len, f.contains(MapFlags::BIT32))?
        };
        let end = start + len;

        // Limits, computed against the state after replacement.
        let c = self.clients.get(&id).ok_or(Errno::ESRCH)?;
        let lim = c.spec.limits;
        // A placed mapping lands in free space; only a fixed one replaces anything.
        let (overlap_count, overlap_bytes, overlap_locked, splits) = if fixed {
            let (count, splits) = c.regions.range_summary(start, end);
            let (bytes, locked) =
                c.regions
                    .overlapping(start, end)
                    .fold((0u64, 0u64), |(b, l), r| {
                        let part = r.end.min(end) - r.start.max(start);
                        (b + part, l + if r.locked { part } else { 0 })
                    });
            (count, bytes, locked, splits)
        } else {
            (0, 0, 0, 0)
        };
        let regions_after = c.regions.len() + splits - overlap_count + 1;
        if regions_after > lim.max_regions as usize {
            return Err(Errno::ENOMEM);
        }
        if c.mapped_bytes - overlap_bytes + len > lim.max_bytes {
            return Err(Errno::ENOMEM);
        }
        let locked = f.contains(MapFlags::LOCKED) || c.lock_future;
        if locked && c.spec.uid != 0 && c.locked_bytes - overlap_locked + len > lim.max_locked {
            // Linux: MAP_LOCKED over RLIMIT_MEMLOCK is EAGAIN.
            return Err(Errno::EAGAIN);
        }
        if matches!(res.backing, Backing::NewSharedAnon(_))
            && self.open_files >= self.cfg.max_open_files
        {
            return Err(Errno::ENFILE);
        }
        let populate_later = f.contains(MapFlags::POPULATE)
            || (locked && !(c.lock_future && c.lock_onfault && !f.contains(MapFlags::LOCKED)));

        let mut region = Region {
            start,
            end,
            prot: a.prot,
            max_prot: res.max_prot,
            shared,
            backing: RegionBacking::Anon {
                bank: BankId::DEFAULT,
            },
            locked,
            growsdown: f.contains(MapFlags::GROWSDOWN),
            noreserve: f.contains(MapFlags::NORESERVE),
            accounted: false,
            cache: res.cache,
            inherit: f.contains(MapFlags::INHERIT),
            denywrite: f.contains(MapFlags::DENYWRITE) && matches!(res.backing, Backing::Object(_)),
        };
        region.backing = match res.backing {
            Backing::Anon(bank) | Backing::NewSharedAnon(bank) => RegionBacking::Anon { bank },
            Backing::Object(obj) => RegionBacking::Object {
                obj,
                offset: a.offset,
            },
            Backing::Device(dev) => RegionBacking::Device {
                dev,
                offset: a.offset,
            },
        };

        // Commit: the new region's charge must fit once the replaced range's is refunded.
        if region.wants_commit() {
            let bank = region.charge_bank();
            let refunds = if overlap_count > 0 {
                self.accounted_in(id, start, end)
            } else {
                alloc::vec::Vec::new()
            };
            let refund: u64 = refunds
                .iter()
                .filter(|(b, _)| *b == bank)
                .map(|(_, p)| p)
                .sum();
            if !self.mem.frames.can_charge(bank, len / PAGE_SIZE, refund) {
                return Err(Errno::ENOMEM);
            }
            region.accounted = true;
        }

        // Point of no return: nothing below can fail.
        if overlap_count > 0 {
            self.release_range(id, start, end);
        }
        if region.accounted {
            let charged = self
                .mem
                .frames
                .charge(region.charge_bank(), len / PAGE_SIZE);
            debug_assert!(charged, "checked by can_charge");
        }
        if let Backing::NewSharedAnon(bank) = res.backing {
            let obj = self.new_object(None, ipc_proto::Mode::default(), 0, 0, bank);
            if let Some(o) = self.objects.get_mut(&obj) {
                o.size = len;
                o.anonymous = true;
            }
            self.open_files += 1;
            region.backing = RegionBacking::Object { obj, offset: 0 };
        }
        if let RegionBacking::Object { obj, .. } = region.backing
            && let Some(o) = self.objects.get_mut(&obj)
        {
            o.mapped_pages += len / PAGE_SIZE;
            if region.denywrite {
                o.denywrite_pages += len / PAGE_SIZE;
            }
        }
        let c = self.clients.get_mut(&id).ok_or(Errno::ESRCH)?;
        c.mapped_bytes += len;
        if locked {
            c.locked_bytes += len;
        }
        c.regions.insert(region);
        if populate_later {
            // Best effort, as Linux: the mapping exists even if some pages could not be
            // made resident now; they fault in later.
            let _ = self.populate(id, start, end);
        }
        Ok(start)
    }

    /// Checks the fd (or its absence) of an `mmap` and says what backs the mapping.
    fn resolve_backing(
        &self,
        id: ClientId,
        a: &MmapArgs,
        shared: bool,
        len: u64,
    ) -> Result<Resolved, Errno> {
        let c = self.clients.get(&id).ok_or(Errno::ESRCH)?;
        let f = a.flags;
        let anon = |bank| Resolved {
            backing: if shared {
                Backing::NewSharedAnon(bank)
            } else {
                Backing::Anon(bank)
            },
            max_prot: Prot::all(),
            cache: CacheMode::WriteBack,
        };
        let fd_entry = a.fd.and_then(|fd| c.fds.get(fd));
        let out = if f.contains(MapFlags::ANONYMOUS) {
            // Seed 000: an fd naming a bank picks the pool; any other fd is ignored, as
            // Linux ignores the fd of an anonymous mapping.
            match fd_entry.map(|e| e.target) {
                Some(FdTarget::Bank(b)) => anon(b),
                _ => anon(BankId::DEFAULT),
            }
        } else {
            let entry = fd_entry.ok_or(Errno::EBADF)?;
            match entry.target {
                FdTarget::Bank(b) => {
                    // Seed 000: the offset within a bank "must be zero".
                    if a.offset != 0 {
                        return Err(Errno::EINVAL);
                    }
                    anon(b)
                }
                FdTarget::Shm(obj) => {
                    let o = self.objects.get(&obj).ok_or(Errno::EBADF)?;
                    // POSIX: EACCES when a shared writable mapping needs a write fd.
                    if shared && a.prot.contains(Prot::WRITE) && !entry.writable {
                        return Err(Errno::EACCES);
                    }
                    // Seed 004: MAP_DENYWRITE on an object open for writing.
                    if f.contains(MapFlags::DENYWRITE) && o.writers > 0 {
                        return Err(Errno::ETXTBSY);
                    }
                    let max_prot = if shared && !entry.writable {
                        Prot::READ | Prot::EXEC
                    } else {
                        Prot::all()
                    };
                    Resolved {
                        backing: Backing::Object(obj),
                        max_prot,
                        cache: CacheMode::WriteBack,
                    }
                }
                FdTarget::Device(dev) => {
                    self.resolve_device(dev, a, shared, len, entry.writable)?
                }
            }
        };
        // Write-combining is for device windows only: mapping RAM with a second cache
        // type would alias its other mappings.
        if f.contains(MapFlags::WC) && !matches!(out.backing, Backing::Device(_)) {
            return Err(Errno::ENOTSUP);
        }
        Ok(out)
    }

    fn resolve_device(
        &self,
        dev: DeviceId,
        a: &MmapArgs,
        shared: bool,
        len: u64,
        writable_fd: bool,
    ) -> Result<Resolved, Errno> {
        let d = self.cfg.devices.get(dev.0 as usize).ok_or(Errno::EBADF)?;
        if d.frames.count == 0 {
            return Err(Errno::ENODEV);
        }
        // DESIGN: device windows are shared only.
        if !shared {
            return Err(Errno::EINVAL);
        }
        // Seed 001: a prot combination the implementation does not support.
        if a.prot.contains(Prot::EXEC) {
            return Err(Errno::ENOTSUP);
        }
        if a.prot.contains(Prot::WRITE) && !writable_fd {
            return Err(Errno::EACCES);
        }
        let size = d.frames.count * PAGE_SIZE;
        if a.offset > size || len > size - a.offset {
            return Err(Errno::ENXIO);
        }
        let cache = if a.flags.contains(MapFlags::WC) {
            CacheMode::WriteCombining
        } else {
            CacheMode::Uncached
        };
        let max_prot = if writable_fd {
            Prot::READ | Prot::WRITE
        } else {
            Prot::READ
        };
        Ok(Resolved {
            backing: Backing::Device(dev),
            max_prot,
            cache,
        })
    }

    /// Picks an address for a non-fixed mapping: the hint if it is free and inside the
    /// window, otherwise the highest free gap.
    fn place(&mut self, id: ClientId, hint: u64, len: u64, low: bool) -> Result<u64, Errno> {
        let (lo, mut hi) = (self.cfg.mmap_min, self.cfg.mmap_max);
        if low {
            hi = hi.min(LOW_2G);
        }
        let c = self.clients.get_mut(&id).ok_or(Errno::ESRCH)?;
        let h = hint & !PAGE_MASK;
        if h != 0
            && h >= lo
            && h.checked_add(len).is_some_and(|e| e <= hi)
            && c.regions.is_free(h, h + len)
        {
            return Ok(h);
        }
        c.regions
            .find_free_top_down(len, lo, hi)
            .ok_or(Errno::ENOMEM)
    }

    /// Commit charged by the regions overlapping `[start, end)`, per bank.
    fn accounted_in(&self, id: ClientId, start: u64, end: u64) -> alloc::vec::Vec<(BankId, u64)> {
        let mut out: alloc::vec::Vec<(BankId, u64)> = alloc::vec::Vec::new();
        let Some(c) = self.clients.get(&id) else {
            return out;
        };
        for r in c.regions.overlapping(start, end).filter(|r| r.accounted) {
            let pages = (r.end.min(end) - r.start.max(start)) / PAGE_SIZE;
            match out.iter_mut().find(|(b, _)| *b == r.charge_bank()) {
                Some(e) => e.1 += pages,
                None => out.push((r.charge_bank(), pages)),
            }
        }
        out
    }

    /// Makes a new memory object and returns its id.
    pub(crate) fn new_object(
        &mut self,
        name: Option<alloc::string::String>,
        mode: ipc_proto::Mode,
        uid: u32,
        gid: u32,
        bank: BankId,
    ) -> ObjectId {
        let id = ObjectId(self.next_object);
        self.next_object += 1;
        if let Some(n) = &name {
            self.names.insert(n.clone(), id);
        }
        self.objects
            .insert(id, MemObject::new(name, mode, uid, gid, bank));
        id
    }

    /// Removes every mapping in `[start, end)` (page-aligned, limits already checked):
    /// page-table entries, private pages, commit, object references.
    pub(crate) fn release_range(&mut self, id: ClientId, start: u64, end: u64) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        // Every page installed in an anonymous region is one of the client's private
        // pages, so a range of anonymous regions without any needs no walk of the page
        // tables (the common munmap of memory never touched, and the benchmark pair).
        let mut other_backing = false;
        let mut touched: [Option<ObjectId>; 4] = [None; 4];
        let mut more_objects = alloc::vec::Vec::new();
        // Shared object ranges, whose dirty file pages go back once unmapped.
        let mut flush = alloc::vec::Vec::new();
        let (frames, objects) = (&mut self.mem.frames, &mut self.objects);
        let (mapped, locked) = (&mut c.mapped_bytes, &mut c.locked_bytes);
        c.regions.remove_range(start, end, |r| {
            other_backing |= !matches!(r.backing, RegionBacking::Anon { .. });
            *mapped -= r.len();
            if r.locked {
                *locked -= r.len();
            }
            if r.accounted {
                frames.uncharge(r.charge_bank(), r.pages());
            }
            if let RegionBacking::Object { obj, offset } = r.backing {
                if let Some(o) = objects.get_mut(&obj) {
                    if r.shared && o.file.is_some() {
                        let first = offset / PAGE_SIZE;
                        flush.push((obj, first..first + r.pages()));
                    }
                    o.mapped_pages -= r.pages();
                    if r.denywrite {
                        o.denywrite_pages -= r.pages();
                    }
                }
                match touched.iter_mut().find(|t| t.is_none() || **t == Some(obj)) {
                    Some(slot) => *slot = Some(obj),
                    None => more_objects.push(obj),
                }
            }
        });
        if other_backing || c.anon.range(start..end).next().is_some() {
            self.mem
                .stub
                .unmap(c.space, start, (end - start) / PAGE_SIZE);
        }
        // Private pages of the range.
        while let Some((&va, &f)) = c.anon.range(start..end).next() {
            c.anon.remove(&va);
            self.mem.frames.decref(f);
        }
        for (obj, pages) in flush {
            // A failing pager keeps the pages dirty; the object's release retries.
            let _ = self.write_back(obj, pages);
        }
        for obj in touched.into_iter().flatten().chain(more_objects) {
            self.destroy_if_orphan(obj);
        }
    }

    /// `munmap`.
    pub(crate) fn munmap(&mut self, id: ClientId, addr: u64, len: u64) -> Result<(), Errno> {
        if addr & PAGE_MASK != 0 || len == 0 {
            return Err(Errno::EINVAL);
        }
        let end = page_round_up(len)
            .and_then(|l| addr.checked_add(l))
            .filter(|&e| e <= self.cfg.mmap_max)
            .ok_or(Errno::EINVAL)?;
        let c = self.clients.get(&id).ok_or(Errno::ESRCH)?;
        let (overlap, splits) = c.regions.range_summary(addr, end);
        if overlap == 0 {
            // POSIX (seed 001): unmapping a range with no mappings succeeds.
            return Ok(());
        }
        // Unmapping the middle of a region makes two: Linux refuses at max_map_count.
        if c.regions.len() + splits - overlap > c.spec.limits.max_regions as usize {
            return Err(Errno::ENOMEM);
        }
        self.release_range(id, addr, end);
        Ok(())
    }

    /// `mprotect`: all-or-nothing (Linux applies the regions before a hole and then
    /// fails; we check first, so a failed call changes nothing).
    pub(crate) fn mprotect(
        &mut self,
        id: ClientId,
        addr: u64,
        len: u64,
        prot: Prot,
    ) -> Result<(), Errno> {
        if addr & PAGE_MASK != 0 {
            return Err(Errno::EINVAL);
        }
        if len == 0 {
            return Ok(());
        }
        let end = page_round_up(len)
            .and_then(|l| addr.checked_add(l))
            .ok_or(Errno::ENOMEM)?;
        let c = self.clients.get(&id).ok_or(Errno::ESRCH)?;
        if c.spec.deny_wx && prot.contains(Prot::WRITE | Prot::EXEC) {
            return Err(Errno::EACCES);
        }
        // One walk: holes, rights, splits, commit, and whether anything changes at all.
        let (mut at, mut splits, mut changes) = (addr, 0usize, false);
        let mut charges: alloc::vec::Vec<(BankId, u64)> = alloc::vec::Vec::new();
        for r in c.regions.overlapping(addr, end) {
            if r.start > at {
                return Err(Errno::ENOMEM);
            }
            if !r.max_prot.contains(prot) {
                return Err(Errno::EACCES);
            }
            if r.start < addr {
                splits += 1;
            }
            if r.end > end {
                splits += 1;
            }
            changes |= r.prot != prot;
            // Commit for private regions becoming writable for the first time.
            if (Region { prot, ..*r }).wants_commit() && !r.accounted {
                let pages = (r.end.min(end) - r.start.max(addr)) / PAGE_SIZE;
                charges.push((r.charge_bank(), pages));
            }
            at = r.end;
        }
        if at < end {
            return Err(Errno::ENOMEM);
        }
        if !changes {
            return Ok(());
        }
        if c.regions.len() + splits > c.spec.limits.max_regions as usize {
            return Err(Errno::ENOMEM);
        }
        for (i, &(bank, pages)) in charges.iter().enumerate() {
            if !self.mem.frames.charge(bank, pages) {
                for &(b, p) in &charges[..i] {
                    self.mem.frames.uncharge(b, p);
                }
                return Err(Errno::ENOMEM);
            }
        }
        let c = self.clients.get_mut(&id).ok_or(Errno::ESRCH)?;
        c.regions.update_range(addr, end, |r| {
            if (Region { prot, ..*r }).wants_commit() {
                r.accounted = true;
            }
            r.prot = prot;
        });
        // Page tables: drop everything for PROT_NONE; otherwise set the new rights, with
        // private pages read-only until a write fault shows they are not shared (the
        // fault upgrades them), so copy-on-write stays intact.
        for r in c.regions.overlapping(addr, end) {
            let (s, e) = (r.start.max(addr), r.end.min(end));
            let pages = (e - s) / PAGE_SIZE;
            // As in release_range: an anonymous range without private pages has nothing
            // installed, so there is no entry to change.
            if matches!(r.backing, RegionBacking::Anon { .. })
                && c.anon.range(s..e).next().is_none()
            {
                continue;
            }
            // A shared file page becomes writable again only through a write fault,
            // which marks it dirty.
            let file = match r.backing {
                RegionBacking::Object { obj, .. } => {
                    self.objects.get(&obj).is_some_and(|o| o.file.is_some())
                }
                _ => false,
            };
            if prot.is_empty() {
                self.mem.stub.unmap(c.space, s, pages);
            } else {
                self.mem
                    .stub
                    .protect(c.space, s, pages, attrs_for(r, r.shared && !file));
            }
        }
        Ok(())
    }

    /// `msync`: validates, then writes the dirty file pages of the range's shared
    /// mappings back to the pager (`EIO` if it fails); shm objects are their own backing
    /// store.
    pub(crate) fn msync(
        &mut self,
        id: ClientId,
        addr: u64,
        len: u64,
        flags: MsyncFlags,
    ) -> Result<(), Errno> {
        if addr & PAGE_MASK != 0 || flags.contains(MsyncFlags::SYNC | MsyncFlags::ASYNC) {
            return Err(Errno::EINVAL);
        }
        let end = page_round_up(len)
            .and_then(|l| addr.checked_add(l))
            .ok_or(Errno::ENOMEM)?;
        if end == addr {
            return Ok(());
        }
        let c = self.clients.get(&id).ok_or(Errno::ESRCH)?;
        // Linux: a locked mapping in the range is EBUSY even if the range also has a
        // hole (the hole's ENOMEM is only reported when nothing else failed).
        if flags.contains(MsyncFlags::INVALIDATE)
            && c.regions.overlapping(addr, end).any(|r| r.locked)
        {
            return Err(Errno::EBUSY);
        }
        if !c.regions.is_fully_mapped(addr, end) {
            return Err(Errno::ENOMEM);
        }
        // MS_ASYNC may only schedule the write; doing it now is allowed and simpler.
        let spans: alloc::vec::Vec<(ObjectId, core::ops::Range<u64>)> = c
            .regions
            .overlapping(addr, end)
            .filter_map(|r| match r.backing {
                RegionBacking::Object { obj, offset } if r.shared => {
                    let (s, e) = (r.start.max(addr), r.end.min(end));
                    let first = (offset + s - r.start) / PAGE_SIZE;
                    Some((obj, first..first + (e - s) / PAGE_SIZE))
                }
                _ => None,
            })
            .collect();
        for (obj, pages) in spans {
            self.write_back(obj, pages)?;
        }
        Ok(())
    }

    /// `mlock` (`lock == true`) and `munlock`.
    pub(crate) fn mlock(
        &mut self,
        id: ClientId,
        addr: u64,
        len: u64,
        lock: bool,
    ) -> Result<(), Errno> {
        let start = addr & !PAGE_MASK;
        let end = addr
            .checked_add(len)
            .and_then(page_round_up)
            .ok_or(Errno::EINVAL)?;
        if end == start {
            return Ok(());
        }
        let c = self.clients.get(&id).ok_or(Errno::ESRCH)?;
        if !c.regions.is_fully_mapped(start, end) {
            return Err(Errno::ENOMEM);
        }
        if c.regions.len() + c.regions.splits(start, end) > c.spec.limits.max_regions as usize {
            return Err(Errno::ENOMEM);
        }
        if lock {
            // Linux cannot fault in PROT_NONE pages, so its mlock answers ENOMEM for a
            // range holding any (found by the differential test); we refuse up front.
            if c.regions.overlapping(start, end).any(|r| r.prot.is_empty()) {
                return Err(Errno::ENOMEM);
            }
            let newly: u64 = c
                .regions
                .overlapping(start, end)
                .filter(|r| !r.locked)
                .map(|r| r.end.min(end) - r.start.max(start))
                .sum();
            if c.spec.uid != 0 && c.locked_bytes + newly > c.spec.limits.max_locked {
                return Err(Errno::ENOMEM);
            }
            // Pin first: if frames run out, nothing is marked locked.
            self.populate_pinned(id, start, end)?;
        }
        self.set_locked(id, start, end, lock);
        Ok(())
    }

    fn set_locked(&mut self, id: ClientId, start: u64, end: u64, lock: bool) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let mut delta: i128 = 0;
        c.regions.update_range(start, end, |r| {
            if r.locked != lock {
                delta += if lock {
                    r.len() as i128
                } else {
                    -(r.len() as i128)
                };
                r.locked = lock;
            }
        });
        c.locked_bytes = (c.locked_bytes as i128 + delta) as u64;
    }

    /// `mlockall`.
    pub(crate) fn mlockall(&mut self, id: ClientId, flags: MlockallFlags) -> Result<(), Errno> {
        if !flags.intersects(MlockallFlags::CURRENT | MlockallFlags::FUTURE) {
            return Err(Errno::EINVAL);
        }
        let c = self.clients.get(&id).ok_or(Errno::ESRCH)?;
        let onfault = flags.contains(MlockallFlags::ONFAULT);
        if flags.contains(MlockallFlags::CURRENT) {
            if c.spec.uid != 0 && c.mapped_bytes > c.spec.limits.max_locked {
                return Err(Errno::ENOMEM);
            }
            let (lo, hi) = match (c.regions.iter().next(), c.regions.iter().next_back()) {
                (Some(a), Some(b)) => (a.start, b.end),
                _ => (0, 0),
            };
            if hi > lo {
                if !onfault {
                    self.populate_pinned(id, lo, hi)?;
                }
                self.set_locked(id, lo, hi, true);
            }
        }
        let c = self.clients.get_mut(&id).ok_or(Errno::ESRCH)?;
        if flags.contains(MlockallFlags::FUTURE) {
            c.lock_future = true;
            c.lock_onfault = onfault;
        }
        Ok(())
    }

    /// `munlockall`.
    pub(crate) fn munlockall(&mut self, id: ClientId) -> Result<(), Errno> {
        let c = self.clients.get_mut(&id).ok_or(Errno::ESRCH)?;
        c.lock_future = false;
        c.lock_onfault = false;
        let span = match (c.regions.iter().next(), c.regions.iter().next_back()) {
            (Some(a), Some(b)) => Some((a.start, b.end)),
            _ => None,
        };
        if let Some((lo, hi)) = span {
            self.set_locked(id, lo, hi, false);
        }
        Ok(())
    }

    /// [`populate`](Self::populate) for `mlock`: the pages already made resident are not
    /// evicted to make room for the rest. `EAGAIN` when frames run out.
    fn populate_pinned(&mut self, id: ClientId, start: u64, end: u64) -> Result<(), Errno> {
        self.pinning = Some((id, start, end));
        let r = self.populate(id, start, end);
        self.pinning = None;
        r.map_err(|_| Errno::EAGAIN)
    }

    /// Makes every accessible page of the mapped parts of `[start, end)` resident and
    /// installed, as a fault of the strongest allowed access would.
    pub(crate) fn populate(&mut self, id: ClientId, start: u64, end: u64) -> Result<(), Errno> {
        let mut va = start;
        while va < end {
            let Some(r) = self
                .clients
                .get(&id)
                .and_then(|c| c.regions.first_ending_above(va).copied())
            else {
                break;
            };
            if r.start >= end {
                break;
            }
            va = va.max(r.start);
            let stop = r.end.min(end);
            // As Linux: a shared mapping is populated by reads, so populating a file
            // mapping does not dirty every page of it.
            let access = if r.prot.contains(Prot::WRITE) && !r.shared {
                Some(Access::Write)
            } else if r.prot.is_empty() {
                None
            } else {
                Some(Access::Read)
            };
            if let Some(access) = access {
                while va < stop {
                    if self.resolve_evicting(id, va, access)?.is_some() {
                        // Past the end of an object: nothing to populate there.
                        break;
                    }
                    va += PAGE_SIZE;
                }
            }
            va = stop;
        }
        Ok(())
    }

    /// The first region of `id` ending above `after`.
    pub(crate) fn region_after(&self, id: ClientId, after: u64) -> Option<RegionInfo> {
        let c = self.clients.get(&id)?;
        let r = c.regions.first_ending_above(after)?;
        Some(r.info(|o| match self.objects.get(&o) {
            Some(obj) if obj.file.is_some() => ipc_proto::Backing::File(o.0),
            _ => ipc_proto::Backing::Shm(o.0),
        }))
    }

    /// What backs the page at `addr` of `id`.
    pub(crate) fn page_info(&self, id: ClientId, addr: u64) -> PageInfo {
        let mut info = PageInfo {
            mapped: false,
            resident: false,
            installed: false,
            writable: false,
            executable: false,
            cache: CacheMode::WriteBack,
            locked: false,
        };
        let Some(c) = self.clients.get(&id) else {
            return info;
        };
        let page = addr & !PAGE_MASK;
        let Some(r) = c.regions.find(page) else {
            return info;
        };
        info.mapped = true;
        info.locked = r.locked;
        info.resident = c.anon.contains_key(&page)
            || match r.backing {
                RegionBacking::Anon { .. } => false,
                RegionBacking::Object { obj, offset } => self.objects.get(&obj).is_some_and(|o| {
                    o.pages
                        .contains_key(&((offset + page - r.start) / PAGE_SIZE))
                }),
                RegionBacking::Device { .. } => true,
            };
        if let Some((_, a)) = self.mem.stub.query(c.space, page) {
            info.installed = true;
            info.writable = a.writable;
            info.executable = a.executable;
            info.cache = a.cache;
        }
        info
    }
}

/// The page-table attributes for a page of `r`; `writable_ok` says whether this page may
/// be written without a copy (shared mapping, or a private page owned exclusively).
pub(crate) fn attrs_for(r: &Region, writable_ok: bool) -> PageAttrs {
    PageAttrs {
        writable: writable_ok && r.prot.contains(Prot::WRITE),
        executable: r.prot.contains(Prot::EXEC),
        cache: r.cache,
    }
}

/// Whether `prot` allows `access` the way x86 does: any accessible page is readable.
pub(crate) fn prot_allows(prot: Prot, access: Access) -> bool {
    match access {
        Access::Read => !prot.is_empty(),
        Access::Write => prot.contains(Prot::WRITE),
        Access::Exec => prot.contains(Prot::EXEC),
    }
}

/// Shm permission bits wanted by an open mode.
pub(crate) fn may_for(write: bool) -> u32 {
    if write {
        MAY_READ | MAY_WRITE
    } else {
        MAY_READ
    }
}
