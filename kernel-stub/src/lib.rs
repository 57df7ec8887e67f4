//! The kernel stub: the only code that writes page tables.
//!
//! The memory server decides every mapping; this crate installs, changes and removes them
//! after checking capabilities, and nothing else. It is `no_std` without `alloc`, and the
//! very same code runs in host tests (over [`RamPhys`], simulated RAM) and in the
//! microkernel (over [`DirectMap`]).
//!
//! - [`Stub`] ([`stub`]) holds the address spaces ([`space`]), the grants of frames the
//!   server may use with their per-frame state ([`grant`]), and the pool of page-table
//!   frames the server donated ([`pool`]).
//! - Capabilities ([`SpaceCap`], [`FrameCap`], [`cap`]) are minted only by the stub and
//!   re-validated on every use; granting frames takes a [`KernelCapability`], which only
//!   trusted code can implement. Every refusal is a typed [`Error`] and changes nothing.
//! - Addresses are `x86_64` types; [`addr`] validates raw syscall values and holds the
//!   [`UserWindow`] mappings must stay in.
//! - [`map`], [`unmap`] and [`protect`] change mappings, singly or over a range, in 4 KiB
//!   pages or 2 MiB huge pages; [`table`] holds the walking and table-page plumbing.
//! - [`Attrs`] is what a mapping may be: writable, executable, and its cache mode, set
//!   through the PAT layout documented in [`attrs`].
//! - TLB invalidation goes through the [`Tlb`] hook ([`tlb`]), called exactly when a
//!   present entry changed.
//! - [`walk`] reads the tables: the CPU's walk ([`Stub::translate`]), [`Stub::query`] and
//!   [`Stub::for_each_mapping`]; [`frame_data`] reads and writes frame contents.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod addr;
pub mod attrs;
pub mod cap;
pub mod error;
pub mod frame_data;
pub mod grant;
pub mod map;
pub mod phys;
pub mod pool;
pub mod protect;
pub mod space;
pub mod stub;
pub mod table;
pub mod tlb;
pub mod unmap;
pub mod walk;

#[cfg(test)]
mod testutil;

/// The address and paging types of the API, for callers to use the same version.
pub use x86_64;

pub use addr::{UserWindow, huge_page_at, page_at};
pub use attrs::{Attrs, Cache, PAT_MSR_VALUE};
pub use cap::{FrameCap, FrameKind, KernelCapability, SpaceCap};
pub use error::Error;
pub use grant::{FrameState, FrameUse, Grant, StateStorage};
pub use phys::{DirectMap, FrameBytes, PhysMemory, RamPhys};
pub use stub::{Config, Stub};
#[cfg(all(target_os = "none", target_arch = "x86_64"))]
pub use tlb::LocalTlb;
pub use tlb::{CountingTlb, Tlb};
pub use walk::{Access, Fault, PageSize};

/// The size of a page and of a frame, in bytes.
pub const PAGE_SIZE: u64 = 4096;
/// The size of a huge (2 MiB) page, in bytes.
pub const HUGE_PAGE_SIZE: u64 = 2 << 20;
/// How many 4 KiB frames one huge page spans (and entries one table holds).
pub const FRAMES_PER_HUGE_PAGE: u64 = 512;
/// First address of the kernel half: every user address lies below it.
pub const KERNEL_HALF: u64 = 0x0000_8000_0000_0000;
/// How many ranges of frames the stub can be granted.
pub const MAX_GRANTS: usize = 32;
/// Address-space slots of a [`Stub`] unless its type says otherwise.
pub const DEFAULT_SPACES: usize = 1024;
/// The largest [`Config::flush_threshold`]: pages flushed one by one in one operation.
pub const MAX_FLUSH_THRESHOLD: usize = 64;
