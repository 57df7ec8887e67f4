//! `mmap`, in three steps: [validate](Server::validate_mmap) the arguments,
//! [plan](Server::plan_mmap) the mapping (backing, placement, limits, commit) without
//! changing anything, then [commit](Server::commit_mmap) the plan, which cannot fail.
//! A call that fails therefore leaves the address space exactly as it was, `MAP_FIXED`
//! replacement included (seeds 003, 004: the old mapping is intact on failure).

use crate::client_state::FutureLock;
use crate::fd::FdTarget;
use crate::frame_alloc::BankId;
use crate::kernel_stub::KernelStub;
use crate::object::{MemObject, ObjectId};
use crate::permission;
use crate::region::{DeviceId, Region, RegionBacking};
use crate::region_map::page_round_up;
use crate::server::Server;
use alloc::vec::Vec;
use ipc_proto::{CacheMode, ClientId, Errno, MapFlags, MmapArgs, PAGE_SIZE, Prot};

const PAGE_MASK: u64 = PAGE_SIZE - 1;
/// `MAP_32BIT` places mappings below 2 GiB.
const LOW_2G: u64 = 1 << 31;
/// Largest offset + length of a mapping (`off_t` is signed).
const MAX_OFFSET: u64 = i64::MAX as u64;

/// The arguments of an `mmap` that passed the checks needing no state.
struct ValidMmap {
    /// The length rounded up to pages.
    len: u64,
    shared: bool,
    /// `MAP_FIXED` or `MAP_FIXED_NOREPLACE`.
    fixed: bool,
}

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

/// A mapping ready to be made: every check passed, every limit and charge computed.
struct MmapPlan {
    /// The new region (for a new shared anonymous object, backed by its bank until the
    /// object exists).
    region: Region,
    /// A fresh hidden object to create for it, from this bank.
    new_object: Option<BankId>,
    /// Whether a fixed mapping replaces something.
    replaces: bool,
    /// Whether its pages are made resident at once (`MAP_POPULATE`, or locked).
    populate: bool,
}

impl<K: KernelStub> Server<K> {
    /// `mmap`.
    pub(crate) fn mmap(&mut self, id: ClientId, a: &MmapArgs) -> Result<u64, Errno> {
        let valid = self.validate_mmap(id, a)?;
        let plan = self.plan_mmap(id, a, &valid)?;
        Ok(self.commit_mmap(id, plan))
    }

    /// The checks of the arguments alone (and the client's W^X policy).
    fn validate_mmap(&self, id: ClientId, a: &MmapArgs) -> Result<ValidMmap, Errno> {
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
        let fixed = f.intersects(MapFlags::FIXED | MapFlags::FIXED_NOREPLACE);
        if fixed && a.addr & PAGE_MASK != 0 {
            return Err(Errno::EINVAL);
        }
        // Linux: a growing stack cannot be shared.
        if shared && f.contains(MapFlags::GROWSDOWN) {
            return Err(Errno::EINVAL);
        }
        let c = self.clients.get(&id).ok_or(Errno::ESRCH)?;
        permission::check_wx(&c.spec, a.prot)?;
        Ok(ValidMmap { len, shared, fixed })
    }

    /// Decides the backing, the address, and checks every limit and the commit charge
    /// against the state after any replacement. Changes nothing.
    fn plan_mmap(&mut self, id: ClientId, a: &MmapArgs, v: &ValidMmap) -> Result<MmapPlan, Errno> {
        let f = a.flags;
        let res = self.resolve_backing(id, a, v.shared, v.len)?;
        let start = if v.fixed {
            self.check_fixed(id, a.addr, v.len, f)?
        } else {
            self.place(id, a.addr, v.len, f.contains(MapFlags::BIT32))?
        };
        let end = start + v.len;
        // Linux (file_mmap_ok, after placement): EOVERFLOW is about an object's offsets
        // only. Anonymous memory ignores the offset, and a length no address space holds
        // was ENOMEM at placement already.
        let object = matches!(res.backing, Backing::Object(_) | Backing::Device(_));
        if object && a.offset.checked_add(v.len).is_none_or(|e| e > MAX_OFFSET) {
            return Err(Errno::EOVERFLOW);
        }

        let c = self.clients.get(&id).ok_or(Errno::ESRCH)?;
        let lim = c.spec.limits;
        // A placed mapping lands in free space; only a fixed one replaces anything.
        let (overlap_count, overlap_bytes, overlap_locked, splits) = if v.fixed {
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
        if c.regions.len() + splits - overlap_count + 1 > lim.max_regions as usize {
            return Err(Errno::ENOMEM);
        }
        if c.mapped_bytes - overlap_bytes + v.len > lim.max_bytes {
            return Err(Errno::ENOMEM);
        }
        let future = c.future_lock;
        let locked = f.contains(MapFlags::LOCKED) || future != FutureLock::Off;
        if locked
            && !permission::unlimited_locking(&c.spec)
            && c.locked_bytes - overlap_locked + v.len > lim.max_locked
        {
            // Linux: MAP_LOCKED over RLIMIT_MEMLOCK is EAGAIN.
            return Err(Errno::EAGAIN);
        }
        let new_object = match res.backing {
            Backing::NewSharedAnon(bank) => {
                self.accounting.room_for(1)?;
                Some(bank)
            }
            _ => None,
        };
        // Locked mappings are populated, but for mlockall(MCL_FUTURE | MCL_ONFAULT)'s
        // own (an explicit MAP_LOCKED still populates).
        let onfault = future == FutureLock::OnFault && !f.contains(MapFlags::LOCKED);
        let populate = f.contains(MapFlags::POPULATE) || (locked && !onfault);

        let mut region = Region {
            start,
            end,
            prot: a.prot,
            max_prot: res.max_prot,
            shared: v.shared,
            backing: match res.backing {
                Backing::Anon(bank) | Backing::NewSharedAnon(bank) => RegionBacking::Anon { bank },
                Backing::Object(obj) => RegionBacking::Object {
                    obj,
                    offset: a.offset,
                },
                Backing::Device(dev) => RegionBacking::Device {
                    dev,
                    offset: a.offset,
                },
            },
            locked,
            growsdown: f.contains(MapFlags::GROWSDOWN),
            noreserve: f.contains(MapFlags::NORESERVE),
            accounted: false,
            cache: res.cache,
            inherit: f.contains(MapFlags::INHERIT),
            denywrite: f.contains(MapFlags::DENYWRITE) && matches!(res.backing, Backing::Object(_)),
            dontfork: false,
            access: crate::region::AccessPattern::Normal,
        };
        // Commit: the new region's charge must fit once the replaced range's is refunded.
        if region.wants_commit() {
            let bank = region.charge_bank();
            let refund: u64 = if overlap_count > 0 {
                self.accounted_in(id, start, end)
                    .iter()
                    .filter(|(b, _)| *b == bank)
                    .map(|(_, p)| p)
                    .sum()
            } else {
                0
            };
            if !self.mem.frames.can_charge(bank, v.len / PAGE_SIZE, refund) {
                return Err(Errno::ENOMEM);
            }
            region.accounted = true;
        }
        Ok(MmapPlan {
            region,
            new_object,
            replaces: overlap_count > 0,
            populate,
        })
    }

    /// Makes the planned mapping; returns its address. Nothing here can fail.
    fn commit_mmap(&mut self, id: ClientId, plan: MmapPlan) -> u64 {
        let MmapPlan {
            mut region,
            new_object,
            replaces,
            populate,
        } = plan;
        let (start, end, len) = (region.start, region.end, region.len());
        if replaces {
            self.release_range(id, start, end);
        }
        if region.accounted {
            let charged = self
                .mem
                .frames
                .charge(region.charge_bank(), len / PAGE_SIZE);
            debug_assert!(charged, "checked by can_charge");
        }
        if let Some(bank) = new_object {
            let mut o = MemObject::new(None, ipc_proto::Mode::default(), 0, 0, bank);
            o.size = len;
            o.anonymous = true;
            let obj = self.objects.insert(o);
            self.accounting.opened(1);
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
        if let Some(c) = self.clients.get_mut(&id) {
            c.mapped_bytes += len;
            if region.locked {
                c.locked_bytes += len;
            }
            c.regions.insert(region);
        }
        if populate {
            // Best effort, as Linux: the mapping exists even if some pages could not be
            // made resident now; they fault in later.
            let _ = self.populate(id, start, end);
        }
        start
    }

    /// The address of a `MAP_FIXED` or `MAP_FIXED_NOREPLACE` mapping, if it may go there.
    fn check_fixed(&self, id: ClientId, addr: u64, len: u64, f: MapFlags) -> Result<u64, Errno> {
        let end = addr.checked_add(len).ok_or(Errno::ENOMEM)?;
        if !self.cfg.usable(addr, end) {
            let low = self.cfg.low_window.is_some_and(|(lo, _)| addr >= lo);
            return Err(if addr < self.cfg.mmap_min && !low {
                Errno::EPERM
            } else {
                Errno::ENOMEM
            });
        }
        let c = self.clients.get(&id).ok_or(Errno::ESRCH)?;
        if f.contains(MapFlags::FIXED_NOREPLACE) && !c.regions.is_free(addr, addr + len) {
            return Err(Errno::EEXIST);
        }
        Ok(addr)
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
                    Resolved {
                        backing: Backing::Object(obj),
                        max_prot: permission::object_max_prot(shared, entry.writable),
                        cache: CacheMode::WriteBack,
                    }
                }
                FdTarget::Device(dev) => {
                    let (max_prot, cache) =
                        self.device_mapping(dev, a, shared, len, entry.writable)?;
                    Resolved {
                        backing: Backing::Device(dev),
                        max_prot,
                        cache,
                    }
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

    /// Picks an address for a non-fixed mapping: the hint if it is free and inside the
    /// window, otherwise the highest free gap.
    fn place(&mut self, id: ClientId, hint: u64, len: u64, low: bool) -> Result<u64, Errno> {
        let (lo, hi) = match (low, self.cfg.low_window) {
            (true, Some((lo, hi))) => (lo, hi.min(LOW_2G)),
            (true, None) => (self.cfg.mmap_min, self.cfg.mmap_max.min(LOW_2G)),
            (false, _) => (self.cfg.mmap_min, self.cfg.mmap_max),
        };
        let c = self.clients.get_mut(&id).ok_or(Errno::ESRCH)?;
        // A hint is taken where a mapping may lie and nothing is (below 2 GiB for
        // MAP_32BIT), in either range, as Linux takes one anywhere free.
        let h = hint & !PAGE_MASK;
        if h != 0
            && h.checked_add(len).is_some_and(|e| {
                (!low || e <= LOW_2G) && self.cfg.usable(h, e) && c.regions.is_free(h, e)
            })
        {
            return Ok(h);
        }
        if lo < self.cfg.mmap_min {
            return c.regions.find_free_in(len, lo, hi).ok_or(Errno::ENOMEM);
        }
        c.regions
            .find_free_top_down(len, lo, hi)
            .ok_or(Errno::ENOMEM)
    }

    /// Commit charged by the regions overlapping `[start, end)`, per bank.
    pub(crate) fn accounted_in(&self, id: ClientId, start: u64, end: u64) -> Vec<(BankId, u64)> {
        let mut out: Vec<(BankId, u64)> = Vec::new();
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
}
