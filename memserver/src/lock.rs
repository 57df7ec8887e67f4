//! Locking and populating: `mlock`, `munlock`, `mlockall`, `munlockall`, and making a
//! range resident as `MAP_POPULATE` and locking do.

use crate::client_state::FutureLock;
use crate::kernel_stub::KernelStub;
use crate::permission;
use crate::region_map::page_round_up;
use crate::server::Server;
use ipc_proto::{Access, ClientId, Errno, MlockallFlags, PAGE_SIZE, Prot};

const PAGE_MASK: u64 = PAGE_SIZE - 1;

impl<K: KernelStub> Server<K> {
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
        if lock && !permission::may_lock(&c.spec) {
            return Err(Errno::EPERM);
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
            if !permission::unlimited_locking(&c.spec)
                && c.locked_bytes + newly > c.spec.limits.max_locked
            {
                return Err(Errno::ENOMEM);
            }
            // Pin first: if frames run out, nothing is marked locked. Linux: a page
            // that cannot be faulted in (past an object's end) is ENOMEM.
            self.populate_pinned(id, start, end, true)?;
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
        if !permission::may_lock(&c.spec) {
            return Err(Errno::EPERM);
        }
        let onfault = flags.contains(MlockallFlags::ONFAULT);
        if flags.contains(MlockallFlags::CURRENT) {
            if !permission::unlimited_locking(&c.spec) && c.mapped_bytes > c.spec.limits.max_locked
            {
                return Err(Errno::ENOMEM);
            }
            if let Some((lo, hi)) = c.mapped_span() {
                if !onfault {
                    // Linux's mlockall ignores pages that cannot be faulted in.
                    self.populate_pinned(id, lo, hi, false)?;
                }
                self.set_locked(id, lo, hi, true);
            }
        }
        let c = self.clients.get_mut(&id).ok_or(Errno::ESRCH)?;
        if flags.contains(MlockallFlags::FUTURE) {
            c.future_lock = if onfault {
                FutureLock::OnFault
            } else {
                FutureLock::Populate
            };
        }
        Ok(())
    }

    /// `munlockall`.
    pub(crate) fn munlockall(&mut self, id: ClientId) -> Result<(), Errno> {
        let c = self.clients.get_mut(&id).ok_or(Errno::ESRCH)?;
        c.future_lock = FutureLock::Off;
        if let Some((lo, hi)) = c.mapped_span() {
            self.set_locked(id, lo, hi, false);
        }
        Ok(())
    }

    /// [`populate`](Self::populate) for `mlock`: the pages already made resident are not
    /// evicted to make room for the rest. `EAGAIN` when frames run out; with `strict`,
    /// `ENOMEM` for a page that faults (past the end of its object), as Linux's `mlock`.
    fn populate_pinned(
        &mut self,
        id: ClientId,
        start: u64,
        end: u64,
        strict: bool,
    ) -> Result<(), Errno> {
        self.eviction.pinning = Some((id, start, end));
        let r = self.populate_checked(id, start, end, strict);
        self.eviction.pinning = None;
        r.map_err(|e| {
            if e == Errno::EFAULT {
                Errno::ENOMEM
            } else {
                Errno::EAGAIN
            }
        })
    }

    /// Makes every accessible page of the mapped parts of `[start, end)` resident and
    /// installed, as a fault of the strongest allowed access would; best effort past the
    /// end of an object (`MAP_POPULATE`, `mremap` of a locked mapping).
    pub(crate) fn populate(&mut self, id: ClientId, start: u64, end: u64) -> Result<(), Errno> {
        self.populate_checked(id, start, end, false)
    }

    /// [`populate`](Self::populate); with `strict`, a page that raises a signal (past
    /// the end of its object) is `EFAULT` instead of the end of that region's part.
    fn populate_checked(
        &mut self,
        id: ClientId,
        start: u64,
        end: u64,
        strict: bool,
    ) -> Result<(), Errno> {
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
            let access = if self.is_host_backed(&r) {
                // A host file's pages are the host's to bring in.
                None
            } else if r.prot.contains(Prot::WRITE) && !r.shared {
                Some(Access::Write)
            } else if r.prot.is_empty() {
                None
            } else {
                Some(Access::Read)
            };
            if let Some(access) = access {
                while va < stop {
                    if self.resolve_evicting(id, va, access)?.is_some() {
                        if strict {
                            return Err(Errno::EFAULT);
                        }
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
}
