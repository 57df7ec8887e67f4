//! Page-fault resolution: find the region, check the access, then supply the page
//! (zero-fill, share an object page, copy on write, map a device frame) or answer the
//! signal the kernel must deliver.

use crate::kernel_stub::{Frame, KernelStub};
use crate::permission::prot_allows;
use crate::region::RegionBacking;
use crate::server::Server;
use ipc_proto::{Access, ClientId, Errno, PAGE_SIZE, Signal};

const PAGE_MASK: u64 = PAGE_SIZE - 1;
/// Most cached pages one fault may evict before it is out of memory.
const MAX_EVICTIONS: u32 = 16;

impl<K: KernelStub> Server<K> {
    /// Resolves a fault of `id` at `addr`: `None` means resume, `Some` the signal to
    /// deliver. Running out of frames is `SIGBUS`, as for a full tmpfs on Linux.
    pub(crate) fn fault(
        &mut self,
        id: ClientId,
        addr: u64,
        access: Access,
    ) -> Result<Option<Signal>, Errno> {
        if !self.clients.contains_key(&id) {
            return Err(Errno::ESRCH);
        }
        match self.resolve_evicting(id, addr & !PAGE_MASK, access) {
            Ok(outcome) => Ok(outcome),
            Err(_) => Ok(Some(Signal::Bus)),
        }
    }

    /// [`resolve`](Self::resolve), evicting cached file pages of the bank that ran out
    /// while frames run out. A fault needs a handful of frames at most (a page, a copy,
    /// page tables), so after [`MAX_EVICTIONS`] evictions it is out of memory: without
    /// the bound, a fault needing two frames with one free would evict the page it has
    /// just paged in, forever. Only the bank that refused a frame is evicted from: a page
    /// of the `dma` bank cannot come from a cached page of `normal`, and evicting one
    /// would take another client's cache for nothing (the KVM run's leak check saw the
    /// file demo's two cached pages freed by a case exhausting `dma`).
    pub(crate) fn resolve_evicting(
        &mut self,
        id: ClientId,
        va: u64,
        access: Access,
    ) -> Result<Option<Signal>, Errno> {
        let mut evicted = 0;
        loop {
            // A refusal left over from before this fault is not this fault's.
            self.mem.frames.take_refused();
            let outcome = self.resolve(id, va, access);
            if outcome != Err(Errno::ENOMEM) || evicted == MAX_EVICTIONS {
                return outcome;
            }
            match self.mem.frames.take_refused() {
                Some(bank) if self.evict_one(bank) => evicted += 1,
                _ => return outcome,
            }
        }
    }

    /// Supplies the page at `va` for `access`; `Err` only when frames ran out.
    pub(crate) fn resolve(
        &mut self,
        id: ClientId,
        va: u64,
        access: Access,
    ) -> Result<Option<Signal>, Errno> {
        let Some(c) = self.clients.get(&id) else {
            return Err(Errno::ESRCH);
        };
        let r = match c.regions.find(va) {
            Some(r) => *r,
            None => match self.grow_stack(id, va) {
                Some(r) => r,
                None => return Ok(Some(Signal::Segv)),
            },
        };
        if !prot_allows(r.prot, access) {
            return Ok(Some(Signal::Segv));
        }
        let write = access == Access::Write;
        let c = self.clients.get(&id).ok_or(Errno::ESRCH)?;
        let space = c.space;
        let installed = self.mem.stub.query(space, va);

        // A private page this client already owns (anonymous, or a copy-on-write copy).
        if let Some(&f) = c.anon.get(&va) {
            let exclusive = self.mem.frames.refcount(f) == 1;
            if write && !exclusive {
                return self.copy_on_write(id, va, f, &r).map(|()| None);
            }
            let attrs = r.page_attrs(exclusive);
            match installed {
                Some((g, a)) if g == f && (a.writable || !write) => {}
                Some((g, _)) if g == f => self.mem.stub.protect(space, va, 1, attrs),
                Some(_) => self
                    .mem
                    .reinstall(space, va, f, attrs)
                    .map_err(|_| Errno::ENOMEM)?,
                None => self
                    .mem
                    .install(space, va, f, attrs)
                    .map_err(|_| Errno::ENOMEM)?,
            }
            return Ok(None);
        }

        match r.backing {
            RegionBacking::Anon { bank } => {
                let f = self
                    .mem
                    .alloc_zeroed(bank, r.frame_use())
                    .ok_or(Errno::ENOMEM)?;
                self.install_private(id, va, f, r.page_attrs(true))?;
                Ok(None)
            }
            RegionBacking::Device { dev, offset } => {
                let Some(d) = self.cfg.devices.get(dev.0 as usize) else {
                    return Ok(Some(Signal::Bus));
                };
                let idx = (offset + va - r.start) / PAGE_SIZE;
                if idx >= d.frames.count {
                    return Ok(Some(Signal::Bus));
                }
                let f = Frame(d.frames.start + idx);
                if installed.is_none() {
                    self.mem
                        .install(space, va, f, r.page_attrs(true))
                        .map_err(|_| Errno::ENOMEM)?;
                } else if write {
                    self.mem.stub.protect(space, va, 1, r.page_attrs(true));
                }
                Ok(None)
            }
            RegionBacking::Object { obj, offset } => {
                let idx = (offset + va - r.start) / PAGE_SIZE;
                let Some(o) = self.objects.get(&obj) else {
                    return Ok(Some(Signal::Bus));
                };
                // A host file's pages are the host's page cache: a fault that reaches
                // the server anyway (its runtime did not map the file) has no page here.
                // Seed 004: access beyond the end of the object is SIGBUS.
                if o.host.is_some() || idx >= o.size.div_ceil(PAGE_SIZE) {
                    return Ok(Some(Signal::Bus));
                }
                let is_file = o.file.is_some();
                if !r.shared && write {
                    // First write to a private mapping: a private copy of the object page
                    // (of a file, its contents must come in first).
                    let src = match o.pages.get(&idx).copied() {
                        None if is_file => Some(self.object_page(obj, idx)?),
                        src => src,
                    };
                    let f = match src {
                        Some(src) => self.mem.alloc_copy(r.charge_bank(), r.frame_use(), src),
                        None => self.mem.alloc_zeroed(r.charge_bank(), r.frame_use()),
                    }
                    .ok_or(Errno::ENOMEM)?;
                    if installed.is_some() {
                        self.mem.stub.unmap(space, va, 1);
                    }
                    self.install_private(id, va, f, r.page_attrs(true))?;
                    return Ok(None);
                }
                let f = self.object_page(obj, idx)?;
                // A shared file page is installed writable only once written, so that
                // write marks it dirty (write-back sends only pages really written).
                if is_file && r.shared && write {
                    self.mark_dirty(obj, idx);
                }
                let writable_ok = r.shared && (!is_file || write || self.is_dirty(obj, idx));
                let attrs = r.page_attrs(writable_ok);
                match installed {
                    Some((_, a)) if a.writable || !write => {}
                    Some(_) => self.mem.stub.protect(space, va, 1, attrs),
                    None => self
                        .mem
                        .install(space, va, f, attrs)
                        .map_err(|_| Errno::ENOMEM)?,
                }
                if is_file && !write {
                    self.map_around(id, &r, obj, offset, va);
                }
                Ok(None)
            }
        }
    }

    /// Fault-around, as Linux does for files: after a read fault on a file page, installs
    /// the pages of the surrounding aligned 64 KiB of the region that are already cached
    /// and not installed, so a sequential reader faults once per 16 pages instead of once
    /// per page. Nothing is paged in for it, and each page gets exactly the rights its own
    /// fault would give it now (a clean shared page read-only, a private one read-only).
    fn map_around(
        &mut self,
        id: ClientId,
        r: &crate::region::Region,
        obj: crate::object::ObjectId,
        offset: u64,
        va: u64,
    ) {
        const AROUND: u64 = 16 * PAGE_SIZE;
        let from = (va & !(AROUND - 1)).max(r.start);
        let to = (from + AROUND).min(r.end);
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        let space = c.space;
        let mut todo = alloc::vec::Vec::new();
        if let Some(o) = self.objects.get(&obj) {
            let idx_of = |at: u64| (offset + at - r.start) / PAGE_SIZE;
            // Only the cached pages of the window: nothing to look at when none is.
            for (&idx, &f) in o.pages.range(idx_of(from)..idx_of(to)) {
                let at = r.start + idx * PAGE_SIZE - offset;
                // A private copy lives there, or something is installed already.
                if at == va || c.anon.contains_key(&at) || self.mem.stub.query(space, at).is_some()
                {
                    continue;
                }
                let dirty = o.file.as_ref().is_some_and(|fi| fi.dirty.contains(&idx));
                todo.push((at, f, r.page_attrs(r.shared && dirty)));
            }
        }
        for (at, f, attrs) in todo {
            // Only an optimisation: a page table that cannot be had now is no error.
            if self.mem.install(space, at, f, attrs).is_err() {
                break;
            }
        }
    }

    /// Installs a fresh private frame at `va` and records it; frees it on failure.
    fn install_private(
        &mut self,
        id: ClientId,
        va: u64,
        f: Frame,
        attrs: crate::kernel_stub::PageAttrs,
    ) -> Result<(), Errno> {
        let space = self.clients.get(&id).ok_or(Errno::ESRCH)?.space;
        if self.mem.install(space, va, f, attrs).is_err() {
            self.mem.release(f);
            return Err(Errno::ENOMEM);
        }
        if let Some(c) = self.clients.get_mut(&id) {
            c.anon.insert(va, f);
        }
        Ok(())
    }

    /// Replaces a shared private frame by a copy the client owns alone.
    fn copy_on_write(
        &mut self,
        id: ClientId,
        va: u64,
        shared: Frame,
        r: &crate::region::Region,
    ) -> Result<(), Errno> {
        let f = self
            .mem
            .alloc_copy(r.charge_bank(), r.frame_use(), shared)
            .ok_or(Errno::ENOMEM)?;
        let space = self.clients.get(&id).ok_or(Errno::ESRCH)?.space;
        if self
            .mem
            .reinstall(space, va, f, r.page_attrs(true))
            .is_err()
        {
            self.mem.release(f);
            return Err(Errno::ENOMEM);
        }
        if let Some(c) = self.clients.get_mut(&id) {
            c.anon.insert(va, f);
        }
        self.mem.release(shared);
        Ok(())
    }

    /// Grows a `MAP_GROWSDOWN` region down to cover `va`, if one lies just above within
    /// the stack limit and the limits allow; returns the grown region.
    fn grow_stack(&mut self, id: ClientId, va: u64) -> Option<crate::region::Region> {
        let limit = self.cfg.stack_grow_limit;
        let floor = self.cfg.floor_of(va);
        let c = self.clients.get_mut(&id)?;
        let above = *c.regions.next_at_or_above(va)?;
        // Only anonymous stacks grow: growing an object mapping down would need an offset
        // below its start.
        let anon = matches!(above.backing, crate::region::RegionBacking::Anon { .. });
        if !above.growsdown || !anon || above.start - va > limit || va < floor {
            return None;
        }
        let grow = above.start - va;
        if c.mapped_bytes + grow > c.spec.limits.max_bytes {
            return None;
        }
        if above.locked
            && !crate::permission::unlimited_locking(&c.spec)
            && c.locked_bytes + grow > c.spec.limits.max_locked
        {
            return None;
        }
        if above.accounted
            && !self
                .mem
                .frames
                .charge(above.charge_bank(), grow / PAGE_SIZE)
        {
            return None;
        }
        c.mapped_bytes += grow;
        if above.locked {
            c.locked_bytes += grow;
        }
        c.regions.grow_down(above.start, va);
        c.regions.find(va).copied()
    }
}
