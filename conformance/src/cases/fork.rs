//! Address-space clone (the memory half of `fork`): private memory is copied on write,
//! shared memory stays shared, fds are duplicated, locks are not inherited.

use super::*;
use crate::runner::Outcome;
use crate::{ensure, ensure_eq};

cases![
    fork_child_sees_the_parents_data,
    fork_private_writes_are_isolated_both_ways,
    fork_copies_only_the_pages_written,
    fork_shared_mappings_stay_shared,
    fork_private_shm_mapping_is_copied_on_write,
    fork_keeps_the_layout,
    fork_duplicates_fds,
    fork_does_not_inherit_locks,
    fork_child_exit_frees_its_copies_only,
    fork_parent_exit_leaves_the_child_working,
    fork_beyond_memory_is_enomem_and_changes_nothing,
    fork_of_untouched_memory_stays_lazy,
    fork_file_mappings_shared_stay_shared_private_are_copied,
    fork_leaves_out_madv_dontfork_ranges,
];

fn fork(p: &mut dyn Process) -> Result<Box<dyn Process>, Fail> {
    p.fork(ClientSpec::DEFAULT).ctx("fork")
}

fn fork_child_sees_the_parents_data(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 3 * P, RW)?;
    for i in 0..3 {
        poke(&mut *p, a + i * P + 1, 0x10 + i as u8)?;
    }
    let mut c = fork(&mut *p)?;
    for i in 0..3 {
        ensure_eq!(peek(&mut *c, a + i * P + 1)?, 0x10 + i as u8);
    }
    Ok(())
}

fn fork_private_writes_are_isolated_both_ways(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 2 * P, RW)?;
    poke(&mut *p, a, 1)?;
    poke(&mut *p, a + P, 2)?;
    let mut c = fork(&mut *p)?;
    poke(&mut *c, a, 11)?;
    poke(&mut *p, a + P, 22)?;
    ensure_eq!(peek(&mut *p, a)?, 1);
    ensure_eq!(peek(&mut *c, a)?, 11);
    ensure_eq!(peek(&mut *c, a + P)?, 2);
    ensure_eq!(peek(&mut *p, a + P)?, 22);
    Ok(())
}

fn fork_copies_only_the_pages_written(h: &mut dyn Harness) -> Outcome {
    let exclusive = h.facts().exclusive;
    let mut p = proc(h)?;
    let a = anon(&mut *p, 8 * P, RW)?;
    for i in 0..8 {
        poke(&mut *p, a + i * P, i as u8)?;
    }
    let mut c = fork(&mut *p)?;
    let before = free_frames(h);
    poke(&mut *c, a, 100)?;
    poke(&mut *c, a + 5 * P, 105)?;
    let after_child = free_frames(h);
    // The parent writes a page the child already copied: it is its own again, no copy.
    poke(&mut *p, a, 50)?;
    let after_parent = free_frames(h);
    ensure!(
        !exclusive || (before - after_child == 2 && after_child == after_parent),
        "two child writes took {} frames, then a parent write took {}",
        before as i64 - after_child as i64,
        after_child as i64 - after_parent as i64
    );
    ensure_eq!(peek(&mut *p, a + 5 * P)?, 5);
    Ok(())
}

fn fork_shared_mappings_stay_shared(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let s = client(&mut *p)
        .mmap(0, P, RW, SA, None, 0)
        .ctx("shared anon")?;
    let (name, fd) = shm(h, &mut *p, "fork-shared", P)?;
    let o = map_shared(&mut *p, fd, P, RW, 0).ctx("shm")?;
    poke(&mut *p, s, 1)?;
    let mut c = fork(&mut *p)?;
    poke(&mut *c, s, 2)?;
    poke(&mut *c, o, 3)?;
    ensure_eq!(peek(&mut *p, s)?, 2);
    ensure_eq!(peek(&mut *p, o)?, 3);
    poke(&mut *p, o, 4)?;
    ensure_eq!(peek(&mut *c, o)?, 4);
    client(&mut *p).shm_unlink(&name).ctx("unlink")
}

fn fork_private_shm_mapping_is_copied_on_write(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "fork-private", P)?;
    let view = map_shared(&mut *p, fd, P, Prot::READ, 0).ctx("view")?;
    let a = client(&mut *p)
        .mmap(0, P, RW, MapFlags::PRIVATE, Some(fd), 0)
        .ctx("private")?;
    poke(&mut *p, a, 7)?;
    let mut c = fork(&mut *p)?;
    poke(&mut *c, a, 8)?;
    ensure_eq!(peek(&mut *p, a)?, 7);
    ensure_eq!(peek(&mut *p, view)?, 0);
    ensure_eq!(peek(&mut *c, view)?, 0);
    client(&mut *p).shm_unlink(&name).ctx("unlink")
}

fn fork_keeps_the_layout(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = hole(&mut *p, 6)?;
    fixed(&mut *p, a, 2 * P, RW).ctx("rw")?;
    fixed(&mut *p, a + 3 * P, P, Prot::READ).ctx("r")?;
    client(&mut *p)
        .mmap(a + 4 * P, 2 * P, RW, SA | MapFlags::FIXED, None, 0)
        .ctx("shared")?;
    let mut c = fork(&mut *p)?;
    let shape = |rs: Vec<RegionInfo>| -> Vec<_> {
        rs.iter()
            .map(|r| (r.start, r.end, r.prot, r.shared, r.backing))
            .collect()
    };
    ensure_eq!(shape(regions(&mut *c)?), shape(regions(&mut *p)?));
    Ok(())
}

fn fork_duplicates_fds(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "fork-fds", 2 * P)?;
    let mut c = fork(&mut *p)?;
    ensure_eq!(client(&mut *c).fstat(fd).map(|s| s.size), Ok(2 * P));
    client(&mut *c).close(fd).ctx("child closes")?;
    ensure_eq!(client(&mut *p).fstat(fd).map(|s| s.size), Ok(2 * P));
    client(&mut *p)
        .ftruncate(fd, P as i64)
        .ctx("parent still writes")?;
    client(&mut *p).shm_unlink(&name).ctx("unlink")
}

fn fork_does_not_inherit_locks(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 2 * P, RW)?;
    client(&mut *p).mlock(a, 2 * P).ctx("mlock")?;
    client(&mut *p)
        .mlockall(ipc_proto::MlockallFlags::FUTURE)
        .ctx("mlockall")?;
    let mut c = fork(&mut *p)?;
    ensure!(
        regions(&mut *c)?.iter().all(|r| !r.locked),
        "child inherited a lock"
    );
    ensure!(
        regions(&mut *p)?.iter().all(|r| r.locked),
        "parent lost its lock"
    );
    let b = anon(&mut *c, P, RW)?;
    ensure!(
        !region_at(&mut *c, b)?.is_some_and(|r| r.locked),
        "child inherited MCL_FUTURE"
    );
    Ok(())
}

fn fork_child_exit_frees_its_copies_only(h: &mut dyn Harness) -> Outcome {
    let exclusive = h.facts().exclusive;
    let mut p = proc(h)?;
    let a = anon(&mut *p, 4 * P, RW)?;
    for i in 0..4 {
        poke(&mut *p, a + i * P, 0x60 + i as u8)?;
    }
    let before = free_frames(h);
    let mut c = fork(&mut *p)?;
    for i in 0..4 {
        poke(&mut *c, a + i * P, 0)?;
    }
    drop(c);
    ensure!(
        !exclusive || free_frames(h) == before,
        "child's copies not freed"
    );
    for i in 0..4 {
        ensure_eq!(peek(&mut *p, a + i * P)?, 0x60 + i as u8);
    }
    poke(&mut *p, a, 1)
}

fn fork_parent_exit_leaves_the_child_working(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 2 * P, RW)?;
    poke(&mut *p, a + P, 0x33)?;
    let mut c = fork(&mut *p)?;
    drop(p);
    ensure_eq!(peek(&mut *c, a + P)?, 0x33);
    poke(&mut *c, a + P, 0x34)?;
    ensure_eq!(peek(&mut *c, a + P)?, 0x34);
    Ok(())
}

fn fork_beyond_memory_is_enomem_and_changes_nothing(h: &mut dyn Harness) -> Outcome {
    let f = h.facts();
    let clients = h.stats().clients;
    let mut p = proc(h)?;
    // More than half of memory, committed: a second commitment cannot fit.
    let len = (f.total_frames / 2 + 64) * P;
    let a = anon(&mut *p, len, RW)?;
    poke(&mut *p, a, 9)?;
    expect_err(
        p.fork(ClientSpec::DEFAULT).map(|_| ()),
        Errno::ENOMEM,
        "fork",
    )?;
    ensure_eq!(h.stats().clients, clients + 1);
    poke(&mut *p, a, 10)?;
    ensure_eq!(peek(&mut *p, a)?, 10);
    Ok(())
}

fn fork_of_untouched_memory_stays_lazy(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 4 * P, RW)?;
    let mut c = fork(&mut *p)?;
    let info = client(&mut *c).page_info(a).ctx("page_info")?;
    ensure!(info.mapped && !info.resident, "child page is {info:?}");
    poke(&mut *c, a, 1)?;
    ensure_eq!(peek(&mut *p, a)?, 0);
    Ok(())
}

fn fork_file_mappings_shared_stay_shared_private_are_copied(h: &mut dyn Harness) -> Outcome {
    use fileserver::fixture::{FORK, byte};
    let mut p = proc(h)?;
    let fd = client(&mut *p)
        .open_file(FORK.path, OFlags::RDWR)
        .ctx("open")?;
    let shared = map_shared(&mut *p, fd, 2 * P, RW, 0).ctx("map shared")?;
    let private = client(&mut *p)
        .mmap(0, 2 * P, RW, MapFlags::PRIVATE, Some(fd), 0)
        .ctx("map private")?;
    let old = peek(&mut *p, shared + 9)?;
    poke(&mut *p, private + 9, 0x77)?;
    let mut c = fork(&mut *p)?;
    // The child's shared page is the parent's; its private page a copy of the parent's.
    poke(&mut *c, shared + 9, !old)?;
    ensure_eq!(peek(&mut *p, shared + 9)?, !old);
    ensure_eq!(peek(&mut *c, private + 9)?, 0x77);
    poke(&mut *c, private + 9, 0x78)?;
    ensure_eq!(peek(&mut *p, private + 9)?, 0x77);
    ensure_eq!(
        peek(&mut *c, private + P + 9)?,
        byte(FORK.seed, P as usize + 9)
    );
    // The fd was duplicated: the child can still use it after the parent closes its own.
    client(&mut *p).close(fd).ctx("close in parent")?;
    ensure_eq!(
        client(&mut *c).fstat(fd).ctx("fstat in child")?.size,
        FORK.size as u64
    );
    Ok(())
}

fn fork_leaves_out_madv_dontfork_ranges(h: &mut dyn Harness) -> Outcome {
    use ipc_proto::Advice;
    let mut p = proc(h)?;
    let a = anon(&mut *p, 3 * P, RW)?;
    for i in 0..3 {
        poke(&mut *p, a + i * P, 1 + i as u8)?;
    }
    client(&mut *p)
        .madvise(a + P, P, Advice::DontFork)
        .ctx("MADV_DONTFORK")?;
    let mut c = fork(&mut *p)?;
    ensure_eq!(peek(&mut *c, a)?, 1);
    expect_signal(c.read(a + P), Signal::Segv, "child read of a DONTFORK page")?;
    ensure_eq!(peek(&mut *c, a + 2 * P)?, 3);
    drop(c);
    // The parent keeps the range; MADV_DOFORK gives it to the next child.
    ensure_eq!(peek(&mut *p, a + P)?, 2);
    client(&mut *p)
        .madvise(a + P, P, Advice::DoFork)
        .ctx("MADV_DOFORK")?;
    let mut c = fork(&mut *p)?;
    ensure_eq!(peek(&mut *c, a + P)?, 2);
    Ok(())
}
