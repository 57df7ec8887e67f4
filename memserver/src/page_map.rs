//! [`PageMap`]: one address space's installed pages kept as a map, and [`Spaces`], the
//! address spaces of a stub that keeps them so.
//!
//! A stub whose real page tables belong to someone else (the host kernel, for the hosted
//! runtime) or to nobody (the test kit's reference model) still has to answer
//! [`query`](crate::KernelStub::query) and
//! [`for_each_mapping`](crate::KernelStub::for_each_mapping) exactly: these are the
//! tables it answers from.

use crate::kernel_stub::{Frame, PageAttrs, StubError};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::ops::Range;
use ipc_proto::PAGE_SIZE;

/// The installed pages of one address space, by page address.
#[derive(Clone, Debug, Default)]
pub struct PageMap {
    pages: BTreeMap<u64, (Frame, PageAttrs)>,
}

/// The byte range of `pages` pages from `vaddr`, saturating at the top of the address
/// space.
fn span(vaddr: u64, pages: u64) -> Range<u64> {
    vaddr..vaddr.saturating_add(pages.saturating_mul(PAGE_SIZE))
}

impl PageMap {
    /// Installs `frame` at `vaddr`: refused for an unaligned address or one installed
    /// already (the stub contract: `map` never replaces).
    pub fn insert(&mut self, vaddr: u64, frame: Frame, attrs: PageAttrs) -> Result<(), StubError> {
        if !vaddr.is_multiple_of(PAGE_SIZE) || self.pages.contains_key(&vaddr) {
            return Err(StubError::Refused);
        }
        self.pages.insert(vaddr, (frame, attrs));
        Ok(())
    }

    /// Removes every installed page of `pages` pages from `vaddr`; returns their
    /// addresses, in order.
    pub fn remove(&mut self, vaddr: u64, pages: u64) -> Vec<u64> {
        let gone: Vec<u64> = self
            .pages
            .range(span(vaddr, pages))
            .map(|(&a, _)| a)
            .collect();
        for a in &gone {
            self.pages.remove(a);
        }
        gone
    }

    /// Sets the attributes of every installed page in the range; returns the runs of
    /// consecutive installed pages it changed, as address ranges.
    pub fn protect(&mut self, vaddr: u64, pages: u64, attrs: PageAttrs) -> Vec<Range<u64>> {
        let mut runs: Vec<Range<u64>> = Vec::new();
        for (&a, entry) in self.pages.range_mut(span(vaddr, pages)) {
            entry.1 = attrs;
            match runs.last_mut() {
                Some(run) if run.end == a => run.end = a + PAGE_SIZE,
                _ => runs.push(a..a + PAGE_SIZE),
            }
        }
        runs
    }

    /// What is installed at the page holding `vaddr`.
    pub fn get(&self, vaddr: u64) -> Option<(Frame, PageAttrs)> {
        self.pages.get(&(vaddr & !(PAGE_SIZE - 1))).copied()
    }

    /// Whether any page of the byte range `range` is installed.
    pub fn any_in(&self, range: Range<u64>) -> bool {
        self.pages.range(range).next().is_some()
    }

    /// Every installed page, in address order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, Frame, PageAttrs)> + '_ {
        self.pages.iter().map(|(&a, &(f, at))| (a, f, at))
    }
}

/// The address spaces of a stub, each a `T` (a [`PageMap`] plus whatever else the stub
/// keeps per space), named by small numbers that are reused once destroyed.
#[derive(Debug)]
pub struct Spaces<T> {
    slots: Vec<Option<T>>,
}

impl<T> Default for Spaces<T> {
    fn default() -> Self {
        Spaces { slots: Vec::new() }
    }
}

impl<T> Spaces<T> {
    /// Adds `space` in the lowest free slot and returns its number.
    pub fn create(&mut self, space: T) -> Result<u32, StubError> {
        let slot = match self.slots.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        let id = u32::try_from(slot).map_err(|_| StubError::OutOfSpaces)?;
        self.slots[slot] = Some(space);
        Ok(id)
    }

    /// Removes space `id`, returning it.
    pub fn destroy(&mut self, id: u32) -> Option<T> {
        self.slots.get_mut(id as usize)?.take()
    }

    /// Space `id`.
    pub fn get(&self, id: u32) -> Option<&T> {
        self.slots.get(id as usize)?.as_ref()
    }

    /// Space `id`, mutably.
    pub fn get_mut(&mut self, id: u32) -> Option<&mut T> {
        self.slots.get_mut(id as usize)?.as_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc_proto::CacheMode;

    const RW: PageAttrs = PageAttrs {
        writable: true,
        executable: false,
        cache: CacheMode::WriteBack,
    };
    const RO: PageAttrs = PageAttrs {
        writable: false,
        ..RW
    };

    #[test]
    fn insert_refuses_unaligned_and_installed_addresses() {
        let mut m = PageMap::default();
        assert_eq!(m.insert(0x1000, Frame(1), RW), Ok(()));
        assert_eq!(m.insert(0x1000, Frame(2), RW), Err(StubError::Refused));
        assert_eq!(m.insert(0x1001, Frame(2), RW), Err(StubError::Refused));
        assert_eq!(m.get(0x1fff), Some((Frame(1), RW)));
    }

    #[test]
    fn protect_reports_runs_of_installed_pages_only() {
        let mut m = PageMap::default();
        for a in [0x1000, 0x2000, 0x4000] {
            m.insert(a, Frame(a / 0x1000), RW).unwrap();
        }
        assert_eq!(m.protect(0, 16, RO), [0x1000..0x3000, 0x4000..0x5000]);
        assert!(m.iter().all(|(_, _, a)| a == RO));
        assert_eq!(m.remove(0x2000, u64::MAX), [0x2000, 0x4000]);
        assert!(m.any_in(0..0x2000) && !m.any_in(0x2000..u64::MAX));
    }

    #[test]
    fn space_numbers_are_reused_lowest_first() {
        let mut s = Spaces::default();
        assert_eq!(s.create('a'), Ok(0));
        assert_eq!(s.create('b'), Ok(1));
        assert_eq!(s.destroy(0), Some('a'));
        assert_eq!(s.destroy(0), None);
        assert_eq!(s.create('c'), Ok(0));
        assert_eq!(s.get(1), Some(&'b'));
    }
}
