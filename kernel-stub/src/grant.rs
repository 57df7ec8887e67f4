//! Grants: the ranges of frames the kernel gave the server, and what each RAM frame is
//! used for now.
//!
//! Frame capabilities are minted from grants only. RAM frames have a [`FrameState`] in
//! caller-provided storage (no allocation): a count of user mappings, or "page-table
//! frame" (pooled or in use). Device frames have no state: they are never tables and
//! their mappings are not counted.

use crate::cap::{FrameCap, FrameKind, KernelCapability};
use crate::error::Error;
use crate::phys::PhysMemory;
use crate::stub::Stub;
use crate::tlb::Tlb;
use crate::{MAX_GRANTS, PAGE_SIZE};
use x86_64::PhysAddr;
use x86_64::structures::paging::PhysFrame;
use x86_64::structures::paging::frame::PhysFrameRange;

/// Storage for the state of every granted RAM frame: a `Box<[FrameState]>`, a static
/// slice, ... (one entry per RAM frame ever granted).
pub trait StateStorage: AsRef<[FrameState]> + AsMut<[FrameState]> {}

impl<S: AsRef<[FrameState]> + AsMut<[FrameState]>> StateStorage for S {}

/// The state of one granted RAM frame. Opaque: the stub alone changes it; read it with
/// [`Stub::frame_use`]. Fill fresh storage with [`FrameState::UNUSED`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameState(u32);

impl FrameState {
    /// An unmapped data frame: what storage holds before a grant.
    pub const UNUSED: FrameState = FrameState(0);
    /// In the pool of page-table frames.
    pub(crate) const POOLED: FrameState = FrameState(u32::MAX);
    /// In use as a page table.
    pub(crate) const TABLE: FrameState = FrameState(u32::MAX - 1);
    /// The most user mappings one frame can have.
    pub(crate) const MAX_MAPPINGS: u32 = u32::MAX - 2;

    /// How many user mappings point at a data frame; `None` for a table frame.
    pub(crate) fn mappings(self) -> Option<u32> {
        (self.0 <= Self::MAX_MAPPINGS).then_some(self.0)
    }

    fn with_mappings(n: u32) -> FrameState {
        FrameState(n.min(Self::MAX_MAPPINGS))
    }
}

/// What a granted frame is used for, as [`Stub::frame_use`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameUse {
    /// A RAM data frame with this many user mappings (0: free for anything).
    Data {
        /// User mappings pointing at the frame.
        mappings: u32,
    },
    /// A RAM frame in the pool of page-table frames.
    Pooled,
    /// A RAM frame in use as a page table.
    Table,
    /// A device frame (mappings are not counted).
    Device,
}

/// A range of frames granted to the server, as the kernel gets it back from
/// [`Stub::grant_ram`] / [`Stub::grant_device`]: the way to mint capabilities for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    frames: PhysFrameRange,
    kind: FrameKind,
}

impl Grant {
    /// The granted frames.
    pub fn frames(&self) -> PhysFrameRange {
        self.frames
    }

    /// Their kind.
    pub fn kind(&self) -> FrameKind {
        self.kind
    }

    /// How many frames were granted (never 0).
    pub fn len(&self) -> u64 {
        self.frames.len()
    }

    /// Always false: empty grants are refused. (Here for `len`'s sake.)
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The capability for the `index`-th granted frame.
    pub fn cap(&self, index: u64) -> Option<FrameCap> {
        if index >= self.len() {
            return None;
        }
        Some(FrameCap {
            frame: self.frames.start + index,
            kind: self.kind,
        })
    }

    /// Capabilities for every granted frame, in address order.
    pub fn caps(&self) -> impl Iterator<Item = FrameCap> + use<> {
        let kind = self.kind;
        self.frames.map(move |frame| FrameCap { frame, kind })
    }

    fn contains(&self, frame: PhysFrame) -> bool {
        self.frames.start <= frame && frame < self.frames.end
    }
}

#[derive(Clone, Copy)]
struct Entry {
    grant: Grant,
    /// Index of the grant's first frame in the state storage (RAM only).
    state_base: usize,
}

/// The grant table and the per-frame state storage.
pub(crate) struct Grants<S> {
    entries: [Option<Entry>; MAX_GRANTS],
    states: S,
    states_used: usize,
}

impl<S: StateStorage> Grants<S> {
    pub(crate) fn new(states: S) -> Grants<S> {
        Grants {
            entries: [None; MAX_GRANTS],
            states,
            states_used: 0,
        }
    }

    /// Records a grant: non-empty ([`Error::BadRange`]), overlapping no other
    /// ([`Error::GrantOverlap`]), with room in the table ([`Error::GrantTableFull`]) and,
    /// for RAM, in the state storage ([`Error::StateStorageFull`]).
    fn add(&mut self, frames: PhysFrameRange, kind: FrameKind) -> Result<Grant, Error> {
        if frames.is_empty() {
            return Err(Error::BadRange);
        }
        let grant = Grant { frames, kind };
        let overlaps =
            |e: &Entry| frames.start < e.grant.frames.end && e.grant.frames.start < frames.end;
        if self.entries.iter().flatten().any(overlaps) {
            return Err(Error::GrantOverlap);
        }
        let slot = self
            .entries
            .iter()
            .position(Option::is_none)
            .ok_or(Error::GrantTableFull)?;
        let need = match kind {
            FrameKind::Ram => usize::try_from(frames.len()).map_err(|_| Error::StateStorageFull)?,
            FrameKind::Device => 0,
        };
        let end = self
            .states_used
            .checked_add(need)
            .ok_or(Error::StateStorageFull)?;
        let fresh = self
            .states
            .as_mut()
            .get_mut(self.states_used..end)
            .ok_or(Error::StateStorageFull)?;
        fresh.fill(FrameState::UNUSED);
        self.entries[slot] = Some(Entry {
            grant,
            state_base: self.states_used,
        });
        self.states_used = end;
        Ok(grant)
    }

    fn entry(&self, frame: PhysFrame) -> Option<&Entry> {
        self.entries
            .iter()
            .flatten()
            .find(|e| e.grant.contains(frame))
    }

    /// The kind `frame` was granted as.
    pub(crate) fn kind_of(&self, frame: PhysFrame) -> Option<FrameKind> {
        self.entry(frame).map(|e| e.grant.kind)
    }

    /// Re-validates a capability: its frame is granted, as its kind.
    pub(crate) fn check(&self, cap: FrameCap) -> Result<(), Error> {
        match self.kind_of(cap.frame) {
            Some(kind) if kind == cap.kind => Ok(()),
            _ => Err(Error::NotGranted),
        }
    }

    fn state_index(&self, frame: PhysFrame) -> Option<usize> {
        let e = self.entry(frame)?;
        if e.grant.kind != FrameKind::Ram {
            return None;
        }
        let offset = usize::try_from(frame - e.grant.frames.start).ok()?;
        Some(e.state_base + offset)
    }

    /// The state of a granted RAM frame.
    pub(crate) fn state(&self, frame: PhysFrame) -> Option<FrameState> {
        let i = self.state_index(frame)?;
        self.states.as_ref().get(i).copied()
    }

    /// Sets the state of a granted RAM frame (others have none).
    pub(crate) fn set_state(&mut self, frame: PhysFrame, state: FrameState) {
        if let Some(i) = self.state_index(frame)
            && let Some(s) = self.states.as_mut().get_mut(i)
        {
            *s = state;
        }
    }

    /// Whether `frame` is a page-table frame (pooled or in use).
    pub(crate) fn is_table(&self, frame: PhysFrame) -> bool {
        self.state(frame).is_some_and(|s| s.mappings().is_none())
    }

    /// Checks that `extra` more user mappings of `frame` fit in its count.
    pub(crate) fn check_room(&self, frame: PhysFrame, extra: u64) -> Result<(), Error> {
        let Some(n) = self.state(frame).and_then(FrameState::mappings) else {
            return Ok(());
        };
        match u64::from(n).checked_add(extra) {
            Some(total) if total <= u64::from(FrameState::MAX_MAPPINGS) => Ok(()),
            _ => Err(Error::TooManyMappings),
        }
    }

    /// One more user mapping points at `frame` (RAM only; callers checked the room).
    pub(crate) fn mapped(&mut self, frame: PhysFrame) {
        if let Some(n) = self.state(frame).and_then(FrameState::mappings) {
            self.set_state(frame, FrameState::with_mappings(n.saturating_add(1)));
        }
    }

    /// One user mapping of `frame` went away.
    pub(crate) fn unmapped(&mut self, frame: PhysFrame) {
        if let Some(n) = self.state(frame).and_then(FrameState::mappings) {
            self.set_state(frame, FrameState::with_mappings(n.saturating_sub(1)));
        }
    }

    /// What a capability's frame is used for.
    fn use_of(&self, cap: FrameCap) -> Result<FrameUse, Error> {
        self.check(cap)?;
        Ok(match self.state(cap.frame) {
            None => FrameUse::Device,
            Some(FrameState::POOLED) => FrameUse::Pooled,
            Some(FrameState::TABLE) => FrameUse::Table,
            Some(s) => FrameUse::Data {
                mappings: s.mappings().unwrap_or(0),
            },
        })
    }
}

impl<P: PhysMemory, T: Tlb, S: StateStorage, const N: usize> Stub<P, T, S, N> {
    /// Grants the server RAM `frames`: they can be mapped, donated as page tables, read
    /// and written. Returns the grant, from which the kernel mints capabilities.
    pub fn grant_ram(
        &mut self,
        _kernel: &impl KernelCapability,
        frames: PhysFrameRange,
    ) -> Result<Grant, Error> {
        self.grants.add(frames, FrameKind::Ram)
    }

    /// Grants the server device `frames`: they can be mapped (any cache mode), never
    /// become page tables.
    pub fn grant_device(
        &mut self,
        _kernel: &impl KernelCapability,
        frames: PhysFrameRange,
    ) -> Result<Grant, Error> {
        self.grants.add(frames, FrameKind::Device)
    }

    /// The capability for the frame at `addr`, for a syscall layer handed a raw address:
    /// refuses an unaligned address ([`Error::Unaligned`]) or a frame never granted
    /// ([`Error::NotGranted`]).
    pub fn frame_cap(&self, addr: PhysAddr) -> Result<FrameCap, Error> {
        let frame = PhysFrame::from_start_address(addr).map_err(|_| Error::Unaligned)?;
        let kind = self.grants.kind_of(frame).ok_or(Error::NotGranted)?;
        Ok(FrameCap { frame, kind })
    }

    /// What `cap`'s frame is used for now.
    pub fn frame_use(&self, cap: FrameCap) -> Result<FrameUse, Error> {
        self.grants.use_of(cap)
    }
}

/// The frame `index` frames after `first`, if it is a valid physical frame.
pub(crate) fn frame_after(first: PhysFrame, index: u64) -> Option<PhysFrame> {
    let addr = index
        .checked_mul(PAGE_SIZE)
        .and_then(|off| first.start_address().as_u64().checked_add(off))?;
    PhysAddr::try_new(addr)
        .ok()
        .map(PhysFrame::containing_address)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{K, frames, fresh};

    #[test]
    fn grants_refuse_overlap_emptiness_and_full_storage() {
        let mut s = fresh(16);
        let ram = s.grant_ram(&K, frames(0x100, 8)).unwrap();
        assert_eq!(
            (ram.len(), ram.kind(), ram.is_empty()),
            (8, FrameKind::Ram, false)
        );
        assert_eq!(s.grant_ram(&K, frames(0x107, 2)), Err(Error::GrantOverlap));
        assert_eq!(
            s.grant_device(&K, frames(0xff, 2)),
            Err(Error::GrantOverlap)
        );
        assert_eq!(s.grant_ram(&K, frames(0x200, 0)), Err(Error::BadRange));
        assert_eq!(
            s.grant_ram(&K, frames(0x200, 9)),
            Err(Error::StateStorageFull)
        );
        assert!(
            s.grant_ram(&K, frames(0x200, 8)).is_ok(),
            "exactly the rest of the storage"
        );
        assert_eq!(
            s.grant_ram(&K, frames(0x300, 1)),
            Err(Error::StateStorageFull)
        );
        assert!(
            s.grant_device(&K, frames(0x300, 1 << 20)).is_ok(),
            "devices need no state"
        );
    }

    #[test]
    fn the_grant_table_holds_max_grants() {
        let mut s = fresh(0);
        for i in 0..MAX_GRANTS as u64 {
            s.grant_device(&K, frames(0x1000 + 2 * i, 1)).unwrap();
        }
        assert_eq!(
            s.grant_device(&K, frames(0x9000, 1)),
            Err(Error::GrantTableFull)
        );
    }

    #[test]
    fn caps_come_from_grants_and_only_for_granted_frames() {
        let mut s = fresh(16);
        let ram = s.grant_ram(&K, frames(0x100, 4)).unwrap();
        let dev = s.grant_device(&K, frames(0x800, 2)).unwrap();
        let caps: std::vec::Vec<FrameCap> = ram.caps().collect();
        assert_eq!(caps.len(), 4);
        assert_eq!(ram.cap(3), Some(caps[3]));
        assert_eq!(ram.cap(4), None);
        assert_eq!(s.frame_cap(PhysAddr::new(0x103 * PAGE_SIZE)), Ok(caps[3]));
        assert_eq!(
            s.frame_cap(PhysAddr::new(0x801 * PAGE_SIZE)),
            Ok(dev.cap(1).unwrap())
        );
        assert_eq!(
            s.frame_cap(PhysAddr::new(0x104 * PAGE_SIZE)),
            Err(Error::NotGranted)
        );
        assert_eq!(
            s.frame_cap(PhysAddr::new(0x100 * PAGE_SIZE + 8)),
            Err(Error::Unaligned)
        );
        assert_eq!(s.frame_use(caps[0]), Ok(FrameUse::Data { mappings: 0 }));
        assert_eq!(s.frame_use(dev.cap(0).unwrap()), Ok(FrameUse::Device));
    }

    #[test]
    fn mapping_counts_saturate_instead_of_overflowing() {
        let mut g = Grants::new([FrameState::UNUSED; 2]);
        let grant = g.add(frames(0x10, 2), FrameKind::Ram).unwrap();
        let f = grant.frames().start;
        g.set_state(f, FrameState::with_mappings(FrameState::MAX_MAPPINGS - 1));
        assert_eq!(g.check_room(f, 1), Ok(()));
        assert_eq!(g.check_room(f, 2), Err(Error::TooManyMappings));
        assert_eq!(g.check_room(f, u64::MAX), Err(Error::TooManyMappings));
        g.mapped(f);
        g.mapped(f);
        assert_eq!(
            g.state(f).and_then(FrameState::mappings),
            Some(FrameState::MAX_MAPPINGS)
        );
        assert!(!g.is_table(f));
        g.set_state(f, FrameState::POOLED);
        assert!(g.is_table(f));
        g.unmapped(f);
        assert_eq!(
            g.state(f),
            Some(FrameState::POOLED),
            "table frames have no count"
        );
    }

    #[test]
    fn frames_after_stop_at_the_physical_limit() {
        let f = PhysFrame::containing_address(PhysAddr::new(0x000f_ffff_ffff_e000));
        assert!(frame_after(f, 1).is_some());
        assert!(frame_after(f, 2).is_none());
        assert!(frame_after(f, u64::MAX).is_none());
    }
}
