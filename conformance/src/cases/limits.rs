//! Per-client quotas and system-wide limits: one client cannot starve the rest.

use super::*;
use crate::runner::Outcome;
use crate::{ensure, ensure_eq};

cases![
    limit_on_regions_is_enomem,
    limit_on_regions_counts_a_split_by_munmap,
    limit_on_bytes_is_enomem,
    limit_on_fds_is_emfile,
    limit_on_open_files_is_enfile,
    limit_of_one_client_does_not_bind_another,
    limit_memory_taken_by_one_client_returns_when_it_exits,
    limit_noreserve_pressure_never_takes_a_committed_frame,
];

fn limit_on_regions_is_enomem(h: &mut dyn Harness) -> Outcome {
    let mut p = proc_with(h, spec(|s| s.limits.max_regions = 4))?;
    for i in 0..4 {
        let prot = if i % 2 == 0 { RW } else { Prot::READ };
        anon(&mut *p, P, prot)?;
    }
    expect_err(
        client(&mut *p).mmap(0, P, RW, PA, None, 0),
        Errno::ENOMEM,
        "fifth region",
    )?;
    ensure_eq!(regions(&mut *p)?.len(), 4);
    Ok(())
}

fn limit_on_regions_counts_a_split_by_munmap(h: &mut dyn Harness) -> Outcome {
    let mut p = proc_with(h, spec(|s| s.limits.max_regions = 2))?;
    let a = anon(&mut *p, 3 * P, RW)?;
    anon(&mut *p, P, Prot::READ)?;
    expect_err(
        client(&mut *p).munmap(a + P, P),
        Errno::ENOMEM,
        "munmap splitting into a third region",
    )?;
    expect_err(
        client(&mut *p).mprotect(a + P, P, Prot::READ),
        Errno::ENOMEM,
        "mprotect splitting into more regions",
    )?;
    client(&mut *p)
        .munmap(a, P)
        .ctx("munmap of the head splits nothing")?;
    Ok(())
}

fn limit_on_bytes_is_enomem(h: &mut dyn Harness) -> Outcome {
    let mut p = proc_with(h, spec(|s| s.limits.max_bytes = 8 * P))?;
    let a = anon(&mut *p, 6 * P, RW)?;
    expect_err(
        client(&mut *p).mmap(0, 3 * P, RW, PA, None, 0),
        Errno::ENOMEM,
        "past the address-space limit",
    )?;
    anon(&mut *p, 2 * P, RW)?;
    // Replacing in place does not grow the total.
    fixed(&mut *p, a, 6 * P, Prot::READ).ctx("MAP_FIXED replacement at the limit")?;
    Ok(())
}

fn limit_on_fds_is_emfile(h: &mut dyn Harness) -> Outcome {
    let f = h.facts();
    let mut p = proc_with(h, spec(|s| s.limits.max_fds = 3))?;
    let (name, _) = shm(h, &mut *p, "emfile", 0)?;
    client(&mut *p)
        .shm_open(&name, OFlags::RDWR, 0)
        .ctx("second fd")?;
    client(&mut *p).open_bank(&f.default_bank).ctx("third fd")?;
    expect_err(
        client(&mut *p).shm_open(&name, OFlags::RDWR, 0),
        Errno::EMFILE,
        "fourth fd",
    )?;
    expect_err(
        client(&mut *p).open_bank(&f.default_bank),
        Errno::EMFILE,
        "fourth fd (bank)",
    )?;
    expect_err(
        client(&mut *p).open_device(&f.device.0, OFlags::RDWR),
        Errno::EMFILE,
        "fourth fd (device)",
    )?;
    client(&mut *p).close(Fd(4)).ctx("close one")?;
    client(&mut *p)
        .shm_open(&name, OFlags::RDWR, 0)
        .ctx("fd after a close")?;
    client(&mut *p).shm_unlink(&name).ctx("unlink")
}

fn limit_on_open_files_is_enfile(h: &mut dyn Harness) -> Outcome {
    let f = h.facts();
    let max = f.max_open_files;
    let mut p = proc_with(h, spec(|s| s.limits.max_fds = max + 16))?;
    let (name, _) = shm(h, &mut *p, "enfile", 0)?;
    let mut opened = 1u32;
    let outcome = loop {
        match client(&mut *p).shm_open(&name, OFlags::RDWR, 0) {
            Ok(_) => opened += 1,
            Err(e) => break e,
        }
        if opened > max + 8 {
            break Errno::EPROTO;
        }
    };
    ensure!(
        outcome == Errno::ENFILE && opened <= max,
        "after {opened} opens: {outcome:?} (system limit {max})"
    );
    // The system-wide limit holds for every client.
    let mut q = proc(h)?;
    expect_err(
        client(&mut *q).shm_open(&name, OFlags::RDWR, 0),
        Errno::ENFILE,
        "other client",
    )?;
    drop(p);
    client(&mut *q)
        .shm_open(&name, OFlags::RDWR, 0)
        .ctx("after the holder exits")?;
    client(&mut *q).shm_unlink(&name).ctx("unlink")
}

fn limit_of_one_client_does_not_bind_another(h: &mut dyn Harness) -> Outcome {
    let mut tight = proc_with(
        h,
        spec(|s| {
            s.limits.max_regions = 1;
            s.limits.max_fds = 0;
        }),
    )?;
    let mut free = proc(h)?;
    anon(&mut *tight, P, RW)?;
    expect_err(
        client(&mut *tight).mmap(0, P, Prot::READ, PA, None, 0),
        Errno::ENOMEM,
        "tight",
    )?;
    for _ in 0..4 {
        anon(&mut *free, P, Prot::READ)?;
        anon(&mut *free, P, RW)?;
    }
    let (name, _) = shm(h, &mut *free, "not-bound", 0)?;
    client(&mut *free).shm_unlink(&name).ctx("unlink")
}

fn limit_memory_taken_by_one_client_returns_when_it_exits(h: &mut dyn Harness) -> Outcome {
    let f = h.facts();
    let (bank, frames) = f.small_bank.clone();
    let mut hog = proc(h)?;
    let fd = client(&mut *hog).open_bank(&bank).ctx("open")?;
    let a = client(&mut *hog)
        .mmap(0, frames * P, RW, PA | MapFlags::POPULATE, Some(fd), 0)
        .ctx("take the whole bank")?;
    poke(&mut *hog, a, 1)?;
    let mut other = proc(h)?;
    let fo = client(&mut *other).open_bank(&bank).ctx("open")?;
    expect_err(
        client(&mut *other).mmap(0, P, RW, PA, Some(fo), 0),
        Errno::ENOMEM,
        "bank exhausted by another client",
    )?;
    drop(hog);
    client(&mut *other)
        .mmap(0, frames * P, RW, PA | MapFlags::POPULATE, Some(fo), 0)
        .ctx("whole bank after the hog exits")?;
    Ok(())
}

fn limit_noreserve_pressure_never_takes_a_committed_frame(h: &mut dyn Harness) -> Outcome {
    // The small bank: each case here has it to itself, and it is small enough to fill
    // page by page on every transport.
    let f = h.facts();
    let (bank, frames) = f.small_bank.clone();
    let promised = frames / 2;
    let mut owner = proc(h)?;
    let fd = client(&mut *owner).open_bank(&bank).ctx("open")?;
    let a = client(&mut *owner)
        .mmap(0, promised * P, RW, PA, Some(fd), 0)
        .ctx("a committed mapping of half the bank, untouched")?;
    let mut hog = proc(h)?;
    let fh = client(&mut *hog).open_bank(&bank).ctx("open")?;
    let b = client(&mut *hog)
        .mmap(0, 2 * frames * P, RW, PA | MapFlags::NORESERVE, Some(fh), 0)
        .ctx("MAP_NORESERVE over twice the bank")?;
    let mut taken = 0;
    while taken < 2 * frames && hog.write(b + taken * P, 1).is_ok() {
        taken += 1;
    }
    ensure!(
        taken <= frames - promised,
        "MAP_NORESERVE faults took {taken} frames of {frames}, {promised} of them committed"
    );
    ensure!(taken > 0, "MAP_NORESERVE took no frame at all");
    // Strict accounting: every committed page finds its frame.
    for i in 0..promised {
        ensure!(
            owner.write(a + i * P, 1).is_ok(),
            "committed page {i} of {promised} could not be backed"
        );
    }
    Ok(())
}
