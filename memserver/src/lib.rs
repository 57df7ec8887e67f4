//! The memory server core: it owns every physical frame and the right to change page
//! tables, and answers the `mmap` call family sent as `ipc-proto` messages.
//!
//! [`Server::handle`] takes one request from a [`Sender`] and returns its response;
//! [`Server::handle_message`] does the same on encoded bytes. The server reaches
//! hardware only through the [`KernelStub`] trait: [`StubDriver`] implements it with the
//! real `kernel-stub` (the microkernel's and the in-process tests'), the microkernel's
//! server task with system calls, the hosted runtime with the host kernel's mappings.
//! The simulated machine, the model stub and the chaos engine that test it are in the
//! `memserver-testkit` crate.
//!
//! The three nouns of MINIX's VM server and L4Re's region manager are here too: a
//! [`Region`](region::Region) of a per-client [`RegionMap`](region_map::RegionMap), the
//! [`MemObject`](object::MemObject)s behind shared memory and files, and the fault handler
//! (`fault.rs`) that asks them for a page. Files come from a [`Pager`] (a file server, in
//! the Mach / L4Re sense) connected with [`Server::set_pager`]: their objects are a page
//! cache of the file, written back when dirty (`file.rs`). A hosted server also maps the
//! host's own files (`host_file.rs`): their pages are the host's page cache, and the
//! server keeps only the regions, the rights and the accounting.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod accounting;
mod advise;
mod client_state;
mod clone;
pub mod config;
mod devices;
mod fault;
pub mod fd;
mod file;
pub mod frame_alloc;
pub mod host_file;
mod introspect;
mod invariants;
pub mod kernel_stub;
mod lock;
pub mod mem;
mod mmap;
pub mod object;
pub mod page_map;
mod permission;
pub mod region;
pub mod region_map;
mod remap;
mod server;
mod shm;
pub mod stub_driver;
#[cfg(test)]
mod test_stub;
mod vm;

pub use config::{BankConfig, Config, DeviceConfig, FrameRange, StandardLayout};
pub use file::{Pager, PagerCounters};
pub use host_file::{HostFileAccess, HostFileKey};
pub use kernel_stub::{Frame, KernelStub, PageAttrs, StubError};
pub use server::{Sender, Server};
pub use stub_driver::StubDriver;
