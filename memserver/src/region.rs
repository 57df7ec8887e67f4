//! A [`Region`]: one contiguous mapping of an address space, and what backs it.

use crate::frame_alloc::BankId;
use crate::kernel_stub::PageAttrs;
use crate::object::ObjectId;
use ipc_proto::{Backing, CacheMode, PAGE_SIZE, Prot, RegionInfo};

/// Index of a device window in the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(pub u8);

/// What a region's pages come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionBacking {
    /// Zero-filled memory from a bank; private pages live in the space's page map.
    Anon {
        /// The bank frames come from.
        bank: BankId,
    },
    /// A memory object (shm, or shared anonymous memory); `offset` is the byte offset
    /// of the region's start in the object.
    Object {
        /// The object.
        obj: ObjectId,
        /// Offset of `start` in the object.
        offset: u64,
    },
    /// A device window; `offset` is the byte offset of `start` in the window.
    Device {
        /// The device.
        dev: DeviceId,
        /// Offset of `start` in the window.
        offset: u64,
    },
}

/// The access pattern `madvise` declared for a region (Linux keeps it as VMA flags, so
/// a range with another pattern is another mapping, as it is here).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccessPattern {
    /// `MADV_NORMAL` (the default).
    #[default]
    Normal,
    /// `MADV_RANDOM`.
    Random,
    /// `MADV_SEQUENTIAL`.
    Sequential,
}

/// One mapping: `[start, end)`, page-aligned, non-empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// Current protection.
    pub prot: Prot,
    /// The most `prot` may become (`PROT_WRITE` is absent for a shared mapping of a
    /// read-only fd): `mprotect` beyond it is `EACCES`.
    pub max_prot: Prot,
    /// `MAP_SHARED` (writes reach the object) or `MAP_PRIVATE` (copy-on-write).
    pub shared: bool,
    /// What backs it.
    pub backing: RegionBacking,
    /// `mlock`ed: every page is resident.
    pub locked: bool,
    /// `MAP_GROWSDOWN`: faults just below grow it.
    pub growsdown: bool,
    /// `MAP_NORESERVE`: never charged to the commit limit.
    pub noreserve: bool,
    /// Its pages are charged to the commit limit of `charge_bank`.
    pub accounted: bool,
    /// Caching mode of its pages.
    pub cache: CacheMode,
    /// `MAP_INHERIT`.
    pub inherit: bool,
    /// `MAP_DENYWRITE`: its object may not be opened for writing.
    pub denywrite: bool,
    /// `MADV_DONTFORK`: an address-space clone leaves it out of the child.
    pub dontfork: bool,
    /// `MADV_RANDOM`/`MADV_SEQUENTIAL`: a hint, kept so mappings split where Linux's do.
    pub access: AccessPattern,
}

impl Region {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether it is empty (never, for a region in a map).
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Length in pages.
    pub fn pages(&self) -> u64 {
        self.len() / PAGE_SIZE
    }

    /// Whether `addr` lies inside.
    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }

    /// The bank commit charges go to: private copies of any region come from the default
    /// bank unless the region is anonymous memory of another bank.
    pub fn charge_bank(&self) -> BankId {
        match self.backing {
            RegionBacking::Anon { bank } => bank,
            _ => BankId::DEFAULT,
        }
    }

    /// The page-table attributes of one of its pages; `writable_ok` says whether this
    /// page may be written without a copy (a shared mapping, or a private page owned
    /// exclusively).
    pub fn page_attrs(&self, writable_ok: bool) -> PageAttrs {
        PageAttrs {
            writable: writable_ok && self.prot.contains(Prot::WRITE),
            executable: self.prot.contains(Prot::EXEC),
            cache: self.cache,
        }
    }

    /// What a private page of it is allocated as: a charged page if the region is
    /// accounted (its frame may come from the reserve), else uncommitted memory.
    pub fn frame_use(&self) -> crate::frame_alloc::FrameUse {
        if self.accounted {
            crate::frame_alloc::FrameUse::Committed
        } else {
            crate::frame_alloc::FrameUse::Uncommitted
        }
    }

    /// Whether private copies of its pages are charged (private, writable, reserved).
    pub fn wants_commit(&self) -> bool {
        !self.shared && !self.noreserve && self.prot.contains(Prot::WRITE)
    }

    /// Splits at `addr` (strictly inside): the lower and upper halves.
    pub fn split_at(&self, addr: u64) -> (Region, Region) {
        debug_assert!(self.start < addr && addr < self.end && addr.is_multiple_of(PAGE_SIZE));
        let lower = Region { end: addr, ..*self };
        let mut upper = Region {
            start: addr,
            ..*self
        };
        upper.backing = self.backing_at(addr);
        (lower, upper)
    }

    /// The backing as seen from `addr` (offsets advanced).
    pub fn backing_at(&self, addr: u64) -> RegionBacking {
        let delta = addr - self.start;
        match self.backing {
            RegionBacking::Anon { bank } => RegionBacking::Anon { bank },
            RegionBacking::Object { obj, offset } => RegionBacking::Object {
                obj,
                offset: offset + delta,
            },
            RegionBacking::Device { dev, offset } => RegionBacking::Device {
                dev,
                offset: offset + delta,
            },
        }
    }

    /// Whether `self` followed directly by `next` can be one region (Linux merges
    /// adjacent mappings with identical attributes and contiguous backing).
    pub fn can_merge(&self, next: &Region) -> bool {
        self.end == next.start
            && self.prot == next.prot
            && self.max_prot == next.max_prot
            && self.shared == next.shared
            && self.locked == next.locked
            && self.growsdown == next.growsdown
            && self.noreserve == next.noreserve
            && self.accounted == next.accounted
            && self.cache == next.cache
            && self.inherit == next.inherit
            && self.denywrite == next.denywrite
            && self.dontfork == next.dontfork
            && self.access == next.access
            && next.backing == self.backing_at(next.start)
    }

    /// The region as the `Regions` request reports it; `object` says how an object
    /// backing it is reported (`Shm` or `File`, by inode).
    pub fn info(&self, object: impl Fn(ObjectId) -> Backing) -> RegionInfo {
        let (backing, offset) = match self.backing {
            RegionBacking::Anon { bank } if bank == BankId::DEFAULT => (Backing::Anonymous, 0),
            RegionBacking::Anon { bank } => (Backing::Bank(bank.0), 0),
            RegionBacking::Object { obj, offset } => (object(obj), offset),
            RegionBacking::Device { dev, offset } => (Backing::Device(dev.0), offset),
        };
        RegionInfo {
            start: self.start,
            end: self.end,
            prot: self.prot,
            shared: self.shared,
            locked: self.locked,
            backing,
            offset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj_region(start: u64, end: u64, offset: u64) -> Region {
        Region {
            start,
            end,
            prot: Prot::READ,
            max_prot: Prot::all(),
            shared: true,
            backing: RegionBacking::Object {
                obj: ObjectId(1),
                offset,
            },
            locked: false,
            growsdown: false,
            noreserve: false,
            accounted: false,
            cache: CacheMode::WriteBack,
            inherit: false,
            denywrite: false,
            dontfork: false,
            access: AccessPattern::Normal,
        }
    }

    #[test]
    fn split_advances_the_offset_and_merge_undoes_it() {
        let r = obj_region(0x10000, 0x14000, 0x2000);
        let (lo, hi) = r.split_at(0x11000);
        assert_eq!(
            (lo.start, lo.end, hi.start, hi.end),
            (0x10000, 0x11000, 0x11000, 0x14000)
        );
        assert_eq!(
            hi.backing,
            RegionBacking::Object {
                obj: ObjectId(1),
                offset: 0x3000
            }
        );
        assert!(lo.can_merge(&hi));
        assert!(!hi.can_merge(&lo));
    }

    #[test]
    fn discontiguous_offsets_do_not_merge() {
        let a = obj_region(0x10000, 0x11000, 0);
        let b = obj_region(0x11000, 0x12000, 0x5000);
        assert!(!a.can_merge(&b));
        let mut c = obj_region(0x11000, 0x12000, 0x1000);
        assert!(a.can_merge(&c));
        c.prot = Prot::READ | Prot::WRITE;
        assert!(!a.can_merge(&c));
    }
}
