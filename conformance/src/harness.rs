//! What a transport must provide to run the suite.

use alloc::boxed::Box;
use alloc::string::String;
use client_lib::{Client, Transport};
use ipc_proto::{ClientSpec, Errno, ServerStats, Signal};

/// User-mode memory access by one client; each call performs a real access (through the
/// page tables, with faults forwarded to the server) and reports the signal it raised.
pub trait MemoryAccess {
    /// Reads one byte.
    fn read(&mut self, addr: u64) -> Result<u8, Signal>;
    /// Writes one byte.
    fn write(&mut self, addr: u64, value: u8) -> Result<(), Signal>;
    /// Fetches an instruction at `addr` (the byte there must be `0xc3`, `ret`, since real
    /// transports execute it).
    fn exec(&mut self, addr: u64) -> Result<(), Signal>;
}

/// One client of the server under test. Dropping it ends the client (as an exit), and
/// the server reclaims everything it held before `drop` returns.
pub trait Process: MemoryAccess {
    /// Its connection to the server.
    fn transport(&mut self) -> &mut dyn Transport;

    /// Forks: a new client whose address space is a copy-on-write clone of this one's
    /// (the kernel's `ClientCloned`), with identity and limits `spec`. Only the cases of
    /// [`cases::fork`](crate::cases::fork_cases) use it; a transport that cannot fork
    /// keeps this default and does not run them.
    fn fork(&mut self, spec: ClientSpec) -> Result<Box<dyn Process>, Errno> {
        let _ = spec;
        Err(Errno::ENOSYS)
    }

    /// Opens the host file `path` (one the harness made) with `open`, maps it with `args`
    /// (its fd ignored) and closes it again, as a program mapping a file does. Only the
    /// cases needing [`Need::HostFiles`](crate::Need::HostFiles) use it; a transport
    /// without host files keeps this default.
    fn mmap_host_file(
        &mut self,
        path: &str,
        open: HostOpen,
        args: ipc_proto::MmapArgs,
    ) -> Result<u64, Errno> {
        let _ = (path, open, args);
        Err(Errno::ENOSYS)
    }
}

/// How a process opens a host file before it maps it (`open(2)`'s access mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostOpen {
    /// `O_RDONLY`.
    ReadOnly,
    /// `O_WRONLY`.
    WriteOnly,
    /// `O_RDWR`.
    ReadWrite,
}

/// Facts about the server under test that cases depend on (serializable, so a kernel can
/// hand them to a runner in another address space).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Facts {
    /// Lowest address a mapping may use.
    pub mmap_min: u64,
    /// One past the highest.
    pub mmap_max: u64,
    /// A second range below 2 GiB that only `MAP_32BIT` places into, if any.
    pub low_window: Option<(u64, u64)>,
    /// The default bank's name (e.g. `normal`).
    pub default_bank: String,
    /// A second, small bank (e.g. `dma`) and its size in frames.
    pub small_bank: (String, u64),
    /// A mappable device window and its size in bytes.
    pub device: (String, u64),
    /// A device with nothing to map (`ENODEV`).
    pub unmappable_device: String,
    /// Frames the server manages.
    pub total_frames: u64,
    /// Most named shm objects.
    pub max_shm_objects: u32,
    /// Most open files in the system.
    pub max_open_files: u32,
    /// Largest object size (`EFBIG` beyond).
    pub max_object_size: u64,
    /// No other client runs while a case does, so free-frame counts can be compared.
    pub exclusive: bool,
}

/// A transport's way of running cases.
pub trait Harness {
    /// The transport's name, for reports.
    fn name(&self) -> &str;
    /// Facts about the server under test.
    fn facts(&self) -> Facts;
    /// Starts a client with `spec`.
    fn spawn(&mut self, spec: ClientSpec) -> Result<Box<dyn Process>, Errno>;
    /// The server's counters.
    fn stats(&mut self) -> ServerStats;
    /// Checks the server's invariants in full if the transport can (in-process), or
    /// through the server's own violation counter.
    fn check(&mut self) -> Result<(), String>;
    /// A name unique to this harness, so concurrent runs do not collide: `/tag-base`.
    fn unique_name(&self, base: &str) -> String;

    /// The file `path` as the file server holds it, read behind the memory server's back
    /// (so a case can tell written back from merely cached), if the transport can reach
    /// the file server directly; `None` otherwise, and the cases that would use it check
    /// through the memory server only.
    fn file_contents(&mut self, path: &str) -> Option<alloc::vec::Vec<u8>> {
        let _ = path;
        None
    }

    /// Whether the transport offers what a [`Need`](crate::Need) its [`Facts`] cannot
    /// tell asks for (host files); `false` by default.
    fn offers(&self, need: crate::Need) -> bool {
        let _ = need;
        false
    }

    /// Makes a regular file of the host holding `contents`, with a name built from
    /// `base` unique to the harness; returns its path. `None` without host files.
    fn make_host_file(&mut self, base: &str, contents: &[u8]) -> Option<String> {
        let _ = (base, contents);
        None
    }

    /// Writes `bytes` at `offset` of host file `path` with `pwrite(2)`, behind the
    /// server's back (as SQLite writes its pages); whether it was written.
    fn pwrite_host_file(&mut self, path: &str, offset: u64, bytes: &[u8]) -> bool {
        let _ = (path, offset, bytes);
        false
    }

    /// Host file `path` as `read(2)` sees it.
    fn read_host_file(&mut self, path: &str) -> Option<alloc::vec::Vec<u8>> {
        let _ = path;
        None
    }

    /// A directory of the host (a descriptor of it cannot be mapped).
    fn host_directory(&mut self) -> Option<String> {
        None
    }

    /// Removes host file `path`.
    fn remove_host_file(&mut self, path: &str) {
        let _ = path;
    }
}

/// A client-lib `Client` over a process's transport.
pub fn client(p: &mut dyn Process) -> Client<&mut dyn Transport> {
    Client::new(p.transport())
}
