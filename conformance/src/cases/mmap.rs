//! `mmap` of anonymous memory: arguments, placement, zero fill, laziness.

use super::*;
use crate::runner::Outcome;
use crate::{ensure, ensure_eq};

/// The cases of this module.
pub const CASES: &[Case] = &[
    Case {
        name: "mmap_anon_returns_page_aligned_address",
        run: returns_page_aligned,
    },
    Case {
        name: "mmap_len_zero_is_einval",
        run: len_zero,
    },
    Case {
        name: "mmap_anon_is_zero_filled",
        run: zero_filled,
    },
    Case {
        name: "mmap_anon_is_lazy_until_touched",
        run: lazy,
    },
];

fn returns_page_aligned(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 100, RW)?;
    ensure!(a % P == 0, "address {a:#x} not page-aligned");
    let f = h.facts();
    ensure!(
        a >= f.mmap_min && a + P <= f.mmap_max,
        "address {a:#x} outside the window"
    );
    Ok(())
}

fn len_zero(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    expect_err(
        client(&mut *p).mmap(0, 0, RW, PA, None, 0),
        Errno::EINVAL,
        "mmap len 0",
    )
}

fn zero_filled(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 3 * P, RW)?;
    for off in [0, 1, P - 1, P, 2 * P + 17, 3 * P - 1] {
        ensure_eq!(p.read(a + off), Ok(0));
    }
    Ok(())
}

fn lazy(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 4 * P, RW)?;
    let info = client(&mut *p).page_info(a + P).ctx("page_info")?;
    ensure!(
        info.mapped && !info.resident && !info.installed,
        "untouched page is {info:?}"
    );
    p.write(a + P, 5).ctx("write")?;
    let info = client(&mut *p).page_info(a + P).ctx("page_info")?;
    ensure!(
        info.resident && info.installed && info.writable,
        "touched page is {info:?}"
    );
    let other = client(&mut *p).page_info(a + 2 * P).ctx("page_info")?;
    ensure!(!other.resident, "neighbour page became resident: {other:?}");
    Ok(())
}
