//! Address spaces: slots with generations, creation (a root from the pool, the kernel half
//! from the template) and destruction (every table back to the pool).

use crate::cap::SpaceCap;
use crate::error::Error;
use crate::grant::StateStorage;
use crate::phys::PhysMemory;
use crate::stub::Stub;
use crate::table::USER_ROOT_ENTRIES;
use crate::tlb::Tlb;
use x86_64::structures::paging::PhysFrame;
use x86_64::structures::paging::page_table::PageTableEntry;

/// One space slot. A slot whose generation reached `u32::MAX` is retired for good, so a
/// generation never repeats and a stale capability can never name a new space.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Slot {
    root: Option<PhysFrame>,
    generation: u32,
}

impl<P: PhysMemory, T: Tlb, S: StateStorage, const N: usize> Stub<P, T, S, N> {
    /// Makes an empty address space; its root table comes from the pool. Refuses with
    /// [`Error::OutOfSpaces`] (no free slot), [`Error::OutOfTableFrames`], or
    /// [`Error::NotBacked`] (the kernel template cannot be read).
    pub fn create_space(&mut self) -> Result<SpaceCap, Error> {
        let slot = self
            .slots
            .iter()
            .position(|s| s.root.is_none() && s.generation < u32::MAX)
            .ok_or(Error::OutOfSpaces)?;
        let kernel_half = self.kernel_half()?;
        let root = self.take_table()?;
        if let (Some(upper), Some(t)) = (kernel_half, self.phys.table_mut(root)) {
            for (entry, from) in t.iter_mut().skip(USER_ROOT_ENTRIES).zip(upper) {
                *entry = from;
            }
        }
        self.slots[slot].root = Some(root);
        Ok(SpaceCap {
            // `new` asserts N fits in u32.
            slot: slot as u32,
            generation: self.slots[slot].generation,
        })
    }

    /// The template's kernel-half root entries, if there is a template.
    fn kernel_half(&self) -> Result<Option<[PageTableEntry; 256]>, Error> {
        let Some(template) = self.cfg.kernel_template else {
            return Ok(None);
        };
        let t = self.phys.table(template).ok_or(Error::NotBacked)?;
        Ok(Some(core::array::from_fn(|i| {
            t[USER_ROOT_ENTRIES + i].clone()
        })))
    }

    /// Destroys a space: every mapping goes (frames' counts drop), every table returns to
    /// the pool, and the capability goes stale. The kernel must not have the space loaded
    /// on any CPU.
    pub fn destroy_space(&mut self, space: SpaceCap) -> Result<(), Error> {
        let root = self.root(space)?;
        let had_mappings = self.has_user_entries(root)?;
        self.free_user_half(root)?;
        self.free_table(root);
        let slot = &mut self.slots[space.slot as usize];
        slot.root = None;
        slot.generation += 1;
        if had_mappings {
            self.tlb.flush_all(space);
        }
        Ok(())
    }

    /// The physical root table of a space, for loading CR3.
    pub fn root_table(&self, space: SpaceCap) -> Result<PhysFrame, Error> {
        self.root(space)
    }

    /// How many spaces are live.
    pub fn live_spaces(&self) -> usize {
        self.slots.iter().filter(|s| s.root.is_some()).count()
    }

    /// Validates a space capability: its slot exists and holds a live space of its
    /// generation ([`Error::BadSpace`]), unless that generation was destroyed
    /// ([`Error::StaleSpace`]).
    pub(crate) fn root(&self, space: SpaceCap) -> Result<PhysFrame, Error> {
        let slot = self.slots.get(space.slot as usize).ok_or(Error::BadSpace)?;
        if space.generation < slot.generation {
            return Err(Error::StaleSpace);
        }
        match slot.root {
            Some(root) if space.generation == slot.generation => Ok(root),
            _ => Err(Error::BadSpace),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{RW, data, page, stub};

    #[test]
    fn spaces_take_a_root_and_give_it_back() {
        let mut s = stub(4);
        let a = s.create_space().unwrap();
        assert_eq!(
            (s.tables_in_use(), s.pool_free(), s.live_spaces()),
            (1, 3, 1)
        );
        assert!(s.root_table(a).is_ok());
        s.destroy_space(a).unwrap();
        assert_eq!(
            (s.tables_in_use(), s.pool_free(), s.live_spaces()),
            (0, 4, 0)
        );
        assert_eq!(s.tlb().alls, 0, "an empty space had nothing cached");
    }

    #[test]
    fn stale_and_forged_capabilities_are_told_apart() {
        let mut s = stub(4);
        let a = s.create_space().unwrap();
        s.destroy_space(a).unwrap();
        let b = s.create_space().unwrap();
        assert_eq!(b.slot, a.slot, "the slot is reused");
        assert_ne!(b, a);
        assert_eq!(s.root_table(a), Err(Error::StaleSpace));
        assert_eq!(s.destroy_space(a), Err(Error::StaleSpace));
        let ahead = SpaceCap {
            generation: b.generation + 1,
            ..b
        };
        assert_eq!(s.root_table(ahead), Err(Error::BadSpace));
        let unused = SpaceCap {
            slot: 5,
            generation: 0,
        };
        assert_eq!(s.root_table(unused), Err(Error::BadSpace));
        assert_eq!(
            s.root_table(SpaceCap::from_raw(u64::from(u32::MAX))),
            Err(Error::BadSpace)
        );
        assert_eq!(
            s.root_table(SpaceCap::from_raw(b.to_raw())),
            Ok(s.root_table(b).unwrap())
        );
    }

    #[test]
    fn slots_and_pool_limit_creation() {
        let mut s = stub(9);
        let caps: std::vec::Vec<SpaceCap> = (0..8).map(|_| s.create_space().unwrap()).collect();
        assert_eq!(s.create_space(), Err(Error::OutOfSpaces));
        s.destroy_space(caps[3]).unwrap();
        let mut s2 = stub(1);
        s2.create_space().unwrap();
        assert_eq!(s2.create_space(), Err(Error::OutOfTableFrames));
        assert_eq!(s2.live_spaces(), 1);
    }

    #[test]
    fn a_slot_retires_when_its_generation_runs_out() {
        let mut s = stub(2);
        s.slots[0].generation = u32::MAX - 1;
        let last = s.create_space().unwrap();
        assert_eq!(last.slot, 0);
        s.destroy_space(last).unwrap();
        let next = s.create_space().unwrap();
        assert_eq!(next.slot, 1, "slot 0 is retired");
        assert_eq!(s.root_table(last), Err(Error::StaleSpace));
        assert_eq!(
            s.root_table(SpaceCap {
                slot: 0,
                generation: u32::MAX
            }),
            Err(Error::BadSpace)
        );
    }

    #[test]
    fn destroying_a_space_with_mappings_flushes_it_and_frees_every_table() {
        let mut s = stub(8);
        let a = s.create_space().unwrap();
        let f = data(&s, 0);
        s.map(a, page(0x40_0000), f, RW).unwrap();
        s.map(a, page(0x80_0000_0000), f, RW).unwrap();
        assert_eq!(s.tables_in_use(), 7);
        s.destroy_space(a).unwrap();
        assert_eq!((s.tables_in_use(), s.pool_free(), s.tlb().alls), (0, 8, 1));
        assert_eq!(s.frame_use(f), Ok(crate::FrameUse::Data { mappings: 0 }));
    }
}
