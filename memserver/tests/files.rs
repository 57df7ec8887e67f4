//! File objects against a real RAM file server: one frame per cached page, write-back of
//! exactly the pages written, SIGBUS past the end, open modes, eviction, and a pager that
//! fails or lies.

use fileserver::RamFs;
use ipc_proto::pager::PagerRequest;
use ipc_proto::{
    ClientId, ClientSpec, Errno, Fd, FilePath, MapFlags, MmapArgs, MsyncFlags, OFlags, PAGE_SIZE,
    Prot, Reply, Request, Signal, decode_pager_request,
};
use memserver::{Config, FrameRange, KernelStub, Pager, Sender};
use memserver_testkit::{Machine, ModelStub};
use std::sync::Arc;
use std::sync::Mutex;

const P: u64 = PAGE_SIZE;
const RW: Prot = Prot::READ.union(Prot::WRITE);

/// Byte `i` of the test files.
fn byte(i: usize) -> u8 {
    (i * 7 + i / 4096) as u8
}

struct Rig {
    m: Machine<ModelStub>,
    fs: Arc<Mutex<RamFs>>,
    /// Every request the pager got, by kind.
    log: Arc<Mutex<Vec<&'static str>>>,
}

impl Rig {
    /// A machine of `frames` frames whose pager serves `/data` (10 000 bytes, 0o644 uid
    /// 1000), `/big` (`big_pages` pages), `/secret` (0o600, root's).
    fn new(frames: u64, big_pages: usize) -> Rig {
        let mut fs = RamFs::new(1 << 24);
        let data: Vec<u8> = (0..10_000).map(byte).collect();
        fs.create("/data", 0o644, 1000, 1000, &data).unwrap();
        let big: Vec<u8> = (0..big_pages * 4096).map(byte).collect();
        fs.create("/big", 0o644, 1000, 1000, &big).unwrap();
        fs.create("/secret", 0o600, 0, 0, b"root only").unwrap();
        let fs = Arc::new(Mutex::new(fs));
        let log = Arc::new(Mutex::new(Vec::new()));
        let cfg = Config::with_ram(vec![FrameRange {
            start: 100,
            count: frames,
        }]);
        let mut m = Machine::new(cfg, ModelStub::new());
        let (fs2, log2) = (fs.clone(), log.clone());
        m.server
            .set_pager(Box::new(move |req: &[u8], out: &mut [u8]| {
                let kind = match decode_pager_request(req) {
                    Ok(PagerRequest::Lookup { .. }) => "lookup",
                    Ok(PagerRequest::PageIn { .. }) => "in",
                    Ok(PagerRequest::PageOut { .. }) => "out",
                    Ok(PagerRequest::SetSize { .. }) => "size",
                    Ok(PagerRequest::Release { .. }) => "release",
                    _ => "other",
                };
                log2.lock().unwrap().push(kind);
                Ok(fs2.lock().unwrap().handle_message(req, out))
            }))
            .unwrap();
        Rig { m, fs, log }
    }

    fn client(&mut self) -> ClientId {
        self.m.spawn(ClientSpec::DEFAULT).unwrap()
    }

    fn call(&mut self, c: ClientId, req: Request) -> Result<Reply, Errno> {
        let r = self.m.server.handle(Sender::Client(c), &req);
        assert_eq!(self.m.server.check_invariants(), Ok(()), "after {req:?}");
        r
    }

    fn open(&mut self, c: ClientId, path: &str, oflag: OFlags) -> Result<Fd, Errno> {
        let path = FilePath::new(path).unwrap();
        match self.call(c, Request::FileOpen { path, oflag })? {
            Reply::Fd(fd) => Ok(fd),
            r => panic!("open answered {r:?}"),
        }
    }

    fn map(
        &mut self,
        c: ClientId,
        fd: Fd,
        len: u64,
        prot: Prot,
        shared: bool,
    ) -> Result<u64, Errno> {
        let flags = if shared {
            MapFlags::SHARED
        } else {
            MapFlags::PRIVATE
        };
        let args = MmapArgs {
            addr: 0,
            len,
            prot,
            flags,
            fd: Some(fd),
            offset: 0,
        };
        match self.call(c, Request::Mmap(args))? {
            Reply::Mapped { addr } => Ok(addr),
            r => panic!("mmap answered {r:?}"),
        }
    }

    fn count(&self, kind: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|k| **k == kind)
            .count()
    }

    fn file(&self, path: &str) -> Vec<u8> {
        self.fs.lock().unwrap().contents(path).unwrap().to_vec()
    }
}

#[test]
fn a_page_mapped_by_two_clients_is_one_frame_paged_in_once() {
    let mut r = Rig::new(256, 4);
    let (a, b) = (r.client(), r.client());
    let fa = r.open(a, "/data", OFlags::RDONLY).unwrap();
    let fb = r.open(b, "/data", OFlags::RDONLY).unwrap();
    let va = r.map(a, fa, 3 * P, Prot::READ, true).unwrap();
    let vb = r.map(b, fb, 3 * P, Prot::READ, false).unwrap();
    for i in [0usize, 4095, 4096, 9999] {
        assert_eq!(r.m.read(a, va + i as u64), Ok(byte(i)));
        assert_eq!(r.m.read(b, vb + i as u64), Ok(byte(i)));
    }
    let fa1 = r.m.access(a, va + P, ipc_proto::Access::Read).unwrap();
    let fb1 = r.m.access(b, vb + P, ipc_proto::Access::Read).unwrap();
    assert_eq!(fa1, fb1);
    assert_eq!(r.count("in"), 3);
    assert_eq!(r.count("lookup"), 2);
}

#[test]
fn the_tail_of_the_last_page_reads_zero_and_beyond_it_is_sigbus() {
    let mut r = Rig::new(256, 4);
    let c = r.client();
    let fd = r.open(c, "/data", OFlags::RDONLY).unwrap();
    let va = r.map(c, fd, 4 * P, Prot::READ, false).unwrap();
    assert_eq!(r.m.read(c, va + 9999), Ok(byte(9999)));
    assert_eq!(r.m.read(c, va + 10_000), Ok(0));
    assert_eq!(r.m.read(c, va + 3 * P - 1), Ok(0));
    assert_eq!(r.m.read(c, va + 3 * P), Err(Signal::Bus));
}

#[test]
fn msync_writes_back_exactly_the_pages_written() {
    let mut r = Rig::new(256, 4);
    let c = r.client();
    let fd = r.open(c, "/data", OFlags::RDWR).unwrap();
    let va = r.map(c, fd, 3 * P, RW, true).unwrap();
    for i in 0..3 {
        r.m.read(c, va + i * P).unwrap();
    }
    r.m.write(c, va + P + 1, 0xee).unwrap();
    // Written past the end of the file: kept in memory, never written to the file.
    r.m.write(c, va + 2 * P + 3000, 0xdd).unwrap();
    assert_eq!(r.file("/data")[P as usize + 1], byte(4097));
    let sync = Request::Msync {
        addr: va,
        len: 3 * P,
        flags: MsyncFlags::SYNC,
    };
    assert_eq!(r.call(c, sync.clone()), Ok(Reply::Done));
    assert_eq!(r.count("out"), 2);
    let f = r.file("/data");
    assert_eq!(f.len(), 10_000);
    assert_eq!(f[P as usize + 1], 0xee);
    assert_eq!(f[P as usize], byte(4096));
    // Clean again: nothing more to write, and the next write marks the page again.
    assert_eq!(r.call(c, sync.clone()), Ok(Reply::Done));
    assert_eq!(r.count("out"), 2);
    r.m.write(c, va + P + 2, 0xcc).unwrap();
    assert_eq!(r.call(c, sync), Ok(Reply::Done));
    assert_eq!(r.count("out"), 3);
    assert_eq!(r.file("/data")[P as usize + 2], 0xcc);
    assert_eq!(r.m.read(c, va + 2 * P + 3000), Ok(0xdd));
}

#[test]
fn munmap_and_exit_write_back_and_the_last_close_releases() {
    let mut r = Rig::new(256, 4);
    let c = r.client();
    let fd = r.open(c, "/data", OFlags::RDWR).unwrap();
    let va = r.map(c, fd, P, RW, true).unwrap();
    r.m.write(c, va, 1).unwrap();
    assert_eq!(
        r.call(c, Request::Munmap { addr: va, len: P }),
        Ok(Reply::Done)
    );
    assert_eq!(r.file("/data")[0], 1);
    assert_eq!(r.count("release"), 0);
    let va = r.map(c, fd, P, RW, true).unwrap();
    r.m.write(c, va + 5, 2).unwrap();
    assert_eq!(r.call(c, Request::Close { fd }), Ok(Reply::Done));
    assert_eq!(r.count("release"), 0, "still mapped");
    r.m.exit(c).unwrap();
    assert_eq!(r.file("/data")[5], 2);
    assert_eq!(r.count("release"), 1);
    assert_eq!(r.m.server.stats().free_frames, 256);
    assert_eq!(r.m.server.check_invariants(), Ok(()));
}

#[test]
fn private_writes_are_copies_never_written_back() {
    let mut r = Rig::new(256, 4);
    let (a, b) = (r.client(), r.client());
    let fa = r.open(a, "/data", OFlags::RDONLY).unwrap();
    let fb = r.open(b, "/data", OFlags::RDWR).unwrap();
    let private = r.map(a, fa, P, RW, false).unwrap();
    let shared = r.map(b, fb, P, RW, true).unwrap();
    r.m.write(a, private + 10, 0x55).unwrap();
    assert_eq!(r.m.read(b, shared + 10), Ok(byte(10)));
    assert_eq!(r.m.read(a, private + 11), Ok(byte(11)));
    r.m.exit(a).unwrap();
    assert_eq!(r.count("out"), 0);
    assert_eq!(r.file("/data")[10], byte(10));
}

#[test]
fn open_modes_and_mode_bits_give_eacces() {
    let mut r = Rig::new(256, 4);
    let c = r.client();
    let ro = r.open(c, "/data", OFlags::RDONLY).unwrap();
    assert_eq!(r.map(c, ro, P, RW, true), Err(Errno::EACCES));
    let va = r.map(c, ro, P, Prot::READ, true).unwrap();
    let up = Request::Mprotect {
        addr: va,
        len: P,
        prot: RW,
    };
    assert_eq!(r.call(c, up), Err(Errno::EACCES));
    assert_eq!(r.open(c, "/secret", OFlags::RDONLY), Err(Errno::EACCES));
    assert_eq!(r.open(c, "/nope", OFlags::RDONLY), Err(Errno::ENOENT));
    assert_eq!(r.open(c, "/data", OFlags::WRONLY), Err(Errno::EINVAL));
    assert_eq!(
        r.open(c, "/data", OFlags::RDWR | OFlags::CREAT),
        Err(Errno::EINVAL)
    );
    let root =
        r.m.spawn(ClientSpec {
            uid: 0,
            gid: 0,
            ..ClientSpec::DEFAULT
        })
        .unwrap();
    assert!(r.open(root, "/secret", OFlags::RDWR).is_ok());
}

#[test]
fn denywrite_mappings_make_opening_for_write_etxtbsy() {
    let mut r = Rig::new(256, 4);
    let c = r.client();
    let fd = r.open(c, "/data", OFlags::RDONLY).unwrap();
    let args = MmapArgs {
        addr: 0,
        len: P,
        prot: Prot::READ,
        flags: MapFlags::PRIVATE | MapFlags::DENYWRITE,
        fd: Some(fd),
        offset: 0,
    };
    assert!(r.call(c, Request::Mmap(args)).is_ok());
    assert_eq!(r.open(c, "/data", OFlags::RDWR), Err(Errno::ETXTBSY));
    assert!(r.open(c, "/data", OFlags::RDONLY).is_ok());
}

#[test]
fn ftruncate_goes_to_the_pager_and_shrinking_is_sigbus_in_every_mapping() {
    let mut r = Rig::new(256, 4);
    let (a, b) = (r.client(), r.client());
    let fa = r.open(a, "/data", OFlags::RDWR).unwrap();
    let fb = r.open(b, "/data", OFlags::RDONLY).unwrap();
    let va = r.map(a, fa, 3 * P, RW, true).unwrap();
    let vb = r.map(b, fb, 3 * P, Prot::READ, true).unwrap();
    r.m.write(a, va + 2 * P, 9).unwrap();
    assert_eq!(r.m.read(b, vb + 2 * P), Ok(9));
    let shrink = Request::Ftruncate { fd: fa, len: 5000 };
    assert_eq!(r.call(a, shrink), Ok(Reply::Done));
    assert_eq!(r.file("/data").len(), 5000);
    assert_eq!(r.m.read(b, vb + 2 * P), Err(Signal::Bus));
    // The rest of the partial last page is zero, and stays so when the file grows.
    assert_eq!(r.m.read(b, vb + 5000), Ok(0));
    let grow = Request::Ftruncate { fd: fa, len: 3 * P };
    assert_eq!(r.call(a, grow), Ok(Reply::Done));
    assert_eq!(r.m.read(b, vb + 6000), Ok(0));
    assert_eq!(r.m.read(b, vb + 2 * P), Ok(0));
    assert_eq!(r.m.read(b, vb + 4999), Ok(byte(4999)));
    let ro = Request::Ftruncate { fd: fb, len: 0 };
    assert_eq!(r.call(b, ro), Err(Errno::EINVAL));
    // O_TRUNC empties it.
    r.open(a, "/data", OFlags::RDWR | OFlags::TRUNC).unwrap();
    assert_eq!(r.file("/data").len(), 0);
    assert_eq!(r.m.read(b, vb), Err(Signal::Bus));
}

#[test]
fn memory_pressure_evicts_clean_pages_then_writes_dirty_ones_back() {
    // 40 frames for a 96-page file: it only fits a page at a time.
    let mut r = Rig::new(40, 96);
    let c = r.client();
    let fd = r.open(c, "/big", OFlags::RDWR).unwrap();
    let va = r.map(c, fd, 96 * P, Prot::READ, false).unwrap();
    for round in 0..2 {
        for i in 0..96u64 {
            let at = (i * P + 17 * i) as usize;
            assert_eq!(r.m.read(c, va + at as u64), Ok(byte(at)), "round {round}");
        }
    }
    assert!(r.m.server.pager_counters().evictions >= 96);
    let vs = r.map(c, fd, 96 * P, RW, true).unwrap();
    for i in 0..96u64 {
        r.m.write(c, vs + i * P, i as u8 ^ 0xa5).unwrap();
    }
    assert_eq!(
        r.call(
            c,
            Request::Munmap {
                addr: vs,
                len: 96 * P
            }
        ),
        Ok(Reply::Done)
    );
    let f = r.file("/big");
    for i in 0..96usize {
        assert_eq!(f[i * 4096], i as u8 ^ 0xa5, "page {i}");
    }
    assert_eq!(r.m.livelocks, 0);
}

#[test]
fn evictions_rotate_through_the_cache_instead_of_taking_the_lowest_page() {
    // 40 frames, a 96-page file: after a sequential read only its last pages are cached.
    let mut r = Rig::new(40, 96);
    let c = r.client();
    let fd = r.open(c, "/big", OFlags::RDONLY).unwrap();
    let va = r.map(c, fd, 96 * P, Prot::READ, false).unwrap();
    for i in 0..96 {
        r.m.read(c, va + i * P).unwrap();
    }
    // Page 0 comes back, then page 1 needs a frame: the clock takes the page after the
    // last one it evicted, where lowest-first would take page 0, just read.
    assert_eq!(r.m.read(c, va), Ok(byte(0)));
    assert_eq!(r.m.read(c, va + P), Ok(byte(4096)));
    let ins = r.count("in");
    assert_eq!(r.m.read(c, va + 7), Ok(byte(7)));
    assert_eq!(r.count("in"), ins, "page 0 was evicted again");
    assert_eq!(r.m.livelocks, 0);
}

#[test]
fn locked_file_pages_are_never_evicted() {
    let mut r = Rig::new(40, 96);
    let c = r.client();
    let fd = r.open(c, "/big", OFlags::RDONLY).unwrap();
    let va = r.map(c, fd, 8 * P, Prot::READ, false).unwrap();
    assert_eq!(
        r.call(
            c,
            Request::Mlock {
                addr: va,
                len: 8 * P
            }
        ),
        Ok(Reply::Done)
    );
    let rest = r.map(c, fd, 96 * P, Prot::READ, false).unwrap();
    for i in 0..96 {
        r.m.read(c, rest + i * P).unwrap();
    }
    let space = r.m.server.space_of(c).unwrap();
    for i in 0..8 {
        assert!(KernelStub::query(r.m.server.stub(), space, va + i * P).is_some());
    }
}

#[test]
fn a_failing_or_lying_pager_is_eio_or_sigbus_never_a_panic() {
    let cfg = Config::with_ram(vec![FrameRange {
        start: 100,
        count: 64,
    }]);
    let mut m = Machine::new(cfg.clone(), ModelStub::new());
    let c = m.spawn(ClientSpec::DEFAULT).unwrap();
    let open = Request::FileOpen {
        path: FilePath::new("/x").unwrap(),
        oflag: OFlags::RDONLY,
    };
    assert_eq!(
        m.server.handle(Sender::Client(c), &open),
        Err(Errno::ENODEV)
    );
    let garbage: Box<dyn Pager> = Box::new(|_: &[u8], out: &mut [u8]| {
        out[..3].copy_from_slice(&[0, 0xff, 0xff]);
        Ok(3)
    });
    m.server.set_pager(garbage).unwrap();
    assert_eq!(m.server.handle(Sender::Client(c), &open), Err(Errno::EIO));
    let mut m = Machine::new(cfg.clone(), ModelStub::new());
    let c = m.spawn(ClientSpec::DEFAULT).unwrap();
    let gone: Box<dyn Pager> = Box::new(|_: &[u8], _: &mut [u8]| Err(Errno::ENXIO));
    m.server.set_pager(gone).unwrap();
    assert_eq!(m.server.handle(Sender::Client(c), &open), Err(Errno::EIO));

    // A pager that finds the file but then fails every page-in: the fault is SIGBUS.
    let mut m = Machine::new(cfg, ModelStub::new());
    let c = m.spawn(ClientSpec::DEFAULT).unwrap();
    let mut fs = RamFs::new(1 << 20);
    fs.create("/x", 0o644, 1000, 1000, &[1; 5000]).unwrap();
    let flaky: Box<dyn Pager> =
        Box::new(
            move |req: &[u8], out: &mut [u8]| match decode_pager_request(req) {
                Ok(PagerRequest::PageIn { .. }) => Err(Errno::EIO),
                _ => Ok(fs.handle_message(req, out)),
            },
        );
    m.server.set_pager(flaky).unwrap();
    let Ok(Reply::Fd(fd)) = m.server.handle(Sender::Client(c), &open) else {
        panic!("open");
    };
    let args = MmapArgs {
        addr: 0,
        len: 2 * P,
        prot: Prot::READ,
        flags: MapFlags::SHARED,
        fd: Some(fd),
        offset: 0,
    };
    let Ok(Reply::Mapped { addr }) = m.server.handle(Sender::Client(c), &Request::Mmap(args))
    else {
        panic!("mmap");
    };
    assert_eq!(m.read(c, addr), Err(Signal::Bus));
    assert_eq!(m.server.check_invariants(), Ok(()));
    m.exit(c).unwrap();
    assert_eq!(m.server.stats().free_frames, 64);
}

#[test]
fn a_forked_child_shares_shared_file_pages_and_copies_private_ones() {
    let mut r = Rig::new(256, 4);
    let p = r.client();
    let fd = r.open(p, "/data", OFlags::RDWR).unwrap();
    let shared = r.map(p, fd, P, RW, true).unwrap();
    let private = r.map(p, fd, P, RW, false).unwrap();
    r.m.write(p, private, 0x11).unwrap();
    let child = r.m.fork(p, ClientSpec::DEFAULT).unwrap();
    r.m.write(child, shared + 1, 0x22).unwrap();
    assert_eq!(r.m.read(p, shared + 1), Ok(0x22));
    r.m.write(child, private, 0x33).unwrap();
    assert_eq!(r.m.read(p, private), Ok(0x11));
    assert_eq!(r.m.read(child, private), Ok(0x33));
    r.m.exit(p).unwrap();
    r.m.exit(child).unwrap();
    assert_eq!(r.file("/data")[1], 0x22);
    assert_eq!(r.file("/data")[0], byte(0));
    assert_eq!(r.m.server.stats().free_frames, 256);
}

#[test]
fn a_read_fault_maps_the_cached_pages_around_it() {
    let mut r = Rig::new(256, 40);
    let c = r.client();
    let fd = r.open(c, "/big", OFlags::RDWR).unwrap();
    // One mapping caches pages 0..20 and dirties page 3.
    let hold = r.map(c, fd, 40 * P, RW, true).unwrap();
    for i in 0..20 {
        r.m.read(c, hold + i * P).unwrap();
    }
    r.m.write(c, hold + 3 * P, 7).unwrap();
    let space = r.m.server.space_of(c).unwrap();
    let installed = |r: &Rig, va: u64| KernelStub::query(r.m.server.stub(), space, va);
    // A private mapping with its own copy of page 2, then a read of page 1.
    let private = r.map(c, fd, 40 * P, RW, false).unwrap();
    r.m.write(c, private + 2 * P, 9).unwrap();
    let copy = installed(&r, private + 2 * P).unwrap().0;
    r.m.read(c, private + P).unwrap();
    // The aligned 64 KiB around the fault, clipped to the mapping.
    let from = ((private + P) & !(16 * P - 1)).max(private);
    let to = (from + 16 * P).min(private + 40 * P);
    for i in (0..20).filter(|&i| i != 2) {
        let va = private + i * P;
        match installed(&r, va) {
            Some((_, a)) => {
                assert!(
                    (from..to).contains(&va),
                    "page {i} mapped outside the window"
                );
                assert!(!a.writable, "private page {i} writable");
            }
            None => assert!(!(from..to).contains(&va), "page {i} not mapped around"),
        }
    }
    assert_eq!(installed(&r, private + 2 * P).unwrap().0, copy);
    // Not cached: left to its own fault.
    let last = private + 39 * P;
    assert!((from..to).contains(&last) || installed(&r, last).is_none());
    // A shared mapping: the dirty page comes writable, the clean ones read-only.
    let shared = r.map(c, fd, 40 * P, RW, true).unwrap();
    r.m.read(c, shared + 4 * P).unwrap();
    assert!(!installed(&r, shared + 4 * P).unwrap().1.writable);
    let from = ((shared + 4 * P) & !(16 * P - 1)).max(shared);
    match installed(&r, shared + 3 * P) {
        Some((_, a)) => assert!(a.writable && from <= shared + 3 * P),
        None => assert_eq!(from, shared + 4 * P),
    }
    assert_eq!(r.m.read(c, shared + 3 * P), Ok(7));
    assert_eq!(r.m.read(c, private + 2 * P), Ok(9));
    assert_eq!(r.m.server.check_invariants(), Ok(()));
}

#[test]
fn mlock_under_pressure_keeps_every_page_it_made_resident() {
    let mut r = Rig::new(40, 96);
    let c = r.client();
    let fd = r.open(c, "/big", OFlags::RDONLY).unwrap();
    // The cache fills memory with the file's tail.
    let all = r.map(c, fd, 96 * P, Prot::READ, false).unwrap();
    for i in (40..96).rev() {
        r.m.read(c, all + i * P).unwrap();
    }
    let locked = r.map(c, fd, 24 * P, Prot::READ, false).unwrap();
    let lock = Request::Mlock {
        addr: locked,
        len: 24 * P,
    };
    assert_eq!(r.call(c, lock), Ok(Reply::Done));
    let space = r.m.server.space_of(c).unwrap();
    for i in 0..24 {
        let va = locked + i * P;
        assert!(
            KernelStub::query(r.m.server.stub(), space, va).is_some(),
            "locked page {i} not resident"
        );
    }
    assert!(r.m.server.pager_counters().evictions > 0);
}

#[test]
fn a_fault_that_cannot_fit_ends_with_sigbus_not_a_loop() {
    // Fill memory with private copies, then a private write to a file page needs two
    // frames (the page in, its copy) with one free: the only evictable page is the one
    // just paged in. Both mappings are MAP_NORESERVE: a charged one would keep its
    // frames in reserve, and the filler could not take them.
    let mut r = Rig::new(24, 8);
    let c = r.client();
    let fd = r.open(c, "/big", OFlags::RDONLY).unwrap();
    let anon = Request::Mmap(MmapArgs {
        addr: 0,
        len: 64 * P,
        prot: RW,
        flags: MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::NORESERVE,
        fd: None,
        offset: 0,
    });
    let Ok(Reply::Mapped { addr: heap }) = r.call(c, anon) else {
        panic!("mmap");
    };
    let private_file = Request::Mmap(MmapArgs {
        addr: 0,
        len: 8 * P,
        prot: RW,
        flags: MapFlags::PRIVATE | MapFlags::NORESERVE,
        fd: Some(fd),
        offset: 0,
    });
    let Ok(Reply::Mapped { addr: file }) = r.call(c, private_file) else {
        panic!("mmap of the file");
    };
    let mut i = 0;
    while r.m.server.stats().free_frames > 1 {
        r.m.write(c, heap + i * P, 1).unwrap();
        i += 1;
    }
    assert_eq!(r.m.write(c, file, 2), Err(Signal::Bus));
    assert_eq!(r.m.livelocks, 0);
    assert_eq!(r.m.server.check_invariants(), Ok(()));
}
