//! The memory server on Linux: `memserverd` serves clients over Unix sockets, handing out
//! pages of a memfd as frames; the client runtime installs them in its own address space
//! with `mmap(MAP_FIXED)` and forwards real page faults; `ms_*` is the C ABI.
#![warn(missing_docs)]

pub mod agent;
pub mod c_abi;
pub mod child;
pub mod hosted_stub;
pub mod ring;
pub mod runtime;
pub mod uffd;
pub mod wire;

pub use hosted_stub::HostedStub;
pub use runtime::HostedClient;
