//! Capabilities: values only the stub mints, re-validated on every use.
//!
//! Following Tock, the right to *grant* frames is itself a capability: an `unsafe` trait
//! only trusted kernel code implements, so untrusted code cannot call the granting
//! functions without writing `unsafe`.

use x86_64::structures::paging::PhysFrame;

/// Proof that the caller is the trusted kernel, which alone may grant frames.
///
/// # Safety
/// Implement it only for a type that code outside the trusted kernel cannot construct or
/// reach: whoever holds a value can hand the server any physical memory.
pub unsafe trait KernelCapability {}

/// Names one address space. It carries a generation, so a capability of a destroyed
/// space is refused even after its slot is reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpaceCap {
    pub(crate) slot: u32,
    pub(crate) generation: u32,
}

impl SpaceCap {
    /// The capability as an integer, for a syscall boundary (slot in the low 32 bits,
    /// generation in the high 32).
    pub fn to_raw(self) -> u64 {
        u64::from(self.slot) | (u64::from(self.generation) << 32)
    }

    /// An integer from a syscall boundary. Every operation validates it, so a forged or
    /// stale value is refused there ([`Error::BadSpace`](crate::Error::BadSpace),
    /// [`Error::StaleSpace`](crate::Error::StaleSpace)).
    pub fn from_raw(raw: u64) -> SpaceCap {
        SpaceCap {
            slot: raw as u32,
            generation: (raw >> 32) as u32,
        }
    }
}

/// What kind of frame a [`FrameCap`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// RAM granted to the server: tracked per frame, may become a page table.
    Ram,
    /// A device window granted to the server: never a page table, any cache mode.
    Device,
}

/// Names one frame the server was granted. Only the stub makes one
/// ([`Stub::frame_cap`](crate::Stub::frame_cap), [`Grant::cap`](crate::Grant::cap));
/// every use re-checks it (the frame may have become a page table since).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrameCap {
    pub(crate) frame: PhysFrame,
    pub(crate) kind: FrameKind,
}

impl FrameCap {
    /// The frame.
    pub fn frame(self) -> PhysFrame {
        self.frame
    }

    /// Its kind.
    pub fn kind(self) -> FrameKind {
        self.kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_space_caps_round_trip_without_losing_bits() {
        for raw in [
            0,
            1,
            0xffff_ffff,
            0x1_0000_0000,
            u64::MAX,
            0x1234_5678_9abc_def0,
        ] {
            assert_eq!(SpaceCap::from_raw(raw).to_raw(), raw);
        }
        let c = SpaceCap {
            slot: 7,
            generation: 3,
        };
        assert_eq!(SpaceCap::from_raw(c.to_raw()), c);
    }
}
