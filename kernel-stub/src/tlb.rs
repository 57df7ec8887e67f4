//! The TLB invalidation hook.

use crate::cap::SpaceCap;

/// Invalidates translations after a present page-table entry changed.
///
/// On hardware: `invlpg` when `space` is the active address space (or nothing, when
/// switching spaces reloads CR3 anyway); in tests: a counter.
pub trait Tlb {
    /// One page of `space` changed.
    fn flush_page(&mut self, space: SpaceCap, vaddr: u64);
    /// Many pages of `space` changed: flush everything of it.
    fn flush_all(&mut self, space: SpaceCap);
}

/// A TLB hook that counts calls, for tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CountingTlb {
    /// `flush_page` calls.
    pub pages: u64,
    /// `flush_all` calls.
    pub alls: u64,
}

impl Tlb for CountingTlb {
    fn flush_page(&mut self, _space: SpaceCap, _vaddr: u64) {
        self.pages += 1;
    }
    fn flush_all(&mut self, _space: SpaceCap) {
        self.alls += 1;
    }
}
