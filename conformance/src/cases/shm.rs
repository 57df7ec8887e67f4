//! Shared-memory objects in one client: `shm_open` flags, names and modes, `ftruncate`,
//! `fstat`, `close`, `shm_unlink`, and mapping them (size, SIGBUS, EACCES, COW).

use super::*;
use crate::runner::Outcome;
use crate::{ensure, ensure_eq};
use ipc_proto::{ObjectKind, Stat};

cases![
    shm_open_creat_gives_an_fd_of_size_zero,
    shm_open_missing_without_creat_is_enoent,
    shm_open_creat_excl_of_an_existing_name_is_eexist,
    shm_open_creat_of_an_existing_name_opens_it,
    shm_open_name_rules_are_einval,
    shm_names_with_and_without_slashes_are_one_object,
    shm_open_long_name_is_enametoolong,
    shm_open_write_only_is_einval,
    shm_open_records_mode_and_owner,
    shm_open_trunc_empties_the_object,
    shm_open_trunc_read_only_without_write_permission_is_eacces,
    shm_open_too_many_objects_is_enospc,
    shm_ftruncate_sets_the_size,
    shm_ftruncate_of_a_read_only_fd_is_einval,
    shm_ftruncate_negative_is_einval,
    shm_ftruncate_beyond_the_limit_is_efbig,
    shm_calls_on_a_bad_fd_are_ebadf,
    shm_close_twice_is_ebadf,
    shm_fds_count_up_from_three,
    shm_unlink_removes_the_name,
    shm_unlink_of_a_missing_name_is_enoent,
    shm_unlink_keeps_open_fds_working,
    shm_unlink_keeps_mapped_data,
    shm_recreated_name_is_a_new_object,
    shm_mapping_past_the_end_is_sigbus,
    shm_growing_makes_pages_accessible,
    shm_shrinking_makes_mapped_pages_sigbus,
    shm_shared_mappings_see_each_other,
    shm_mapping_at_an_offset_sees_that_page,
    shm_shared_write_of_a_read_only_fd_is_eacces,
    shm_private_write_of_a_read_only_fd_is_allowed,
    shm_read_only_shared_mapping_cannot_be_made_writable,
    shm_private_mapping_is_copy_on_write,
    shm_private_mapping_sees_the_object_until_it_writes,
    shm_mapping_outlives_its_fd,
    shm_unaligned_offset_is_einval,
    shm_offset_overflow_is_eoverflow,
    shm_denywrite_on_an_object_open_for_writing_is_etxtbsy,
    shm_writable_open_while_mapped_denywrite_is_etxtbsy,
    shm_fstat_of_bank_and_device_fds,
];

fn stat(p: &mut dyn Process, fd: Fd) -> Result<Stat, Fail> {
    client(p).fstat(fd).ctx("fstat")
}

fn unlink(p: &mut dyn Process, name: &str) -> Outcome {
    client(p).shm_unlink(name).ctx("shm_unlink")
}

fn shm_open_creat_gives_an_fd_of_size_zero(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "size-zero", 0)?;
    let st = stat(&mut *p, fd)?;
    ensure_eq!((st.kind, st.size), (ObjectKind::Shm, 0));
    unlink(&mut *p, &name)
}

fn shm_open_missing_without_creat_is_enoent(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let name = h.unique_name("never-created");
    expect_err(
        client(&mut *p).shm_open(&name, OFlags::RDWR, 0),
        Errno::ENOENT,
        "open of a missing object",
    )
}

fn shm_open_creat_excl_of_an_existing_name_is_eexist(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, _) = shm(h, &mut *p, "excl", 0)?;
    expect_err(
        client(&mut *p).shm_open(&name, CREATE | OFlags::EXCL, 0o600),
        Errno::EEXIST,
        "O_CREAT|O_EXCL of an existing name",
    )?;
    unlink(&mut *p, &name)
}

fn shm_open_creat_of_an_existing_name_opens_it(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "reopen", 3 * P)?;
    let fd2 = client(&mut *p)
        .shm_open(&name, CREATE, 0o600)
        .ctx("reopen")?;
    ensure!(fd2 != fd, "same fd twice: {fd:?}");
    let (a, b) = (stat(&mut *p, fd)?, stat(&mut *p, fd2)?);
    ensure_eq!((a.ino, a.size), (b.ino, 3 * P));
    unlink(&mut *p, &name)
}

fn shm_open_name_rules_are_einval(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    // glibc: leading slashes are optional, so "noslash" is a good name; what is left
    // after them must be one component, not "." or "..".
    for bad in [
        "/", "//", "", "/a/b", "a/b", "a/", "/.", "/..", ".", "..", "//..",
    ] {
        expect_err(
            client(&mut *p).shm_open(bad, CREATE, 0o600),
            Errno::EINVAL,
            &format!("shm_open({bad:?})"),
        )?;
        expect_err(
            client(&mut *p).shm_unlink(bad),
            Errno::EINVAL,
            &format!("shm_unlink({bad:?})"),
        )?;
    }
    Ok(())
}

fn shm_names_with_and_without_slashes_are_one_object(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let name = h.unique_name("slashes");
    let bare = name.trim_start_matches('/');
    let fd = client(&mut *p)
        .shm_open(bare, CREATE | OFlags::EXCL, 0o600)
        .ctx("shm_open without a slash")?;
    expect_err(
        client(&mut *p).shm_open(&name, CREATE | OFlags::EXCL, 0o600),
        Errno::EEXIST,
        "O_EXCL with the slash",
    )?;
    let mut doubled = String::from("/");
    doubled.push_str(&name);
    let fd2 = client(&mut *p)
        .shm_open(&doubled, OFlags::RDWR, 0)
        .ctx("shm_open with two slashes")?;
    let (s1, s2) = (
        client(&mut *p).fstat(fd).ctx("fstat")?,
        client(&mut *p).fstat(fd2).ctx("fstat")?,
    );
    ensure_eq!(s1.ino, s2.ino);
    client(&mut *p).ftruncate(fd, P as i64).ctx("ftruncate")?;
    let a = map_shared(&mut *p, fd, P, RW, 0).ctx("mmap")?;
    let b = map_shared(&mut *p, fd2, P, RW, 0).ctx("mmap")?;
    poke(&mut *p, a, 42)?;
    ensure_eq!(peek(&mut *p, b)?, 42);
    client(&mut *p).close(fd).ctx("close")?;
    client(&mut *p).close(fd2).ctx("close")?;
    // Unlinked by the bare name, gone by every spelling.
    client(&mut *p).shm_unlink(bare).ctx("shm_unlink")?;
    expect_err(
        client(&mut *p).shm_open(&name, OFlags::RDWR, 0),
        Errno::ENOENT,
        "reopen after unlink",
    )?;
    expect_err(
        client(&mut *p).shm_unlink(&name),
        Errno::ENOENT,
        "unlink twice",
    )
}

fn shm_open_long_name_is_enametoolong(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let mut long = String::from("/");
    long.extend(core::iter::repeat_n('n', 256));
    expect_err(
        client(&mut *p).shm_open(&long, CREATE, 0o600),
        Errno::ENAMETOOLONG,
        "256-byte name",
    )?;
    expect_err(
        client(&mut *p).shm_unlink(&long),
        Errno::ENAMETOOLONG,
        "unlink",
    )?;
    // Without its slash it is just as long.
    expect_err(
        client(&mut *p).shm_open(&long[1..], CREATE, 0o600),
        Errno::ENAMETOOLONG,
        "256-byte name without a slash",
    )?;
    // 255 bytes is the most allowed.
    long.pop();
    let fd = client(&mut *p)
        .shm_open(&long, CREATE | OFlags::EXCL, 0o600)
        .ctx("255 bytes")?;
    client(&mut *p).close(fd).ctx("close")?;
    unlink(&mut *p, &long)
}

fn shm_open_write_only_is_einval(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let name = h.unique_name("wronly");
    expect_err(
        client(&mut *p).shm_open(&name, OFlags::CREAT | OFlags::WRONLY, 0o600),
        Errno::EINVAL,
        "O_WRONLY",
    )
}

fn shm_open_records_mode_and_owner(h: &mut dyn Harness) -> Outcome {
    let mut p = proc_with(
        h,
        spec(|s| {
            s.uid = 1234;
            s.gid = 567;
        }),
    )?;
    let name = h.unique_name("mode");
    let fd = client(&mut *p)
        .shm_open(&name, CREATE, 0o640)
        .ctx("create")?;
    let st = stat(&mut *p, fd)?;
    ensure_eq!((st.mode.bits(), st.uid, st.gid), (0o640, 1234, 567));
    unlink(&mut *p, &name)
}

fn shm_open_trunc_empties_the_object(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "trunc", 2 * P)?;
    let a = map_shared(&mut *p, fd, P, RW, 0).ctx("map")?;
    poke(&mut *p, a, 1)?;
    let fd2 = client(&mut *p)
        .shm_open(&name, OFlags::RDWR | OFlags::TRUNC, 0)
        .ctx("O_TRUNC")?;
    ensure_eq!(stat(&mut *p, fd2)?.size, 0);
    expect_signal(p.read(a), Signal::Bus, "read of a page truncated away")?;
    unlink(&mut *p, &name)
}

fn shm_open_trunc_read_only_without_write_permission_is_eacces(h: &mut dyn Harness) -> Outcome {
    let mut owner = proc(h)?;
    let name = h.unique_name("trunc-ro");
    let fd = client(&mut *owner)
        .shm_open(&name, CREATE, 0o644)
        .ctx("create")?;
    client(&mut *owner).ftruncate(fd, P as i64).ctx("size")?;
    let mut other = proc_with(h, spec(|s| s.uid = 2001))?;
    expect_err(
        client(&mut *other).shm_open(&name, OFlags::RDONLY | OFlags::TRUNC, 0),
        Errno::EACCES,
        "O_TRUNC by a reader",
    )?;
    ensure_eq!(stat(&mut *owner, fd)?.size, P);
    unlink(&mut *owner, &name)
}

fn shm_open_too_many_objects_is_enospc(h: &mut dyn Harness) -> Outcome {
    let f = h.facts();
    let live = h.stats().shm_objects;
    let mut p = proc_with(h, spec(|s| s.limits.max_fds = f.max_shm_objects + 8))?;
    let mut names = Vec::new();
    let mut result = Ok(());
    for i in live..f.max_shm_objects {
        let name = h.unique_name(&format!("many-{i}"));
        match client(&mut *p).shm_open(&name, CREATE | OFlags::EXCL, 0o600) {
            Ok(fd) => {
                let _ = client(&mut *p).close(fd);
                names.push(name);
            }
            Err(e) => {
                result = Err(Fail(format!("object {i}: {e:?}")));
                break;
            }
        }
    }
    if result.is_ok() {
        let name = h.unique_name("one-too-many");
        result = expect_err(
            client(&mut *p).shm_open(&name, CREATE, 0o600),
            Errno::ENOSPC,
            "one object past the limit",
        );
    }
    for n in &names {
        unlink(&mut *p, n)?;
    }
    result
}

fn shm_ftruncate_sets_the_size(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "ftruncate", 0)?;
    for size in [1, P, 3 * P + 5, P, 0] {
        client(&mut *p)
            .ftruncate(fd, size as i64)
            .ctx("ftruncate")?;
        ensure_eq!(stat(&mut *p, fd)?.size, size);
    }
    unlink(&mut *p, &name)
}

fn shm_ftruncate_of_a_read_only_fd_is_einval(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, _) = shm(h, &mut *p, "ftruncate-ro", P)?;
    let ro = client(&mut *p)
        .shm_open(&name, OFlags::RDONLY, 0)
        .ctx("open ro")?;
    expect_err(
        client(&mut *p).ftruncate(ro, 0),
        Errno::EINVAL,
        "ftruncate of O_RDONLY",
    )?;
    ensure_eq!(stat(&mut *p, ro)?.size, P);
    unlink(&mut *p, &name)
}

fn shm_ftruncate_negative_is_einval(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "ftruncate-neg", P)?;
    expect_err(
        client(&mut *p).ftruncate(fd, -1),
        Errno::EINVAL,
        "ftruncate -1",
    )?;
    unlink(&mut *p, &name)
}

fn shm_ftruncate_beyond_the_limit_is_efbig(h: &mut dyn Harness) -> Outcome {
    let f = h.facts();
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "efbig", 0)?;
    expect_err(
        client(&mut *p).ftruncate(fd, (f.max_object_size + P) as i64),
        Errno::EFBIG,
        "ftruncate past the object size limit",
    )?;
    ensure_eq!(stat(&mut *p, fd)?.size, 0);
    unlink(&mut *p, &name)
}

fn shm_calls_on_a_bad_fd_are_ebadf(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    expect_err(
        client(&mut *p).ftruncate(Fd(555), 0),
        Errno::EBADF,
        "ftruncate",
    )?;
    expect_err(client(&mut *p).fstat(Fd(555)), Errno::EBADF, "fstat")?;
    expect_err(client(&mut *p).close(Fd(555)), Errno::EBADF, "close")?;
    expect_err(client(&mut *p).close(Fd(0)), Errno::EBADF, "close(0)")
}

fn shm_close_twice_is_ebadf(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "close-twice", 0)?;
    client(&mut *p).close(fd).ctx("close")?;
    expect_err(client(&mut *p).close(fd), Errno::EBADF, "second close")?;
    expect_err(
        map_shared(&mut *p, fd, P, Prot::READ, 0),
        Errno::EBADF,
        "mmap of a closed fd",
    )?;
    unlink(&mut *p, &name)
}

fn shm_fds_count_up_from_three(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, a) = shm(h, &mut *p, "fd-numbers", 0)?;
    let b = client(&mut *p).shm_open(&name, OFlags::RDWR, 0).ctx("b")?;
    ensure_eq!((a, b), (Fd(3), Fd(4)));
    client(&mut *p).close(a).ctx("close")?;
    // POSIX: the lowest free number.
    let c = client(&mut *p).shm_open(&name, OFlags::RDWR, 0).ctx("c")?;
    ensure_eq!(c, Fd(3));
    unlink(&mut *p, &name)
}

fn shm_unlink_removes_the_name(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, _) = shm(h, &mut *p, "unlink", 0)?;
    unlink(&mut *p, &name)?;
    expect_err(
        client(&mut *p).shm_open(&name, OFlags::RDWR, 0),
        Errno::ENOENT,
        "open after unlink",
    )
}

fn shm_unlink_of_a_missing_name_is_enoent(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let name = h.unique_name("not-there");
    expect_err(
        client(&mut *p).shm_unlink(&name),
        Errno::ENOENT,
        "unlink of nothing",
    )
}

fn shm_unlink_keeps_open_fds_working(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "unlink-open", P)?;
    unlink(&mut *p, &name)?;
    client(&mut *p)
        .ftruncate(fd, 2 * P as i64)
        .ctx("ftruncate after unlink")?;
    ensure_eq!(stat(&mut *p, fd)?.size, 2 * P);
    let a = map_shared(&mut *p, fd, 2 * P, RW, 0).ctx("map after unlink")?;
    poke(&mut *p, a + P, 1)
}

fn shm_unlink_keeps_mapped_data(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "unlink-mapped", P)?;
    let a = map_shared(&mut *p, fd, P, RW, 0).ctx("map")?;
    poke(&mut *p, a + 9, 0x5e)?;
    client(&mut *p).close(fd).ctx("close")?;
    unlink(&mut *p, &name)?;
    ensure_eq!(peek(&mut *p, a + 9)?, 0x5e);
    poke(&mut *p, a + 10, 0x5f)
}

fn shm_recreated_name_is_a_new_object(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, old) = shm(h, &mut *p, "recreate", 2 * P)?;
    let old_ino = stat(&mut *p, old)?.ino;
    unlink(&mut *p, &name)?;
    let new = client(&mut *p)
        .shm_open(&name, CREATE | OFlags::EXCL, 0o600)
        .ctx("recreate")?;
    let st = stat(&mut *p, new)?;
    ensure!(
        st.ino != old_ino && st.size == 0,
        "recreated object is {st:?}"
    );
    ensure_eq!(stat(&mut *p, old)?.size, 2 * P);
    unlink(&mut *p, &name)
}

fn shm_mapping_past_the_end_is_sigbus(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "sigbus", P + 1)?;
    let a = map_shared(&mut *p, fd, 4 * P, RW, 0).ctx("map past the end")?;
    poke(&mut *p, a + P + 100, 1)?; // the partial last page is whole
    expect_signal(p.read(a + 2 * P), Signal::Bus, "read past the object")?;
    expect_signal(p.write(a + 3 * P, 1), Signal::Bus, "write past the object")?;
    unlink(&mut *p, &name)
}

fn shm_growing_makes_pages_accessible(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "grow", 0)?;
    let a = map_shared(&mut *p, fd, 2 * P, RW, 0).ctx("map an empty object")?;
    expect_signal(p.read(a), Signal::Bus, "read of an empty object")?;
    client(&mut *p).ftruncate(fd, 2 * P as i64).ctx("grow")?;
    ensure_eq!(peek(&mut *p, a + P)?, 0);
    poke(&mut *p, a + P, 4)?;
    unlink(&mut *p, &name)
}

fn shm_shrinking_makes_mapped_pages_sigbus(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "shrink", 3 * P)?;
    let a = map_shared(&mut *p, fd, 3 * P, RW, 0).ctx("map")?;
    for i in 0..3 {
        poke(&mut *p, a + i * P, 7)?;
    }
    client(&mut *p).ftruncate(fd, P as i64).ctx("shrink")?;
    ensure_eq!(peek(&mut *p, a)?, 7);
    expect_signal(p.read(a + P), Signal::Bus, "read of a page cut off")?;
    client(&mut *p)
        .ftruncate(fd, 3 * P as i64)
        .ctx("grow back")?;
    ensure_eq!(peek(&mut *p, a + 2 * P)?, 0);
    unlink(&mut *p, &name)
}

fn shm_shared_mappings_see_each_other(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "two-views", 2 * P)?;
    let a = map_shared(&mut *p, fd, 2 * P, RW, 0).ctx("a")?;
    let b = map_shared(&mut *p, fd, 2 * P, RW, 0).ctx("b")?;
    ensure!(a != b, "two mappings at one address");
    poke(&mut *p, a + P + 3, 0x10)?;
    ensure_eq!(peek(&mut *p, b + P + 3)?, 0x10);
    poke(&mut *p, b, 0x20)?;
    ensure_eq!(peek(&mut *p, a)?, 0x20);
    unlink(&mut *p, &name)
}

fn shm_mapping_at_an_offset_sees_that_page(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "offset", 4 * P)?;
    let all = map_shared(&mut *p, fd, 4 * P, RW, 0).ctx("whole")?;
    for i in 0..4 {
        poke(&mut *p, all + i * P, 0x30 + i as u8)?;
    }
    let part = map_shared(&mut *p, fd, 2 * P, Prot::READ, 2 * P).ctx("at offset")?;
    ensure_eq!(peek(&mut *p, part)?, 0x32);
    ensure_eq!(peek(&mut *p, part + P)?, 0x33);
    unlink(&mut *p, &name)
}

fn shm_shared_write_of_a_read_only_fd_is_eacces(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, _) = shm(h, &mut *p, "ro-shared", P)?;
    let ro = client(&mut *p)
        .shm_open(&name, OFlags::RDONLY, 0)
        .ctx("open ro")?;
    expect_err(
        map_shared(&mut *p, ro, P, RW, 0),
        Errno::EACCES,
        "shared rw of O_RDONLY",
    )?;
    let a = map_shared(&mut *p, ro, P, Prot::READ, 0).ctx("shared r of O_RDONLY")?;
    ensure_eq!(peek(&mut *p, a)?, 0);
    expect_signal(
        p.write(a, 1),
        Signal::Segv,
        "write to a read-only shared mapping",
    )?;
    unlink(&mut *p, &name)
}

fn shm_private_write_of_a_read_only_fd_is_allowed(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "ro-private", P)?;
    let ro = client(&mut *p)
        .shm_open(&name, OFlags::RDONLY, 0)
        .ctx("open ro")?;
    let a = client(&mut *p)
        .mmap(0, P, RW, MapFlags::PRIVATE, Some(ro), 0)
        .ctx("private rw of O_RDONLY")?;
    poke(&mut *p, a, 9)?;
    let view = map_shared(&mut *p, fd, P, Prot::READ, 0).ctx("shared view")?;
    ensure_eq!(peek(&mut *p, view)?, 0);
    unlink(&mut *p, &name)
}

fn shm_read_only_shared_mapping_cannot_be_made_writable(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, _) = shm(h, &mut *p, "ro-mprotect", P)?;
    let ro = client(&mut *p)
        .shm_open(&name, OFlags::RDONLY, 0)
        .ctx("open ro")?;
    let a = map_shared(&mut *p, ro, P, Prot::READ, 0).ctx("map")?;
    expect_err(
        client(&mut *p).mprotect(a, P, RW),
        Errno::EACCES,
        "mprotect +w of a shared read-only fd mapping",
    )?;
    unlink(&mut *p, &name)
}

fn shm_private_mapping_is_copy_on_write(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "cow", P)?;
    let shared = map_shared(&mut *p, fd, P, RW, 0).ctx("shared")?;
    poke(&mut *p, shared, 1)?;
    let private = client(&mut *p)
        .mmap(0, P, RW, MapFlags::PRIVATE, Some(fd), 0)
        .ctx("private")?;
    ensure_eq!(peek(&mut *p, private)?, 1);
    poke(&mut *p, private, 2)?;
    ensure_eq!(peek(&mut *p, shared)?, 1);
    poke(&mut *p, shared, 3)?;
    ensure_eq!(peek(&mut *p, private)?, 2);
    unlink(&mut *p, &name)
}

fn shm_private_mapping_sees_the_object_until_it_writes(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "cow-late", 2 * P)?;
    let shared = map_shared(&mut *p, fd, 2 * P, RW, 0).ctx("shared")?;
    let private = client(&mut *p)
        .mmap(0, 2 * P, RW, MapFlags::PRIVATE, Some(fd), 0)
        .ctx("private")?;
    ensure_eq!(peek(&mut *p, private + P)?, 0);
    poke(&mut *p, shared + P, 0x44)?;
    ensure_eq!(peek(&mut *p, private + P)?, 0x44);
    poke(&mut *p, private + P, 0x45)?;
    ensure_eq!(peek(&mut *p, shared + P)?, 0x44);
    unlink(&mut *p, &name)
}

fn shm_mapping_outlives_its_fd(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "outlive", P)?;
    let a = map_shared(&mut *p, fd, P, RW, 0).ctx("map")?;
    client(&mut *p).close(fd).ctx("close")?;
    poke(&mut *p, a, 0x12)?;
    let fd2 = client(&mut *p)
        .shm_open(&name, OFlags::RDWR, 0)
        .ctx("reopen")?;
    let b = map_shared(&mut *p, fd2, P, Prot::READ, 0).ctx("map again")?;
    ensure_eq!(peek(&mut *p, b)?, 0x12);
    unlink(&mut *p, &name)
}

fn shm_unaligned_offset_is_einval(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "offset-unaligned", 2 * P)?;
    expect_err(
        map_shared(&mut *p, fd, P, RW, 100),
        Errno::EINVAL,
        "offset 100",
    )?;
    unlink(&mut *p, &name)
}

fn shm_offset_overflow_is_eoverflow(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "offset-overflow", P)?;
    expect_err(
        map_shared(&mut *p, fd, 2 * P, RW, (i64::MAX as u64) & !(P - 1)),
        Errno::EOVERFLOW,
        "offset + len past off_t",
    )?;
    expect_err(
        map_shared(&mut *p, fd, P, RW, !(P - 1)),
        Errno::EOVERFLOW,
        "offset near 2^64",
    )?;
    unlink(&mut *p, &name)
}

fn shm_denywrite_on_an_object_open_for_writing_is_etxtbsy(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "denywrite", P)?;
    expect_err(
        client(&mut *p).mmap(
            0,
            P,
            Prot::READ,
            MapFlags::PRIVATE | MapFlags::DENYWRITE,
            Some(fd),
            0,
        ),
        Errno::ETXTBSY,
        "MAP_DENYWRITE of an object open for writing",
    )?;
    unlink(&mut *p, &name)
}

fn shm_writable_open_while_mapped_denywrite_is_etxtbsy(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "denywrite-open", P)?;
    client(&mut *p).close(fd).ctx("close the writer")?;
    let ro = client(&mut *p)
        .shm_open(&name, OFlags::RDONLY, 0)
        .ctx("open ro")?;
    let a = client(&mut *p)
        .mmap(
            0,
            P,
            Prot::READ,
            MapFlags::PRIVATE | MapFlags::DENYWRITE,
            Some(ro),
            0,
        )
        .ctx("MAP_DENYWRITE")?;
    expect_err(
        client(&mut *p).shm_open(&name, OFlags::RDWR, 0),
        Errno::ETXTBSY,
        "open for writing while mapped MAP_DENYWRITE",
    )?;
    client(&mut *p).munmap(a, P).ctx("munmap")?;
    client(&mut *p)
        .shm_open(&name, OFlags::RDWR, 0)
        .ctx("open for writing after munmap")?;
    unlink(&mut *p, &name)
}

fn shm_fstat_of_bank_and_device_fds(h: &mut dyn Harness) -> Outcome {
    let f = h.facts();
    let mut p = proc(h)?;
    let bank = client(&mut *p)
        .open_bank(&f.small_bank.0)
        .ctx("open_bank")?;
    let st = stat(&mut *p, bank)?;
    ensure_eq!((st.kind, st.size), (ObjectKind::Bank, f.small_bank.1 * P));
    let dev = client(&mut *p)
        .open_device(&f.device.0, OFlags::RDWR)
        .ctx("open_device")?;
    let st = stat(&mut *p, dev)?;
    ensure_eq!((st.kind, st.size), (ObjectKind::Device, f.device.1));
    Ok(())
}
