//! The kernel stub: the only code that writes page tables.
//!
//! The memory server decides every mapping; this crate installs, changes and removes
//! them after checking capabilities, and nothing else. It is `no_std` without `alloc`,
//! and the very same code runs in host tests (over [`RamPhys`], simulated RAM) and in the
//! microkernel (over [`DirectMap`]).
//!
//! - [`Stub`] holds the address spaces, the grants of frames it may map, the pool of
//!   page-table frames the server donated, and per-frame state.
//! - Capabilities ([`SpaceCap`], [`FrameCap`]) are minted only by the stub and validated
//!   on every use, so a forged or stale one is refused with a typed [`Error`].
//! - [`Attrs`] is what a mapping may be: writable, executable, and its cache mode, set
//!   through the PAT layout documented in [`attrs`].
//! - TLB invalidation goes through the [`Tlb`] hook, called exactly when a present entry
//!   changed.
//! - [`Stub::translate`] walks the tables as the CPU does, for tests.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod attrs;
pub mod cap;
pub mod error;
pub mod phys;
pub mod stub;
pub mod tlb;

pub use attrs::{Attrs, Cache, PAT_MSR_VALUE};
pub use cap::{FrameCap, FrameKind, SpaceCap};
pub use error::{Access, Error, Fault};
pub use phys::{DirectMap, FrameBytes, PhysMemory, RamPhys};
pub use stub::{Config, FrameState, PageSize, Stub};
pub use tlb::{CountingTlb, Tlb};

/// The size of a page and of a frame.
pub const PAGE_SIZE: u64 = 4096;
/// The size of a huge page.
pub const HUGE_PAGE_SIZE: u64 = 2 << 20;
/// First address of the kernel half: everything from here up is refused.
pub const KERNEL_HALF: u64 = 0x0000_8000_0000_0000;
