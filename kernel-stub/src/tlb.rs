//! The TLB invalidation hook, and how one operation batches its flushes.
//!
//! The stub calls the hook exactly when a present entry changed, after the operation's
//! last change and before it returns: once per changed leaf entry (`flush_page` with an
//! address inside the page, a 2 MiB page counting as one entry), or once in all
//! (`flush_all`) when more than [`Config::flush_threshold`](crate::Config::flush_threshold)
//! entries changed. Mapping into an empty slot flushes nothing.
//!
//! Two changes ride on a leaf's flush rather than getting their own: splitting a 2 MiB
//! page into 4 KiB entries (always followed by a change to a page inside it), and freeing
//! an emptied table (always after its last leaf was removed). That is sound because
//! `INVLPG` drops the TLB entry of whatever page size holds the address *and* every
//! paging-structure-cache entry of the current PCID; a hardware [`Tlb`] must give
//! `flush_page` that same strength.

use crate::MAX_FLUSH_THRESHOLD;
use crate::cap::SpaceCap;
use x86_64::VirtAddr;

/// Invalidates cached translations after present page-table entries changed.
///
/// On hardware: `INVLPG` (or a full flush) when `space` is loaded on this CPU, plus a
/// shootdown for other CPUs running it; in tests: counters.
pub trait Tlb {
    /// The page of `space` containing `addr` changed (it may be a 2 MiB page).
    fn flush_page(&mut self, space: SpaceCap, addr: VirtAddr);
    /// Many pages of `space` changed, or it was destroyed: drop all of its translations.
    fn flush_all(&mut self, space: SpaceCap);
}

/// A TLB hook that counts calls, for tests and the in-process runtime.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CountingTlb {
    /// `flush_page` calls.
    pub pages: u64,
    /// `flush_all` calls.
    pub alls: u64,
}

impl Tlb for CountingTlb {
    fn flush_page(&mut self, _space: SpaceCap, _addr: VirtAddr) {
        self.pages += 1;
    }

    fn flush_all(&mut self, _space: SpaceCap) {
        self.alls += 1;
    }
}

/// The hardware hook for one CPU: flushes when the changed space is the one loaded in CR3.
/// (A space that is not loaded has no cached translations: without PCIDs, loading CR3
/// flushes them.) Multi-CPU shootdown is the kernel's, around this.
#[cfg(all(target_os = "none", target_arch = "x86_64"))]
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalTlb {
    /// The space loaded in CR3, kept up to date by the kernel's context switch.
    pub active: Option<SpaceCap>,
}

#[cfg(all(target_os = "none", target_arch = "x86_64"))]
impl Tlb for LocalTlb {
    fn flush_page(&mut self, space: SpaceCap, addr: VirtAddr) {
        if self.active == Some(space) {
            x86_64::instructions::tlb::flush(addr);
        }
    }

    fn flush_all(&mut self, space: SpaceCap) {
        if self.active == Some(space) {
            x86_64::instructions::tlb::flush_all();
        }
    }
}

/// The flushes one operation owes, issued together when it ends.
pub(crate) struct FlushBatch {
    space: SpaceCap,
    pages: [VirtAddr; MAX_FLUSH_THRESHOLD],
    len: usize,
    threshold: usize,
    all: bool,
}

impl FlushBatch {
    /// An empty batch for `space` that turns into one `flush_all` past `threshold` pages.
    pub(crate) fn new(space: SpaceCap, threshold: usize) -> FlushBatch {
        FlushBatch {
            space,
            pages: [VirtAddr::zero(); MAX_FLUSH_THRESHOLD],
            len: 0,
            threshold: threshold.min(MAX_FLUSH_THRESHOLD),
            all: false,
        }
    }

    /// One present leaf entry covering `addr` changed.
    pub(crate) fn changed(&mut self, addr: VirtAddr) {
        if self.len < self.threshold {
            self.pages[self.len] = addr;
            self.len += 1;
        } else {
            self.all = true;
        }
    }

    /// Issues what is owed: nothing, each page, or one `flush_all`.
    pub(crate) fn issue(self, tlb: &mut impl Tlb) {
        if self.all {
            tlb.flush_all(self.space);
            return;
        }
        for &addr in &self.pages[..self.len] {
            tlb.flush_page(self.space, addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch_of(n: u64, threshold: usize) -> CountingTlb {
        let mut tlb = CountingTlb::default();
        let mut b = FlushBatch::new(SpaceCap::from_raw(0), threshold);
        for i in 0..n {
            b.changed(VirtAddr::new(i * 4096));
        }
        b.issue(&mut tlb);
        tlb
    }

    #[test]
    fn batches_flush_each_page_up_to_the_threshold_then_everything_once() {
        assert_eq!(batch_of(0, 4), CountingTlb { pages: 0, alls: 0 });
        assert_eq!(batch_of(4, 4), CountingTlb { pages: 4, alls: 0 });
        assert_eq!(batch_of(5, 4), CountingTlb { pages: 0, alls: 1 });
        assert_eq!(batch_of(1, 0), CountingTlb { pages: 0, alls: 1 });
        assert_eq!(
            batch_of(1000, usize::MAX),
            CountingTlb { pages: 0, alls: 1 }
        );
        assert_eq!(
            batch_of(MAX_FLUSH_THRESHOLD as u64, usize::MAX),
            CountingTlb {
                pages: MAX_FLUSH_THRESHOLD as u64,
                alls: 0
            }
        );
    }
}
