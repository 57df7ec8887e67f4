//! `munmap`: arguments, partial unmaps, holes, freeing.

use super::*;
use crate::runner::Outcome;
use crate::{ensure, ensure_eq};

cases![
    munmap_of_a_range_with_no_mappings_succeeds,
    munmap_len_zero_is_einval,
    munmap_unaligned_address_is_einval,
    munmap_overflowing_range_is_einval,
    munmap_then_access_is_sigsegv,
    munmap_middle_splits_the_region,
    munmap_head_and_tail_shrink_the_region,
    munmap_across_regions_and_holes,
    munmap_length_is_rounded_up,
    munmap_returns_touched_frames,
    munmap_then_fixed_remap_is_zero_filled,
    munmap_twice_is_harmless,
];

fn munmap_of_a_range_with_no_mappings_succeeds(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = hole(&mut *p, 4)?;
    ensure_eq!(client(&mut *p).munmap(a, 4 * P), Ok(()));
    ensure_eq!(regions(&mut *p)?.len(), 0);
    Ok(())
}

fn munmap_len_zero_is_einval(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, P, RW)?;
    expect_err(client(&mut *p).munmap(a, 0), Errno::EINVAL, "munmap len 0")?;
    ensure_eq!(regions(&mut *p)?.len(), 1);
    Ok(())
}

fn munmap_unaligned_address_is_einval(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 2 * P, RW)?;
    expect_err(
        client(&mut *p).munmap(a + 1, P),
        Errno::EINVAL,
        "munmap a+1",
    )?;
    ensure_eq!(regions(&mut *p)?[0].end - a, 2 * P);
    Ok(())
}

fn munmap_overflowing_range_is_einval(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    expect_err(
        client(&mut *p).munmap(!(P - 1), 2 * P),
        Errno::EINVAL,
        "munmap wrapping past 2^64",
    )?;
    expect_err(
        client(&mut *p).munmap(P, u64::MAX),
        Errno::EINVAL,
        "munmap of u64::MAX bytes",
    )
}

fn munmap_then_access_is_sigsegv(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, P, RW)?;
    poke(&mut *p, a, 1)?;
    client(&mut *p).munmap(a, P).ctx("munmap")?;
    expect_signal(p.read(a), Signal::Segv, "read after munmap")?;
    expect_signal(p.write(a, 1), Signal::Segv, "write after munmap")
}

fn munmap_middle_splits_the_region(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 5 * P, RW)?;
    for i in 0..5 {
        poke(&mut *p, a + i * P, i as u8 + 1)?;
    }
    client(&mut *p).munmap(a + 2 * P, P).ctx("munmap middle")?;
    let rs = regions(&mut *p)?;
    let spans: Vec<_> = rs.iter().map(|r| (r.start, r.end)).collect();
    ensure_eq!(spans, alloc::vec![(a, a + 2 * P), (a + 3 * P, a + 5 * P)]);
    ensure_eq!(peek(&mut *p, a + P)?, 2);
    ensure_eq!(peek(&mut *p, a + 3 * P)?, 4);
    expect_signal(
        p.read(a + 2 * P),
        Signal::Segv,
        "read of the unmapped middle",
    )
}

fn munmap_head_and_tail_shrink_the_region(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 4 * P, RW)?;
    poke(&mut *p, a + P, 8)?;
    client(&mut *p).munmap(a, P).ctx("munmap head")?;
    client(&mut *p).munmap(a + 3 * P, P).ctx("munmap tail")?;
    let rs = regions(&mut *p)?;
    ensure_eq!(rs.len(), 1);
    ensure_eq!((rs[0].start, rs[0].end), (a + P, a + 3 * P));
    ensure_eq!(peek(&mut *p, a + P)?, 8);
    Ok(())
}

fn munmap_across_regions_and_holes(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let base = hole(&mut *p, 10)?;
    fixed(&mut *p, base, 2 * P, RW).ctx("a")?;
    fixed(&mut *p, base + 4 * P, P, Prot::READ).ctx("b")?;
    fixed(&mut *p, base + 7 * P, 3 * P, RW).ctx("c")?;
    client(&mut *p)
        .munmap(base + P, 7 * P)
        .ctx("munmap across")?;
    let spans: Vec<_> = regions(&mut *p)?.iter().map(|r| (r.start, r.end)).collect();
    ensure_eq!(
        spans,
        alloc::vec![(base, base + P), (base + 8 * P, base + 10 * P)]
    );
    Ok(())
}

fn munmap_length_is_rounded_up(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 3 * P, RW)?;
    client(&mut *p).munmap(a, P + 1).ctx("munmap P+1 bytes")?;
    let rs = regions(&mut *p)?;
    ensure_eq!((rs[0].start, rs[0].end), (a + 2 * P, a + 3 * P));
    Ok(())
}

fn munmap_returns_touched_frames(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 8 * P, RW)?;
    for i in 0..8 {
        poke(&mut *p, a + i * P, 1)?;
    }
    let before = free_frames(h);
    client(&mut *p).munmap(a, 8 * P).ctx("munmap")?;
    let after = free_frames(h);
    ensure!(
        !h.facts().exclusive || after >= before + 8,
        "free frames {before} before munmap, {after} after"
    );
    Ok(())
}

fn munmap_then_fixed_remap_is_zero_filled(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 2 * P, RW)?;
    poke(&mut *p, a, 0x11)?;
    poke(&mut *p, a + P, 0x22)?;
    client(&mut *p).munmap(a, 2 * P).ctx("munmap")?;
    fixed(&mut *p, a, 2 * P, RW).ctx("remap")?;
    ensure_eq!(peek(&mut *p, a)?, 0);
    ensure_eq!(peek(&mut *p, a + P)?, 0);
    Ok(())
}

fn munmap_twice_is_harmless(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 2 * P, RW)?;
    let b = anon(&mut *p, P, RW)?;
    poke(&mut *p, b, 3)?;
    client(&mut *p).munmap(a, 2 * P).ctx("first munmap")?;
    client(&mut *p).munmap(a, 2 * P).ctx("second munmap")?;
    ensure_eq!(peek(&mut *p, b)?, 3);
    Ok(())
}
