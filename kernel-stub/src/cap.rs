//! Capabilities: values only the stub mints, re-validated on every use.

use x86_64::structures::paging::PhysFrame;

/// Names one address space. Carries a generation, so a capability of a destroyed space
/// is refused even after its slot is reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpaceCap {
    pub(crate) slot: u16,
    pub(crate) generation: u32,
}

impl SpaceCap {
    /// The capability as an integer, for a syscall boundary.
    pub fn to_raw(self) -> u64 {
        u64::from(self.slot) | (u64::from(self.generation) << 16)
    }

    /// An integer from a syscall boundary, to be validated by the stub on use.
    pub fn from_raw(raw: u64) -> SpaceCap {
        SpaceCap {
            slot: raw as u16,
            generation: (raw >> 16) as u32,
        }
    }
}

/// What kind of frame a [`FrameCap`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// RAM granted to the server.
    Ram,
    /// A device window granted to the server.
    Device,
}

/// Names one frame the server was granted. Only [`Stub::frame_cap`](crate::Stub::frame_cap)
/// makes one, after checking the grants.
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
