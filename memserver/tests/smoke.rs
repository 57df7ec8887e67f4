mod common;
use common::*;
use ipc_proto::*;

#[test]
fn anonymous_memory_is_lazy_zeroed_and_reclaimed() {
    let sys = system(256);
    let free0 = sys.borrow().server.stats().free_frames;
    let mut c = spawn(&sys, ClientSpec::DEFAULT);
    let a = c
        .mmap(
            0,
            3 * P,
            Prot::READ | Prot::WRITE,
            MapFlags::PRIVATE | MapFlags::ANONYMOUS,
            None,
            0,
        )
        .unwrap();
    assert_eq!(a % P, 0);
    assert!(!c.page_info(a).unwrap().resident);
    assert_eq!(read(&mut c, a + 5), Ok(0));
    write(&mut c, a + P + 7, 42).unwrap();
    assert_eq!(read(&mut c, a + P + 7), Ok(42));
    assert!(c.page_info(a + P).unwrap().installed);
    check(&sys);
    c.munmap(a + P, P).unwrap();
    assert_eq!(read(&mut c, a + P), Err(Signal::Segv));
    assert_eq!(c.regions().count(), 2);
    check(&sys);
    let id = c.transport().id;
    sys.borrow_mut().exit(id).unwrap();
    check(&sys);
    assert_eq!(sys.borrow().server.stats().free_frames, free0);
}

#[test]
fn shm_is_shared_between_clients() {
    let sys = system(256);
    let mut a = spawn(&sys, ClientSpec::DEFAULT);
    let mut b = spawn(&sys, ClientSpec::DEFAULT);
    let fd = a
        .shm_open("/ring", OFlags::RDWR | OFlags::CREAT, 0o600)
        .unwrap();
    a.ftruncate(fd, 8192).unwrap();
    let pa = a
        .mmap(
            0,
            8192,
            Prot::READ | Prot::WRITE,
            MapFlags::SHARED,
            Some(fd),
            0,
        )
        .unwrap();
    let fdb = b.shm_open("/ring", OFlags::RDWR, 0).unwrap();
    let pb = b
        .mmap(
            0,
            8192,
            Prot::READ | Prot::WRITE,
            MapFlags::SHARED,
            Some(fdb),
            0,
        )
        .unwrap();
    write(&mut a, pa + 100, 7).unwrap();
    assert_eq!(read(&mut b, pb + 100), Ok(7));
    // private COW mapping sees the data but does not write through.
    let pc = b
        .mmap(
            0,
            8192,
            Prot::READ | Prot::WRITE,
            MapFlags::PRIVATE,
            Some(fdb),
            0,
        )
        .unwrap();
    assert_eq!(read(&mut b, pc + 100), Ok(7));
    write(&mut b, pc + 100, 9).unwrap();
    assert_eq!(read(&mut a, pa + 100), Ok(7));
    assert_eq!(read(&mut b, pc + 100), Ok(9));
    // past the end: SIGBUS
    let pd = b
        .mmap(0, 4 * P, Prot::READ, MapFlags::SHARED, Some(fdb), 0)
        .unwrap();
    assert_eq!(read(&mut b, pd + 2 * P), Err(Signal::Bus));
    check(&sys);
}

#[test]
fn an_object_grown_outside_the_server_follows_but_never_shrinks() {
    let sys = system(256);
    let mut a = spawn(&sys, ClientSpec::DEFAULT);
    let id = a.transport().id;
    let fd = a
        .shm_open("grown", OFlags::RDWR | OFlags::CREAT, 0o600)
        .unwrap();
    let ro = a.shm_open("grown", OFlags::RDONLY, 0).unwrap();
    let (obj, writable) = sys.borrow().server.shm_of_fd(id, fd).expect("a shm fd");
    assert!(writable);
    assert_eq!(sys.borrow().server.shm_of_fd(id, ro), Some((obj, false)));
    assert_eq!(sys.borrow().server.shm_of_fd(id, Fd(9999)), None);
    sys.borrow_mut().server.object_grown(obj, 5000);
    assert_eq!(a.fstat(fd).unwrap().size, 5000);
    // Smaller is not a growth; past the largest object is refused.
    sys.borrow_mut().server.object_grown(obj, 10);
    assert_eq!(a.fstat(fd).unwrap().size, 5000);
    sys.borrow_mut().server.object_grown(obj, u64::MAX);
    assert_eq!(a.fstat(fd).unwrap().size, 5000);
    // The grown page is there to map.
    let p = a
        .mmap(0, 2 * P, Prot::READ, MapFlags::SHARED, Some(fd), 0)
        .unwrap();
    assert_eq!(read(&mut a, p + P), Ok(0));
    assert_eq!(read(&mut a, p + 2 * P - 1), Ok(0));
    check(&sys);
}

#[test]
fn a_low_window_takes_map_32bit_and_nothing_else() {
    const G: u64 = 1 << 30;
    let mut cfg = config(256);
    cfg.mmap_min = 1 << 45;
    cfg.mmap_max = (1 << 45) + (1 << 40);
    cfg.low_window = Some((G, 2 * G));
    let sys = std::rc::Rc::new(std::cell::RefCell::new(memserver_testkit::Machine::new(
        cfg,
        memserver_testkit::ModelStub::new(),
    )));
    let mut c = spawn(&sys, ClientSpec::DEFAULT);
    let rw = Prot::READ | Prot::WRITE;
    let anon = MapFlags::PRIVATE | MapFlags::ANONYMOUS;
    let high = c.mmap(0, P, rw, anon, None, 0).unwrap();
    assert!(
        high >= 1 << 45,
        "an ordinary mapping goes to the main range: {high:#x}"
    );
    let low = c
        .mmap(0, 2 * P, rw, anon | MapFlags::BIT32, None, 0)
        .unwrap();
    assert!(
        (G..2 * G).contains(&low),
        "MAP_32BIT goes below 2 GiB: {low:#x}"
    );
    write(&mut c, low + P, 7).unwrap();
    assert_eq!(read(&mut c, low + P), Ok(7));
    // A hint in the low window is taken; MAP_FIXED there works.
    let hinted = c.mmap(G + 64 * P, P, rw, anon, None, 0).unwrap();
    assert_eq!(hinted, G + 64 * P);
    let fixed = c.mmap(G, P, rw, anon | MapFlags::FIXED, None, 0).unwrap();
    assert_eq!(fixed, G);
    // Between the ranges nothing may lie; below the low window is mmap_min's EPERM.
    let gap = c.mmap(4 * G, P, rw, anon | MapFlags::FIXED, None, 0);
    assert_eq!(gap, Err(Errno::ENOMEM));
    let below = c.mmap(G - P, P, rw, anon | MapFlags::FIXED, None, 0);
    assert_eq!(below, Err(Errno::EPERM));
    let straddle = c.mmap(2 * G - P, 2 * P, rw, anon | MapFlags::FIXED, None, 0);
    assert_eq!(straddle, Err(Errno::ENOMEM));
    // A low mapping ending at 2 GiB cannot grow in place past it; it may move.
    let top = c
        .mmap(2 * G - P, P, rw, anon | MapFlags::FIXED, None, 0)
        .unwrap();
    write(&mut c, top, 9).unwrap();
    assert_eq!(
        c.mremap(top, P, 2 * P, MremapFlags::empty(), 0),
        Err(Errno::ENOMEM)
    );
    let moved = c.mremap(top, P, 2 * P, MremapFlags::MAYMOVE, 0).unwrap();
    assert_eq!(read(&mut c, moved), Ok(9));
    check(&sys);
}
