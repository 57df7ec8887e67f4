//! `memserverd` as a library: the memory server serving Linux processes.
//!
//! One thread serves everything from one `epoll` loop ([`event_loop`]): the listening
//! socket, every client connection (`SOCK_SEQPACKET`, one packet one message:
//! [`crate::wire`]) and every client's userfaultfd, whose faults [`faults`] resolves.
//! A connection is a client of the server, its identity the peer's credentials
//! (`SO_PEERCRED`: its effective uid and gid when it connected), its limits its
//! process's own ([`limits`]); its end, however it happens, is the kernel's `ClientExited`.
//! [`connection`] answers each message; [`host_ops`] turns a request's effect into the
//! host mappings the client applies; [`config`] is the command line.

pub mod config;
pub mod connection;
pub mod event_loop;
pub mod faults;
pub mod host_ops;
pub mod limits;

pub use config::DaemonConfig;
pub use event_loop::{Stopped, run};
