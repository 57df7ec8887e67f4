//! Page faults: lazy allocation, SIGSEGV for no region or a forbidden access, stack
//! growth, and that a signal does not end the client.

use super::*;
use crate::runner::Outcome;
use crate::{ensure, ensure_eq};

cases![
    fault_outside_any_region_is_sigsegv,
    fault_in_a_gap_between_regions_is_sigsegv,
    fault_in_the_kernel_half_is_sigsegv,
    fault_below_a_growsdown_region_grows_it,
    fault_far_below_a_growsdown_region_is_sigsegv,
    fault_growsdown_does_not_grow_into_a_neighbour,
    fault_write_to_read_only_is_sigsegv_but_read_works,
    fault_client_goes_on_after_a_signal,
    fault_each_touched_page_gets_its_own_frame,
    fault_read_then_write_upgrades_the_page,
    fault_exec_of_a_writable_page_without_exec_is_sigsegv,
    fault_page_at_the_top_of_a_region_only,
];

fn fault_outside_any_region_is_sigsegv(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = hole(&mut *p, 1)?;
    expect_signal(p.read(a), Signal::Segv, "read of an unmapped page")?;
    expect_signal(p.write(a + 7, 1), Signal::Segv, "write of an unmapped page")?;
    expect_signal(p.exec(a), Signal::Segv, "fetch from an unmapped page")
}

fn fault_in_a_gap_between_regions_is_sigsegv(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = hole(&mut *p, 3)?;
    fixed(&mut *p, a, P, RW).ctx("low")?;
    fixed(&mut *p, a + 2 * P, P, RW).ctx("high")?;
    poke(&mut *p, a + P - 1, 1)?;
    expect_signal(p.read(a + P), Signal::Segv, "read of the gap")?;
    poke(&mut *p, a + 2 * P, 1)
}

fn fault_in_the_kernel_half_is_sigsegv(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    expect_signal(
        p.read(0xffff_8000_0000_1000),
        Signal::Segv,
        "read of a kernel-half address",
    )?;
    expect_signal(p.read(0), Signal::Segv, "read of address 0")
}

fn fault_below_a_growsdown_region_grows_it(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let base = hole(&mut *p, 8)?;
    client(&mut *p)
        .mmap(
            base + 6 * P,
            2 * P,
            RW,
            PA | MapFlags::GROWSDOWN | MapFlags::FIXED,
            None,
            0,
        )
        .ctx("stack")?;
    poke(&mut *p, base + 5 * P + 100, 0x42)?;
    ensure_eq!(peek(&mut *p, base + 5 * P + 100)?, 0x42);
    let r = region_at(&mut *p, base + 5 * P)?.ok_or(Fail("stack did not grow".into()))?;
    ensure!(
        r.start <= base + 5 * P && r.end == base + 8 * P,
        "stack is {r:?}"
    );
    Ok(())
}

fn fault_far_below_a_growsdown_region_is_sigsegv(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    // Linux grows a stack by at most its stack limit (8 MiB here).
    let span = (8 << 20) / P + 8;
    let base = hole(&mut *p, span + 2)?;
    client(&mut *p)
        .mmap(
            base + span * P,
            2 * P,
            RW,
            PA | MapFlags::GROWSDOWN | MapFlags::FIXED,
            None,
            0,
        )
        .ctx("stack")?;
    expect_signal(p.write(base, 1), Signal::Segv, "write 8 MiB below a stack")?;
    ensure_eq!(regions(&mut *p)?.len(), 1);
    Ok(())
}

fn fault_growsdown_does_not_grow_into_a_neighbour(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let base = hole(&mut *p, 4)?;
    fixed(&mut *p, base, P, Prot::READ).ctx("neighbour")?;
    client(&mut *p)
        .mmap(
            base + 2 * P,
            2 * P,
            RW,
            PA | MapFlags::GROWSDOWN | MapFlags::FIXED,
            None,
            0,
        )
        .ctx("stack")?;
    expect_signal(
        p.write(base, 1),
        Signal::Segv,
        "write into the read-only neighbour",
    )?;
    let r = region_at(&mut *p, base)?.ok_or(Fail("neighbour gone".into()))?;
    ensure_eq!((r.start, r.end, r.prot), (base, base + P, Prot::READ));
    Ok(())
}

fn fault_write_to_read_only_is_sigsegv_but_read_works(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, P, Prot::READ)?;
    expect_signal(p.write(a, 1), Signal::Segv, "write of a read-only page")?;
    ensure_eq!(peek(&mut *p, a)?, 0);
    let info = client(&mut *p).page_info(a).ctx("page_info")?;
    ensure!(
        !info.writable,
        "read-only page installed writable: {info:?}"
    );
    Ok(())
}

fn fault_client_goes_on_after_a_signal(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = hole(&mut *p, 1)?;
    for _ in 0..5 {
        expect_signal(p.write(a, 1), Signal::Segv, "write of an unmapped page")?;
    }
    let b = anon(&mut *p, P, RW)?;
    poke(&mut *p, b, 2)?;
    ensure_eq!(peek(&mut *p, b)?, 2);
    Ok(())
}

fn fault_each_touched_page_gets_its_own_frame(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 6 * P, RW)?;
    let before = free_frames(h);
    for i in 0..6 {
        poke(&mut *p, a + i * P, 1)?;
    }
    let after = free_frames(h);
    ensure!(
        !h.facts().exclusive || before >= after + 6,
        "six first touches took {} frames",
        before as i64 - after as i64
    );
    Ok(())
}

fn fault_read_then_write_upgrades_the_page(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, P, RW)?;
    ensure_eq!(peek(&mut *p, a + 1)?, 0);
    poke(&mut *p, a + 1, 0xee)?;
    ensure_eq!(peek(&mut *p, a + 1)?, 0xee);
    let info = client(&mut *p).page_info(a).ctx("page_info")?;
    ensure!(info.writable && info.resident, "page is {info:?}");
    Ok(())
}

fn fault_exec_of_a_writable_page_without_exec_is_sigsegv(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, P, RW)?;
    poke(&mut *p, a, 0xc3)?;
    expect_signal(p.exec(a), Signal::Segv, "fetch from rw-")?;
    ensure_eq!(peek(&mut *p, a)?, 0xc3);
    Ok(())
}

fn fault_page_at_the_top_of_a_region_only(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = hole(&mut *p, 3)?;
    fixed(&mut *p, a, 2 * P, RW).ctx("map")?;
    poke(&mut *p, a + 2 * P - 1, 1)?;
    expect_signal(
        p.write(a + 2 * P, 1),
        Signal::Segv,
        "write one past the end",
    )
}
