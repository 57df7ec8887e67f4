//! `mprotect`: rights, split and merge, holes, W^X, max protection of shared objects.

use super::*;
use crate::runner::Outcome;
use crate::{ensure, ensure_eq};

cases![
    mprotect_to_read_only_makes_writes_sigsegv,
    mprotect_read_only_to_writable_keeps_the_data,
    mprotect_middle_splits_into_three,
    mprotect_restoring_merges_back,
    mprotect_over_a_hole_is_enomem_and_changes_nothing,
    mprotect_of_unmapped_memory_is_enomem,
    mprotect_unaligned_address_is_einval,
    mprotect_len_zero_succeeds,
    mprotect_unknown_bits_are_einval_on_the_wire,
    mprotect_none_makes_reads_sigsegv_and_keeps_the_data,
    mprotect_across_adjacent_regions,
    mprotect_write_exec_under_wx_policy_is_eacces,
    mmap_write_exec_under_wx_policy_is_eacces,
    mprotect_write_exec_without_policy_is_allowed,
    mprotect_overflowing_range_is_enomem,
    mprotect_making_private_writable_beyond_memory_is_enomem,
];

fn mprotect_to_read_only_makes_writes_sigsegv(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 2 * P, RW)?;
    poke(&mut *p, a, 1)?;
    client(&mut *p)
        .mprotect(a, 2 * P, Prot::READ)
        .ctx("mprotect r")?;
    expect_signal(p.write(a, 2), Signal::Segv, "write to a now read-only page")?;
    expect_signal(
        p.write(a + P, 2),
        Signal::Segv,
        "write to an untouched read-only page",
    )?;
    ensure_eq!(peek(&mut *p, a)?, 1);
    Ok(())
}

fn mprotect_read_only_to_writable_keeps_the_data(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, P, RW)?;
    poke(&mut *p, a + 10, 0x3c)?;
    client(&mut *p)
        .mprotect(a, P, Prot::READ)
        .ctx("mprotect r")?;
    client(&mut *p).mprotect(a, P, RW).ctx("mprotect rw")?;
    ensure_eq!(peek(&mut *p, a + 10)?, 0x3c);
    poke(&mut *p, a + 10, 0x3d)?;
    ensure_eq!(peek(&mut *p, a + 10)?, 0x3d);
    Ok(())
}

fn mprotect_middle_splits_into_three(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 3 * P, RW)?;
    client(&mut *p)
        .mprotect(a + P, P, Prot::READ)
        .ctx("mprotect middle")?;
    let rs = regions(&mut *p)?;
    let spans: Vec<_> = rs.iter().map(|r| (r.start, r.end, r.prot)).collect();
    ensure_eq!(
        spans,
        alloc::vec![
            (a, a + P, RW),
            (a + P, a + 2 * P, Prot::READ),
            (a + 2 * P, a + 3 * P, RW)
        ]
    );
    poke(&mut *p, a, 1)?;
    poke(&mut *p, a + 2 * P, 1)?;
    expect_signal(
        p.write(a + P, 1),
        Signal::Segv,
        "write to the protected middle",
    )
}

fn mprotect_restoring_merges_back(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 3 * P, RW)?;
    client(&mut *p)
        .mprotect(a + P, P, Prot::READ)
        .ctx("protect")?;
    client(&mut *p).mprotect(a + P, P, RW).ctx("restore")?;
    let rs = regions(&mut *p)?;
    ensure_eq!(rs.len(), 1);
    ensure_eq!((rs[0].start, rs[0].end), (a, a + 3 * P));
    Ok(())
}

fn mprotect_over_a_hole_is_enomem_and_changes_nothing(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 3 * P, RW)?;
    client(&mut *p).munmap(a + P, P).ctx("punch")?;
    expect_err(
        client(&mut *p).mprotect(a, 3 * P, Prot::READ),
        Errno::ENOMEM,
        "mprotect over a hole",
    )?;
    // All or nothing: the page before the hole is still writable.
    poke(&mut *p, a, 1)?;
    poke(&mut *p, a + 2 * P, 1)?;
    for r in regions(&mut *p)? {
        ensure_eq!(r.prot, RW);
    }
    Ok(())
}

fn mprotect_of_unmapped_memory_is_enomem(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = hole(&mut *p, 2)?;
    expect_err(
        client(&mut *p).mprotect(a, 2 * P, Prot::READ),
        Errno::ENOMEM,
        "mprotect of nothing",
    )
}

fn mprotect_unaligned_address_is_einval(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, P, RW)?;
    expect_err(
        client(&mut *p).mprotect(a + 5, P, Prot::READ),
        Errno::EINVAL,
        "mprotect a+5",
    )?;
    poke(&mut *p, a, 1)
}

fn mprotect_len_zero_succeeds(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = hole(&mut *p, 1)?;
    ensure_eq!(client(&mut *p).mprotect(a, 0, Prot::READ), Ok(()));
    Ok(())
}

fn mprotect_unknown_bits_are_einval_on_the_wire(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, P, RW)?;
    let mut buf = [0u8; ipc_proto::MAX_REQUEST_LEN];
    let req = ipc_proto::Request::Mprotect {
        addr: a,
        len: P,
        prot: Prot::READ,
    };
    let n = ipc_proto::encode_request(&req, &mut buf).ctx("encode")?;
    // prot is the last field, one varint byte: 0x01 (READ) becomes 0x11.
    ensure_eq!(buf[n - 1], 0x01);
    buf[n - 1] = 0x11;
    ensure_eq!(
        super::mmap::raw_call(&mut *p, &buf[..n]),
        Err(Errno::EINVAL)
    );
    poke(&mut *p, a, 1)
}

fn mprotect_none_makes_reads_sigsegv_and_keeps_the_data(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, P, RW)?;
    poke(&mut *p, a, 0x61)?;
    client(&mut *p)
        .mprotect(a, P, Prot::NONE)
        .ctx("mprotect none")?;
    expect_signal(p.read(a), Signal::Segv, "read of PROT_NONE")?;
    client(&mut *p)
        .mprotect(a, P, Prot::READ)
        .ctx("mprotect r")?;
    ensure_eq!(peek(&mut *p, a)?, 0x61);
    Ok(())
}

fn mprotect_across_adjacent_regions(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = hole(&mut *p, 4)?;
    fixed(&mut *p, a, 2 * P, RW).ctx("rw")?;
    fixed(&mut *p, a + 2 * P, 2 * P, Prot::READ).ctx("r")?;
    client(&mut *p)
        .mprotect(a + P, 2 * P, Prot::NONE)
        .ctx("mprotect across")?;
    // The two PROT_NONE pages may stay two regions (as on Linux, where one is still
    // charged for commit and the other is not): compare page by page.
    let rs = regions(&mut *p)?;
    let prot_at = |addr: u64| {
        rs.iter()
            .find(|r| r.start <= addr && addr < r.end)
            .map(|r| r.prot)
    };
    let prots: Vec<_> = (0..4).map(|i| prot_at(a + i * P)).collect();
    ensure_eq!(
        prots,
        alloc::vec![
            Some(RW),
            Some(Prot::NONE),
            Some(Prot::NONE),
            Some(Prot::READ)
        ]
    );
    expect_signal(p.read(a + 2 * P), Signal::Segv, "read of a PROT_NONE page")?;
    poke(&mut *p, a, 1)
}

fn mprotect_write_exec_under_wx_policy_is_eacces(h: &mut dyn Harness) -> Outcome {
    let mut p = proc_with(h, spec(|s| s.deny_wx = true))?;
    let a = anon(&mut *p, P, RW)?;
    expect_err(
        client(&mut *p).mprotect(a, P, RW | Prot::EXEC),
        Errno::EACCES,
        "mprotect rwx under W^X",
    )?;
    client(&mut *p)
        .mprotect(a, P, Prot::READ | Prot::EXEC)
        .ctx("mprotect r-x under W^X")?;
    Ok(())
}

fn mmap_write_exec_under_wx_policy_is_eacces(h: &mut dyn Harness) -> Outcome {
    let mut p = proc_with(h, spec(|s| s.deny_wx = true))?;
    expect_err(
        client(&mut *p).mmap(0, P, RW | Prot::EXEC, PA, None, 0),
        Errno::EACCES,
        "mmap rwx under W^X",
    )?;
    ensure_eq!(regions(&mut *p)?.len(), 0);
    Ok(())
}

fn mprotect_write_exec_without_policy_is_allowed(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, P, RW | Prot::EXEC)?;
    poke(&mut *p, a, 0xc3)?;
    ensure_eq!(p.exec(a), Ok(()));
    Ok(())
}

fn mprotect_overflowing_range_is_enomem(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    expect_err(
        client(&mut *p).mprotect(!(P - 1), 2 * P, Prot::READ),
        Errno::ENOMEM,
        "mprotect wrapping past 2^64",
    )
}

fn mprotect_making_private_writable_beyond_memory_is_enomem(h: &mut dyn Harness) -> Outcome {
    let f = h.facts();
    let mut p = proc(h)?;
    let len = (f.total_frames + 16) * P;
    let a = anon(&mut *p, len, Prot::READ)?;
    expect_err(
        client(&mut *p).mprotect(a, len, RW),
        Errno::ENOMEM,
        "mprotect rw of more than memory",
    )?;
    let r = region_at(&mut *p, a)?.ok_or(Fail("region gone".into()))?;
    ensure!(r.prot == Prot::READ, "prot changed: {r:?}");
    client(&mut *p)
        .mprotect(a, P, RW)
        .ctx("mprotect one page rw")?;
    poke(&mut *p, a, 1)
}
