//! `mlock`, `munlock`, `mlockall`, `munlockall` and the per-client lock limit.

use super::*;
use crate::runner::Outcome;
use crate::{ensure, ensure_eq};
use ipc_proto::MlockallFlags;

cases![
    mlock_makes_pages_resident_and_locked,
    munlock_clears_the_lock,
    mlock_of_unmapped_memory_is_enomem,
    mlock_rounds_the_range_to_pages,
    mlock_len_zero_succeeds,
    mlock_beyond_the_limit_is_enomem,
    mlock_limit_does_not_apply_to_root,
    map_locked_beyond_the_limit_is_eagain,
    mlockall_current_locks_every_mapping,
    mlockall_future_locks_new_mappings,
    mlockall_onfault_future_locks_without_populating,
    mlockall_without_current_or_future_is_einval,
    munlockall_unlocks_everything,
    mlock_survives_mprotect,
    mlock_over_prot_none_is_enomem_and_locks_nothing,
];

fn locked_pages(p: &mut dyn Process) -> Result<u64, Fail> {
    Ok(regions(p)?
        .iter()
        .filter(|r| r.locked)
        .map(|r| (r.end - r.start) / P)
        .sum())
}

fn mlock_makes_pages_resident_and_locked(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 3 * P, RW)?;
    client(&mut *p).mlock(a, 3 * P).ctx("mlock")?;
    for i in 0..3 {
        let info = client(&mut *p).page_info(a + i * P).ctx("page_info")?;
        ensure!(
            info.locked && info.resident && info.installed,
            "page {i}: {info:?}"
        );
    }
    ensure_eq!(peek(&mut *p, a)?, 0);
    Ok(())
}

fn munlock_clears_the_lock(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 2 * P, RW)?;
    poke(&mut *p, a, 4)?;
    client(&mut *p).mlock(a, 2 * P).ctx("mlock")?;
    client(&mut *p).munlock(a, 2 * P).ctx("munlock")?;
    ensure_eq!(locked_pages(&mut *p)?, 0);
    ensure_eq!(peek(&mut *p, a)?, 4);
    ensure_eq!(regions(&mut *p)?.len(), 1);
    Ok(())
}

fn mlock_of_unmapped_memory_is_enomem(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, P, RW)?;
    expect_err(
        client(&mut *p).mlock(a, 2 * P),
        Errno::ENOMEM,
        "mlock past the mapping",
    )?;
    ensure_eq!(locked_pages(&mut *p)?, 0);
    let b = hole(&mut *p, 1)?;
    expect_err(
        client(&mut *p).munlock(b, P),
        Errno::ENOMEM,
        "munlock of nothing",
    )
}

fn mlock_rounds_the_range_to_pages(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 3 * P, RW)?;
    // [a+P+10, a+P+20) lies in page 1 only.
    client(&mut *p)
        .mlock(a + P + 10, 10)
        .ctx("mlock unaligned")?;
    let locked: Vec<_> = regions(&mut *p)?
        .iter()
        .map(|r| (r.start, r.locked))
        .collect();
    ensure_eq!(
        locked,
        alloc::vec![(a, false), (a + P, true), (a + 2 * P, false)]
    );
    Ok(())
}

fn mlock_len_zero_succeeds(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = hole(&mut *p, 1)?;
    ensure_eq!(client(&mut *p).mlock(a, 0), Ok(()));
    ensure_eq!(client(&mut *p).munlock(a, 0), Ok(()));
    Ok(())
}

fn mlock_beyond_the_limit_is_enomem(h: &mut dyn Harness) -> Outcome {
    let mut p = proc_with(h, spec(|s| s.limits.max_locked = 4 * P))?;
    let a = anon(&mut *p, 8 * P, RW)?;
    client(&mut *p)
        .mlock(a, 4 * P)
        .ctx("mlock up to the limit")?;
    expect_err(
        client(&mut *p).mlock(a + 4 * P, P),
        Errno::ENOMEM,
        "one page past the limit",
    )?;
    // Relocking what is locked costs nothing.
    client(&mut *p).mlock(a, 4 * P).ctx("mlock again")?;
    client(&mut *p).munlock(a, 2 * P).ctx("munlock half")?;
    client(&mut *p)
        .mlock(a + 4 * P, 2 * P)
        .ctx("mlock within the limit again")?;
    ensure_eq!(locked_pages(&mut *p)?, 4);
    Ok(())
}

fn mlock_limit_does_not_apply_to_root(h: &mut dyn Harness) -> Outcome {
    let mut p = proc_with(
        h,
        spec(|s| {
            s.uid = 0;
            s.limits.max_locked = P;
        }),
    )?;
    let a = anon(&mut *p, 4 * P, RW)?;
    client(&mut *p)
        .mlock(a, 4 * P)
        .ctx("root locks past the limit")?;
    ensure_eq!(locked_pages(&mut *p)?, 4);
    Ok(())
}

fn map_locked_beyond_the_limit_is_eagain(h: &mut dyn Harness) -> Outcome {
    let mut p = proc_with(h, spec(|s| s.limits.max_locked = 2 * P))?;
    expect_err(
        client(&mut *p).mmap(0, 3 * P, RW, PA | MapFlags::LOCKED, None, 0),
        Errno::EAGAIN,
        "MAP_LOCKED past the limit",
    )?;
    ensure_eq!(regions(&mut *p)?.len(), 0);
    client(&mut *p)
        .mmap(0, 2 * P, RW, PA | MapFlags::LOCKED, None, 0)
        .ctx("MAP_LOCKED within the limit")?;
    Ok(())
}

fn mlockall_current_locks_every_mapping(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 2 * P, RW)?;
    let b = anon(&mut *p, P, Prot::READ)?;
    client(&mut *p)
        .mlockall(MlockallFlags::CURRENT)
        .ctx("mlockall")?;
    ensure_eq!(locked_pages(&mut *p)?, 3);
    for addr in [a, a + P, b] {
        let info = client(&mut *p).page_info(addr).ctx("page_info")?;
        ensure!(info.resident && info.locked, "{addr:#x}: {info:?}");
    }
    let c = anon(&mut *p, P, RW)?;
    let r = region_at(&mut *p, c)?.ok_or(Fail("no region".into()))?;
    ensure!(!r.locked, "MCL_CURRENT locked a later mapping");
    Ok(())
}

fn mlockall_future_locks_new_mappings(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, P, RW)?;
    client(&mut *p)
        .mlockall(MlockallFlags::FUTURE)
        .ctx("mlockall")?;
    ensure!(
        !region_at(&mut *p, a)?.is_some_and(|r| r.locked),
        "existing mapping locked"
    );
    let b = anon(&mut *p, 2 * P, RW)?;
    let info = client(&mut *p).page_info(b + P).ctx("page_info")?;
    ensure!(info.locked && info.resident, "new mapping: {info:?}");
    Ok(())
}

fn mlockall_onfault_future_locks_without_populating(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    client(&mut *p)
        .mlockall(MlockallFlags::FUTURE | MlockallFlags::ONFAULT)
        .ctx("mlockall")?;
    let b = anon(&mut *p, 2 * P, RW)?;
    let info = client(&mut *p).page_info(b).ctx("page_info")?;
    ensure!(
        info.locked && !info.resident,
        "MCL_ONFAULT mapping: {info:?}"
    );
    poke(&mut *p, b, 1)?;
    Ok(())
}

fn mlockall_without_current_or_future_is_einval(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    expect_err(
        client(&mut *p).mlockall(MlockallFlags::empty()),
        Errno::EINVAL,
        "mlockall(0)",
    )?;
    expect_err(
        client(&mut *p).mlockall(MlockallFlags::ONFAULT),
        Errno::EINVAL,
        "mlockall(MCL_ONFAULT)",
    )?;
    ensure_eq!(MlockallFlags::from_raw(0x10), Err(Errno::EINVAL));
    Ok(())
}

fn munlockall_unlocks_everything(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    anon(&mut *p, 2 * P, RW)?;
    client(&mut *p)
        .mlockall(MlockallFlags::CURRENT | MlockallFlags::FUTURE)
        .ctx("mlockall")?;
    anon(&mut *p, P, RW)?;
    ensure_eq!(locked_pages(&mut *p)?, 3);
    client(&mut *p).munlockall().ctx("munlockall")?;
    ensure_eq!(locked_pages(&mut *p)?, 0);
    let c = anon(&mut *p, P, RW)?;
    ensure!(
        !region_at(&mut *p, c)?.is_some_and(|r| r.locked),
        "MCL_FUTURE survived"
    );
    Ok(())
}

fn mlock_over_prot_none_is_enomem_and_locks_nothing(h: &mut dyn Harness) -> Outcome {
    // Linux cannot fault PROT_NONE pages in, so its mlock fails with ENOMEM (found by
    // the differential test against Linux); we also lock nothing at all.
    let mut p = proc(h)?;
    let a = hole(&mut *p, 3)?;
    fixed(&mut *p, a, 2 * P, RW).ctx("rw")?;
    fixed(&mut *p, a + 2 * P, P, Prot::NONE).ctx("none")?;
    expect_err(
        client(&mut *p).mlock(a, 3 * P),
        Errno::ENOMEM,
        "mlock over PROT_NONE",
    )?;
    ensure_eq!(locked_pages(&mut *p)?, 0);
    client(&mut *p)
        .mlock(a, 2 * P)
        .ctx("mlock of the accessible part")?;
    ensure_eq!(locked_pages(&mut *p)?, 2);
    Ok(())
}

fn mlock_survives_mprotect(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 2 * P, RW)?;
    client(&mut *p).mlock(a, 2 * P).ctx("mlock")?;
    client(&mut *p).mprotect(a, P, Prot::READ).ctx("mprotect")?;
    ensure_eq!(locked_pages(&mut *p)?, 2);
    Ok(())
}
