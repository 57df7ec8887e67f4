//! The client side of the memory server: `mmap`, `munmap`, `shm_open` and the rest of the
//! call family as a Rust API shaped like `rustix::mm` / libc, over any [`Transport`].
//!
//! [`Client`] turns each call into an `ipc-proto` request, sends its postcard bytes
//! through the transport (in-process call, microkernel IPC, or a hosted channel) and
//! turns the response back into a `Result`. Arguments that arrive as C `int`s are
//! validated by [`c_args`] exactly as the server would, so a C caller gets the same errno.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod c_args;
pub mod client;
pub mod transport;

pub use client::{Client, Regions};
pub use ipc_proto::{
    Errno, Fd, MapFlags, MlockallFlags, Mode, MsyncFlags, OFlags, PageInfo, Prot, RegionInfo,
    ServerInfo, ServerStats, Stat,
};
pub use transport::Transport;
