//! Where mappings go: hints, `MAP_FIXED` replacement, `MAP_FIXED_NOREPLACE`, `MAP_32BIT`,
//! top-down placement, merging.

use super::*;
use crate::runner::Outcome;
use crate::{ensure, ensure_eq};

cases![
    placement_free_aligned_hint_is_used,
    placement_unaligned_hint_is_rounded_down,
    placement_occupied_hint_goes_elsewhere,
    placement_hint_outside_the_window_is_ignored,
    placement_is_top_down,
    placement_never_overlaps,
    placement_fixed_replaces_and_zero_fills,
    placement_fixed_over_part_of_a_region_splits_it,
    placement_fixed_over_several_regions_replaces_all,
    placement_fixed_noreplace_on_free_space_maps,
    placement_fixed_noreplace_on_a_mapping_is_eexist,
    placement_failed_fixed_replacement_leaves_the_old_mapping,
    placement_map_32bit_is_below_2gib if LowWindow,
    placement_adjacent_compatible_mappings_merge,
    placement_adjacent_different_mappings_stay_apart,
    placement_full_address_space_is_enomem,
];

fn placement_free_aligned_hint_is_used(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let want = hole(&mut *p, 4)? + P;
    let got = client(&mut *p)
        .mmap(want, 2 * P, RW, PA, None, 0)
        .ctx("mmap with hint")?;
    ensure_eq!(got, want);
    Ok(())
}

fn placement_unaligned_hint_is_rounded_down(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let want = hole(&mut *p, 4)? + P;
    let got = client(&mut *p)
        .mmap(want + 123, P, RW, PA, None, 0)
        .ctx("mmap with unaligned hint")?;
    ensure_eq!(got, want);
    Ok(())
}

fn placement_occupied_hint_goes_elsewhere(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 2 * P, RW)?;
    poke(&mut *p, a, 7)?;
    let b = client(&mut *p)
        .mmap(a, 2 * P, RW, PA, None, 0)
        .ctx("mmap with occupied hint")?;
    ensure!(
        b + 2 * P <= a || b >= a + 2 * P,
        "hint {a:#x} overlapped: {b:#x}"
    );
    ensure_eq!(peek(&mut *p, a)?, 7);
    Ok(())
}

fn placement_hint_outside_the_window_is_ignored(h: &mut dyn Harness) -> Outcome {
    let f = h.facts();
    let mut p = proc(h)?;
    for hint in [P, f.mmap_max, !(P - 1), 0xffff_8000_0000_0000] {
        let a = client(&mut *p)
            .mmap(hint, P, RW, PA, None, 0)
            .map_err(|e| Fail(format!("hint {hint:#x}: {e:?}")))?;
        ensure!(
            a >= f.mmap_min && a + P <= f.mmap_max,
            "hint {hint:#x} placed at {a:#x}"
        );
    }
    Ok(())
}

fn placement_is_top_down(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, P, RW)?;
    let b = anon(&mut *p, P, RW)?;
    ensure!(b < a, "second mapping {b:#x} not below the first {a:#x}");
    Ok(())
}

fn placement_never_overlaps(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let mut placed = Vec::new();
    for i in 0..40u64 {
        let len = (i % 7 + 1) * P;
        let a = anon(&mut *p, len, if i % 3 == 0 { Prot::READ } else { RW })?;
        placed.push((a, a + len));
    }
    // Unmap the first page of every fourth mapping: those pages must be gone.
    let mut gone = Vec::new();
    for &(s, _) in placed.iter().step_by(4) {
        client(&mut *p).munmap(s, P).ctx("munmap head")?;
        gone.push(s);
    }
    let rs = regions(&mut *p)?;
    for w in rs.windows(2) {
        ensure!(
            w[0].end <= w[1].start,
            "regions overlap: {:?} {:?}",
            w[0],
            w[1]
        );
    }
    let covered = |a: u64| rs.iter().any(|r| r.start <= a && a < r.end);
    for &(s, e) in &placed {
        let mut a = s;
        while a < e {
            ensure_eq!(covered(a), !gone.contains(&a));
            a += P;
        }
    }
    Ok(())
}

fn placement_fixed_replaces_and_zero_fills(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 3 * P, RW)?;
    for i in 0..3 {
        poke(&mut *p, a + i * P, 0xaa)?;
    }
    let b = fixed(&mut *p, a, 3 * P, RW).ctx("MAP_FIXED over a mapping")?;
    ensure_eq!(b, a);
    for i in 0..3 {
        ensure_eq!(peek(&mut *p, a + i * P)?, 0);
    }
    ensure_eq!(regions(&mut *p)?.len(), 1);
    Ok(())
}

fn placement_fixed_over_part_of_a_region_splits_it(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 4 * P, RW)?;
    poke(&mut *p, a, 1)?;
    poke(&mut *p, a + 3 * P, 4)?;
    poke(&mut *p, a + P, 2)?;
    fixed(&mut *p, a + P, 2 * P, Prot::READ).ctx("MAP_FIXED in the middle")?;
    let rs = regions(&mut *p)?;
    ensure_eq!(rs.len(), 3);
    ensure_eq!(
        (rs[1].start, rs[1].end, rs[1].prot),
        (a + P, a + 3 * P, Prot::READ)
    );
    ensure_eq!(peek(&mut *p, a)?, 1);
    ensure_eq!(peek(&mut *p, a + P)?, 0);
    ensure_eq!(peek(&mut *p, a + 3 * P)?, 4);
    Ok(())
}

fn placement_fixed_over_several_regions_replaces_all(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let base = hole(&mut *p, 8)?;
    fixed(&mut *p, base, 2 * P, RW).ctx("first")?;
    fixed(&mut *p, base + 3 * P, P, Prot::READ).ctx("second")?;
    fixed(&mut *p, base + 5 * P, 3 * P, RW).ctx("third")?;
    poke(&mut *p, base + 6 * P, 6)?;
    fixed(&mut *p, base + P, 6 * P, Prot::READ).ctx("across all three")?;
    let rs = regions(&mut *p)?;
    let spans: Vec<_> = rs.iter().map(|r| (r.start, r.end, r.prot)).collect();
    ensure_eq!(
        spans,
        alloc::vec![
            (base, base + P, RW),
            (base + P, base + 7 * P, Prot::READ),
            (base + 7 * P, base + 8 * P, RW)
        ]
    );
    ensure_eq!(peek(&mut *p, base + 6 * P)?, 0);
    Ok(())
}

fn placement_fixed_noreplace_on_free_space_maps(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = hole(&mut *p, 2)?;
    let got = client(&mut *p)
        .mmap(a, 2 * P, RW, PA | MapFlags::FIXED_NOREPLACE, None, 0)
        .ctx("MAP_FIXED_NOREPLACE")?;
    ensure_eq!(got, a);
    Ok(())
}

fn placement_fixed_noreplace_on_a_mapping_is_eexist(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = hole(&mut *p, 3)?;
    fixed(&mut *p, a + 2 * P, P, RW).ctx("occupant")?;
    poke(&mut *p, a + 2 * P, 5)?;
    expect_err(
        client(&mut *p).mmap(a, 3 * P, RW, PA | MapFlags::FIXED_NOREPLACE, None, 0),
        Errno::EEXIST,
        "MAP_FIXED_NOREPLACE over a page in use",
    )?;
    ensure_eq!(regions(&mut *p)?.len(), 1);
    ensure_eq!(peek(&mut *p, a + 2 * P)?, 5);
    Ok(())
}

fn placement_failed_fixed_replacement_leaves_the_old_mapping(h: &mut dyn Harness) -> Outcome {
    let f = h.facts();
    let mut p = proc(h)?;
    let a = anon(&mut *p, 2 * P, RW)?;
    poke(&mut *p, a + P, 42)?;
    // Too big to commit: the replacement fails as a whole, the old pages stay.
    expect_err(
        fixed(&mut *p, a, (f.total_frames + 16) * P, RW),
        Errno::ENOMEM,
        "uncommittable MAP_FIXED",
    )?;
    expect_err(
        client(&mut *p).mmap(
            a,
            2 * P,
            RW,
            MapFlags::SHARED | MapFlags::FIXED,
            Some(Fd(901)),
            0,
        ),
        Errno::EBADF,
        "MAP_FIXED of a bad fd",
    )?;
    ensure_eq!(peek(&mut *p, a + P)?, 42);
    ensure_eq!(regions(&mut *p)?.len(), 1);
    Ok(())
}

fn placement_map_32bit_is_below_2gib(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = client(&mut *p)
        .mmap(0, 4 * P, RW, PA | MapFlags::BIT32, None, 0)
        .ctx("MAP_32BIT")?;
    ensure!(a + 4 * P <= 1 << 31, "MAP_32BIT mapping at {a:#x}");
    poke(&mut *p, a, 1)
}

fn placement_adjacent_compatible_mappings_merge(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = hole(&mut *p, 4)?;
    fixed(&mut *p, a, 2 * P, RW).ctx("low half")?;
    fixed(&mut *p, a + 2 * P, 2 * P, RW).ctx("high half")?;
    let rs = regions(&mut *p)?;
    ensure_eq!(rs.len(), 1);
    ensure_eq!((rs[0].start, rs[0].end), (a, a + 4 * P));
    Ok(())
}

fn placement_adjacent_different_mappings_stay_apart(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = hole(&mut *p, 3)?;
    fixed(&mut *p, a, P, RW).ctx("rw")?;
    fixed(&mut *p, a + P, P, Prot::READ).ctx("r")?;
    client(&mut *p)
        .mmap(a + 2 * P, P, RW, SA | MapFlags::FIXED, None, 0)
        .ctx("shared")?;
    ensure_eq!(regions(&mut *p)?.len(), 3);
    Ok(())
}

fn placement_full_address_space_is_enomem(h: &mut dyn Harness) -> Outcome {
    let f = h.facts();
    let mut p = proc(h)?;
    let span = f.mmap_max - f.mmap_min;
    let big = client(&mut *p)
        .mmap(0, span, Prot::NONE, PA | MapFlags::NORESERVE, None, 0)
        .ctx("reserve the whole window")?;
    ensure_eq!(big, f.mmap_min);
    expect_err(
        client(&mut *p).mmap(0, P, RW, PA, None, 0),
        Errno::ENOMEM,
        "one more page",
    )?;
    client(&mut *p).munmap(big + 5 * P, P).ctx("punch a hole")?;
    ensure_eq!(anon(&mut *p, P, RW)?, big + 5 * P);
    Ok(())
}
