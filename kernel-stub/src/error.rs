//! Typed refusals and faults.

/// Why the stub refused an operation. Every refusal leaves the tables unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The space capability names no live space (forged, or never valid).
    BadSpace,
    /// The space capability names a space that was destroyed.
    StaleSpace,
    /// No free space slot.
    OutOfSpaces,
    /// The address is not canonical.
    NonCanonical,
    /// The address lies in the kernel half.
    KernelHalf,
    /// The address is canonical user space but outside the configured window.
    OutsideWindow,
    /// The address or frame is not aligned to the page size asked for.
    Unaligned,
    /// The range overflows or is empty.
    BadRange,
    /// The frame was never granted to the server.
    NotGranted,
    /// The frame is a page-table frame (in the pool or in use).
    TableFrame,
    /// The frame is mapped somewhere and cannot become a page table.
    FrameInUse,
    /// Something is already mapped at the address.
    AlreadyMapped,
    /// The stub needs a page-table frame and its pool is empty.
    OutOfTableFrames,
    /// The cache mode is not allowed for this kind of frame.
    CacheMode,
    /// A grant overlaps an earlier one, or the grant table or state storage is full.
    BadGrant,
    /// A frame access beyond the frame's 4096 bytes.
    OutOfBounds,
    /// The frame's mapping count would overflow.
    TooManyMappings,
}

/// The kind of access a translation is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A data read.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Exec,
}

/// Why a translation faults, as the CPU's error code would say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// No present entry maps the address.
    NotPresent,
    /// An entry maps it but forbids the access.
    Protection,
}
