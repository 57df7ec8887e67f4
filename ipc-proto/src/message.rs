//! Every request and reply of the protocol: the single declaration both sides use.
//!
//! One request, one response: [`Response`] is `Result<Reply, Errno>`. Each request's doc
//! lists the reply it gets on success, the errnos it can answer, and whether a retry after
//! a lost reply is safe ("idempotent").

use crate::flags::{Advice, MapFlags, MlockallFlags, Mode, MremapFlags, MsyncFlags, OFlags, Prot};
use crate::name::{FilePath, ObjName, ShmName};
use postcard::experimental::max_size::MaxSize;
use serde::{Deserialize, Serialize};

/// A file descriptor of the memory server's own fd table (shm objects, banks, devices).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, MaxSize,
)]
pub struct Fd(pub u32);

/// The identity of a client (an application task), assigned by the kernel or transport,
/// never chosen by the client itself.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, MaxSize,
)]
pub struct ClientId(pub u32);

/// The kind of access that faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub enum Access {
    /// A data read.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Exec,
}

/// A signal the server tells the kernel to deliver for an unresolvable fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub enum Signal {
    /// `SIGSEGV` (11): no mapping, or the access violates its protection.
    Segv,
    /// `SIGBUS` (7): the mapping exists but its object has no page there (past the end).
    Bus,
}

impl Signal {
    /// The Linux signal number.
    pub const fn number(self) -> u8 {
        match self {
            Signal::Segv => 11,
            Signal::Bus => 7,
        }
    }
}

/// The arguments of `mmap`, as in `mmap(addr, len, prot, flags, fd, offset)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, MaxSize)]
pub struct MmapArgs {
    /// Placement hint, or the required address with `MAP_FIXED`/`MAP_FIXED_NOREPLACE`.
    pub addr: u64,
    /// Length in bytes; rounded up to whole pages. Zero is `EINVAL`.
    pub len: u64,
    /// Initial protection.
    pub prot: Prot,
    /// `MAP_*` flags.
    pub flags: MapFlags,
    /// The object to map (`None` is C's `-1`). With `MAP_ANONYMOUS` an fd naming a bank
    /// selects the pool to allocate from (seed 000); any other fd is ignored, as on Linux.
    pub fd: Option<Fd>,
    /// Offset into the object, page-aligned.
    pub offset: u64,
}

/// A request to the memory server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, MaxSize)]
pub enum Request {
    /// Version handshake. Reply: [`Reply::Hello`]. Errors: `EPROTO` when the major
    /// versions differ. Idempotent.
    Hello {
        /// The client's [`PROTOCOL_MAJOR`](crate::PROTOCOL_MAJOR).
        major: u16,
        /// The client's [`PROTOCOL_MINOR`](crate::PROTOCOL_MINOR).
        minor: u16,
    },
    /// `mmap`. Reply: [`Reply::Mapped`]. Errors: `EINVAL` (len 0, unaligned fixed addr or
    /// offset, neither/both of shared and private, bad flag mix), `EBADF` (no fd, or an
    /// fd that is not open, without `MAP_ANONYMOUS`), `ENODEV`, `EACCES` (fd mode, W^X
    /// policy), `ENOMEM` (no room, quota, commit limit, a length no address space holds),
    /// `EEXIST` (`MAP_FIXED_NOREPLACE`), `EOVERFLOW` (an object's offset + len past the
    /// offset maximum; never for anonymous memory), `ENXIO`
    /// (range beyond a device), `EPERM` (below the mapping floor), `EAGAIN` (lock limit
    /// with `MAP_LOCKED`). Not idempotent without `MAP_FIXED`.
    Mmap(MmapArgs),
    /// `munmap`. Reply: [`Reply::Done`]. Errors: `EINVAL` (unaligned addr, len 0, range
    /// outside the address space). Unmapping nothing succeeds (seed 001). Idempotent.
    Munmap {
        /// Page-aligned start.
        addr: u64,
        /// Length in bytes, rounded up to pages.
        len: u64,
    },
    /// `mprotect`. Reply: [`Reply::Done`]. Errors: `EINVAL`, `ENOMEM` (a hole in the
    /// range), `EACCES` (write on a read-only shared fd; W^X policy). Idempotent.
    Mprotect {
        /// Page-aligned start.
        addr: u64,
        /// Length in bytes, rounded up to pages.
        len: u64,
        /// New protection.
        prot: Prot,
    },
    /// `msync`. Reply: [`Reply::Done`]. Errors: `EINVAL` (unaligned, `MS_SYNC` with
    /// `MS_ASYNC`), `ENOMEM` (unmapped range), `EBUSY` (`MS_INVALIDATE` on locked pages).
    /// Idempotent.
    Msync {
        /// Page-aligned start.
        addr: u64,
        /// Length in bytes.
        len: u64,
        /// `MS_*` flags.
        flags: MsyncFlags,
    },
    /// `mlock`. Reply: [`Reply::Done`]. Errors: `EINVAL`, `ENOMEM` (unmapped range, or
    /// over the lock limit), `EAGAIN` (no frames to pin). Idempotent.
    Mlock {
        /// Start (rounded down to a page).
        addr: u64,
        /// Length in bytes.
        len: u64,
    },
    /// `munlock`. Reply: [`Reply::Done`]. Errors: `EINVAL`, `ENOMEM` (unmapped range).
    /// Idempotent.
    Munlock {
        /// Start (rounded down to a page).
        addr: u64,
        /// Length in bytes.
        len: u64,
    },
    /// `mlockall`. Reply: [`Reply::Done`]. Errors: `EINVAL` (no flags, or only
    /// `MCL_ONFAULT`), `ENOMEM` (over the lock limit), `EAGAIN`. Idempotent.
    Mlockall {
        /// `MCL_*` flags.
        flags: MlockallFlags,
    },
    /// `munlockall`. Reply: [`Reply::Done`]. Never fails. Idempotent.
    Munlockall,
    /// `shm_open`. Reply: [`Reply::Fd`]. Errors: `EACCES`, `EEXIST`, `EINVAL`, `EMFILE`,
    /// `ENFILE`, `ENOENT`, `ENOSPC`, `ENAMETOOLONG` (seed 001). Not idempotent.
    ShmOpen {
        /// The object's name.
        name: ShmName,
        /// `O_RDONLY`/`O_RDWR` plus `O_CREAT`, `O_EXCL`, `O_TRUNC`.
        oflag: OFlags,
        /// Permission bits for a newly created object.
        mode: Mode,
    },
    /// `shm_unlink`. Reply: [`Reply::Done`]. Errors: `ENOENT`, `EACCES`. Not idempotent
    /// (a retry answers `ENOENT`).
    ShmUnlink {
        /// The object's name.
        name: ShmName,
    },
    /// `ftruncate` on a shm fd. Reply: [`Reply::Done`]. Errors: `EBADF`, `EINVAL` (not a
    /// shm fd, or not open for writing), `EFBIG`, `ENOSPC`. Idempotent.
    Ftruncate {
        /// The fd.
        fd: Fd,
        /// New size in bytes.
        len: u64,
    },
    /// `close`. Reply: [`Reply::Done`]. Errors: `EBADF`. Not idempotent.
    Close {
        /// The fd.
        fd: Fd,
    },
    /// `fstat`. Reply: [`Reply::Stat`]. Errors: `EBADF`. Idempotent.
    Fstat {
        /// The fd.
        fd: Fd,
    },
    /// Open a memory bank by name (seed 000). Reply: [`Reply::Fd`]. Errors: `ENOENT`,
    /// `EACCES` (the client has no right to the bank), `EINVAL`, `EMFILE`. Not idempotent.
    OpenBank {
        /// The bank's name, e.g. `dma`.
        name: ObjName,
    },
    /// Open a device window by name (seed 002). Reply: [`Reply::Fd`]. Errors: `ENOENT`,
    /// `EACCES`, `EINVAL` (bad access mode), `EMFILE`. Not idempotent.
    OpenDevice {
        /// The device's name, e.g. `fb0`.
        name: ObjName,
        /// `O_RDONLY` or `O_RDWR`.
        oflag: OFlags,
    },
    /// List the caller's mappings, one per request, like `/proc/self/maps`.
    /// Reply: [`Reply::Region`] with the first region ending above `after`, or `None`.
    /// Never fails. Idempotent.
    Regions {
        /// Resume point: the `end` of the previous region, or 0.
        after: u64,
    },
    /// From the kernel only: `client` faulted at `addr`. Reply: [`Reply::FaultResolved`]
    /// or [`Reply::Signal`]. Errors: `EPERM` when not sent by the kernel, `ESRCH` for an
    /// unknown client. Idempotent.
    PageFault {
        /// The faulting client.
        client: ClientId,
        /// The faulting address.
        addr: u64,
        /// What the access was.
        access: Access,
    },
    /// From the kernel only: `client` exited or died; reclaim everything it held.
    /// Reply: [`Reply::Done`]. Errors: `EPERM` when not sent by the kernel, `ESRCH` for
    /// an unknown client. Idempotent in effect.
    ClientExited {
        /// The client that is gone.
        client: ClientId,
    },
    /// From the kernel only: a new client exists, with this identity and these limits.
    /// Reply: [`Reply::Done`]. Errors: `EPERM` when not sent by the kernel, `EEXIST` for a
    /// client already known, `ENOMEM` when no address space can be made. Not idempotent.
    ClientStarted {
        /// The new client.
        client: ClientId,
        /// Its identity, rights and limits.
        spec: ClientSpec,
    },
    /// Server-wide counters, like `/proc/meminfo`: lets a test prove nothing leaked.
    /// Reply: [`Reply::Stats`]. Never fails. Idempotent.
    Stats,
    /// What backs the caller's page at `addr`, like a `/proc/self/pagemap` entry (without
    /// the physical frame number). Reply: [`Reply::PageInfo`]. Never fails. Idempotent.
    PageInfo {
        /// Any address in the page.
        addr: u64,
    },
    /// From the kernel only: `child` is a copy of `parent` (the memory half of `fork`).
    /// The child gets every region of the parent: `MAP_SHARED` ones share their pages,
    /// `MAP_PRIVATE` ones are copied on write (no page is copied until one side writes
    /// it), and every fd is duplicated; memory locks are not inherited, as POSIX says.
    /// Reply: [`Reply::Done`]. Errors: `EPERM` when not sent by the kernel, `ESRCH` for
    /// an unknown parent, `EEXIST` for a child already known, `ENOMEM` when the child's
    /// private writable memory cannot be committed or exceeds `spec`'s limits, `EMFILE`
    /// / `ENFILE` when its fds do not fit. A failed clone leaves nothing behind. Not
    /// idempotent.
    ClientCloned {
        /// The client being copied.
        parent: ClientId,
        /// The new client.
        child: ClientId,
        /// The child's identity, rights and limits.
        spec: ClientSpec,
    },
    /// Open a file of the file server (the server's pager) for mapping, like `open(2)`
    /// followed by nothing but `mmap`, `ftruncate`, `fstat` and `close` on the fd. The
    /// file server checks `path` and the caller's identity against the file's mode bits.
    /// Reply: [`Reply::Fd`]. Errors: `ENOENT`, `EACCES` (mode bits, or `O_RDWR` on a
    /// read-only file), `EINVAL` (an access mode other than `O_RDONLY`/`O_RDWR`, or
    /// `O_CREAT`/`O_EXCL`: files are created at the file server), `ETXTBSY` (`O_RDWR`
    /// while mapped `MAP_DENYWRITE`), `EMFILE`, `ENFILE`, `ENODEV` (no file server),
    /// `EIO` (the file server failed). Not idempotent. Since protocol 1.2.
    FileOpen {
        /// The file's absolute path.
        path: FilePath,
        /// `O_RDONLY` or `O_RDWR`, optionally `O_TRUNC`.
        oflag: OFlags,
    },
    /// `mremap` (Linux). Reply: [`Reply::Mapped`] with the mapping's (possibly new)
    /// address. Shrinking unmaps the tail; growing extends in place when the space
    /// after is free, else moves with `MREMAP_MAYMOVE` (the same frames reinstalled at the
    /// new address, never copied; shared and file pages keep their object); `FIXED` moves
    /// to `new_addr`, replacing what is there; `DONTUNMAP` leaves the old range mapped
    /// and empty. Errors: `EINVAL` (unaligned `old_addr` or fixed `new_addr`,
    /// `new_len` 0 or past the address space, `FIXED`/`DONTUNMAP` without `MAYMOVE`,
    /// `DONTUNMAP` with different lengths or on a device, overlapping fixed ranges,
    /// `old_len` 0 of a private mapping), `EFAULT` (the old range is not inside one
    /// mapping), `ENOMEM` (cannot grow in place without `MAYMOVE`, no room, quota,
    /// commit limit), `EAGAIN` (lock limit of a locked mapping), `EPERM` (fixed below
    /// the mapping floor). A failed call changes nothing. Idempotent only for a shrink
    /// in place (a retried move finds nothing at `old_addr`: `EFAULT`). Since 1.3.
    Mremap {
        /// Page-aligned start of the mapping to resize or move.
        old_addr: u64,
        /// Its length in bytes (rounded up to pages); 0 duplicates a shared mapping.
        old_len: u64,
        /// The new length in bytes (rounded up to pages).
        new_len: u64,
        /// `MREMAP_*` flags.
        flags: MremapFlags,
        /// The destination with `MREMAP_FIXED`; ignored otherwise.
        new_addr: u64,
    },
    /// `madvise` (Linux). Reply: [`Reply::Done`]. Errors: `EINVAL` (unaligned addr, a
    /// length that wraps, unknown advice, `DONTNEED`/`FREE` on locked or device pages,
    /// `FREE` on anything but private anonymous memory), `ENOMEM` (a hole in the range:
    /// nothing is changed, where Linux advises the mapped parts first). Idempotent.
    /// Since 1.3.
    Madvise {
        /// Page-aligned start.
        addr: u64,
        /// Length in bytes, rounded up to pages; 0 succeeds.
        len: u64,
        /// The advice.
        advice: Advice,
    },
}

impl Request {
    /// How many request kinds this version knows: variant indexes `0..VARIANTS`. A
    /// higher index decodes as `ENOSYS`. Appending a variant bumps it (checked by the
    /// golden-vector tests).
    pub const VARIANTS: u32 = 26;
}

/// Per-client limits, the analogues of `RLIMIT_*` and `vm.max_map_count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, MaxSize)]
pub struct Limits {
    /// Most regions the address space may hold (`ENOMEM` beyond, as `max_map_count`).
    pub max_regions: u32,
    /// Most bytes mapped at once (`ENOMEM` beyond, as `RLIMIT_AS`).
    pub max_bytes: u64,
    /// Most fds open at once (`EMFILE` beyond, as `RLIMIT_NOFILE`).
    pub max_fds: u32,
    /// Most bytes locked at once (`ENOMEM`/`EAGAIN` beyond, as `RLIMIT_MEMLOCK`).
    pub max_locked: u64,
}

impl Limits {
    /// Linux's defaults: 65 530 regions, no address-space limit, 1024 fds, 8 MiB locked.
    pub const DEFAULT: Limits = Limits {
        max_regions: 65_530,
        max_bytes: u64::MAX,
        max_fds: 1024,
        max_locked: 8 << 20,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Who a client is and what it may do: set by the kernel when the client starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, MaxSize)]
pub struct ClientSpec {
    /// User id, checked against shm objects' mode bits (0 is root: bypasses them).
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// W^X policy: refuse `PROT_WRITE|PROT_EXEC` with `EACCES` (seed 002's "MAC
    /// disallowed this").
    pub deny_wx: bool,
    /// Bit `i` set: the client may open bank `i`.
    pub banks: u32,
    /// Bit `i` set: the client may open device `i`.
    pub devices: u32,
    /// Resource limits.
    pub limits: Limits,
}

impl ClientSpec {
    /// An ordinary user (uid/gid 1000), W^X off, every bank and device allowed, Linux's
    /// default limits.
    pub const DEFAULT: ClientSpec = ClientSpec {
        uid: 1000,
        gid: 1000,
        deny_wx: false,
        banks: u32::MAX,
        devices: u32::MAX,
        limits: Limits::DEFAULT,
    };
}

impl Default for ClientSpec {
    fn default() -> Self {
        ClientSpec::DEFAULT
    }
}

/// What the server tells a client in its handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, MaxSize)]
pub struct ServerInfo {
    /// The server's major version.
    pub major: u16,
    /// The server's minor version.
    pub minor: u16,
    /// The page size, in bytes.
    pub page_size: u32,
    /// The longest request the server accepts.
    pub max_request: u16,
    /// The longest response it sends.
    pub max_response: u16,
}

/// What kind of object an fd refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub enum ObjectKind {
    /// A shared-memory object.
    Shm,
    /// A memory bank.
    Bank,
    /// A device window.
    Device,
    /// A file of the file server (since protocol 1.2).
    File,
}

/// `fstat`'s answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, MaxSize)]
pub struct Stat {
    /// What the fd refers to.
    pub kind: ObjectKind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: Mode,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// A number identifying the object (like an inode number).
    pub ino: u64,
}

/// What backs a region in a [`RegionInfo`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub enum Backing {
    /// Anonymous memory from the default bank.
    Anonymous,
    /// Anonymous memory from the bank with this index.
    Bank(u8),
    /// A shared-memory object, by its `ino`.
    Shm(u64),
    /// A device window, by index.
    Device(u8),
    /// A file of the file server, by its `ino` (since protocol 1.2).
    File(u64),
}

/// One mapping of the caller's address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, MaxSize)]
pub struct RegionInfo {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// Current protection.
    pub prot: Prot,
    /// `MAP_SHARED` (true) or `MAP_PRIVATE`.
    pub shared: bool,
    /// Whether the pages are locked.
    pub locked: bool,
    /// What backs it.
    pub backing: Backing,
    /// Offset of `start` in the backing object.
    pub offset: u64,
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, MaxSize)]
pub enum Reply {
    /// Answer to [`Request::Hello`].
    Hello(ServerInfo),
    /// Answer to [`Request::Mmap`]: where the mapping starts.
    Mapped {
        /// The mapping's address.
        addr: u64,
    },
    /// Success with nothing to report.
    Done,
    /// A new fd.
    Fd(Fd),
    /// Answer to [`Request::Fstat`].
    Stat(Stat),
    /// Answer to [`Request::Regions`].
    Region(Option<RegionInfo>),
    /// The fault is resolved; resume the client.
    FaultResolved,
    /// The fault cannot be resolved; deliver this signal.
    Signal(Signal),
    /// Answer to [`Request::Stats`].
    Stats(ServerStats),
    /// Answer to [`Request::PageInfo`].
    PageInfo(PageInfo),
}

/// Server-wide counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, MaxSize)]
pub struct ServerStats {
    /// Frames the server manages, in every bank.
    pub total_frames: u64,
    /// Frames free right now.
    pub free_frames: u64,
    /// Frames lent to the kernel stub as page-table pages.
    pub table_frames: u64,
    /// Shared-memory objects alive (named or not).
    pub shm_objects: u32,
    /// Clients known to the server.
    pub clients: u32,
    /// Invariant violations found since start (when self-checking is on); always 0 in a
    /// correct server.
    pub violations: u32,
}

/// The caching mode of an installed page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub enum CacheMode {
    /// Normal write-back memory.
    WriteBack,
    /// Write-combining (`MAP_WC`).
    WriteCombining,
    /// Uncached (device windows without `MAP_WC`).
    Uncached,
}

/// What backs one page of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, MaxSize)]
pub struct PageInfo {
    /// A region covers the page.
    pub mapped: bool,
    /// A frame holds the page's contents (it has been touched or populated).
    pub resident: bool,
    /// The page table has an entry for it now.
    pub installed: bool,
    /// The installed entry allows writes.
    pub writable: bool,
    /// The installed entry allows instruction fetches.
    pub executable: bool,
    /// The installed entry's caching mode.
    pub cache: CacheMode,
    /// The page is locked (`mlock`).
    pub locked: bool,
}

/// Every answer: a [`Reply`] or an [`Errno`](crate::Errno).
pub type Response = Result<Reply, crate::Errno>;
