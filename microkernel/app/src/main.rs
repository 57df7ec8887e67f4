//! The conformance app: a ring-3 task of the microkernel, linked with `client-lib`, that
//! runs the whole conformance suite against the memory server. Every request it makes
//! goes through a system call as wire bytes; its heap is memory the server mapped for it;
//! the processes the cases start are clients the kernel creates for it, whose memory
//! accesses the kernel makes in ring 3 in their own address spaces.
//!
//! Built for the host (it is a workspace member) it is a stub that says so.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the conformance app is a task of the microkernel: run `cargo xtask qemu`");
}

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod app;
#[cfg(target_os = "none")]
mod sys;
