//! Crash survival and hostile clients, in-process over the real kernel stub.
//!
//! - Clients crash (exit mid-session) at random points across thousands of requests:
//!   nothing they held leaks (frames, fds, locks, objects, cached and dirty file pages),
//!   and a shm object or file another client still maps keeps its data.
//! - Hostile clients send garbage, truncated and oversized messages, kernel-only
//!   requests, forged fds, other clients' addresses, rights they lack (devices, banks,
//!   files), W^X violations and quota exhaustion: each gets its errno, and a well-behaved client running alongside
//!   sees every one of its calls succeed and its data intact.

use client_lib::{Client, Transport};
use ipc_proto::{
    Access, ClientId, ClientSpec, Errno, Fd, MAX_REQUEST_LEN, MapFlags, OFlags, Prot, Request,
    Signal,
};
use memserver::{Config, StandardLayout};
use memserver_testkit::Machine;
use memserver_testkit::RamStub;
use std::cell::RefCell;
use std::rc::Rc;

const P: u64 = 4096;
const RW: Prot = Prot::READ.union(Prot::WRITE);
const PA: MapFlags = MapFlags::PRIVATE.union(MapFlags::ANONYMOUS);

mod common;
use common::{Proc, Rng};

type Sys = Rc<RefCell<Machine<RamStub>>>;

fn system() -> Sys {
    let mut cfg = Config::standard(StandardLayout::contiguous(0x100, 64, 2048, 16));
    cfg.self_check = true;
    let stub = memserver_testkit::ram_stub(&cfg).unwrap();
    let mut m = Machine::new(cfg, stub);
    // The conformance suite's files: /conf/text read-only, /conf/secret root's.
    let files = fileserver::fixture::conformance_fs();
    m.server.set_pager(Box::new(files.into_pager())).unwrap();
    Rc::new(RefCell::new(m))
}

/// Byte `i` of the read-only `/conf/text`.
fn text_byte(i: u64) -> u8 {
    use fileserver::fixture::{TEXT, byte};
    byte(TEXT.seed, i as usize)
}

fn spawn(sys: &Sys, spec: ClientSpec) -> Client<Proc<RamStub>> {
    let id = sys.borrow_mut().spawn(spec).unwrap();
    Client::new(Proc {
        sys: sys.clone(),
        id,
    })
}

fn id(c: &mut Client<Proc<RamStub>>) -> ClientId {
    c.transport().id
}

fn write(c: &mut Client<Proc<RamStub>>, addr: u64, v: u8) -> Result<(), Signal> {
    let (sys, id) = (c.transport().sys.clone(), id(c));
    sys.borrow_mut().write(id, addr, v)
}

fn read(c: &mut Client<Proc<RamStub>>, addr: u64) -> Result<u8, Signal> {
    let (sys, id) = (c.transport().sys.clone(), id(c));
    sys.borrow_mut().read(id, addr)
}

fn exit(mut c: Client<Proc<RamStub>>) {
    let (sys, id) = (c.transport().sys.clone(), c.transport().id);
    sys.borrow_mut().exit(id).unwrap();
}

fn check(sys: &Sys) {
    let m = sys.borrow();
    m.server.check_invariants().unwrap();
    assert_eq!(m.server.stats().violations, 0);
    assert_eq!(m.livelocks, 0);
}

#[test]
fn crashes_leak_nothing_and_spare_shared_data() {
    let sys = system();
    let start = sys.borrow().server.stats();
    let mut keeper = spawn(&sys, ClientSpec::DEFAULT);
    let kfd = keeper
        .shm_open("/keep", OFlags::CREAT | OFlags::RDWR, 0o666)
        .unwrap();
    keeper.ftruncate(kfd, (8 * P) as i64).unwrap();
    let kbase = keeper
        .mmap(0, 8 * P, RW, MapFlags::SHARED, Some(kfd), 0)
        .unwrap();
    for i in 0..8 {
        write(&mut keeper, kbase + i * P + i, 0x40 + i as u8).unwrap();
    }
    // And a file mapping, whose pages the crashing clients share and copy.
    let tfd = keeper.open_file("/conf/text", OFlags::RDONLY).unwrap();
    let tbase = keeper
        .mmap(0, 3 * P, Prot::READ, MapFlags::SHARED, Some(tfd), 0)
        .unwrap();
    let mut rng = Rng(0xdead_beef);
    let mut requests = 0u64;
    for round in 0..300u64 {
        let mut c = spawn(&sys, ClientSpec::DEFAULT);
        // Each crashing client shares /keep (read-only view and a private COW copy),
        // holds private memory, locks, its own objects and fds, then dies at a random
        // point of its program.
        let steps = rng.below(24);
        let mut areas: Vec<(u64, u64)> = Vec::new();
        for step in 0..steps {
            requests += 1;
            match rng.below(11) {
                0 => {
                    let fd = c.shm_open("/keep", OFlags::RDONLY, 0).unwrap();
                    let a = c
                        .mmap(0, 8 * P, Prot::READ, MapFlags::SHARED, Some(fd), 0)
                        .unwrap();
                    let page = rng.below(8);
                    assert_eq!(read(&mut c, a + page * P + page), Ok(0x40 + page as u8));
                }
                1 => {
                    let fd = c.shm_open("/keep", OFlags::RDONLY, 0).unwrap();
                    let a = c
                        .mmap(0, 8 * P, RW, MapFlags::PRIVATE, Some(fd), 0)
                        .unwrap();
                    // A private write copies the page; /keep must not change.
                    write(&mut c, a + 3 * P + 3, 0xff).unwrap();
                }
                2 | 3 => {
                    let pages = 1 + rng.below(8);
                    let a = c.mmap(0, pages * P, RW, PA, None, 0).unwrap();
                    for i in 0..pages {
                        write(&mut c, a + i * P, round as u8).unwrap();
                    }
                    areas.push((a, pages));
                }
                4 => {
                    if let Some(&(a, pages)) = areas.last() {
                        c.mlock(a, pages * P).unwrap();
                    }
                }
                5 => {
                    let name = format!("/crash-{round}-{step}");
                    let fd = c
                        .shm_open(&name, OFlags::CREAT | OFlags::RDWR, 0o600)
                        .unwrap();
                    c.ftruncate(fd, (2 * P) as i64).unwrap();
                    let a = c.mmap(0, 2 * P, RW, MapFlags::SHARED, Some(fd), 0).unwrap();
                    write(&mut c, a + P, 1).unwrap();
                    // Unlinked now or never: an unlinked one dies with its last user.
                    if rng.below(2) == 0 {
                        c.shm_unlink(&name).unwrap();
                    }
                }
                6 => {
                    let a = c
                        .mmap(
                            0,
                            2 * P,
                            RW,
                            MapFlags::SHARED | MapFlags::ANONYMOUS,
                            None,
                            0,
                        )
                        .unwrap();
                    write(&mut c, a, 9).unwrap();
                }
                7 => {
                    if let Some((a, pages)) = areas.pop() {
                        c.munmap(a, pages * P).unwrap();
                    }
                }
                8 => {
                    c.mlockall(ipc_proto::MlockallFlags::FUTURE).unwrap();
                }
                9 => {
                    // The keeper's file, shared and privately written.
                    let fd = c.open_file("/conf/text", OFlags::RDONLY).unwrap();
                    let a = c
                        .mmap(0, 3 * P, RW, MapFlags::PRIVATE, Some(fd), 0)
                        .unwrap();
                    let page = rng.below(3);
                    assert_eq!(read(&mut c, a + page * P), Ok(text_byte(page * P)));
                    write(&mut c, a + page * P, !text_byte(page * P)).unwrap();
                }
                _ => {
                    // A writable file of its own, dirty when it dies (or cleanly closed).
                    let fd = c.open_file("/conf/exit", OFlags::RDWR).unwrap();
                    let a = c.mmap(0, 2 * P, RW, MapFlags::SHARED, Some(fd), 0).unwrap();
                    write(&mut c, a + rng.below(2 * P), round as u8).unwrap();
                    if rng.below(2) == 0 {
                        c.close(fd).unwrap();
                    }
                }
            }
        }
        exit(c);
        // The survivor's data is intact after every crash.
        for i in 0..8 {
            assert_eq!(read(&mut keeper, kbase + i * P + i), Ok(0x40 + i as u8));
        }
        for at in [0, P + 1, 9999] {
            assert_eq!(read(&mut keeper, tbase + at), Ok(text_byte(at)));
        }
        if round % 25 == 0 {
            check(&sys);
        }
    }
    check(&sys);
    // Named objects the crashed clients left are still there (names outlive clients);
    // unlinking them frees them.
    let mut cleaner = spawn(&sys, spec_root());
    for round in 0..300 {
        for step in 0..24 {
            let _ = cleaner.shm_unlink(&format!("/crash-{round}-{step}"));
        }
    }
    exit(cleaner);
    keeper.shm_unlink("/keep").unwrap();
    exit(keeper);
    check(&sys);
    let end = sys.borrow().server.stats();
    assert_eq!(
        end.free_frames + end.table_frames,
        start.free_frames + start.table_frames
    );
    assert_eq!((end.shm_objects, end.clients), (0, 0));
    assert!(requests > 2000, "only {requests} requests ran");
}

fn spec_root() -> ClientSpec {
    ClientSpec {
        uid: 0,
        gid: 0,
        ..ClientSpec::DEFAULT
    }
}

/// One round of a hostile client's abuse; asserts each errno it can predict.
fn abuse(h: &mut Client<Proc<RamStub>>, rng: &mut Rng, victim: ClientId, victim_addr: u64) {
    match rng.below(13) {
        0 => {
            // Garbage of any length, up to twice the largest request.
            let len = rng.below(2 * MAX_REQUEST_LEN as u64) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let mut out = [0u8; ipc_proto::MAX_RESPONSE_LEN];
            let n = h.transport().call(&bytes, &mut out).unwrap();
            // Whatever it decoded to, the answer is a well-formed response.
            assert!(ipc_proto::decode_response(&out[..n]).is_ok());
        }
        1 => {
            let mut out = [0u8; ipc_proto::MAX_RESPONSE_LEN];
            let big = vec![1u8; MAX_REQUEST_LEN + 1 + rng.below(4096) as usize];
            let n = h.transport().call(&big, &mut out).unwrap();
            assert_eq!(
                ipc_proto::decode_response(&out[..n]),
                Ok(Err(Errno::EMSGSIZE))
            );
        }
        2 => {
            // Kernel-only requests, naming the victim.
            for req in [
                Request::ClientExited { client: victim },
                Request::PageFault {
                    client: victim,
                    addr: victim_addr,
                    access: Access::Write,
                },
            ] {
                assert_eq!(h.call(&req), Err(Errno::EPERM));
            }
        }
        3 => {
            // The victim's addresses mean nothing in another space.
            assert_eq!(h.munmap(victim_addr, 4 * P), Ok(()));
            assert_eq!(h.mprotect(victim_addr, P, Prot::NONE), Err(Errno::ENOMEM));
            assert_eq!(write(h, victim_addr, 0xbd), Err(Signal::Segv));
        }
        4 => {
            let fd = Fd(3 + rng.below(64) as u32);
            assert_eq!(h.fstat(fd), Err(Errno::EBADF));
            assert_eq!(
                h.mmap(0, P, RW, MapFlags::SHARED, Some(fd), 0),
                Err(Errno::EBADF)
            );
        }
        5 => {
            assert_eq!(h.open_device("fb0", OFlags::RDWR), Err(Errno::EACCES));
            assert_eq!(h.open_bank("dma"), Err(Errno::EACCES));
        }
        6 => {
            assert_eq!(
                h.mmap(0, P, RW | Prot::EXEC, PA, None, 0),
                Err(Errno::EACCES)
            );
        }
        7 => {
            // Fill the region quota, then one more.
            let mut got = Vec::new();
            loop {
                let prot = if got.len() % 2 == 0 { Prot::READ } else { RW };
                match h.mmap(0, P, prot, PA, None, 0) {
                    Ok(a) => got.push(a),
                    Err(e) => {
                        assert_eq!(e, Errno::ENOMEM);
                        break;
                    }
                }
                assert!(got.len() <= 8, "region quota not enforced");
            }
            for a in got {
                h.munmap(a, P).unwrap();
            }
        }
        8 => {
            assert_eq!(h.mmap(0, 1 << 40, RW, PA, None, 0), Err(Errno::ENOMEM));
        }
        9 => {
            let name = format!("/hostile-{}", rng.below(4));
            let mut fds = Vec::new();
            loop {
                match h.shm_open(&name, OFlags::CREAT | OFlags::RDWR, 0o600) {
                    Ok(fd) => fds.push(fd),
                    Err(e) => {
                        assert_eq!(e, Errno::EMFILE);
                        break;
                    }
                }
                assert!(fds.len() <= 4, "fd quota not enforced");
            }
            for fd in fds {
                h.close(fd).unwrap();
            }
            h.shm_unlink(&name).unwrap();
        }
        11 => {
            // Files it may not have, or not for writing.
            assert_eq!(
                h.open_file("/conf/secret", OFlags::RDONLY),
                Err(Errno::EACCES)
            );
            assert_eq!(h.open_file("/conf/text", OFlags::RDWR), Err(Errno::EACCES));
            assert_eq!(
                h.open_file("/conf/../etc", OFlags::RDONLY),
                Err(Errno::EINVAL)
            );
            let fd = h.open_file("/conf/text", OFlags::RDONLY).unwrap();
            assert_eq!(
                h.mmap(0, P, RW, MapFlags::SHARED, Some(fd), 0),
                Err(Errno::EACCES)
            );
            // Past the end of the file: SIGBUS, and nothing written anywhere.
            let a = h
                .mmap(0, 4 * P, RW, MapFlags::PRIVATE, Some(fd), 0)
                .unwrap();
            assert_eq!(write(h, a + 3 * P, 1), Err(Signal::Bus));
            h.munmap(a, 4 * P).unwrap();
            h.close(fd).unwrap();
        }
        10 => {
            // Hostile clients keep no mapping between rounds: any address is a SIGSEGV.
            let a = rng.next() & 0x0000_7fff_ffff_f000;
            assert_eq!(write(h, a, 1), Err(Signal::Segv));
        }
        _ => {
            // A touch-heavy burst, then everything dropped at once.
            if let Ok(a) = h.mmap(0, 16 * P, RW, PA | MapFlags::NORESERVE, None, 0) {
                for i in 0..16 {
                    let _ = write(h, a + i * P, 1);
                }
                h.munmap(a, 16 * P).unwrap();
            }
        }
    }
}

#[test]
fn hostile_clients_never_disturb_a_well_behaved_one() {
    let sys = system();
    let start = sys.borrow().server.stats();
    let mut good = spawn(&sys, ClientSpec::DEFAULT);
    let gid = id(&mut good);
    let long_lived = good.mmap(0, 8 * P, RW, PA, None, 0).unwrap();
    for i in 0..8 {
        write(&mut good, long_lived + i * P, 0x70 + i as u8).unwrap();
    }
    let text = good.open_file("/conf/text", OFlags::RDONLY).unwrap();
    let text = good
        .mmap(0, 3 * P, Prot::READ, MapFlags::SHARED, Some(text), 0)
        .unwrap();
    let hostile_spec = ClientSpec {
        deny_wx: true,
        banks: 1,
        devices: 0,
        limits: ipc_proto::Limits {
            max_regions: 8,
            max_bytes: 1 << 30,
            max_fds: 4,
            max_locked: P,
        },
        ..ClientSpec::DEFAULT
    };
    let mut hostile: Vec<Client<Proc<RamStub>>> =
        (0..4).map(|_| spawn(&sys, hostile_spec)).collect();
    let mut rng = Rng(0x5eed);
    for round in 0..1500u64 {
        for h in hostile.iter_mut() {
            abuse(h, &mut rng, gid, long_lived);
        }
        // The well-behaved client: every call succeeds, every byte is where it left it.
        let a = good.mmap(0, 4 * P, RW, PA, None, 0).unwrap();
        for i in 0..4 {
            write(&mut good, a + i * P + 7, (round + i) as u8).unwrap();
        }
        good.mprotect(a + P, P, Prot::READ).unwrap();
        for i in 0..4 {
            assert_eq!(read(&mut good, a + i * P + 7), Ok((round + i) as u8));
        }
        good.munmap(a, 4 * P).unwrap();
        let page = round % 8;
        assert_eq!(
            read(&mut good, long_lived + page * P),
            Ok(0x70 + page as u8)
        );
        let at = (round * 131) % 10_000;
        assert_eq!(read(&mut good, text + at), Ok(text_byte(at)));
        // Now and then a hostile client dies mid-abuse and another takes its place.
        if round % 100 == 99 {
            let i = rng.below(hostile.len() as u64) as usize;
            let old = hostile.swap_remove(i);
            exit(old);
            hostile.push(spawn(&sys, hostile_spec));
            check(&sys);
        }
    }
    for h in hostile {
        exit(h);
    }
    exit(good);
    check(&sys);
    let end = sys.borrow().server.stats();
    assert_eq!(
        end.free_frames + end.table_frames,
        start.free_frames + start.table_frames
    );
    assert_eq!((end.shm_objects, end.clients), (0, 0));
}
