//! `mremap` and `madvise` at the server level: contents follow the move, frames are never
//! copied, accounting stays exact (the invariant checker runs after every request), and
//! a model of private memory agrees with the server over random sequences.

mod common;
use common::*;
use ipc_proto::*;
use memserver::Frame;
use proptest::prelude::*;
use std::collections::BTreeMap;

const PA: MapFlags = MapFlags::PRIVATE.union(MapFlags::ANONYMOUS);
const RW: Prot = Prot::READ.union(Prot::WRITE);
const MAYMOVE: MremapFlags = MremapFlags::MAYMOVE;
/// A fixed place in the middle of the window, with free space around it.
const BASE: u64 = 0x1000_0000;

fn frame_at(c: &mut client_lib::Client<Proc>, va: u64) -> Option<Frame> {
    let id = c.transport().id;
    let sys = c.transport().sys.clone();
    let m = sys.borrow();
    let space = m.server.space_of(id)?;
    memserver::KernelStub::query(m.server.stub(), space, va).map(|(f, _)| f)
}

fn free_frames(sys: &Sys) -> u64 {
    sys.borrow().server.stats().free_frames
}

fn fixed(c: &mut client_lib::Client<Proc>, addr: u64, pages: u64) -> u64 {
    c.mmap(addr, pages * P, RW, PA | MapFlags::FIXED, None, 0)
        .unwrap()
}

#[test]
fn grow_in_place_keeps_the_address_and_the_contents() {
    let sys = system(256);
    let mut c = spawn(&sys, ClientSpec::DEFAULT);
    let a = fixed(&mut c, BASE, 2);
    write(&mut c, a, 7).unwrap();
    write(&mut c, a + P, 8).unwrap();
    assert_eq!(c.mremap(a, 2 * P, 4 * P, MremapFlags::empty(), 0), Ok(a));
    assert_eq!(read(&mut c, a), Ok(7));
    assert_eq!(read(&mut c, a + P), Ok(8));
    assert_eq!(read(&mut c, a + 3 * P), Ok(0));
    let r: Vec<_> = c.regions().map(Result::unwrap).collect();
    assert_eq!((r.len(), r[0].start, r[0].end), (1, a, a + 4 * P));
    check(&sys);
}

#[test]
fn growing_into_a_neighbour_needs_maymove_and_then_moves_the_frames() {
    let sys = system(256);
    let mut c = spawn(&sys, ClientSpec::DEFAULT);
    let a = fixed(&mut c, BASE, 2);
    c.mmap(a + 2 * P, P, Prot::READ, PA | MapFlags::FIXED, None, 0)
        .unwrap();
    write(&mut c, a, 1).unwrap();
    write(&mut c, a + P, 2).unwrap();
    let frames = (
        frame_at(&mut c, a).unwrap(),
        frame_at(&mut c, a + P).unwrap(),
    );
    assert_eq!(
        c.mremap(a, 2 * P, 3 * P, MremapFlags::empty(), 0),
        Err(Errno::ENOMEM)
    );
    let free = free_frames(&sys);
    let b = c.mremap(a, 2 * P, 3 * P, MAYMOVE, 0).unwrap();
    assert_ne!(b, a);
    // Never copied: the same frames, reinstalled at the new address, nothing allocated.
    assert_eq!(frame_at(&mut c, b), Some(frames.0));
    assert_eq!(frame_at(&mut c, b + P), Some(frames.1));
    assert_eq!(free_frames(&sys), free);
    assert_eq!(read(&mut c, b), Ok(1));
    assert_eq!(read(&mut c, b + P), Ok(2));
    assert_eq!(read(&mut c, b + 2 * P), Ok(0));
    assert_eq!(read(&mut c, a), Err(Signal::Segv));
    check(&sys);
}

#[test]
fn shrink_in_place_unmaps_and_frees_the_tail() {
    let sys = system(256);
    let mut c = spawn(&sys, ClientSpec::DEFAULT);
    let a = fixed(&mut c, BASE, 4);
    for i in 0..4 {
        write(&mut c, a + i * P, 1).unwrap();
    }
    let free = free_frames(&sys);
    assert_eq!(c.mremap(a, 4 * P, P + 1, MremapFlags::empty(), 0), Ok(a));
    assert_eq!(free_frames(&sys), free + 2);
    assert_eq!(read(&mut c, a + P), Ok(1));
    assert_eq!(read(&mut c, a + 2 * P), Err(Signal::Segv));
    // The same length is a no-op that answers the address.
    assert_eq!(c.mremap(a, 2 * P, 2 * P, MremapFlags::empty(), 0), Ok(a));
    check(&sys);
}

#[test]
fn fixed_moves_replace_the_destination_and_refuse_overlap() {
    let sys = system(256);
    let mut c = spawn(&sys, ClientSpec::DEFAULT);
    let a = fixed(&mut c, BASE, 2);
    let d = fixed(&mut c, BASE + 16 * P, 4);
    write(&mut c, a, 3).unwrap();
    write(&mut c, d + 3 * P, 9).unwrap();
    let fx = MAYMOVE | MremapFlags::FIXED;
    assert_eq!(c.mremap(a, 2 * P, 2 * P, fx, a + P), Err(Errno::EINVAL));
    assert_eq!(c.mremap(a, 2 * P, 2 * P, fx, d + 1), Err(Errno::EINVAL));
    assert_eq!(
        c.mremap(a, 2 * P, 2 * P, MremapFlags::FIXED, d),
        Err(Errno::EINVAL)
    );
    assert_eq!(c.mremap(a, 2 * P, 2 * P, fx, d), Ok(d));
    assert_eq!(read(&mut c, d), Ok(3));
    // The rest of the destination's old mapping survives; its page at d + P was replaced.
    assert_eq!(read(&mut c, d + P), Ok(0));
    assert_eq!(read(&mut c, d + 3 * P), Ok(9));
    assert_eq!(read(&mut c, a), Err(Signal::Segv));
    check(&sys);
}

#[test]
fn dontunmap_moves_the_pages_and_leaves_the_old_range_empty() {
    let sys = system(256);
    let mut c = spawn(&sys, ClientSpec::DEFAULT);
    let a = fixed(&mut c, BASE, 2);
    write(&mut c, a, 5).unwrap();
    let f = frame_at(&mut c, a).unwrap();
    let du = MAYMOVE | MremapFlags::DONTUNMAP;
    assert_eq!(c.mremap(a, 2 * P, 3 * P, du, 0), Err(Errno::EINVAL));
    assert_eq!(
        c.mremap(a, 2 * P, 2 * P, MremapFlags::DONTUNMAP, 0),
        Err(Errno::EINVAL)
    );
    let b = c.mremap(a, 2 * P, 2 * P, du, 0).unwrap();
    assert_eq!(frame_at(&mut c, b), Some(f));
    assert_eq!(read(&mut c, b), Ok(5));
    // Private anonymous memory left behind reads as zero.
    assert_eq!(read(&mut c, a), Ok(0));
    assert_eq!(c.regions().count(), 2);
    check(&sys);
}

#[test]
fn a_moved_shared_mapping_keeps_its_object() {
    let sys = system(256);
    let mut c = spawn(&sys, ClientSpec::DEFAULT);
    let fd = c
        .shm_open("moved", OFlags::RDWR | OFlags::CREAT, 0o600)
        .unwrap();
    c.ftruncate(fd, 4 * P as i64).unwrap();
    let a = c
        .mmap(
            BASE,
            2 * P,
            RW,
            MapFlags::SHARED | MapFlags::FIXED,
            Some(fd),
            0,
        )
        .unwrap();
    let other = c.mmap(0, 4 * P, RW, MapFlags::SHARED, Some(fd), 0).unwrap();
    write(&mut c, a + P, 4).unwrap();
    c.mmap(a + 2 * P, P, Prot::READ, PA | MapFlags::FIXED, None, 0)
        .unwrap();
    let b = c.mremap(a, 2 * P, 4 * P, MAYMOVE, 0).unwrap();
    assert_ne!(a, b);
    assert_eq!(read(&mut c, b + P), Ok(4));
    write(&mut c, b + 3 * P, 6).unwrap();
    assert_eq!(read(&mut c, other + 3 * P), Ok(6));
    let r = c
        .regions()
        .map(Result::unwrap)
        .find(|r| r.start == b)
        .unwrap();
    assert_eq!((r.end, r.offset), (b + 4 * P, 0));
    assert!(matches!(r.backing, Backing::Shm(_)));
    // A duplicate (old_len 0) of a shared mapping: the same pages twice.
    let d = c.mremap(b, 0, 2 * P, MAYMOVE, 0).unwrap();
    assert_eq!(read(&mut c, d + P), Ok(4));
    assert_eq!(
        c.mremap(b, 0, P, MremapFlags::empty(), 0),
        Err(Errno::ENOMEM)
    );
    c.close(fd).unwrap();
    check(&sys);
}

#[test]
fn a_grown_shared_anonymous_mapping_is_sigbus_past_its_object() {
    let sys = system(256);
    let mut c = spawn(&sys, ClientSpec::DEFAULT);
    let sa = MapFlags::SHARED | MapFlags::ANONYMOUS | MapFlags::FIXED;
    let a = c.mmap(BASE, P, RW, sa, None, 0).unwrap();
    assert_eq!(c.mremap(a, P, 2 * P, MremapFlags::empty(), 0), Ok(a));
    // As Linux: the object keeps its size.
    assert_eq!(read(&mut c, a + P), Err(Signal::Bus));
    assert_eq!(read(&mut c, a), Ok(0));
    check(&sys);
}

#[test]
fn mremap_errnos_as_linux() {
    let sys = system(256);
    let mut c = spawn(&sys, ClientSpec::DEFAULT);
    let a = fixed(&mut c, BASE, 4);
    c.mprotect(a + P, P, Prot::READ).unwrap();
    let e = MremapFlags::empty();
    assert_eq!(c.mremap(a + 1, P, 2 * P, e, 0), Err(Errno::EINVAL));
    assert_eq!(c.mremap(a, P, 0, e, 0), Err(Errno::EINVAL));
    assert_eq!(c.mremap(a, P, u64::MAX, MAYMOVE, 0), Err(Errno::EINVAL));
    assert_eq!(c.mremap(a, P, 1 << 62, MAYMOVE, 0), Err(Errno::EINVAL));
    assert_eq!(c.mremap_c(a, P, P, 8, 0), Err(Errno::EINVAL));
    // A private mapping cannot be duplicated.
    assert_eq!(c.mremap(a, 0, P, MAYMOVE, 0), Err(Errno::EINVAL));
    // Nothing mapped at the old address, or the range spans two mappings: EFAULT.
    assert_eq!(
        c.mremap(BASE - 8 * P, P, 2 * P, MAYMOVE, 0),
        Err(Errno::EFAULT)
    );
    assert_eq!(c.mremap(BASE - 8 * P, 2 * P, P, e, 0), Err(Errno::EFAULT));
    assert_eq!(c.mremap(a, 4 * P, 8 * P, MAYMOVE, 0), Err(Errno::EFAULT));
    // Shrinking across them unmaps, as Linux.
    assert_eq!(c.mremap(a, 4 * P, P, e, 0), Ok(a));
    assert_eq!(c.regions().count(), 1);
    check(&sys);
}

#[test]
fn growing_past_the_commit_limit_or_the_lock_limit_fails_and_changes_nothing() {
    let sys = system(64);
    let mut spec = ClientSpec::DEFAULT;
    spec.limits.max_locked = 4 * P;
    let mut c = spawn(&sys, spec);
    let a = fixed(&mut c, BASE, 2);
    write(&mut c, a, 1).unwrap();
    let free = free_frames(&sys);
    assert_eq!(c.mremap(a, 2 * P, 1 << 30, MAYMOVE, 0), Err(Errno::ENOMEM));
    c.mlock(a, 2 * P).unwrap();
    assert_eq!(c.mremap(a, 2 * P, 8 * P, MAYMOVE, 0), Err(Errno::EAGAIN));
    assert_eq!(free_frames(&sys), free - 1);
    // Within the limit: grows, and the grown part is locked and resident.
    assert_eq!(c.mremap(a, 2 * P, 4 * P, e(), 0), Ok(a));
    assert!(c.page_info(a + 3 * P).unwrap().resident);
    assert!(c.page_info(a + 3 * P).unwrap().locked);
    assert_eq!(read(&mut c, a), Ok(1));
    check(&sys);
}

fn e() -> MremapFlags {
    MremapFlags::empty()
}

#[test]
fn a_move_after_fork_keeps_copy_on_write() {
    let sys = system(256);
    let mut p = spawn(&sys, ClientSpec::DEFAULT);
    let a = fixed(&mut p, BASE, 1);
    write(&mut p, a, 1).unwrap();
    let pid = p.transport().id;
    let cid = sys.borrow_mut().fork(pid, ClientSpec::DEFAULT).unwrap();
    let b = p.mremap(a, P, 2 * P, MAYMOVE | MremapFlags::FIXED, BASE + 64 * P);
    let b = b.unwrap();
    write(&mut p, b, 2).unwrap();
    assert_eq!(sys.borrow_mut().read(cid, a), Ok(1));
    assert_eq!(read(&mut p, b), Ok(2));
    check(&sys);
}

#[test]
fn dontneed_zeroes_private_memory_and_rereads_shared() {
    let sys = system(256);
    let mut c = spawn(&sys, ClientSpec::DEFAULT);
    let a = fixed(&mut c, BASE, 2);
    write(&mut c, a, 1).unwrap();
    let fd = c
        .shm_open("/dn", OFlags::RDWR | OFlags::CREAT, 0o600)
        .unwrap();
    c.ftruncate(fd, P as i64).unwrap();
    let s = c.mmap(0, P, RW, MapFlags::SHARED, Some(fd), 0).unwrap();
    let q = c.mmap(0, P, RW, MapFlags::PRIVATE, Some(fd), 0).unwrap();
    write(&mut c, s, 9).unwrap();
    write(&mut c, q, 3).unwrap();
    let free = free_frames(&sys);
    c.madvise(a, 2 * P, Advice::DontNeed).unwrap();
    c.madvise(s, P, Advice::DontNeed).unwrap();
    c.madvise(q, P, Advice::DontNeed).unwrap();
    assert_eq!(free_frames(&sys), free + 2);
    assert_eq!(read(&mut c, a), Ok(0));
    assert_eq!(read(&mut c, s), Ok(9));
    // The private copy is gone: the object shows through again.
    assert_eq!(read(&mut c, q), Ok(9));
    // MADV_FREE: private anonymous only.
    write(&mut c, a, 2).unwrap();
    c.madvise(a, P, Advice::Free).unwrap();
    assert_eq!(read(&mut c, a), Ok(0));
    assert_eq!(c.madvise(s, P, Advice::Free), Err(Errno::EINVAL));
    assert_eq!(c.madvise(q, P, Advice::Free), Err(Errno::EINVAL));
    check(&sys);
}

#[test]
fn madvise_errnos_and_a_hole_changes_nothing() {
    let sys = system(256);
    let mut c = spawn(&sys, ClientSpec::DEFAULT);
    let a = fixed(&mut c, BASE, 3);
    write(&mut c, a, 1).unwrap();
    c.munmap(a + P, P).unwrap();
    assert_eq!(c.madvise(a, 3 * P, Advice::DontNeed), Err(Errno::ENOMEM));
    assert_eq!(read(&mut c, a), Ok(1));
    assert_eq!(c.madvise(a, 3 * P, Advice::Normal), Err(Errno::ENOMEM));
    assert_eq!(c.madvise_c(a, P, 77), Err(Errno::EINVAL));
    assert_eq!(c.madvise_c(a, P, 9), Err(Errno::EINVAL));
    assert_eq!(c.madvise(a + 1, P, Advice::Normal), Err(Errno::EINVAL));
    assert_eq!(c.madvise(a, u64::MAX, Advice::Normal), Err(Errno::EINVAL));
    assert_eq!(c.madvise(a, 0, Advice::DontNeed), Ok(()));
    for adv in [Advice::Normal, Advice::Random, Advice::Sequential] {
        assert_eq!(c.madvise(a, P, adv), Ok(()));
    }
    assert_eq!(read(&mut c, a), Ok(1));
    c.mlock(a, P).unwrap();
    assert_eq!(c.madvise(a, P, Advice::DontNeed), Err(Errno::EINVAL));
    assert_eq!(read(&mut c, a), Ok(1));
    check(&sys);
}

#[test]
fn willneed_pages_in_an_object() {
    let sys = system(256);
    let mut c = spawn(&sys, ClientSpec::DEFAULT);
    let fd = c
        .shm_open("wn", OFlags::RDWR | OFlags::CREAT, 0o600)
        .unwrap();
    c.ftruncate(fd, 2 * P as i64).unwrap();
    let s = c
        .mmap(0, 4 * P, Prot::READ, MapFlags::SHARED, Some(fd), 0)
        .unwrap();
    assert!(!c.page_info(s).unwrap().installed);
    c.madvise(s, 4 * P, Advice::WillNeed).unwrap();
    assert!(c.page_info(s).unwrap().installed);
    assert!(c.page_info(s + P).unwrap().installed);
    assert!(!c.page_info(s + 2 * P).unwrap().installed);
    let a = c.mmap(0, P, RW, PA, None, 0).unwrap();
    c.madvise(a, P, Advice::WillNeed).unwrap();
    check(&sys);
}

#[test]
fn dontfork_leaves_a_range_out_of_the_child() {
    let sys = system(256);
    let mut p = spawn(&sys, ClientSpec::DEFAULT);
    let a = fixed(&mut p, BASE, 3);
    for i in 0..3 {
        write(&mut p, a + i * P, 1).unwrap();
    }
    p.madvise(a + P, P, Advice::DontFork).unwrap();
    assert_eq!(p.regions().count(), 3);
    let pid = p.transport().id;
    let child = sys.borrow_mut().fork(pid, ClientSpec::DEFAULT).unwrap();
    assert_eq!(sys.borrow_mut().read(child, a), Ok(1));
    assert_eq!(sys.borrow_mut().read(child, a + P), Err(Signal::Segv));
    assert_eq!(sys.borrow_mut().read(child, a + 2 * P), Ok(1));
    // The parent keeps it, writable without a copy.
    write(&mut p, a + P, 2).unwrap();
    p.madvise(a + P, P, Advice::DoFork).unwrap();
    assert_eq!(p.regions().count(), 1);
    let child2 = sys.borrow_mut().fork(pid, ClientSpec::DEFAULT).unwrap();
    assert_eq!(sys.borrow_mut().read(child2, a + P), Ok(2));
    check(&sys);
}

/// One step of the model test.
#[derive(Clone, Debug)]
enum Op {
    Map(u64, u64),
    Unmap(u64, u64),
    Write(u64, u8),
    Remap {
        page: u64,
        old: u64,
        new: u64,
        flags: u32,
        dest: u64,
    },
    DontNeed(u64, u64),
    /// Fork a child that keeps what the parent has now, untouched to the end.
    Fork,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u64..32, 1u64..6).prop_map(|(p, n)| Op::Map(p, n)),
        (0u64..32, 1u64..6).prop_map(|(p, n)| Op::Unmap(p, n)),
        (0u64..40, any::<u8>()).prop_map(|(p, v)| Op::Write(p, v)),
        (0u64..32, 0u64..6, 1u64..8, 0u32..8, 0u64..40).prop_map(
            |(page, old, new, flags, dest)| Op::Remap {
                page,
                old,
                new,
                flags,
                dest,
            }
        ),
        (0u64..32, 1u64..6).prop_map(|(p, n)| Op::DontNeed(p, n)),
        Just(Op::Fork),
    ]
}

/// Private anonymous memory as a map from page address to its first byte.
type Model = BTreeMap<u64, u8>;

fn apply_remap(m: &mut Model, old: u64, old_len: u64, new_len: u64, at: u64, dontunmap: bool) {
    if at == old {
        // In place: a shrink unmaps the tail, a growth adds zero pages.
        for i in new_len / P..old_len / P {
            m.remove(&(old + i * P));
        }
        for i in old_len / P..new_len / P {
            m.insert(old + i * P, 0);
        }
        return;
    }
    let keep = old_len.min(new_len);
    let moved: Vec<(u64, u8)> = (0..keep / P)
        .filter_map(|i| m.get(&(old + i * P)).map(|&v| (i * P, v)))
        .collect();
    for i in 0..old_len / P {
        if dontunmap {
            m.insert(old + i * P, 0);
        } else {
            m.remove(&(old + i * P));
        }
    }
    for i in 0..new_len / P {
        m.insert(at + i * P, 0);
    }
    for (off, v) in moved {
        m.insert(at + off, v);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random maps, writes, mremaps, MADV_DONTNEED and forks against a model of the bytes:
    /// every page the model knows reads back its value, every page it does not know is
    /// unmapped, every child reads what the parent had when it forked, and the server's
    /// invariants hold after every request.
    #[test]
    fn mremap_and_madvise_agree_with_a_model(ops in proptest::collection::vec(op(), 1..40)) {
        let sys = system(512);
        let mut c = spawn(&sys, ClientSpec::DEFAULT);
        let mut m = Model::new();
        let mut children: Vec<(ClientId, Model)> = Vec::new();
        let at = |p: u64| BASE + p * P;
        for op in ops {
            match op {
                Op::Map(p, n) => {
                    fixed(&mut c, at(p), n);
                    for i in 0..n { m.insert(at(p + i), 0); }
                }
                Op::Unmap(p, n) => {
                    c.munmap(at(p), n * P).unwrap();
                    for i in 0..n { m.remove(&at(p + i)); }
                }
                Op::Write(p, v) => {
                    let r = write(&mut c, at(p), v);
                    prop_assert_eq!(r.is_ok(), m.contains_key(&at(p)));
                    if r.is_ok() { m.insert(at(p), v); }
                }
                Op::Remap { page, old, new, flags, dest } => {
                    let fl = MremapFlags::from_bits_truncate(flags);
                    let r = c.mremap(at(page), old * P, new * P, fl, at(dest));
                    match r {
                        Ok(addr) => {
                            let moved = addr != at(page);
                            let dontunmap = fl.contains(MremapFlags::DONTUNMAP);
                            // Private mappings cannot be duplicated.
                            prop_assert!(old != 0, "duplicated a private mapping");
                            prop_assert!(moved || !dontunmap);
                            apply_remap(&mut m, at(page), old * P, new * P, addr, dontunmap);
                        }
                        Err(e) => prop_assert!(
                            [Errno::EINVAL, Errno::EFAULT, Errno::ENOMEM].contains(&e),
                            "unexpected {:?}", e
                        ),
                    }
                }
                Op::Fork => {
                    if children.len() < 3 {
                        let pid = c.transport().id;
                        let child = sys.borrow_mut().fork(pid, ClientSpec::DEFAULT).unwrap();
                        children.push((child, m.clone()));
                    }
                }
                Op::DontNeed(p, n) => {
                    let all_mapped = (0..n).all(|i| m.contains_key(&at(p + i)));
                    match c.madvise(at(p), n * P, Advice::DontNeed) {
                        Ok(()) => {
                            prop_assert!(all_mapped);
                            for i in 0..n { m.insert(at(p + i), 0); }
                        }
                        Err(e) => {
                            prop_assert_eq!(e, Errno::ENOMEM);
                            prop_assert!(!all_mapped);
                        }
                    }
                }
            }
            let m2 = sys.borrow();
            prop_assert_eq!(m2.server.check_invariants(), Ok(()));
            drop(m2);
        }
        for (&va, &v) in &m {
            prop_assert_eq!(read(&mut c, va), Ok(v), "page {:#x}", va);
        }
        let mapped: u64 = c.regions().map(|r| { let r = r.unwrap(); r.end - r.start }).sum();
        prop_assert_eq!(mapped, m.len() as u64 * P);
        // Children forked along the way see what the parent had then: moves, drops and
        // writes in the parent never reached their copy-on-write pages.
        for (child, cm) in &children {
            for (&va, &v) in cm {
                prop_assert_eq!(sys.borrow_mut().read(*child, va), Ok(v), "child page {:#x}", va);
            }
        }
        check(&sys);
    }
}

#[test]
fn found_by_the_differential_test() {
    let sys = system(256);
    let mut c = spawn(&sys, ClientSpec::DEFAULT);
    let sa = MapFlags::SHARED | MapFlags::ANONYMOUS | MapFlags::FIXED;
    let a = c.mmap(BASE, P, RW, sa, None, 0).unwrap();
    // A fixed duplicate whose destination covers its own source: Linux unmaps the
    // destination first and finds nothing to duplicate.
    let fx = MAYMOVE | MremapFlags::FIXED;
    assert_eq!(c.mremap(a, 0, 2 * P, fx, a), Err(Errno::EFAULT));
    assert_eq!(c.regions().count(), 1);
    // mlock over pages past the object's end (a grown shared mapping) is ENOMEM, and
    // locks nothing; mlockall ignores them, as Linux.
    assert_eq!(c.mremap(a, P, 2 * P, e(), 0), Ok(a));
    assert_eq!(c.mlock(a, 2 * P), Err(Errno::ENOMEM));
    assert!(!c.page_info(a).unwrap().locked);
    assert_eq!(c.mlockall(MlockallFlags::CURRENT), Ok(()));
    c.munlockall().unwrap();
    // Access-pattern hints split mappings where Linux's split, so mremap's one-mapping
    // rule agrees: growing across the split is EFAULT.
    let b = fixed(&mut c, BASE + 32 * P, 4);
    c.madvise(b + 2 * P, 2 * P, Advice::Random).unwrap();
    assert_eq!(c.regions().count(), 3);
    assert_eq!(c.mremap(b, 4 * P, 6 * P, MAYMOVE, 0), Err(Errno::EFAULT));
    c.madvise(b, 4 * P, Advice::Normal).unwrap();
    assert_eq!(c.regions().count(), 2);
    assert!(c.mremap(b, 4 * P, 6 * P, MAYMOVE, 0).is_ok());
    check(&sys);
}
