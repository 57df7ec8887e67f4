//! The memory server on Linux. `memserverd` ([`daemon`]) serves client processes over a
//! Unix socket; each process's runtime ([`runtime`]) hands the server its userfaultfd,
//! so every page of its window comes from the server, and makes the host mappings the
//! server decides. The host kernel enforces what the server decides: a client can map
//! only its own memory and the objects it may open (one memfd each,
//! [`object_memory`]), and no freed byte stays readable. `ms_*` is the C ABI
//! ([`c_abi`]); [`agent`] runs the conformance suite with every client a process.
#![warn(missing_docs)]

pub mod agent;
pub mod c_abi;
pub mod child;
pub mod daemon;
pub mod hosted_stub;
pub mod object_memory;
pub mod packet;
pub mod probe;
pub mod runtime;
pub mod uffd;
pub mod wire;

pub use hosted_stub::HostedStub;
pub use runtime::HostedClient;
