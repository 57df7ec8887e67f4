//! Protocol constants: version, page size, name bounds.

/// Major protocol version: a change here means old peers cannot talk to new ones.
/// A wire change that alters any golden vector bumps it.
pub const PROTOCOL_MAJOR: u16 = 1;
/// Minor protocol version: additions that old peers can ignore.
pub const PROTOCOL_MINOR: u16 = 3;

/// The page size every address, length and offset on the wire is measured against.
pub const PAGE_SIZE: u64 = 4096;

/// Longest shared-memory name component (after the leading `/`), as Linux's `NAME_MAX`.
pub const NAME_MAX: usize = 255;

/// Longest bank or device name.
pub const OBJ_NAME_MAX: usize = 32;

/// Longest file path for the pager protocol, in bytes (with its leading `/`), as a small
/// system's `PATH_MAX`.
pub const PATH_MAX: usize = 255;
