//! `libmemserver_preload.so`: run an unmodified, dynamically linked program with its
//! memory calls served by `memserverd`:
//!
//! ```sh
//! MEMSERVER_SOCKET=/tmp/memserver.sock LD_PRELOAD=target/release/libmemserver_preload.so sqlite3 db
//! ```
//!
//! The library exports the standard names (`mmap`, `munmap`, `mprotect`, `msync`,
//! `mlock`, `munlock`, `mlockall`, `munlockall`, `mremap`, `madvise`, `shm_open`,
//! `shm_unlink`, `close`, `ftruncate`, `fstat`, the large-file aliases `mmap64`,
//! `ftruncate64`, `fstat64`, `setrlimit`, `setrlimit64`, `prlimit`, `prlimit64`, and
//! `fork`, made inside a call so the runtime's own fork handlers reach the host),
//! so the dynamic linker binds the program's calls (and its libraries') to them ahead of
//! libc. Each decides ([`route`]) whether the call is the server's (new mappings
//! without an address, and everything in the server's windows) or the host's
//! (everything outside them: the program image, libc's heap, thread stacks, host
//! files the server does not map), and makes it through the C ABI (`ms_*`) or as the
//! raw system call ([`host`]). A call made while the runtime itself is inside one goes
//! straight to the host ([`guard`]): the runtime's own `close` or `mmap` binds to these
//! very symbols. `MEMSERVER_LOG=debug` says where each call went on stderr ([`log`]).
#![deny(unsafe_op_in_unsafe_fn)]

pub mod fds;
pub mod fork;
pub mod guard;
pub mod host;
pub mod log;
pub mod mem;
pub mod rlimit;
pub mod route;
