//! The microkernel's ring-3 tasks share this runtime: the entry point, the heap, the
//! panic handler, the console, and the system calls. The tasks themselves are the
//! binaries: `memserver-task` (the memory server on its IPC loop) and `conformance-app`
//! (the conformance suite, run through system calls).
//!
//! Built for the host (every crate is a workspace member) it is empty.
#![no_std]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
pub mod rt;
#[cfg(target_os = "none")]
pub mod sys;
