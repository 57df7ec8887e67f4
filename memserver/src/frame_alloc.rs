//! Frame allocator over named memory banks, with reference counts and commit accounting.
//!
//! Each bank keeps a free stack (O(1) allocate and free); every frame the server owns has
//! a reference count, so a frame shared by several mappings or copy-on-write holders
//! returns to its bank exactly when its last holder lets go.

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

struct Bank {
    name: String,
    free: Vec<Frame>,
    total: u64,
    committed: u64,
}

/// Reference counts of one contiguous range of frames.
struct RefRange {
    range: FrameRange,
    bank: BankId,
    refs: Vec<u32>,
}

/// All the RAM the server owns.
pub struct FrameAllocator {
    banks: Vec<Bank>,
    /// Sorted by start frame, for binary search.
    ranges: Vec<RefRange>,
}

impl FrameAllocator {
    /// Takes ownership of the frames of every bank.
    pub fn new(banks: &[BankConfig]) -> FrameAllocator {
        let mut out = FrameAllocator {
            banks: Vec::new(),
            ranges: Vec::new(),
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
                });
            }
            let total = free.len() as u64;
            out.banks.push(Bank {
                name: b.name.clone(),
                free,
                total,
                committed: 0,
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

    /// Takes a free frame from bank `b` with reference count 1 (contents not zeroed).
    pub fn alloc(&mut self, b: BankId) -> Option<Frame> {
        let frame = self.banks.get_mut(b.0 as usize)?.free.pop()?;
        let slot = self.slot_mut(frame).expect("free frames belong to a range");
        debug_assert_eq!(*slot, 0);
        *slot = 1;
        Some(frame)
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
        let bank = r.bank;
        self.banks[bank.0 as usize].free.push(f);
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
    /// false if that would commit more than the bank holds.
    pub fn charge(&mut self, b: BankId, pages: u64) -> bool {
        let Some(bank) = self.banks.get_mut(b.0 as usize) else {
            return false;
        };
        match bank.committed.checked_add(pages) {
            Some(n) if n <= bank.total => {
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
            .is_some_and(|n| n <= bank.total)
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
        let f1 = a.alloc(dma).unwrap();
        let f2 = a.alloc(dma).unwrap();
        assert!(f1.0 < 3 && f2.0 < 3 && f1 != f2);
        assert_eq!(a.alloc(dma), None);
        assert_eq!(a.free_frames(), 6);
        assert!(a.decref(f1));
        assert_eq!(a.alloc(dma), Some(f1));
    }

    #[test]
    fn refcounts_free_on_last_holder() {
        let mut a = two_banks();
        let f = a.alloc(BankId::DEFAULT).unwrap();
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
}
