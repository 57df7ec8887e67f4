//! The conformance suite of the memory server: every flag and errno of the call family,
//! written once against `client-lib` and run on every transport.
//!
//! A transport provides a [`Harness`]: it starts client [`Process`]es (each with its own
//! address space, talking to the server under test through a `Transport`, and touching its
//! memory through [`MemoryAccess`], which reports the signal an access raised), and reads
//! the server's counters. [`run`] executes every [`Case`] and checks after each one that
//! the server's invariants hold and that nothing leaked once its processes are gone.
//! In-process ([`inproc`]) the whole system is simulated; under QEMU and hosted, the same
//! cases drive real tasks and processes.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod cases;
pub mod harness;
pub mod inproc;
pub mod runner;

pub use harness::{Facts, Harness, HostOpen, MemoryAccess, Process};
pub use runner::{Case, Fail, Need, Outcome, Summary, Verdict, run};
