//! `mremap` (Linux): shrink and grow in place, `MREMAP_MAYMOVE` (pages move, never
//! copied), `MREMAP_FIXED`, `MREMAP_DONTUNMAP`, the duplicate of a shared mapping, and
//! Linux's errnos.

use super::*;
use crate::runner::Outcome;
use crate::{ensure, ensure_eq};
use ipc_proto::{Backing, MremapFlags};

cases![
    mremap_shrink_in_place_unmaps_the_tail,
    mremap_grow_in_place_keeps_address_and_data,
    mremap_grow_blocked_without_maymove_is_enomem,
    mremap_maymove_moves_the_pages_without_copying,
    mremap_fixed_moves_to_the_address_and_replaces_it,
    mremap_fixed_overlapping_the_old_range_is_einval,
    mremap_dontunmap_leaves_the_old_range_empty,
    mremap_shared_mapping_keeps_its_object,
    mremap_old_len_zero_duplicates_a_shared_mapping,
    mremap_of_an_unmapped_address_is_efault,
    mremap_across_two_mappings_is_efault,
    mremap_bad_arguments_are_einval,
    mremap_locked_mapping_grows_locked_and_within_the_limit,
    mremap_moving_a_private_object_mapping_keeps_its_pages,
];

const NONE: MremapFlags = MremapFlags::empty();
const MAYMOVE: MremapFlags = MremapFlags::MAYMOVE;

/// `pages` pages of private anonymous read-write memory at a fixed, free place with
/// `spare` free pages after them.
fn placed(p: &mut dyn Process, pages: u64, spare: u64) -> Result<u64, Fail> {
    let a = hole(p, pages + spare)?;
    fixed(p, a, pages * P, RW).ctx("mmap fixed")
}

fn mremap_shrink_in_place_unmaps_the_tail(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 4 * P, RW)?;
    for i in 0..4 {
        poke(&mut *p, a + i * P, 1 + i as u8)?;
    }
    let before = free_frames(h);
    let r = client(&mut *p).mremap(a, 4 * P, 2 * P, NONE, 0);
    ensure_eq!(r, Ok(a));
    let after = free_frames(h);
    ensure!(
        !h.facts().exclusive || after >= before + 2,
        "free frames {before} before the shrink, {after} after"
    );
    ensure_eq!(peek(&mut *p, a + P)?, 2);
    expect_signal(p.read(a + 2 * P), Signal::Segv, "read of the cut tail")?;
    ensure_eq!(region_at(&mut *p, a)?.map(|r| r.end), Some(a + 2 * P));
    Ok(())
}

fn mremap_grow_in_place_keeps_address_and_data(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = placed(&mut *p, 2, 2)?;
    poke(&mut *p, a + P, 7)?;
    let r = client(&mut *p).mremap(a, 2 * P, 4 * P - 100, NONE, 0);
    ensure_eq!(r, Ok(a));
    ensure_eq!(peek(&mut *p, a + P)?, 7);
    ensure_eq!(peek(&mut *p, a + 3 * P)?, 0);
    poke(&mut *p, a + 3 * P, 9)?;
    let regs = regions(&mut *p)?;
    let r = regs
        .iter()
        .find(|r| r.start == a)
        .ok_or("none")
        .ctx("the region")?;
    ensure_eq!(r.end, a + 4 * P);
    Ok(())
}

fn mremap_grow_blocked_without_maymove_is_enomem(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = placed(&mut *p, 2, 1)?;
    fixed(&mut *p, a + 2 * P, P, Prot::READ).ctx("neighbour")?;
    poke(&mut *p, a, 3)?;
    expect_err(
        client(&mut *p).mremap(a, 2 * P, 3 * P, NONE, 0),
        Errno::ENOMEM,
        "grow into a neighbour",
    )?;
    ensure_eq!(peek(&mut *p, a)?, 3);
    ensure_eq!(region_at(&mut *p, a)?.map(|r| r.end), Some(a + 2 * P));
    Ok(())
}

fn mremap_maymove_moves_the_pages_without_copying(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = placed(&mut *p, 3, 1)?;
    fixed(&mut *p, a + 3 * P, P, Prot::READ).ctx("neighbour")?;
    for i in 0..3 {
        poke(&mut *p, a + i * P + 5, 0x20 + i as u8)?;
    }
    let before = free_frames(h);
    let b = client(&mut *p)
        .mremap(a, 3 * P, 6 * P, MAYMOVE, 0)
        .ctx("mremap")?;
    let after = free_frames(h);
    ensure!(b != a, "moved to {b:#x}, the old address");
    // Never copied: moving allocates no frame for data.
    ensure!(
        !h.facts().exclusive || after == before,
        "free frames {before} before the move, {after} after"
    );
    for i in 0..3 {
        ensure_eq!(peek(&mut *p, b + i * P + 5)?, 0x20 + i as u8);
    }
    ensure_eq!(peek(&mut *p, b + 5 * P)?, 0);
    expect_signal(p.read(a), Signal::Segv, "read of the old address")?;
    ensure!(
        client(&mut *p).page_info(b).ctx("page_info")?.resident,
        "moved page not resident"
    );
    Ok(())
}

fn mremap_fixed_moves_to_the_address_and_replaces_it(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 2 * P, RW)?;
    let d = placed(&mut *p, 4, 0)?;
    poke(&mut *p, a, 1)?;
    poke(&mut *p, d + P, 2)?;
    poke(&mut *p, d + 3 * P, 3)?;
    let fx = MAYMOVE | MremapFlags::FIXED;
    expect_err(
        client(&mut *p).mremap(a, 2 * P, 2 * P, MremapFlags::FIXED, d),
        Errno::EINVAL,
        "FIXED without MAYMOVE",
    )?;
    expect_err(
        client(&mut *p).mremap(a, 2 * P, 2 * P, fx, d + 1),
        Errno::EINVAL,
        "unaligned new_addr",
    )?;
    ensure_eq!(client(&mut *p).mremap(a, 2 * P, 2 * P, fx, d), Ok(d));
    ensure_eq!(peek(&mut *p, d)?, 1);
    ensure_eq!(peek(&mut *p, d + P)?, 0);
    ensure_eq!(peek(&mut *p, d + 3 * P)?, 3);
    expect_signal(p.read(a), Signal::Segv, "read of the old address")?;
    Ok(())
}

fn mremap_fixed_overlapping_the_old_range_is_einval(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = placed(&mut *p, 2, 2)?;
    poke(&mut *p, a, 4)?;
    let fx = MAYMOVE | MremapFlags::FIXED;
    expect_err(
        client(&mut *p).mremap(a, 2 * P, 2 * P, fx, a + P),
        Errno::EINVAL,
        "new range overlapping the old",
    )?;
    ensure_eq!(peek(&mut *p, a)?, 4);
    Ok(())
}

fn mremap_dontunmap_leaves_the_old_range_empty(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 2 * P, RW)?;
    poke(&mut *p, a, 5)?;
    poke(&mut *p, a + P, 6)?;
    let du = MAYMOVE | MremapFlags::DONTUNMAP;
    expect_err(
        client(&mut *p).mremap(a, 2 * P, 3 * P, du, 0),
        Errno::EINVAL,
        "DONTUNMAP with another length",
    )?;
    expect_err(
        client(&mut *p).mremap(a, 2 * P, 2 * P, MremapFlags::DONTUNMAP, 0),
        Errno::EINVAL,
        "DONTUNMAP without MAYMOVE",
    )?;
    let before = free_frames(h);
    let b = client(&mut *p)
        .mremap(a, 2 * P, 2 * P, du, 0)
        .ctx("mremap")?;
    ensure!(b != a, "DONTUNMAP stayed in place");
    ensure_eq!(peek(&mut *p, b)?, 5);
    ensure_eq!(peek(&mut *p, b + P)?, 6);
    let after = free_frames(h);
    ensure!(
        !h.facts().exclusive || after == before,
        "free frames {before} before the move, {after} after"
    );
    // The old range is still mapped, and private anonymous memory there reads as zero.
    ensure_eq!(peek(&mut *p, a)?, 0);
    ensure_eq!(peek(&mut *p, a + P)?, 0);
    ensure!(region_at(&mut *p, a)?.is_some(), "old range unmapped");
    Ok(())
}

fn mremap_shared_mapping_keeps_its_object(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "mremap-shared", 4 * P)?;
    let other = map_shared(&mut *p, fd, 4 * P, RW, 0).ctx("second mapping")?;
    let a = hole(&mut *p, 3)?;
    let a = client(&mut *p)
        .mmap(
            a,
            2 * P,
            RW,
            MapFlags::SHARED | MapFlags::FIXED,
            Some(fd),
            0,
        )
        .ctx("mmap")?;
    fixed(&mut *p, a + 2 * P, P, Prot::READ).ctx("neighbour")?;
    poke(&mut *p, a + P, 8)?;
    let b = client(&mut *p)
        .mremap(a, 2 * P, 4 * P, MAYMOVE, 0)
        .ctx("mremap")?;
    ensure_eq!(peek(&mut *p, b + P)?, 8);
    poke(&mut *p, b + 3 * P, 9)?;
    ensure_eq!(peek(&mut *p, other + 3 * P)?, 9);
    let r = region_at(&mut *p, b)?.ok_or("none").ctx("moved region")?;
    ensure!(
        matches!(r.backing, Backing::Shm(_)) && r.shared && r.offset == 0,
        "moved region {r:?}"
    );
    client(&mut *p).close(fd).ctx("close")?;
    unlink(&mut *p, &name)
}

fn mremap_old_len_zero_duplicates_a_shared_mapping(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = client(&mut *p)
        .mmap(0, 2 * P, RW, SA, None, 0)
        .ctx("mmap shared")?;
    poke(&mut *p, a + P, 7)?;
    expect_err(
        client(&mut *p).mremap(a, 0, 2 * P, NONE, 0),
        Errno::ENOMEM,
        "duplicate without MAYMOVE",
    )?;
    let b = client(&mut *p)
        .mremap(a, 0, 2 * P, MAYMOVE, 0)
        .ctx("duplicate")?;
    ensure_eq!(peek(&mut *p, b + P)?, 7);
    poke(&mut *p, b, 1)?;
    ensure_eq!(peek(&mut *p, a)?, 1);
    let q = anon(&mut *p, P, RW)?;
    expect_err(
        client(&mut *p).mremap(q, 0, P, MAYMOVE, 0),
        Errno::EINVAL,
        "duplicate of a private mapping",
    )
}

fn mremap_of_an_unmapped_address_is_efault(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = hole(&mut *p, 2)?;
    expect_err(
        client(&mut *p).mremap(a, P, 2 * P, MAYMOVE, 0),
        Errno::EFAULT,
        "grow of nothing",
    )?;
    expect_err(
        client(&mut *p).mremap(a, 2 * P, P, NONE, 0),
        Errno::EFAULT,
        "shrink of nothing",
    )?;
    expect_err(
        client(&mut *p).mremap(a, P, P, NONE, 0),
        Errno::EFAULT,
        "same length of nothing",
    )
}

fn mremap_across_two_mappings_is_efault(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = placed(&mut *p, 4, 0)?;
    client(&mut *p)
        .mprotect(a + P, P, Prot::READ)
        .ctx("mprotect")?;
    expect_err(
        client(&mut *p).mremap(a, 4 * P, 8 * P, MAYMOVE, 0),
        Errno::EFAULT,
        "old range over two mappings",
    )?;
    expect_err(
        client(&mut *p).mremap(a, 3 * P, 3 * P, MAYMOVE | MremapFlags::DONTUNMAP, 0),
        Errno::EFAULT,
        "DONTUNMAP over two mappings",
    )?;
    ensure_eq!(
        regions(&mut *p)?
            .iter()
            .filter(|r| r.start >= a && r.end <= a + 4 * P)
            .count(),
        3
    );
    // A shrink unmaps the tail whatever maps it, as Linux.
    ensure_eq!(client(&mut *p).mremap(a, 4 * P, P, NONE, 0), Ok(a));
    expect_signal(p.read(a + P), Signal::Segv, "read of the cut tail")
}

fn mremap_bad_arguments_are_einval(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 2 * P, RW)?;
    let c = &mut client(&mut *p);
    expect_err(
        c.mremap(a + 1, P, 2 * P, MAYMOVE, 0),
        Errno::EINVAL,
        "unaligned",
    )?;
    expect_err(c.mremap(a, P, 0, MAYMOVE, 0), Errno::EINVAL, "new_len 0")?;
    expect_err(
        c.mremap(a, P, u64::MAX, MAYMOVE, 0),
        Errno::EINVAL,
        "new_len -1",
    )?;
    expect_err(
        c.mremap(a, P, 1 << 62, MAYMOVE, 0),
        Errno::EINVAL,
        "new_len 2^62",
    )?;
    expect_err(c.mremap_c(a, P, P, 8, 0), Errno::EINVAL, "unknown flag")?;
    expect_err(
        c.mremap(a, P, P, MremapFlags::DONTUNMAP | MremapFlags::FIXED, 0),
        Errno::EINVAL,
        "FIXED|DONTUNMAP without MAYMOVE",
    )?;
    ensure_eq!(region_at(&mut *p, a)?.map(|r| r.end), Some(a + 2 * P));
    Ok(())
}

fn mremap_locked_mapping_grows_locked_and_within_the_limit(h: &mut dyn Harness) -> Outcome {
    let mut p = proc_with(h, spec(|s| s.limits.max_locked = 4 * P))?;
    let a = placed(&mut *p, 2, 8)?;
    client(&mut *p).mlock(a, 2 * P).ctx("mlock")?;
    expect_err(
        client(&mut *p).mremap(a, 2 * P, 8 * P, NONE, 0),
        Errno::EAGAIN,
        "grow over the lock limit",
    )?;
    ensure_eq!(client(&mut *p).mremap(a, 2 * P, 4 * P, NONE, 0), Ok(a));
    let info = client(&mut *p).page_info(a + 3 * P).ctx("page_info")?;
    ensure!(info.locked && info.resident, "grown page {info:?}");
    let r = region_at(&mut *p, a)?.ok_or("none").ctx("region")?;
    ensure!(r.locked && r.end == a + 4 * P, "region {r:?}");
    Ok(())
}

fn mremap_moving_a_private_object_mapping_keeps_its_pages(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "mremap-private", 2 * P)?;
    let s = map_shared(&mut *p, fd, 2 * P, RW, 0).ctx("shared")?;
    poke(&mut *p, s, 1)?;
    poke(&mut *p, s + P, 2)?;
    let q = client(&mut *p)
        .mmap(0, 2 * P, RW, MapFlags::PRIVATE, Some(fd), 0)
        .ctx("private")?;
    // A private copy of the first page, the object's page under the second.
    poke(&mut *p, q, 10)?;
    ensure_eq!(peek(&mut *p, q + P)?, 2);
    let dest = hole(&mut *p, 2)?;
    let fx = MAYMOVE | MremapFlags::FIXED;
    ensure_eq!(client(&mut *p).mremap(q, 2 * P, 2 * P, fx, dest), Ok(dest));
    ensure_eq!(peek(&mut *p, dest)?, 10);
    ensure_eq!(peek(&mut *p, dest + P)?, 2);
    // Still the object behind the page not copied.
    poke(&mut *p, s + P, 3)?;
    ensure_eq!(peek(&mut *p, dest + P)?, 3);
    client(&mut *p).close(fd).ctx("close")?;
    unlink(&mut *p, &name)
}

/// `shm_unlink`s `name`.
fn unlink(p: &mut dyn Process, name: &str) -> Outcome {
    client(p).shm_unlink(name).ctx("shm_unlink")
}
