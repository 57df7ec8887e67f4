//! Proptest strategies producing every message type with arbitrary valid contents.
#![allow(dead_code)]

use ipc_proto::*;
use proptest::prelude::*;

pub fn prot() -> impl Strategy<Value = Prot> {
    any::<u32>().prop_map(Prot::from_bits_truncate)
}
pub fn map_flags() -> impl Strategy<Value = MapFlags> {
    any::<u32>().prop_map(MapFlags::from_bits_truncate)
}
pub fn msync_flags() -> impl Strategy<Value = MsyncFlags> {
    any::<u32>().prop_map(MsyncFlags::from_bits_truncate)
}
pub fn mlockall_flags() -> impl Strategy<Value = MlockallFlags> {
    any::<u32>().prop_map(MlockallFlags::from_bits_truncate)
}
pub fn oflags() -> impl Strategy<Value = OFlags> {
    any::<u32>().prop_map(OFlags::from_bits_truncate)
}
pub fn mode() -> impl Strategy<Value = Mode> {
    (0..=Mode::MASK).prop_map(|m| Mode::from_raw(m).unwrap())
}
pub fn fd() -> impl Strategy<Value = Fd> {
    any::<u32>().prop_map(Fd)
}
pub fn client() -> impl Strategy<Value = ClientId> {
    any::<u32>().prop_map(ClientId)
}
pub fn shm_name() -> impl Strategy<Value = ShmName> {
    "[a-zA-Z0-9._é-]{1,64}|[x]{255}"
        .prop_filter("not . or ..", |s| s != "." && s != "..")
        .prop_filter_map("fits", |s| ShmName::from_component(&s).ok())
}
pub fn obj_name() -> impl Strategy<Value = ObjName> {
    "[a-z0-9_-]{1,32}".prop_map(|s| ObjName::new(&s).unwrap())
}
pub fn file_path() -> impl Strategy<Value = FilePath> {
    "(/[a-z0-9._-]{1,16}){1,4}".prop_filter_map("valid path", |s| FilePath::new(&s).ok())
}
pub fn access() -> impl Strategy<Value = Access> {
    prop_oneof![Just(Access::Read), Just(Access::Write), Just(Access::Exec)]
}
pub fn signal() -> impl Strategy<Value = Signal> {
    prop_oneof![Just(Signal::Segv), Just(Signal::Bus)]
}
pub fn errno() -> impl Strategy<Value = Errno> {
    prop::sample::select(Errno::ALL)
}

pub fn mmap_args() -> impl Strategy<Value = MmapArgs> {
    (
        any::<u64>(),
        any::<u64>(),
        prot(),
        map_flags(),
        prop::option::of(fd()),
        any::<u64>(),
    )
        .prop_map(|(addr, len, prot, flags, fd, offset)| MmapArgs {
            addr,
            len,
            prot,
            flags,
            fd,
            offset,
        })
}

pub fn request() -> impl Strategy<Value = Request> {
    let u = any::<u64>;
    prop_oneof![
        (any::<u16>(), any::<u16>()).prop_map(|(major, minor)| Request::Hello { major, minor }),
        mmap_args().prop_map(Request::Mmap),
        (u(), u()).prop_map(|(addr, len)| Request::Munmap { addr, len }),
        (u(), u(), prot()).prop_map(|(addr, len, prot)| Request::Mprotect { addr, len, prot }),
        (u(), u(), msync_flags()).prop_map(|(addr, len, flags)| Request::Msync {
            addr,
            len,
            flags
        }),
        (u(), u()).prop_map(|(addr, len)| Request::Mlock { addr, len }),
        (u(), u()).prop_map(|(addr, len)| Request::Munlock { addr, len }),
        mlockall_flags().prop_map(|flags| Request::Mlockall { flags }),
        Just(Request::Munlockall),
        (shm_name(), oflags(), mode()).prop_map(|(name, oflag, mode)| Request::ShmOpen {
            name,
            oflag,
            mode
        }),
        shm_name().prop_map(|name| Request::ShmUnlink { name }),
        (fd(), u()).prop_map(|(fd, len)| Request::Ftruncate { fd, len }),
        fd().prop_map(|fd| Request::Close { fd }),
        fd().prop_map(|fd| Request::Fstat { fd }),
        obj_name().prop_map(|name| Request::OpenBank { name }),
        (obj_name(), oflags()).prop_map(|(name, oflag)| Request::OpenDevice { name, oflag }),
        u().prop_map(|after| Request::Regions { after }),
        (file_path(), oflags()).prop_map(|(path, oflag)| Request::FileOpen { path, oflag }),
        (client(), u(), access()).prop_map(|(client, addr, access)| Request::PageFault {
            client,
            addr,
            access
        }),
        client().prop_map(|client| Request::ClientExited { client }),
        (client(), spec()).prop_map(|(client, spec)| Request::ClientStarted { client, spec }),
        Just(Request::Stats),
        any::<u64>().prop_map(|addr| Request::PageInfo { addr }),
        (u(), u(), u(), mremap_flags(), u()).prop_map(
            |(old_addr, old_len, new_len, flags, new_addr)| Request::Mremap {
                old_addr,
                old_len,
                new_len,
                flags,
                new_addr,
            }
        ),
        (u(), u(), advice()).prop_map(|(addr, len, advice)| Request::Madvise { addr, len, advice }),
    ]
}

pub fn mremap_flags() -> impl Strategy<Value = MremapFlags> {
    (0u32..8).prop_map(MremapFlags::from_bits_truncate)
}

pub fn advice() -> impl Strategy<Value = Advice> {
    proptest::sample::select(Advice::ALL.to_vec())
}

pub fn backing() -> impl Strategy<Value = Backing> {
    prop_oneof![
        Just(Backing::Anonymous),
        any::<u8>().prop_map(Backing::Bank),
        any::<u64>().prop_map(Backing::Shm),
        any::<u8>().prop_map(Backing::Device),
        any::<u64>().prop_map(Backing::File),
    ]
}

pub fn region() -> impl Strategy<Value = RegionInfo> {
    (
        any::<u64>(),
        any::<u64>(),
        prot(),
        any::<bool>(),
        any::<bool>(),
        backing(),
        any::<u64>(),
    )
        .prop_map(
            |(start, end, prot, shared, locked, backing, offset)| RegionInfo {
                start,
                end,
                prot,
                shared,
                locked,
                backing,
                offset,
            },
        )
}

pub fn stat() -> impl Strategy<Value = Stat> {
    let kind = prop_oneof![
        Just(ObjectKind::Shm),
        Just(ObjectKind::Bank),
        Just(ObjectKind::Device),
        Just(ObjectKind::File)
    ];
    (
        kind,
        any::<u64>(),
        mode(),
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
    )
        .prop_map(|(kind, size, mode, uid, gid, ino)| Stat {
            kind,
            size,
            mode,
            uid,
            gid,
            ino,
        })
}

pub fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        (
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            any::<u16>(),
            any::<u16>()
        )
            .prop_map(
                |(major, minor, page_size, max_request, max_response)| Reply::Hello(ServerInfo {
                    major,
                    minor,
                    page_size,
                    max_request,
                    max_response
                })
            ),
        any::<u64>().prop_map(|addr| Reply::Mapped { addr }),
        Just(Reply::Done),
        fd().prop_map(Reply::Fd),
        stat().prop_map(Reply::Stat),
        prop::option::of(region()).prop_map(Reply::Region),
        Just(Reply::FaultResolved),
        signal().prop_map(Reply::Signal),
        (any::<[u64; 3]>(), any::<[u32; 3]>()).prop_map(|(a, b)| Reply::Stats(ServerStats {
            total_frames: a[0],
            free_frames: a[1],
            table_frames: a[2],
            shm_objects: b[0],
            clients: b[1],
            violations: b[2],
        })),
        (any::<[bool; 6]>(), cache()).prop_map(|(b, cache)| Reply::PageInfo(PageInfo {
            mapped: b[0],
            resident: b[1],
            installed: b[2],
            writable: b[3],
            executable: b[4],
            cache,
            locked: b[5],
        })),
    ]
}

pub fn spec() -> impl Strategy<Value = ClientSpec> {
    (
        any::<[u32; 4]>(),
        any::<bool>(),
        any::<[u64; 2]>(),
        any::<[u32; 2]>(),
    )
        .prop_map(|(a, deny_wx, b, c)| ClientSpec {
            uid: a[0],
            gid: a[1],
            deny_wx,
            banks: a[2],
            devices: a[3],
            limits: Limits {
                max_regions: c[0],
                max_bytes: b[0],
                max_fds: c[1],
                max_locked: b[1],
            },
        })
}

pub fn cache() -> impl Strategy<Value = CacheMode> {
    prop_oneof![
        Just(CacheMode::WriteBack),
        Just(CacheMode::WriteCombining),
        Just(CacheMode::Uncached)
    ]
}

pub fn response() -> impl Strategy<Value = Response> {
    prop_oneof![reply().prop_map(Ok), errno().prop_map(Err)]
}
