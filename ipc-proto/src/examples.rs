//! Named example messages: the golden vectors, `cargo xtask wire-sizes` and the
//! benchmarks all use these, so they describe the same bytes.

use crate::flags::{Advice, MapFlags, MlockallFlags, Mode, MremapFlags, MsyncFlags, OFlags, Prot};
use crate::limits::{NAME_MAX, PAGE_SIZE, PROTOCOL_MAJOR, PROTOCOL_MINOR};
use crate::message::{
    Access, Backing, CacheMode, ClientId, ClientSpec, Fd, MmapArgs, ObjectKind, PageInfo,
    RegionInfo, Reply, Request, Response, ServerInfo, ServerStats, Signal, Stat,
};
use crate::name::{FilePath, ObjName, ShmName};
use crate::{Errno, MAX_REQUEST_LEN, MAX_RESPONSE_LEN};

/// The typical `mmap`: 4 KiB of private anonymous read-write memory, anywhere.
pub fn mmap_anon_4k() -> Request {
    Request::Mmap(MmapArgs {
        addr: 0,
        len: PAGE_SIZE,
        prot: Prot::READ | Prot::WRITE,
        flags: MapFlags::PRIVATE | MapFlags::ANONYMOUS,
        fd: None,
        offset: 0,
    })
}

/// A shm name of exactly 16 bytes after its slash.
fn name16() -> ShmName {
    ShmName::new("/memserver-ring-0").expect("valid example name")
}

/// One example of every request variant, with a stable name for each.
pub fn requests() -> [(&'static str, Request); 19] {
    let bank = ObjName::new("dma").expect("valid example name");
    let dev = ObjName::new("fb0").expect("valid example name");
    [
        (
            "hello",
            Request::Hello {
                major: PROTOCOL_MAJOR,
                minor: PROTOCOL_MINOR,
            },
        ),
        ("mmap_anon_4k", mmap_anon_4k()),
        (
            "mmap_fixed_shared_fd",
            Request::Mmap(MmapArgs {
                addr: 0x7f00_0000_0000,
                len: 16 * PAGE_SIZE,
                prot: Prot::READ,
                flags: MapFlags::SHARED | MapFlags::FIXED,
                fd: Some(Fd(3)),
                offset: 2 * PAGE_SIZE,
            }),
        ),
        (
            "munmap",
            Request::Munmap {
                addr: 0x7f00_0000_0000,
                len: PAGE_SIZE,
            },
        ),
        (
            "mprotect",
            Request::Mprotect {
                addr: 0x7f00_0000_1000,
                len: PAGE_SIZE,
                prot: Prot::READ,
            },
        ),
        (
            "msync",
            Request::Msync {
                addr: 0x7f00_0000_0000,
                len: 2 * PAGE_SIZE,
                flags: MsyncFlags::SYNC | MsyncFlags::INVALIDATE,
            },
        ),
        (
            "mlock",
            Request::Mlock {
                addr: 0x7f00_0000_0000,
                len: PAGE_SIZE,
            },
        ),
        (
            "munlock",
            Request::Munlock {
                addr: 0x7f00_0000_0000,
                len: PAGE_SIZE,
            },
        ),
        (
            "mlockall",
            Request::Mlockall {
                flags: MlockallFlags::CURRENT | MlockallFlags::FUTURE,
            },
        ),
        ("munlockall", Request::Munlockall),
        (
            "shm_open_16",
            Request::ShmOpen {
                name: name16(),
                oflag: OFlags::RDWR | OFlags::CREAT | OFlags::EXCL,
                mode: Mode::from_raw(0o600).expect("valid mode"),
            },
        ),
        ("shm_unlink_16", Request::ShmUnlink { name: name16() }),
        (
            "ftruncate",
            Request::Ftruncate {
                fd: Fd(3),
                len: 1 << 20,
            },
        ),
        ("close", Request::Close { fd: Fd(3) }),
        ("fstat", Request::Fstat { fd: Fd(3) }),
        ("open_bank", Request::OpenBank { name: bank }),
        (
            "open_device",
            Request::OpenDevice {
                name: dev,
                oflag: OFlags::RDWR,
            },
        ),
        ("regions", Request::Regions { after: 0 }),
        (
            "page_fault",
            Request::PageFault {
                client: ClientId(7),
                addr: 0x7f00_0000_0123,
                access: Access::Write,
            },
        ),
    ]
}

/// Requests beyond the first array: the kernel's exit notice, the introspection calls,
/// and the requests of protocol 1.3 (`mremap`, `madvise`).
pub fn more_requests() -> [(&'static str, Request); 8] {
    [
        (
            "client_started",
            Request::ClientStarted {
                client: ClientId(7),
                spec: ClientSpec::DEFAULT,
            },
        ),
        (
            "client_exited",
            Request::ClientExited {
                client: ClientId(7),
            },
        ),
        ("stats", Request::Stats),
        (
            "page_info",
            Request::PageInfo {
                addr: 0x7f00_0000_0000,
            },
        ),
        (
            "client_cloned",
            Request::ClientCloned {
                parent: ClientId(7),
                child: ClientId(8),
                spec: ClientSpec::DEFAULT,
            },
        ),
        (
            "file_open",
            Request::FileOpen {
                path: FilePath::new("/etc/motd").expect("valid path"),
                oflag: OFlags::RDONLY,
            },
        ),
        (
            "mremap_maymove",
            Request::Mremap {
                old_addr: 0x7f00_0000_0000,
                old_len: PAGE_SIZE,
                new_len: 4 * PAGE_SIZE,
                flags: MremapFlags::MAYMOVE,
                new_addr: 0,
            },
        ),
        (
            "madvise_dontneed",
            Request::Madvise {
                addr: 0x7f00_0000_0000,
                len: 2 * PAGE_SIZE,
                advice: Advice::DontNeed,
            },
        ),
    ]
}

/// One example of every reply variant, plus an error response.
pub fn responses() -> [(&'static str, Response); 15] {
    [
        (
            "hello",
            Ok(Reply::Hello(ServerInfo {
                major: PROTOCOL_MAJOR,
                minor: PROTOCOL_MINOR,
                page_size: PAGE_SIZE as u32,
                max_request: MAX_REQUEST_LEN as u16,
                max_response: MAX_RESPONSE_LEN as u16,
            })),
        ),
        (
            "mapped",
            Ok(Reply::Mapped {
                addr: 0x7fff_f7ff_f000,
            }),
        ),
        ("done", Ok(Reply::Done)),
        ("fd", Ok(Reply::Fd(Fd(3)))),
        (
            "stat",
            Ok(Reply::Stat(Stat {
                kind: ObjectKind::Shm,
                size: 1 << 20,
                mode: Mode::from_raw(0o600).expect("valid mode"),
                uid: 1000,
                gid: 1000,
                ino: 1,
            })),
        ),
        (
            "region",
            Ok(Reply::Region(Some(RegionInfo {
                start: 0x7f00_0000_0000,
                end: 0x7f00_0001_0000,
                prot: Prot::READ | Prot::WRITE,
                shared: true,
                locked: false,
                backing: Backing::Shm(1),
                offset: 0,
            }))),
        ),
        (
            "stat_file",
            Ok(Reply::Stat(Stat {
                kind: ObjectKind::File,
                size: 10_000,
                mode: Mode::from_raw(0o644).expect("valid mode"),
                uid: 0,
                gid: 0,
                ino: 9,
            })),
        ),
        (
            "region_file",
            Ok(Reply::Region(Some(RegionInfo {
                start: 0x7f00_0000_0000,
                end: 0x7f00_0000_3000,
                prot: Prot::READ,
                shared: false,
                locked: false,
                backing: Backing::File(9),
                offset: 0x1000,
            }))),
        ),
        ("region_end", Ok(Reply::Region(None))),
        ("fault_resolved", Ok(Reply::FaultResolved)),
        ("signal_segv", Ok(Reply::Signal(Signal::Segv))),
        ("signal_bus", Ok(Reply::Signal(Signal::Bus))),
        (
            "stats",
            Ok(Reply::Stats(ServerStats {
                total_frames: 32768,
                free_frames: 30000,
                table_frames: 12,
                shm_objects: 2,
                clients: 3,
                violations: 0,
            })),
        ),
        (
            "page_info",
            Ok(Reply::PageInfo(PageInfo {
                mapped: true,
                resident: true,
                installed: true,
                writable: false,
                executable: false,
                cache: CacheMode::WriteCombining,
                locked: false,
            })),
        ),
        ("err_enomem", Err(Errno::ENOMEM)),
    ]
}

/// The longest request there is: `shm_open` with a `NAME_MAX` name and every bit set.
pub fn largest_request() -> Request {
    let mut long = heapless::String::<NAME_MAX>::new();
    for _ in 0..NAME_MAX {
        // Cannot fail: exactly NAME_MAX pushes into a NAME_MAX buffer.
        let _ = long.push('z');
    }
    Request::ShmOpen {
        name: ShmName::from_component(&long).expect("valid example name"),
        oflag: OFlags::all(),
        mode: Mode::from_raw(Mode::MASK).expect("valid mode"),
    }
}

/// The longest message without a name: an `mremap` with every field at its maximum (one
/// byte longer than the same `mmap`, which has a one-byte `Option` where `mremap` has a
/// ten-byte address).
pub fn largest_unnamed_request() -> Request {
    Request::Mremap {
        old_addr: u64::MAX,
        old_len: u64::MAX,
        new_len: u64::MAX,
        flags: MremapFlags::all(),
        new_addr: u64::MAX,
    }
}

/// The longest `mmap` there is: every field at its maximum.
pub fn largest_mmap_request() -> Request {
    Request::Mmap(MmapArgs {
        addr: u64::MAX,
        len: u64::MAX,
        prot: Prot::all(),
        flags: MapFlags::all(),
        fd: Some(Fd(u32::MAX)),
        offset: u64::MAX,
    })
}

/// The longest response there is: a region listing with every field at its maximum.
pub fn largest_response() -> Response {
    Ok(Reply::Region(Some(RegionInfo {
        start: u64::MAX,
        end: u64::MAX,
        prot: Prot::all(),
        shared: true,
        locked: true,
        backing: Backing::Shm(u64::MAX),
        offset: u64::MAX,
    })))
}
