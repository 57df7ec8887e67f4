//! Two clients: shared objects, copy-on-write, and isolation of everything else.

use super::*;
use crate::runner::Outcome;
use crate::{ensure, ensure_eq};

cases![
    sharing_shm_writes_are_seen_by_the_other_client,
    sharing_shm_one_frame_backs_both_clients,
    sharing_private_copies_stay_private,
    sharing_shared_anonymous_is_not_shared_between_clients,
    sharing_unlink_by_one_client_keeps_the_others_data,
    sharing_exit_of_one_client_keeps_the_others_mapping,
    sharing_address_spaces_are_separate,
    sharing_munmap_in_one_client_leaves_the_other,
    sharing_fds_are_per_client,
    sharing_mode_denies_other_users,
    sharing_mode_lets_group_and_others_read,
    sharing_root_bypasses_modes,
    sharing_unlink_by_another_user_is_eacces,
    sharing_truncate_by_one_client_is_sigbus_in_the_other,
];

/// Two clients started with the default spec.
type Pair = (
    alloc::boxed::Box<dyn Process>,
    alloc::boxed::Box<dyn Process>,
);

fn two(h: &mut dyn Harness) -> Result<Pair, Fail> {
    Ok((proc(h)?, proc(h)?))
}

fn sharing_shm_writes_are_seen_by_the_other_client(h: &mut dyn Harness) -> Outcome {
    let (mut p, mut q) = two(h)?;
    let (name, fd) = shm(h, &mut *p, "share", 2 * P)?;
    let fq = client(&mut *q)
        .shm_open(&name, OFlags::RDWR, 0)
        .ctx("open in q")?;
    let a = map_shared(&mut *p, fd, 2 * P, RW, 0).ctx("map p")?;
    let b = map_shared(&mut *q, fq, 2 * P, RW, 0).ctx("map q")?;
    poke(&mut *p, a + P + 5, 0xab)?;
    ensure_eq!(peek(&mut *q, b + P + 5)?, 0xab);
    poke(&mut *q, b, 0xcd)?;
    ensure_eq!(peek(&mut *p, a)?, 0xcd);
    client(&mut *p).shm_unlink(&name).ctx("unlink")
}

fn sharing_shm_one_frame_backs_both_clients(h: &mut dyn Harness) -> Outcome {
    let (mut p, mut q) = two(h)?;
    let (name, fd) = shm(h, &mut *p, "one-frame", P)?;
    let fq = client(&mut *q)
        .shm_open(&name, OFlags::RDWR, 0)
        .ctx("open in q")?;
    let a = map_shared(&mut *p, fd, P, RW, 0).ctx("map p")?;
    let b = map_shared(&mut *q, fq, P, RW, 0).ctx("map q")?;
    poke(&mut *p, a, 1)?;
    let before = free_frames(h);
    poke(&mut *q, b, 2)?;
    let after = free_frames(h);
    ensure!(
        !h.facts().exclusive || after >= before,
        "the second client's touch took a frame ({before} -> {after})"
    );
    client(&mut *p).shm_unlink(&name).ctx("unlink")
}

fn sharing_private_copies_stay_private(h: &mut dyn Harness) -> Outcome {
    let (mut p, mut q) = two(h)?;
    let (name, fd) = shm(h, &mut *p, "cow2", P)?;
    let fq = client(&mut *q)
        .shm_open(&name, OFlags::RDWR, 0)
        .ctx("open in q")?;
    let a = map_shared(&mut *p, fd, P, RW, 0).ctx("map p")?;
    poke(&mut *p, a, 1)?;
    let b = client(&mut *q)
        .mmap(0, P, RW, MapFlags::PRIVATE, Some(fq), 0)
        .ctx("private in q")?;
    ensure_eq!(peek(&mut *q, b)?, 1);
    poke(&mut *q, b, 2)?;
    ensure_eq!(peek(&mut *p, a)?, 1);
    client(&mut *p).shm_unlink(&name).ctx("unlink")
}

fn sharing_shared_anonymous_is_not_shared_between_clients(h: &mut dyn Harness) -> Outcome {
    let (mut p, mut q) = two(h)?;
    let a = client(&mut *p).mmap(0, P, RW, SA, None, 0).ctx("p")?;
    let b = client(&mut *q).mmap(0, P, RW, SA, None, 0).ctx("q")?;
    poke(&mut *p, a, 1)?;
    ensure_eq!(peek(&mut *q, b)?, 0);
    Ok(())
}

fn sharing_unlink_by_one_client_keeps_the_others_data(h: &mut dyn Harness) -> Outcome {
    let (mut p, mut q) = two(h)?;
    let (name, fd) = shm(h, &mut *p, "unlink-other", P)?;
    let fq = client(&mut *q)
        .shm_open(&name, OFlags::RDWR, 0)
        .ctx("open in q")?;
    let b = map_shared(&mut *q, fq, P, RW, 0).ctx("map q")?;
    poke(&mut *q, b, 0x66)?;
    client(&mut *p).shm_unlink(&name).ctx("unlink")?;
    client(&mut *p).close(fd).ctx("close")?;
    ensure_eq!(peek(&mut *q, b)?, 0x66);
    Ok(())
}

fn sharing_exit_of_one_client_keeps_the_others_mapping(h: &mut dyn Harness) -> Outcome {
    let (mut p, mut q) = two(h)?;
    let (name, fd) = shm(h, &mut *p, "exit-other", P)?;
    let a = map_shared(&mut *p, fd, P, RW, 0).ctx("map p")?;
    poke(&mut *p, a, 0x77)?;
    let fq = client(&mut *q)
        .shm_open(&name, OFlags::RDWR, 0)
        .ctx("open in q")?;
    client(&mut *q).shm_unlink(&name).ctx("unlink")?;
    let b = map_shared(&mut *q, fq, P, Prot::READ, 0).ctx("map q")?;
    drop(p);
    ensure_eq!(peek(&mut *q, b)?, 0x77);
    Ok(())
}

fn sharing_address_spaces_are_separate(h: &mut dyn Harness) -> Outcome {
    let (mut p, mut q) = two(h)?;
    let a = anon(&mut *p, P, RW)?;
    poke(&mut *p, a, 0x55)?;
    if region_at(&mut *q, a)?.is_none() {
        expect_signal(
            q.read(a),
            Signal::Segv,
            "read of the other client's address",
        )?;
    }
    let b = fixed(&mut *q, a, P, RW).ctx("q maps the same address")?;
    ensure_eq!(peek(&mut *q, b)?, 0);
    poke(&mut *q, b, 0x56)?;
    ensure_eq!(peek(&mut *p, a)?, 0x55);
    Ok(())
}

fn sharing_munmap_in_one_client_leaves_the_other(h: &mut dyn Harness) -> Outcome {
    let (mut p, mut q) = two(h)?;
    let a = anon(&mut *p, 2 * P, RW)?;
    poke(&mut *p, a, 9)?;
    client(&mut *q).munmap(a, 2 * P).ctx("q unmaps p's range")?;
    ensure_eq!(peek(&mut *p, a)?, 9);
    expect_err(
        client(&mut *q).mprotect(a, P, Prot::READ),
        Errno::ENOMEM,
        "q protects p's range",
    )?;
    poke(&mut *p, a, 10)
}

fn sharing_fds_are_per_client(h: &mut dyn Harness) -> Outcome {
    let (mut p, mut q) = two(h)?;
    let (name, fd) = shm(h, &mut *p, "fd-per-client", P)?;
    expect_err(client(&mut *q).fstat(fd), Errno::EBADF, "q uses p's fd")?;
    expect_err(
        map_shared(&mut *q, fd, P, RW, 0),
        Errno::EBADF,
        "q maps p's fd",
    )?;
    expect_err(client(&mut *q).close(fd), Errno::EBADF, "q closes p's fd")?;
    ensure_eq!(client(&mut *p).fstat(fd).map(|s| s.size), Ok(P));
    client(&mut *p).shm_unlink(&name).ctx("unlink")
}

fn sharing_mode_denies_other_users(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let mut q = proc_with(
        h,
        spec(|s| {
            s.uid = 2002;
            s.gid = 2002;
        }),
    )?;
    let (name, _) = shm(h, &mut *p, "mode-600", P)?;
    expect_err(
        client(&mut *q).shm_open(&name, OFlags::RDONLY, 0),
        Errno::EACCES,
        "read of a 0600 object by another user",
    )?;
    expect_err(
        client(&mut *q).shm_open(&name, CREATE, 0o666),
        Errno::EACCES,
        "O_CREAT of an existing 0600 object by another user",
    )?;
    client(&mut *p).shm_unlink(&name).ctx("unlink")
}

fn sharing_mode_lets_group_and_others_read(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let mut same_group = proc_with(h, spec(|s| s.uid = 2003))?;
    let mut other = proc_with(
        h,
        spec(|s| {
            s.uid = 2004;
            s.gid = 2004;
        }),
    )?;
    let name = h.unique_name("mode-664");
    client(&mut *p)
        .shm_open(&name, CREATE, 0o664)
        .ctx("create")?;
    client(&mut *same_group)
        .shm_open(&name, OFlags::RDWR, 0)
        .ctx("group member opens rw")?;
    client(&mut *other)
        .shm_open(&name, OFlags::RDONLY, 0)
        .ctx("other opens ro")?;
    expect_err(
        client(&mut *other).shm_open(&name, OFlags::RDWR, 0),
        Errno::EACCES,
        "other opens rw",
    )?;
    client(&mut *p).shm_unlink(&name).ctx("unlink")
}

fn sharing_root_bypasses_modes(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let mut root = proc_with(
        h,
        spec(|s| {
            s.uid = 0;
            s.gid = 0;
        }),
    )?;
    let name = h.unique_name("mode-000");
    client(&mut *p)
        .shm_open(&name, CREATE, 0)
        .ctx("create 0000")?;
    client(&mut *root)
        .shm_open(&name, OFlags::RDWR, 0)
        .ctx("root opens rw")?;
    expect_err(
        client(&mut *p).shm_open(&name, OFlags::RDONLY, 0),
        Errno::EACCES,
        "owner opens a 0000 object",
    )?;
    client(&mut *root).shm_unlink(&name).ctx("root unlinks")
}

fn sharing_unlink_by_another_user_is_eacces(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let mut q = proc_with(h, spec(|s| s.uid = 2005))?;
    let name = h.unique_name("unlink-owner");
    client(&mut *p)
        .shm_open(&name, CREATE, 0o666)
        .ctx("create")?;
    expect_err(
        client(&mut *q).shm_unlink(&name),
        Errno::EACCES,
        "unlink by another user",
    )?;
    client(&mut *p)
        .shm_open(&name, OFlags::RDONLY, 0)
        .ctx("still there")?;
    client(&mut *p).shm_unlink(&name).ctx("unlink by owner")
}

fn sharing_truncate_by_one_client_is_sigbus_in_the_other(h: &mut dyn Harness) -> Outcome {
    let (mut p, mut q) = two(h)?;
    let (name, fd) = shm(h, &mut *p, "truncate-other", 2 * P)?;
    let fq = client(&mut *q)
        .shm_open(&name, OFlags::RDWR, 0)
        .ctx("open in q")?;
    let b = map_shared(&mut *q, fq, 2 * P, RW, 0).ctx("map q")?;
    poke(&mut *q, b + P, 1)?;
    client(&mut *p).ftruncate(fd, P as i64).ctx("p shrinks")?;
    expect_signal(q.read(b + P), Signal::Bus, "q reads the page p cut off")?;
    poke(&mut *q, b, 2)?;
    client(&mut *p).shm_unlink(&name).ctx("unlink")
}
