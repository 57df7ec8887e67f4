//! The region map of one address space: non-overlapping [`Region`]s in a B-tree keyed by
//! start address, with splitting, merging and top-down placement.
//!
//! Lookup, insertion and removal are O(log n). Placement searches gaps top-down from a
//! cursor (the "free area cache" Linux used before its maple tree): the cursor sits at
//! the last placement, every gap above it is known to be no larger than `cached_hole`,
//! so a request that fits in none of those starts at the cursor and usually succeeds in
//! one step; a request small enough to fit above restarts from the top. Unmapping raises
//! the cursor over the freed gap. The common mmap/munmap pattern thus costs O(log n)
//! whatever the number of regions.

use crate::region::Region;
use alloc::collections::BTreeMap;
use ipc_proto::PAGE_SIZE;

/// Non-overlapping regions of one address space within a window `[lo, hi)`.
pub struct RegionMap {
    map: BTreeMap<u64, Region>,
    lo: u64,
    hi: u64,
    /// Top-down search starts here (see the module doc).
    cursor: u64,
    /// Largest gap known above `cursor`.
    cached_hole: u64,
}

impl RegionMap {
    /// An empty map whose placements stay within `[lo, hi)` (page-aligned).
    pub fn new(lo: u64, hi: u64) -> RegionMap {
        RegionMap {
            map: BTreeMap::new(),
            lo,
            hi,
            cursor: hi,
            cached_hole: 0,
        }
    }

    /// Number of regions.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no regions.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The window placements stay in.
    pub fn window(&self) -> (u64, u64) {
        (self.lo, self.hi)
    }

    /// Every region in address order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Region> + '_ {
        self.map.values()
    }

    /// The region containing `addr`.
    pub fn find(&self, addr: u64) -> Option<&Region> {
        self.map
            .range(..=addr)
            .next_back()
            .map(|(_, r)| r)
            .filter(|r| r.end > addr)
    }

    /// The region containing `addr`, mutable (changing its extent is the caller's
    /// business and must keep the map ordered and non-overlapping).
    pub fn find_mut(&mut self, addr: u64) -> Option<&mut Region> {
        self.map
            .range_mut(..=addr)
            .next_back()
            .map(|(_, r)| r)
            .filter(|r| r.end > addr)
    }

    /// The first region ending above `addr`.
    pub fn first_ending_above(&self, addr: u64) -> Option<&Region> {
        self.find(addr)
            .or_else(|| self.map.range(addr..).next().map(|(_, r)| r))
    }

    /// The first region starting at or above `addr`.
    pub fn next_at_or_above(&self, addr: u64) -> Option<&Region> {
        self.map.range(addr..).next().map(|(_, r)| r)
    }

    /// The last region starting below `addr`.
    pub fn prev_below(&self, addr: u64) -> Option<&Region> {
        self.map.range(..addr).next_back().map(|(_, r)| r)
    }

    /// The regions overlapping `[start, end)`, in address order.
    pub fn overlapping(&self, start: u64, end: u64) -> impl Iterator<Item = &Region> + '_ {
        let first = self.find(start).map_or(start, |r| r.start);
        self.map.range(first..end.max(first)).map(|(_, r)| r)
    }

    /// Whether nothing is mapped in `[start, end)`.
    pub fn is_free(&self, start: u64, end: u64) -> bool {
        self.overlapping(start, end).next().is_none()
    }

    /// Whether `[start, end)` is mapped without a hole.
    pub fn is_fully_mapped(&self, start: u64, end: u64) -> bool {
        let mut at = start;
        for r in self.overlapping(start, end) {
            if r.start > at {
                return false;
            }
            at = r.end;
            if at >= end {
                return true;
            }
        }
        at >= end
    }

    /// How many regions overlap `[start, end)`, and how many splitting at its ends would
    /// add (0, 1 or 2), in one walk.
    pub fn range_summary(&self, start: u64, end: u64) -> (usize, usize) {
        let (mut count, mut splits) = (0, 0);
        let mut last = None;
        for r in self.overlapping(start, end) {
            if count == 0 && r.start < start {
                splits += 1;
            }
            count += 1;
            last = Some(r);
        }
        if let Some(r) = last
            && r.end > end
        {
            splits += 1;
        }
        (count, splits)
    }

    /// How many regions splitting at `start` and `end` would add (0, 1 or 2).
    pub fn splits(&self, start: u64, end: u64) -> usize {
        let inside = |a: u64| self.find(a).is_some_and(|r| r.start < a);
        match (self.find(start), self.find(end)) {
            // One region strictly containing both ends splits in three.
            (Some(a), Some(b)) if a.start == b.start && a.start < start => 2,
            _ => usize::from(inside(start)) + usize::from(inside(end)),
        }
    }

    /// Inserts `r` into free space and merges it with compatible neighbours.
    pub fn insert(&mut self, r: Region) {
        debug_assert!(self.is_free(r.start, r.end), "insert over a mapping");
        let (start, end) = (r.start, r.end);
        self.map.insert(r.start, r);
        self.merge_between(start, end);
    }

    /// Removes everything in `[start, end)`, splitting regions that straddle the ends,
    /// and hands each removed piece to `removed`.
    pub fn remove_range(&mut self, start: u64, end: u64, mut removed: impl FnMut(Region)) {
        // Fast path: exactly one whole region (the common munmap of an mmap).
        if self.map.get(&start).is_some_and(|r| r.end == end) {
            if let Some(r) = self.map.remove(&start) {
                removed(r);
            }
            self.note_freed(start, end);
            return;
        }
        self.split_at(start);
        self.split_at(end);
        while let Some((&key, _)) = self.map.range(start..end).next() {
            if let Some(r) = self.map.remove(&key) {
                removed(r);
            }
        }
        self.note_freed(start, end);
    }

    /// Applies `f` to every piece of every region in `[start, end)` (splitting at the
    /// ends), then merges what became compatible.
    pub fn update_range(&mut self, start: u64, end: u64, mut f: impl FnMut(&mut Region)) {
        self.split_at(start);
        self.split_at(end);
        for (_, r) in self.map.range_mut(start..end) {
            f(r);
        }
        self.merge_between(start, end);
    }

    /// Extends the region starting at `old_start` down to `new_start` (growsdown stacks);
    /// the space below must be free.
    pub fn grow_down(&mut self, old_start: u64, new_start: u64) {
        debug_assert!(self.is_free(new_start, old_start));
        if let Some(mut r) = self.map.remove(&old_start) {
            r.start = new_start;
            // Only anonymous regions grow, so no offset needs adjusting.
            self.map.insert(new_start, r);
            self.merge_between(new_start, old_start);
        }
    }

    /// Splits the region containing `addr` so that a region starts at `addr`.
    fn split_at(&mut self, addr: u64) {
        let Some((_, r)) = self.map.range_mut(..=addr).next_back() else {
            return;
        };
        if r.start == addr || r.end <= addr {
            return;
        }
        let (lower, upper) = r.split_at(addr);
        *r = lower;
        self.map.insert(upper.start, upper);
    }

    /// Merges compatible neighbours among the regions touching `[start, end]`.
    fn merge_between(&mut self, start: u64, end: u64) {
        let mut key = self.prev_below(start).map_or(start, |r| r.start);
        loop {
            // One descent finds the current region and its successor.
            let mut it = self.map.range(key..);
            let Some((&k, cur)) = it.next() else { return };
            if k > end {
                return;
            }
            match it.next() {
                Some((&next_key, next)) if cur.can_merge(next) => {
                    let new_end = next.end;
                    self.map.remove(&next_key);
                    if let Some(c) = self.map.get_mut(&k) {
                        c.end = new_end;
                    }
                    key = k;
                }
                Some((&next_key, _)) => key = next_key,
                None => return,
            }
        }
    }

    /// Records that `[start, end)` became free: raise the cursor over the whole gap now
    /// containing it, so the gap is searched again.
    fn note_freed(&mut self, _start: u64, end: u64) {
        let gap_top = self
            .next_at_or_above(end)
            .map_or(self.hi, |r| r.start)
            .min(self.hi);
        if gap_top > self.cursor {
            self.cursor = gap_top;
        }
    }

    /// Finds `len` bytes (page multiple, non-zero) of free space inside `[lo, hi)`, as high
    /// as the search allows: the highest fitting gap when searching from the top.
    pub fn find_free_top_down(&mut self, len: u64, lo: u64, hi: u64) -> Option<u64> {
        let lo = lo.max(self.lo);
        let hi = hi.min(self.hi);
        if hi < lo || hi - lo < len {
            return None;
        }
        let default_window = lo == self.lo && hi == self.hi;
        if !default_window {
            return self.scan_down(len, lo, hi, hi).map(|(addr, _)| addr);
        }
        if len <= self.cached_hole || self.cursor > hi || self.cursor < lo {
            self.cursor = hi;
            self.cached_hole = 0;
        }
        let from = self.cursor;
        match self.scan_down(len, lo, hi, from) {
            Some((addr, largest_skipped)) => {
                self.cursor = addr;
                self.cached_hole = self.cached_hole.max(largest_skipped);
                Some(addr)
            }
            None if from < hi => {
                // Something above the cursor may fit after all: one full search.
                let (addr, largest_skipped) = self.scan_down(len, lo, hi, hi)?;
                self.cursor = addr;
                self.cached_hole = largest_skipped;
                Some(addr)
            }
            None => None,
        }
    }

    /// Finds `len` bytes of free space in `[lo, hi)`, which may lie below the window (a
    /// second, low window's placements), as high as it fits.
    pub fn find_free_in(&self, len: u64, lo: u64, hi: u64) -> Option<u64> {
        if hi < lo || hi - lo < len {
            return None;
        }
        self.scan_down(len, lo, hi, hi).map(|(addr, _)| addr)
    }

    /// Walks gaps downward from `top`; returns the placement and the largest gap skipped.
    fn scan_down(&self, len: u64, lo: u64, hi: u64, mut top: u64) -> Option<(u64, u64)> {
        let mut largest = 0;
        top = top.min(hi);
        loop {
            let below = self.prev_below(top);
            if let Some(r) = below.filter(|r| r.end > top) {
                // `top` is inside a region (the cursor went stale): resume below it.
                top = r.start;
                continue;
            }
            let gap_lo = below.map_or(lo, |r| r.end).max(lo);
            if top >= gap_lo && top - gap_lo >= len {
                return Some((top - len, largest));
            }
            largest = largest.max(top.saturating_sub(gap_lo));
            match below {
                Some(r) if r.start > lo => top = r.start,
                _ => return None,
            }
        }
    }
}

/// Rounds a length up to whole pages; `None` when that overflows.
pub fn page_round_up(len: u64) -> Option<u64> {
    len.checked_add(PAGE_SIZE - 1).map(|v| v & !(PAGE_SIZE - 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame_alloc::BankId;
    use crate::region::RegionBacking;
    use alloc::vec::Vec;
    use ipc_proto::{CacheMode, Prot};
    use proptest::prelude::*;

    const P: u64 = PAGE_SIZE;

    fn anon(start: u64, end: u64, prot: Prot) -> Region {
        Region {
            start,
            end,
            prot,
            max_prot: Prot::all(),
            shared: false,
            backing: RegionBacking::Anon {
                bank: BankId::DEFAULT,
            },
            locked: false,
            growsdown: false,
            noreserve: false,
            accounted: false,
            cache: CacheMode::WriteBack,
            inherit: false,
            denywrite: false,
            dontfork: false,
            access: crate::region::AccessPattern::Normal,
        }
    }

    fn spans(m: &RegionMap) -> Vec<(u64, u64)> {
        m.iter().map(|r| (r.start, r.end)).collect()
    }

    #[test]
    fn adjacent_compatible_regions_merge() {
        let mut m = RegionMap::new(P, 100 * P);
        m.insert(anon(10 * P, 12 * P, Prot::READ));
        m.insert(anon(12 * P, 13 * P, Prot::READ));
        m.insert(anon(9 * P, 10 * P, Prot::READ));
        assert_eq!(spans(&m), [(9 * P, 13 * P)]);
        m.insert(anon(13 * P, 14 * P, Prot::WRITE));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn remove_middle_splits_in_two() {
        let mut m = RegionMap::new(P, 100 * P);
        m.insert(anon(10 * P, 20 * P, Prot::READ));
        assert_eq!(m.splits(12 * P, 13 * P), 2);
        let mut removed = Vec::new();
        m.remove_range(12 * P, 13 * P, |r| removed.push((r.start, r.end)));
        assert_eq!(removed, [(12 * P, 13 * P)]);
        assert_eq!(spans(&m), [(10 * P, 12 * P), (13 * P, 20 * P)]);
    }

    #[test]
    fn update_then_restore_merges_back() {
        let mut m = RegionMap::new(P, 100 * P);
        m.insert(anon(10 * P, 13 * P, Prot::READ | Prot::WRITE));
        m.update_range(11 * P, 12 * P, |r| r.prot = Prot::READ);
        assert_eq!(m.len(), 3);
        m.update_range(11 * P, 12 * P, |r| r.prot = Prot::READ | Prot::WRITE);
        assert_eq!(spans(&m), [(10 * P, 13 * P)]);
    }

    #[test]
    fn holes_and_full_coverage() {
        let mut m = RegionMap::new(P, 100 * P);
        m.insert(anon(10 * P, 12 * P, Prot::READ));
        m.insert(anon(12 * P, 14 * P, Prot::WRITE));
        m.insert(anon(15 * P, 16 * P, Prot::WRITE));
        assert!(m.is_fully_mapped(10 * P, 14 * P));
        assert!(m.is_fully_mapped(11 * P, 13 * P));
        assert!(!m.is_fully_mapped(11 * P, 16 * P));
        assert!(!m.is_fully_mapped(9 * P, 11 * P));
        assert!(m.is_free(14 * P, 15 * P));
        assert!(!m.is_free(13 * P, 15 * P));
    }

    #[test]
    fn top_down_placement_takes_the_highest_fitting_gap() {
        let mut m = RegionMap::new(P, 100 * P);
        assert_eq!(m.find_free_top_down(P, P, 100 * P), Some(99 * P));
        m.insert(anon(99 * P, 100 * P, Prot::READ));
        m.insert(anon(90 * P, 98 * P, Prot::WRITE));
        // The 1-page hole at 98 is the highest gap for one page...
        assert_eq!(m.find_free_top_down(P, P, 100 * P), Some(98 * P));
        m.insert(anon(98 * P, 99 * P, Prot::EXEC));
        // ...and two pages go below 90.
        assert_eq!(m.find_free_top_down(2 * P, P, 100 * P), Some(88 * P));
    }

    #[test]
    fn freed_space_above_the_cursor_is_found_again() {
        let mut m = RegionMap::new(P, 100 * P);
        for _ in 0..5 {
            let a = m.find_free_top_down(2 * P, P, 100 * P).unwrap();
            m.insert(anon(a, a + 2 * P, Prot::READ));
            m.update_range(a, a + P, |r| r.prot = Prot::WRITE); // keep them distinct
        }
        m.remove_range(96 * P, 98 * P, |_| {});
        assert_eq!(m.find_free_top_down(2 * P, P, 100 * P), Some(96 * P));
    }

    #[test]
    fn full_window_and_window_limits() {
        let mut m = RegionMap::new(P, 10 * P);
        assert_eq!(m.find_free_top_down(9 * P, P, 10 * P), Some(P));
        assert_eq!(m.find_free_top_down(10 * P, P, 10 * P), None);
        assert_eq!(m.find_free_top_down(!(P - 1), P, 10 * P), None);
        m.insert(anon(P, 10 * P, Prot::READ));
        assert_eq!(m.find_free_top_down(P, P, 10 * P), None);
        // A narrower window (MAP_32BIT style).
        let mut m = RegionMap::new(P, 100 * P);
        m.insert(anon(5 * P, 6 * P, Prot::READ));
        assert_eq!(m.find_free_top_down(P, P, 6 * P), Some(4 * P));
    }

    #[test]
    fn page_rounding_overflow() {
        assert_eq!(page_round_up(1), Some(P));
        assert_eq!(page_round_up(P), Some(P));
        assert_eq!(page_round_up(0), Some(0));
        assert_eq!(page_round_up(u64::MAX), None);
        assert_eq!(page_round_up(u64::MAX - P + 1), Some(u64::MAX - P + 1));
    }

    /// A naive model: a sorted list of (start, end, prot).
    #[derive(Default)]
    struct Model(Vec<(u64, u64, u32)>);

    impl Model {
        fn free(&self, s: u64, e: u64) -> bool {
            self.0.iter().all(|&(a, b, _)| b <= s || a >= e)
        }
        fn remove(&mut self, s: u64, e: u64) {
            let mut out = Vec::new();
            for &(a, b, p) in &self.0 {
                if b <= s || a >= e {
                    out.push((a, b, p));
                    continue;
                }
                if a < s {
                    out.push((a, s, p));
                }
                if b > e {
                    out.push((e, b, p));
                }
            }
            self.0 = out;
        }
        fn set(&mut self, s: u64, e: u64, prot: u32) {
            let mut out = Vec::new();
            for &(a, b, p) in &self.0 {
                if b <= s || a >= e {
                    out.push((a, b, p));
                    continue;
                }
                if a < s {
                    out.push((a, s, p));
                }
                out.push((a.max(s), b.min(e), prot));
                if b > e {
                    out.push((e, b, p));
                }
            }
            self.0 = out;
        }
        fn insert(&mut self, s: u64, e: u64, p: u32) {
            self.0.push((s, e, p));
        }
        /// Merged, sorted spans: what the map must show.
        fn canonical(&self) -> Vec<(u64, u64, u32)> {
            let mut v = self.0.clone();
            v.sort();
            let mut out: Vec<(u64, u64, u32)> = Vec::new();
            for (a, b, p) in v {
                match out.last_mut() {
                    Some(last) if last.1 == a && last.2 == p => last.1 = b,
                    _ => out.push((a, b, p)),
                }
            }
            out
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Place(u64, u32),
        Fixed(u64, u64, u32),
        Remove(u64, u64),
        Protect(u64, u64, u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        let page = 1u64..64;
        prop_oneof![
            (1u64..6, 1u32..4).prop_map(|(n, p)| Op::Place(n, p)),
            (page.clone(), 1u64..6, 1u32..4).prop_map(|(a, n, p)| Op::Fixed(a, n, p)),
            (page.clone(), 1u64..10).prop_map(|(a, n)| Op::Remove(a, n)),
            (page, 1u64..10, 1u32..4).prop_map(|(a, n, p)| Op::Protect(a, n, p)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// After any sequence of operations the map equals the merged model, regions never
        /// overlap, and placement finds space exactly when the model has a gap.
        #[test]
        fn map_agrees_with_model(ops in prop::collection::vec(op(), 1..80)) {
            let (lo, hi) = (P, 64 * P);
            let mut m = RegionMap::new(lo, hi);
            let mut model = Model::default();
            for op in ops {
                match op {
                    Op::Place(n, p) => {
                        let len = n * P;
                        let got = m.find_free_top_down(len, lo, hi);
                        let model_fit = (lo / P..=(hi - len) / P).rev().map(|a| a * P)
                            .find(|&a| model.free(a, a + len));
                        prop_assert_eq!(got.is_some(), model_fit.is_some());
                        if let Some(a) = got {
                            prop_assert!(model.free(a, a + len) && a >= lo && a + len <= hi);
                            m.insert(anon(a, a + len, Prot::from_bits_truncate(p)));
                            model.insert(a, a + len, p);
                        }
                    }
                    Op::Fixed(a, n, p) => {
                        let (s, e) = (a * P, ((a + n) * P).min(hi));
                        if s >= e { continue; }
                        m.remove_range(s, e, |_| {});
                        model.remove(s, e);
                        m.insert(anon(s, e, Prot::from_bits_truncate(p)));
                        model.insert(s, e, p);
                    }
                    Op::Remove(a, n) => {
                        let (s, e) = (a * P, (a + n) * P);
                        let before = m.len();
                        let splits = m.splits(s, e);
                        let (count, splits2) = m.range_summary(s, e);
                        prop_assert_eq!(splits, splits2);
                        let mut removed = 0;
                        m.remove_range(s, e, |_| removed += 1);
                        prop_assert_eq!(count, removed);
                        prop_assert!(m.len() <= before + splits);
                        prop_assert_eq!(m.len() + removed, before + splits);
                        model.remove(s, e);
                    }
                    Op::Protect(a, n, p) => {
                        let (s, e) = (a * P, (a + n) * P);
                        m.update_range(s, e, |r| r.prot = Prot::from_bits_truncate(p));
                        model.set(s, e, p);
                    }
                }
                let got: Vec<_> = m.iter().map(|r| (r.start, r.end, r.prot.bits())).collect();
                prop_assert_eq!(got, model.canonical());
                for w in m.iter().collect::<Vec<_>>().windows(2) {
                    prop_assert!(w[0].end <= w[1].start);
                }
            }
        }
    }
}
