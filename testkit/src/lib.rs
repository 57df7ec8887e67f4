//! The memory server's test kit: what tests, fuzzers and benchmarks need to run the
//! server core as a whole system in one process, kept out of the product.
//!
//! A [`Machine`] is the server plus a simulated CPU and kernel: clients start, exit and
//! fork, send encoded requests, and load and store through the page tables, with faults
//! forwarded as a kernel would. It runs over any stub that can also act as the CPU
//! ([`SimulatedCpu`]): the [`ModelStub`] (page tables as maps, a reference model) or the
//! [`RamStub`] (the real `kernel-stub` over simulated RAM, [`ram_stub`]). [`chaos`] runs
//! arbitrary byte strings as multi-client programs against a machine, checking every
//! invariant after every step: the engine of the server fuzzer and the soak tests.
#![no_std]
#![deny(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod chaos;
mod model_stub;
mod ram_stub;
mod simulation;

pub use model_stub::ModelStub;
pub use ram_stub::{RamStub, ram_stub};
pub use simulation::{Machine, SimulatedCpu};
