//! Typed refusals: why the stub would not do what it was asked.

use core::fmt;

/// Why the stub refused an operation. A refused operation changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// The space capability names no live space (forged, or never valid).
    BadSpace,
    /// The space capability names a space that was destroyed.
    StaleSpace,
    /// Every space slot is in use.
    OutOfSpaces,
    /// A raw address is not canonical.
    NonCanonical,
    /// An address or frame is not aligned to the page size asked for.
    Unaligned,
    /// An address or range reaches into the kernel half.
    KernelHalf,
    /// An address or range lies in the user half but outside the configured window.
    OutsideWindow,
    /// A range overflows, or is empty where frames must be named.
    BadRange,
    /// The frame was never granted to the server (or not as this kind).
    NotGranted,
    /// The operation needs RAM and the frame is a device frame.
    NotRam,
    /// The frame is a page-table frame (pooled or in use).
    TableFrame,
    /// The frame is mapped somewhere, so it cannot become a page table.
    FrameInUse,
    /// The frame's mapping count would overflow.
    TooManyMappings,
    /// The cache mode is not allowed for this kind of frame.
    CacheMode,
    /// The physical memory does not back this frame (it cannot be read or written).
    NotBacked,
    /// Something is already mapped at the address.
    AlreadyMapped,
    /// The operation needs page-table frames and the pool has too few.
    OutOfTableFrames,
    /// A grant overlaps an earlier one.
    GrantOverlap,
    /// The grant table is full.
    GrantTableFull,
    /// The per-frame state storage cannot hold another RAM grant.
    StateStorageFull,
    /// A frame access reaches beyond the frame's 4096 bytes.
    OutOfBounds,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl core::error::Error for Error {}
