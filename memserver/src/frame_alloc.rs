//! Frame allocator over named memory banks, with reference counts and commit accounting.
//!
//! Each bank keeps a free stack (O(1) allocate and free); every frame the server owns has
//! a reference count, so a frame shared by several mappings or copy-on-write holders
//! returns to its bank exactly when its last holder lets go.
//!
//! Commit accounting is strict: a charge (`mmap` of private writable memory) is a promise
//! that every page of it will find a frame, so the allocator keeps the frames charged but
//! not yet allocated (the *reserve*) for charged pages alone. Memory nobody charged for
//! (`MAP_NORESERVE` pages, shm pages) is refused once only the reserve is left, as Linux's
//! strict overcommit refuses a tmpfs page; the file cache may use it only as far as it can
//! be evicted again, and a charge counts cached pages as available for that reason.

use crate::config::{BankConfig, FrameRange};
use crate::kernel_stub::Frame;
use alloc::string::String;
use alloc::vec::Vec;

/// Index of a bank in the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BankId(pub u8);

impl BankId {
    /// The default bank: anonymous memory and page tables come from it.
    pub const DEFAULT: BankId = BankId(0);
}

/// What a frame is allocated for, which decides whether the reserve may be touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameUse {
    /// A page of a charged (accounted) mapping: may take any free frame, and backs one
    /// charged page while it lives.
    Committed,
    /// Memory nobody charged for (`MAP_NORESERVE`, shm pages): never from the reserve.
    Uncommitted,
    /// A file page in the page cache: never from the reserve either, and counted as
    /// reclaimable (eviction can give it back).
    Cache,
    /// A page-table frame lent to the stub: any free frame (as Linux, page tables are
    /// not commit-accounted).
    Table,
}

/// A frame's use as the allocator remembers it until the frame is free again.
const TAG_NONE: u8 = 0;
const TAG_COMMITTED: u8 = 1;
const TAG_CACHE: u8 = 2;

struct Bank {
    name: String,
    free: Vec<Frame>,
    total: u64,
    /// Pages charged.
    committed: u64,
    /// Allocated frames backing charged pages (tagged committed).
    backed: u64,
    /// Allocated page-cache frames (tagged cache).
    cache: u64,
}

impl Bank {
    /// Charged pages with no frame yet: what must stay free for them.
    fn reserve(&self) -> u64 {
        self.committed.saturating_sub(self.backed)
    }

    /// Whether `committed` pages in all could be charged: no more than the bank, and no
    /// more unbacked pages than frames free or reclaimable from the cache.
    fn could_commit(&self, committed: u64) -> bool {
        committed <= self.total
            && committed.saturating_sub(self.backed) <= self.free.len() as u64 + self.cache
    }
}

/// Reference counts (and use tags) of one contiguous range of frames.
struct RefRange {
    range: FrameRange,
    bank: BankId,
    refs: Vec<u32>,
    tags: Vec<u8>,
}

/// All the RAM the server owns.
pub struct FrameAllocator {
    banks: Vec<Bank>,
    /// Sorted by start frame, for binary search.
    ranges: Vec<RefRange>,
    /// The bank the last refused allocation asked for, until [`take_refused`] reads it:
    /// the one bank where evicting a cached page can make room for it.
    ///
    /// [`take_refused`]: FrameAllocator::take_refused
    refused: Option<BankId>,
}

impl FrameAllocator {
    /// Takes ownership of the frames of every bank.
    pub fn new(banks: &[BankConfig]) -> FrameAllocator {
        let mut out = FrameAllocator {
            banks: Vec::new(),
            ranges: Vec::new(),
            refused: None,
        };
        for (i, b) in banks.iter().enumerate() {
            let id = BankId(i as u8);
            let mut free = Vec::new();
            for r in &b.ranges {
                // Highest first, so the stack hands out low frames first.
                free.extend((r.start..r.start + r.count).rev().map(Frame));
                out.ranges.push(RefRange {
                    range: *r,
                    bank: id,
                    refs: alloc::vec![0; r.count as usize],
                    tags: alloc::vec![TAG_NONE; r.count as usize],
                });
            }
            let total = free.len() as u64;
            out.banks.push(Bank {
                name: b.name.clone(),
                free,
                total,
                committed: 0,
                backed: 0,
                cache: 0,
            });
        }
        out.ranges.sort_by_key(|r| r.range.start);
        out
    }

    /// The bank called `name`.
    pub fn bank_by_name(&self, name: &str) -> Option<BankId> {
        self.banks
            .iter()
            .position(|b| b.name == name)
            .map(|i| BankId(i as u8))
    }

    /// Number of banks.
    pub fn bank_count(&self) -> usize {
        self.banks.len()
    }

    /// Frames in bank `b`.
    pub fn bank_total(&self, b: BankId) -> u64 {
        self.banks.get(b.0 as usize).map_or(0, |b| b.total)
    }

    /// Takes a free frame from bank `b` for `use_` with reference count 1 (contents not
    /// zeroed); `None` when the bank is empty, or when only its reserve is left and the
    /// frame is not for a charged page or a page table (the bank is then the one
    /// [`take_refused`](Self::take_refused) names).
    pub fn alloc(&mut self, b: BankId, use_: FrameUse) -> Option<Frame> {
        let bank = self.banks.get_mut(b.0 as usize)?;
        let free = bank.free.len() as u64;
        let from_reserve_ok = matches!(use_, FrameUse::Committed | FrameUse::Table);
        if free == 0 || (!from_reserve_ok && free <= bank.reserve()) {
            self.refused = Some(b);
            return None;
        }
        let frame = bank.free.pop()?;
        let tag = match use_ {
            FrameUse::Committed if bank.backed < bank.committed => {
                bank.backed += 1;
                TAG_COMMITTED
            }
            FrameUse::Cache => {
                bank.cache += 1;
                TAG_CACHE
            }
            _ => TAG_NONE,
        };
        let i = self
            .range_index(frame)
            .expect("free frames belong to a range");
        let r = &mut self.ranges[i];
        let k = (frame.0 - r.range.start) as usize;
        debug_assert_eq!(r.refs[k], 0);
        r.refs[k] = 1;
        r.tags[k] = tag;
        Some(frame)
    }

    /// The bank of the last allocation refused since this was last called, if any: a
    /// frame freed anywhere else would not have let it succeed.
    pub fn take_refused(&mut self) -> Option<BankId> {
        self.refused.take()
    }

    /// Adds a holder to an allocated frame.
    pub fn incref(&mut self, f: Frame) {
        if let Some(slot) = self.slot_mut(f) {
            debug_assert!(*slot > 0, "incref of a free frame");
            *slot += 1;
        }
    }

    /// Drops a holder; returns true when that was the last one and the frame is free.
    pub fn decref(&mut self, f: Frame) -> bool {
        let Some(i) = self.range_index(f) else {
            return false;
        };
        let r = &mut self.ranges[i];
        let slot = &mut r.refs[(f.0 - r.range.start) as usize];
        debug_assert!(*slot > 0, "decref of a free frame");
        *slot = slot.saturating_sub(1);
        if *slot > 0 {
            return false;
        }
        let tag = core::mem::replace(&mut r.tags[(f.0 - r.range.start) as usize], TAG_NONE);
        let bank = &mut self.banks[r.bank.0 as usize];
        match tag {
            TAG_COMMITTED => bank.backed = bank.backed.saturating_sub(1),
            TAG_CACHE => bank.cache = bank.cache.saturating_sub(1),
            _ => {}
        }
        bank.free.push(f);
        true
    }

    /// The number of holders of `f` (0 if free or not ours).
    pub fn refcount(&self, f: Frame) -> u32 {
        self.range_index(f).map_or(0, |i| {
            let r = &self.ranges[i];
            r.refs[(f.0 - r.range.start) as usize]
        })
    }

    /// Whether `f` is one of the server's RAM frames.
    pub fn owns(&self, f: Frame) -> bool {
        self.range_index(f).is_some()
    }

    /// Free frames in every bank.
    pub fn free_frames(&self) -> u64 {
        self.banks.iter().map(|b| b.free.len() as u64).sum()
    }

    /// Frames in every bank.
    pub fn total_frames(&self) -> u64 {
        self.banks.iter().map(|b| b.total).sum()
    }

    /// Reserves `pages` of bank `b`'s capacity for a mapping (strict commit accounting):
    /// false if that would commit more than the bank holds, or more than its free and
    /// reclaimable frames can back.
    pub fn charge(&mut self, b: BankId, pages: u64) -> bool {
        let Some(bank) = self.banks.get_mut(b.0 as usize) else {
            return false;
        };
        match bank.committed.checked_add(pages) {
            Some(n) if bank.could_commit(n) => {
                bank.committed = n;
                true
            }
            _ => false,
        }
    }

    /// Whether `pages` more could be charged to bank `b` once `refund` pages are returned.
    pub fn can_charge(&self, b: BankId, pages: u64, refund: u64) -> bool {
        let Some(bank) = self.banks.get(b.0 as usize) else {
            return false;
        };
        bank.committed
            .saturating_sub(refund)
            .checked_add(pages)
            .is_some_and(|n| bank.could_commit(n))
    }

    /// Returns capacity reserved with [`charge`](Self::charge).
    pub fn uncharge(&mut self, b: BankId, pages: u64) {
        if let Some(bank) = self.banks.get_mut(b.0 as usize) {
            debug_assert!(bank.committed >= pages, "uncharge beyond charge");
            bank.committed = bank.committed.saturating_sub(pages);
        }
    }

    /// Pages committed in bank `b`.
    pub fn committed(&self, b: BankId) -> u64 {
        self.banks.get(b.0 as usize).map_or(0, |b| b.committed)
    }

    /// Checks the reserve's counters against the frames' tags: frames backing charged
    /// pages and cached frames, per bank.
    pub fn check_tags(&self) -> Result<(), String> {
        let mut counts = alloc::vec![(0u64, 0u64); self.banks.len()];
        for r in &self.ranges {
            for (&n, &t) in r.refs.iter().zip(&r.tags) {
                if n == 0 && t != TAG_NONE {
                    return Err(String::from("a free frame keeps a use tag"));
                }
                let c = &mut counts[r.bank.0 as usize];
                match t {
                    TAG_COMMITTED => c.0 += 1,
                    TAG_CACHE => c.1 += 1,
                    _ => {}
                }
            }
        }
        for (b, (bank, &(backed, cache))) in self.banks.iter().zip(&counts).enumerate() {
            if (bank.backed, bank.cache) != (backed, cache) {
                return Err(alloc::format!(
                    "bank {b}: backed/cache {:?}, tags say {:?}",
                    (bank.backed, bank.cache),
                    (backed, cache)
                ));
            }
        }
        Ok(())
    }

    /// Every allocated frame with its reference count, for invariant checks.
    pub fn for_each_allocated(&self, mut f: impl FnMut(Frame, u32)) {
        for r in &self.ranges {
            for (i, &n) in r.refs.iter().enumerate() {
                if n > 0 {
                    f(Frame(r.range.start + i as u64), n);
                }
            }
        }
    }

    fn range_index(&self, f: Frame) -> Option<usize> {
        let i = self
            .ranges
            .partition_point(|r| r.range.start + r.range.count <= f.0);
        let r = self.ranges.get(i)?;
        (f.0 >= r.range.start).then_some(i)
    }

    fn slot_mut(&mut self, f: Frame) -> Option<&mut u32> {
        let i = self.range_index(f)?;
        let r = &mut self.ranges[i];
        Some(&mut r.refs[(f.0 - r.range.start) as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn two_banks() -> FrameAllocator {
        FrameAllocator::new(&[
            BankConfig {
                name: "normal".into(),
                ranges: vec![
                    FrameRange {
                        start: 100,
                        count: 4,
                    },
                    FrameRange {
                        start: 10,
                        count: 2,
                    },
                ],
            },
            BankConfig {
                name: "dma".into(),
                ranges: vec![FrameRange { start: 1, count: 2 }],
            },
        ])
    }

    #[test]
    fn allocates_only_from_the_asked_bank_until_empty() {
        let mut a = two_banks();
        let dma = a.bank_by_name("dma").unwrap();
        let f1 = a.alloc(dma, FrameUse::Uncommitted).unwrap();
        let f2 = a.alloc(dma, FrameUse::Uncommitted).unwrap();
        assert!(f1.0 < 3 && f2.0 < 3 && f1 != f2);
        assert_eq!(a.alloc(dma, FrameUse::Uncommitted), None);
        assert_eq!(a.free_frames(), 6);
        assert!(a.decref(f1));
        assert_eq!(a.alloc(dma, FrameUse::Uncommitted), Some(f1));
    }

    #[test]
    fn refcounts_free_on_last_holder() {
        let mut a = two_banks();
        let f = a.alloc(BankId::DEFAULT, FrameUse::Uncommitted).unwrap();
        a.incref(f);
        assert_eq!(a.refcount(f), 2);
        assert!(!a.decref(f));
        assert!(a.decref(f));
        assert_eq!(a.refcount(f), 0);
        assert_eq!(a.free_frames(), a.total_frames());
    }

    #[test]
    fn foreign_frames_are_not_ours() {
        let a = two_banks();
        assert!(!a.owns(Frame(0)));
        assert!(!a.owns(Frame(12)));
        assert!(a.owns(Frame(11)));
        assert!(!a.owns(Frame(104)));
        assert!(a.owns(Frame(103)));
    }

    #[test]
    fn commit_is_bounded_by_the_bank() {
        let mut a = two_banks();
        assert!(a.charge(BankId::DEFAULT, 6));
        assert!(!a.charge(BankId::DEFAULT, 1));
        assert!(!a.charge(BankId::DEFAULT, u64::MAX));
        a.uncharge(BankId::DEFAULT, 6);
        assert_eq!(a.committed(BankId::DEFAULT), 0);
        assert!(!a.charge(BankId(9), 1));
    }

    #[test]
    fn the_reserve_is_for_charged_pages_only() {
        let mut a = two_banks();
        let d = BankId::DEFAULT;
        assert!(a.charge(d, 4));
        // Two frames beyond the charge: uncommitted memory may have them, no more.
        let u1 = a.alloc(d, FrameUse::Uncommitted).unwrap();
        let _u2 = a.alloc(d, FrameUse::Uncommitted).unwrap();
        assert_eq!(a.alloc(d, FrameUse::Uncommitted), None);
        assert_eq!(a.alloc(d, FrameUse::Cache), None);
        // Every charged page still finds its frame.
        for _ in 0..4 {
            assert!(a.alloc(d, FrameUse::Committed).is_some());
        }
        assert_eq!(a.alloc(d, FrameUse::Committed), None);
        assert_eq!(a.check_tags(), Ok(()));
        // Freeing uncommitted memory makes room for uncommitted memory again.
        assert!(a.decref(u1));
        assert!(a.alloc(d, FrameUse::Uncommitted).is_some());
        assert_eq!(a.check_tags(), Ok(()));
    }

    #[test]
    fn a_refused_allocation_names_its_bank_once() {
        let mut a = two_banks();
        let dma = a.bank_by_name("dma").unwrap();
        assert_eq!(a.take_refused(), None);
        while a.alloc(dma, FrameUse::Uncommitted).is_some() {}
        // Allocations that succeed since do not clear it; reading it does.
        assert!(a.alloc(BankId::DEFAULT, FrameUse::Uncommitted).is_some());
        assert_eq!(a.take_refused(), Some(dma));
        assert_eq!(a.take_refused(), None);
        // A refusal for the reserve names the bank too.
        assert!(a.charge(BankId::DEFAULT, 5));
        assert_eq!(a.alloc(BankId::DEFAULT, FrameUse::Cache), None);
        assert_eq!(a.take_refused(), Some(BankId::DEFAULT));
    }

    #[test]
    fn a_charge_must_fit_in_what_is_free_or_reclaimable() {
        let mut a = two_banks();
        let d = BankId::DEFAULT;
        let held: Vec<Frame> = (0..4)
            .map(|_| a.alloc(d, FrameUse::Uncommitted).unwrap())
            .collect();
        let cached = a.alloc(d, FrameUse::Cache).unwrap();
        // One frame free and one cached (evictable): two pages may be charged, not three.
        assert!(!a.can_charge(d, 3, 0));
        assert!(a.charge(d, 2));
        assert!(!a.charge(d, 1));
        assert!(a.decref(cached));
        assert!(a.decref(held[0]));
        assert!(a.charge(d, 1));
        assert_eq!(a.check_tags(), Ok(()));
    }
}
