//! Region-map and argument edge cases at the server level: window boundaries, a full
//! address space, overflowing lengths.

mod common;
use common::*;
use ipc_proto::*;

const PA: MapFlags = MapFlags::PRIVATE.union(MapFlags::ANONYMOUS);

fn small_window_system(pages: u64) -> Sys {
    let mut cfg = config(4096);
    cfg.mmap_min = 0x10_000;
    cfg.mmap_max = 0x10_000 + pages * P;
    std::rc::Rc::new(std::cell::RefCell::new(memserver_testkit::Machine::new(
        cfg,
        memserver_testkit::ModelStub::new(),
    )))
}

#[test]
fn fixed_mapping_at_the_very_top_and_bottom_of_the_window() {
    let sys = small_window_system(16);
    let mut c = spawn(&sys, ClientSpec::DEFAULT);
    let top = 0x10_000 + 15 * P;
    assert_eq!(
        c.mmap(top, P, Prot::READ, PA | MapFlags::FIXED, None, 0),
        Ok(top)
    );
    assert_eq!(
        c.mmap(top + P, P, Prot::READ, PA | MapFlags::FIXED, None, 0),
        Err(Errno::ENOMEM)
    );
    assert_eq!(
        c.mmap(0x10_000, P, Prot::READ, PA | MapFlags::FIXED, None, 0),
        Ok(0x10_000)
    );
    assert_eq!(
        c.mmap(0x10_000 - P, P, Prot::READ, PA | MapFlags::FIXED, None, 0),
        Err(Errno::EPERM)
    );
    check(&sys);
}

#[test]
fn a_full_address_space_refuses_then_recovers() {
    let sys = small_window_system(8);
    let mut c = spawn(&sys, ClientSpec::DEFAULT);
    let a = c.mmap(0, 8 * P, Prot::READ, PA, None, 0).unwrap();
    assert_eq!(a, 0x10_000);
    assert_eq!(c.mmap(0, P, Prot::READ, PA, None, 0), Err(Errno::ENOMEM));
    c.munmap(a + 3 * P, P).unwrap();
    assert_eq!(
        c.mmap(0, P, Prot::READ | Prot::WRITE, PA, None, 0),
        Ok(a + 3 * P)
    );
    assert_eq!(
        c.mmap(0, 2 * P, Prot::READ, PA, None, 0),
        Err(Errno::ENOMEM)
    );
    check(&sys);
}

#[test]
fn overflowing_lengths_and_ranges() {
    let sys = system(256);
    let mut c = spawn(&sys, ClientSpec::DEFAULT);
    assert_eq!(
        c.mmap(0, u64::MAX, Prot::READ, PA, None, 0),
        Err(Errno::ENOMEM)
    );
    assert_eq!(
        c.mmap(0, u64::MAX - P + 2, Prot::READ, PA, None, 0),
        Err(Errno::ENOMEM)
    );
    assert_eq!(
        c.mmap(!(P - 1), 2 * P, Prot::READ, PA | MapFlags::FIXED, None, 0),
        Err(Errno::ENOMEM)
    );
    assert_eq!(c.munmap(!(P - 1), 2 * P), Err(Errno::EINVAL));
    assert_eq!(
        c.mprotect(0x10_000, u64::MAX, Prot::READ),
        Err(Errno::ENOMEM)
    );
    assert_eq!(c.mlock(u64::MAX - 10, 100), Err(Errno::EINVAL));
    assert_eq!(
        c.msync(0x10_000, u64::MAX, MsyncFlags::SYNC),
        Err(Errno::ENOMEM)
    );
    // Linux: an impossible length is ENOMEM (no room), never EOVERFLOW, whatever the
    // offset of anonymous memory, which ignores it.
    assert_eq!(
        c.mmap(0, 0u64.wrapping_sub(P), Prot::READ, PA, None, 0),
        Err(Errno::ENOMEM)
    );
    assert_eq!(
        c.mmap(0, 0u64.wrapping_sub(P), Prot::READ, PA, None, !(P - 1)),
        Err(Errno::ENOMEM)
    );
    // Nothing above changed anything.
    assert_eq!(c.regions().count(), 0);
    let a = c
        .mmap(0, P, Prot::READ, PA, None, (i64::MAX as u64) & !(P - 1))
        .expect("anonymous memory ignores its offset, as Linux");
    c.munmap(a, P).unwrap();
    check(&sys);
}

#[test]
fn hint_is_used_when_free_and_ignored_when_not() {
    let sys = system(256);
    let mut c = spawn(&sys, ClientSpec::DEFAULT);
    let hint = 0x4000_0000;
    assert_eq!(c.mmap(hint + 123, P, Prot::READ, PA, None, 0), Ok(hint));
    let b = c.mmap(hint, P, Prot::READ, PA, None, 0).unwrap();
    assert_ne!(b, hint);
    let low = c
        .mmap(0, P, Prot::READ, PA | MapFlags::BIT32, None, 0)
        .unwrap();
    assert!(low + P <= 1 << 31);
    check(&sys);
}

#[test]
fn many_regions_then_everything_unmapped_leaves_nothing() {
    let sys = system(4096);
    let free0 = sys.borrow().server.stats().free_frames;
    let mut c = spawn(&sys, ClientSpec::DEFAULT);
    let mut addrs = Vec::new();
    for i in 0..300u64 {
        let prot = if i % 2 == 0 {
            Prot::READ
        } else {
            Prot::READ | Prot::WRITE
        };
        let a = c.mmap(0, P, prot, PA, None, 0).unwrap();
        write(&mut c, a, 1).ok();
        addrs.push(a);
    }
    assert_eq!(c.regions().count(), 300);
    for a in addrs.iter().step_by(3) {
        c.munmap(*a, P).unwrap();
    }
    check(&sys);
    c.munmap(0x10_000, 0x7fff_ffff_f000 - 0x10_000).unwrap();
    assert_eq!(c.regions().count(), 0);
    check(&sys);
    let id = c.transport().id;
    sys.borrow_mut().exit(id).unwrap();
    assert_eq!(sys.borrow().server.stats().free_frames, free0);
}

#[test]
fn a_zero_lock_limit_is_eperm_and_a_lowered_limit_keeps_what_is_held() {
    let sys = system(64);
    let mut spec = ClientSpec::DEFAULT;
    spec.limits.max_locked = 0;
    let mut c = spawn(&sys, spec);
    let rw = Prot::READ | Prot::WRITE;
    let a = c.mmap(0, 4 * P, rw, PA, None, 0).unwrap();
    // Linux's can_do_mlock: no RLIMIT_MEMLOCK at all is EPERM, not ENOMEM.
    assert_eq!(c.mlock(a, P), Err(Errno::EPERM));
    assert_eq!(c.mlockall(MlockallFlags::CURRENT), Err(Errno::EPERM));
    assert_eq!(
        c.mmap(0, P, rw, PA | MapFlags::LOCKED, None, 0),
        Err(Errno::EPERM)
    );
    assert_eq!(c.munlock(a, P), Ok(()));
    // Raised (setrlimit): locks work up to it.
    let id = c.transport().id;
    let limits = Limits {
        max_locked: 2 * P,
        ..Limits::DEFAULT
    };
    sys.borrow_mut().server.set_limits(id, limits).unwrap();
    assert_eq!(c.mlock(a, 2 * P), Ok(()));
    assert_eq!(c.mlock(a, 3 * P), Err(Errno::ENOMEM));
    // Lowered below what is held: the locks stay, nothing more is granted.
    let lowered = Limits {
        max_locked: P,
        ..Limits::DEFAULT
    };
    sys.borrow_mut().server.set_limits(id, lowered).unwrap();
    assert_eq!(c.mlock(a + 2 * P, P), Err(Errno::ENOMEM));
    assert!(c.page_info(a + P).unwrap().locked);
    check(&sys);
    // Root is never limited.
    let mut root = spawn(
        &sys,
        ClientSpec {
            uid: 0,
            limits: Limits {
                max_locked: 0,
                ..Limits::DEFAULT
            },
            ..ClientSpec::DEFAULT
        },
    );
    let b = root.mmap(0, P, rw, PA, None, 0).unwrap();
    assert_eq!(root.mlock(b, P), Ok(()));
    check(&sys);
}
