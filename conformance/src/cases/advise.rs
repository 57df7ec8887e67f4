//! `madvise` (Linux): `MADV_DONTNEED` and `MADV_FREE` drop pages, `MADV_WILLNEED` pages
//! in, the access-pattern hints are accepted, unknown advice is `EINVAL` and a hole
//! `ENOMEM` (with nothing changed). `MADV_DONTFORK` is in the fork cases.

use super::*;
use crate::runner::Outcome;
use crate::{ensure, ensure_eq};
use ipc_proto::Advice;

cases![
    madvise_dontneed_private_anonymous_reads_zero,
    madvise_dontneed_shared_rereads_the_object,
    madvise_dontneed_private_object_mapping_drops_the_copies,
    madvise_free_is_for_private_anonymous_memory,
    madvise_willneed_pages_in_an_object,
    madvise_hints_are_accepted,
    madvise_unknown_advice_is_einval,
    madvise_over_a_hole_is_enomem_and_changes_nothing,
    madvise_dontneed_of_locked_pages_is_einval,
    madvise_bad_ranges,
];

fn madvise_dontneed_private_anonymous_reads_zero(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 4 * P, RW)?;
    for i in 0..4 {
        poke(&mut *p, a + i * P, 0x40 + i as u8)?;
    }
    let before = free_frames(h);
    client(&mut *p)
        .madvise(a + P, 2 * P, Advice::DontNeed)
        .ctx("madvise")?;
    let after = free_frames(h);
    ensure!(
        !h.facts().exclusive || after >= before + 2,
        "free frames {before} before, {after} after"
    );
    ensure_eq!(peek(&mut *p, a)?, 0x40);
    ensure_eq!(peek(&mut *p, a + P)?, 0);
    ensure_eq!(peek(&mut *p, a + 2 * P)?, 0);
    ensure_eq!(peek(&mut *p, a + 3 * P)?, 0x43);
    // Still mapped and writable.
    poke(&mut *p, a + P, 1)?;
    ensure_eq!(peek(&mut *p, a + P)?, 1);
    Ok(())
}

fn madvise_dontneed_shared_rereads_the_object(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = client(&mut *p)
        .mmap(0, 2 * P, RW, SA, None, 0)
        .ctx("mmap")?;
    poke(&mut *p, a, 9)?;
    client(&mut *p)
        .madvise(a, 2 * P, Advice::DontNeed)
        .ctx("madvise")?;
    ensure!(
        !client(&mut *p).page_info(a).ctx("page_info")?.installed,
        "page still installed"
    );
    ensure_eq!(peek(&mut *p, a)?, 9);
    Ok(())
}

fn madvise_dontneed_private_object_mapping_drops_the_copies(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "madvise-private", P)?;
    let s = map_shared(&mut *p, fd, P, RW, 0).ctx("shared")?;
    poke(&mut *p, s, 3)?;
    let q = client(&mut *p)
        .mmap(0, P, RW, MapFlags::PRIVATE, Some(fd), 0)
        .ctx("private")?;
    poke(&mut *p, q, 30)?;
    client(&mut *p)
        .madvise(q, P, Advice::DontNeed)
        .ctx("madvise")?;
    ensure_eq!(peek(&mut *p, q)?, 3);
    client(&mut *p).close(fd).ctx("close")?;
    client(&mut *p).shm_unlink(&name).ctx("shm_unlink")
}

fn madvise_free_is_for_private_anonymous_memory(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, P, RW)?;
    poke(&mut *p, a, 1)?;
    client(&mut *p)
        .madvise(a, P, Advice::Free)
        .ctx("MADV_FREE")?;
    // The kernel may free the page at any time: here it does at once.
    ensure_eq!(peek(&mut *p, a)?, 0);
    let s = client(&mut *p).mmap(0, P, RW, SA, None, 0).ctx("mmap")?;
    expect_err(
        client(&mut *p).madvise(s, P, Advice::Free),
        Errno::EINVAL,
        "MADV_FREE of shared memory",
    )
}

fn madvise_willneed_pages_in_an_object(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "madvise-willneed", 2 * P)?;
    let s = map_shared(&mut *p, fd, 3 * P, Prot::READ, 0).ctx("mmap")?;
    ensure!(
        !client(&mut *p).page_info(s).ctx("page_info")?.installed,
        "installed before any access"
    );
    client(&mut *p)
        .madvise(s, 3 * P, Advice::WillNeed)
        .ctx("madvise")?;
    for i in 0..2 {
        let info = client(&mut *p).page_info(s + i * P).ctx("page_info")?;
        ensure!(info.resident && info.installed, "page {i}: {info:?}");
    }
    // Past the object's end there is nothing to page in.
    expect_signal(p.read(s + 2 * P), Signal::Bus, "read past the end")?;
    client(&mut *p).close(fd).ctx("close")?;
    client(&mut *p).shm_unlink(&name).ctx("shm_unlink")
}

fn madvise_hints_are_accepted(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 2 * P, RW)?;
    poke(&mut *p, a, 6)?;
    for adv in [
        Advice::Normal,
        Advice::Random,
        Advice::Sequential,
        Advice::WillNeed,
    ] {
        client(&mut *p).madvise(a, 2 * P, adv).ctx("madvise")?;
    }
    client(&mut *p).madvise_c(a, P, 2).ctx("madvise(2)")?;
    ensure_eq!(peek(&mut *p, a)?, 6);
    Ok(())
}

fn madvise_unknown_advice_is_einval(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, P, RW)?;
    for raw in [5, 9, 12, 14, 20, 77, -1] {
        expect_err(
            client(&mut *p).madvise_c(a, P, raw),
            Errno::EINVAL,
            &format!("advice {raw}"),
        )?;
    }
    // Refused at decode: a raw request with advice 9 (MADV_REMOVE) never reaches a case.
    let bytes = [0x19, 0x80, 0x80, 0x80, 0x80, 0x01, 0x80, 0x20, 0x09];
    let mut out = [0u8; ipc_proto::MAX_RESPONSE_LEN];
    let n = p.transport().call(&bytes, &mut out).ctx("raw call")?;
    ensure_eq!(
        ipc_proto::decode_response(&out[..n]).ctx("decode")?,
        Err(Errno::EINVAL)
    );
    Ok(())
}

fn madvise_over_a_hole_is_enomem_and_changes_nothing(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 3 * P, RW)?;
    poke(&mut *p, a, 1)?;
    poke(&mut *p, a + 2 * P, 2)?;
    client(&mut *p).munmap(a + P, P).ctx("munmap")?;
    expect_err(
        client(&mut *p).madvise(a, 3 * P, Advice::DontNeed),
        Errno::ENOMEM,
        "DONTNEED over a hole",
    )?;
    expect_err(
        client(&mut *p).madvise(a, 3 * P, Advice::Normal),
        Errno::ENOMEM,
        "NORMAL over a hole",
    )?;
    ensure_eq!(peek(&mut *p, a)?, 1);
    ensure_eq!(peek(&mut *p, a + 2 * P)?, 2);
    Ok(())
}

fn madvise_dontneed_of_locked_pages_is_einval(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, P, RW)?;
    poke(&mut *p, a, 4)?;
    client(&mut *p).mlock(a, P).ctx("mlock")?;
    expect_err(
        client(&mut *p).madvise(a, P, Advice::DontNeed),
        Errno::EINVAL,
        "DONTNEED of locked pages",
    )?;
    ensure_eq!(peek(&mut *p, a)?, 4);
    Ok(())
}

fn madvise_bad_ranges(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, P, RW)?;
    expect_err(
        client(&mut *p).madvise(a + 1, P, Advice::Normal),
        Errno::EINVAL,
        "unaligned",
    )?;
    expect_err(
        client(&mut *p).madvise(a, u64::MAX, Advice::Normal),
        Errno::EINVAL,
        "wrapping length",
    )?;
    client(&mut *p)
        .madvise(a, 0, Advice::DontNeed)
        .ctx("length 0")?;
    Ok(())
}
