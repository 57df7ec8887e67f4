//! The microkernel, booted by QEMU straight from `-kernel` (PVH): long mode, a serial
//! console, exceptions, the free RAM of the firmware's memory map and the VGA
//! framebuffer handed to the memory server over the real kernel stub, then the
//! conformance app (`app/`) run as a ring-3 task against it, every access made in ring 3
//! through the page tables the stub wrote. `cargo xtask qemu` builds both and boots it.
//!
//! Built for the host (it is a workspace member) it is a stub that says so.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the microkernel is built for x86_64-unknown-none: run `cargo xtask qemu`");
}

#[cfg(any(target_os = "none", test))]
extern crate alloc;

#[cfg(target_os = "none")]
mod boot;
// The ELF reader is plain code over bytes: tested on the host too.
#[cfg(any(target_os = "none", test))]
mod elf;
#[cfg(target_os = "none")]
mod endpoint;
// Which preempted app holds the memory server is plain code: tested on the host.
#[cfg(any(target_os = "none", test))]
mod hold;
#[cfg(target_os = "none")]
mod hw_harness;
#[cfg(target_os = "none")]
mod kernel;
#[cfg(target_os = "none")]
mod loader;
#[cfg(target_os = "none")]
mod page_fault;
#[cfg(target_os = "none")]
mod run;
#[cfg(target_os = "none")]
mod scheduler;
#[cfg(target_os = "none")]
mod state;
#[cfg(target_os = "none")]
mod syscall;
#[cfg(target_os = "none")]
mod umem;
// The validated user range is plain code: tested on the host too.
#[cfg(any(target_os = "none", test))]
mod uslice;
#[cfg(target_os = "none")]
#[macro_use]
mod serial;
// Recognising a SYSCALL delivered as a page fault is plain code: tested on the host.
#[cfg(any(target_os = "none", test))]
mod syscall_fault;
#[cfg(target_os = "none")]
mod timer;
#[cfg(target_os = "none")]
mod trap;
#[cfg(target_os = "none")]
mod user;
