//! Memory banks (seed 000): named physical pools opened as fds.

use super::*;
use crate::runner::Outcome;
use crate::{ensure, ensure_eq};
use fileserver::fixture::{TEXT, byte};
use ipc_proto::Backing;

cases![
    bank_open_by_name_gives_an_fd,
    bank_unknown_name_is_enoent,
    bank_without_the_right_is_eacces,
    bank_mapping_is_zero_filled_and_works,
    bank_mapping_is_charged_to_its_bank,
    bank_offset_must_be_zero,
    bank_mapping_through_a_file_mapping_of_its_fd,
    bank_mapping_outlives_its_fd,
    bank_frames_come_back_after_munmap,
    bank_running_out_evicts_no_cached_page_of_another_bank,
];

fn bank_open_by_name_gives_an_fd(h: &mut dyn Harness) -> Outcome {
    let f = h.facts();
    let mut p = proc(h)?;
    client(&mut *p)
        .open_bank(&f.default_bank)
        .ctx("default bank")?;
    client(&mut *p)
        .open_bank(&f.small_bank.0)
        .ctx("small bank")?;
    Ok(())
}

fn bank_unknown_name_is_enoent(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    expect_err(
        client(&mut *p).open_bank("no-such-bank"),
        Errno::ENOENT,
        "unknown bank",
    )
}

fn bank_without_the_right_is_eacces(h: &mut dyn Harness) -> Outcome {
    let f = h.facts();
    // Only bank 0 (the default) allowed.
    let mut p = proc_with(h, spec(|s| s.banks = 1))?;
    expect_err(
        client(&mut *p).open_bank(&f.small_bank.0),
        Errno::EACCES,
        "bank without right",
    )?;
    client(&mut *p)
        .open_bank(&f.default_bank)
        .ctx("default bank")?;
    Ok(())
}

fn bank_mapping_is_zero_filled_and_works(h: &mut dyn Harness) -> Outcome {
    let f = h.facts();
    let mut p = proc(h)?;
    let fd = client(&mut *p).open_bank(&f.small_bank.0).ctx("open")?;
    let a = client(&mut *p)
        .mmap(0, 2 * P, RW, PA, Some(fd), 0)
        .ctx("map")?;
    ensure_eq!(peek(&mut *p, a + P)?, 0);
    poke(&mut *p, a + P, 3)?;
    ensure_eq!(peek(&mut *p, a + P)?, 3);
    let r = region_at(&mut *p, a)?.ok_or(Fail("no region".into()))?;
    ensure!(
        matches!(r.backing, Backing::Bank(_)),
        "backing {:?}",
        r.backing
    );
    Ok(())
}

fn bank_mapping_is_charged_to_its_bank(h: &mut dyn Harness) -> Outcome {
    let f = h.facts();
    let (bank, frames) = f.small_bank.clone();
    let mut p = proc(h)?;
    let fd = client(&mut *p).open_bank(&bank).ctx("open")?;
    expect_err(
        client(&mut *p).mmap(0, (frames + 1) * P, RW, PA, Some(fd), 0),
        Errno::ENOMEM,
        "more than the bank holds",
    )?;
    // The default bank is much larger: the same size from it is fine.
    anon(&mut *p, (frames + 1) * P, RW)?;
    Ok(())
}

fn bank_offset_must_be_zero(h: &mut dyn Harness) -> Outcome {
    let f = h.facts();
    let mut p = proc(h)?;
    let fd = client(&mut *p).open_bank(&f.small_bank.0).ctx("open")?;
    expect_err(
        client(&mut *p).mmap(0, P, RW, MapFlags::PRIVATE, Some(fd), P),
        Errno::EINVAL,
        "bank mapping at offset 4096",
    )
}

fn bank_mapping_through_a_file_mapping_of_its_fd(h: &mut dyn Harness) -> Outcome {
    let f = h.facts();
    let mut p = proc(h)?;
    let fd = client(&mut *p).open_bank(&f.small_bank.0).ctx("open")?;
    let a = client(&mut *p)
        .mmap(0, P, RW, MapFlags::PRIVATE, Some(fd), 0)
        .ctx("map the bank fd without MAP_ANONYMOUS")?;
    poke(&mut *p, a, 1)
}

fn bank_mapping_outlives_its_fd(h: &mut dyn Harness) -> Outcome {
    let f = h.facts();
    let mut p = proc(h)?;
    let fd = client(&mut *p).open_bank(&f.small_bank.0).ctx("open")?;
    let a = client(&mut *p).mmap(0, P, RW, PA, Some(fd), 0).ctx("map")?;
    client(&mut *p).close(fd).ctx("close")?;
    poke(&mut *p, a, 5)?;
    ensure_eq!(peek(&mut *p, a)?, 5);
    Ok(())
}

fn bank_frames_come_back_after_munmap(h: &mut dyn Harness) -> Outcome {
    let f = h.facts();
    let (bank, frames) = f.small_bank.clone();
    let mut p = proc(h)?;
    let fd = client(&mut *p).open_bank(&bank).ctx("open")?;
    // Use the whole bank twice over: the first use must be returned in full.
    for round in 0..2 {
        let a = client(&mut *p)
            .mmap(0, frames * P, RW, PA, Some(fd), 0)
            .map_err(|e| Fail(format!("round {round}: {e:?}")))?;
        for i in 0..frames {
            poke(&mut *p, a + i * P, 1)?;
        }
        client(&mut *p).munmap(a, frames * P).ctx("munmap")?;
    }
    Ok(())
}

/// A fault the small bank has no frame for is `SIGBUS` without evicting the file cache
/// of the default bank: no frame freed there could back the page, and the cache may be
/// another client's (the whole KVM run once saw a case running `dma` dry free the file
/// demo's two cached pages, inside that case's leak check).
fn bank_running_out_evicts_no_cached_page_of_another_bank(h: &mut dyn Harness) -> Outcome {
    let f = h.facts();
    let (bank, frames) = f.small_bank.clone();
    // Another client keeps the first page of a file cached (files live in the default
    // bank).
    let mut reader = proc(h)?;
    let file = client(&mut *reader)
        .open_file(TEXT.path, OFlags::RDONLY)
        .ctx("open the file")?;
    let at = client(&mut *reader)
        .mmap(0, P, Prot::READ, MapFlags::SHARED, Some(file), 0)
        .ctx("map the file")?;
    ensure_eq!(peek(&mut *reader, at)?, byte(TEXT.seed, 0));
    let before = free_frames(h);
    {
        let mut p = proc(h)?;
        let fd = client(&mut *p).open_bank(&bank).ctx("open_bank")?;
        let len = (frames + 4) * P;
        let a = client(&mut *p)
            .mmap(0, len, RW, PA | MapFlags::NORESERVE, Some(fd), 0)
            .ctx("mmap bank noreserve")?;
        let faulted = (0..frames + 4).find_map(|i| p.write(a + i * P, 1).err());
        ensure_eq!(faulted, Some(Signal::Bus));
    }
    // Every frame of the small bank is back, and the cached page never left.
    let after = free_frames(h);
    ensure!(
        !f.exclusive || after == before,
        "{before} frames free with the file page cached, {after} once the bank's user is gone"
    );
    ensure_eq!(peek(&mut *reader, at)?, byte(TEXT.seed, 0));
    Ok(())
}
