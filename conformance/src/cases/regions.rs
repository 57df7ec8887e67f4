//! The `Regions` listing: like `/proc/self/maps`, per client, in order.

use super::*;
use crate::runner::Outcome;
use crate::{ensure, ensure_eq};
use ipc_proto::Backing;

cases![
    regions_of_a_new_client_are_empty,
    regions_are_listed_in_address_order_with_their_attributes,
    regions_report_shm_backing_and_offset,
    regions_report_locking,
    regions_are_per_client,
];

fn regions_of_a_new_client_are_empty(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    ensure_eq!(regions(&mut *p)?.len(), 0);
    Ok(())
}

fn regions_are_listed_in_address_order_with_their_attributes(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = hole(&mut *p, 6)?;
    fixed(&mut *p, a, P, Prot::READ).ctx("r")?;
    client(&mut *p)
        .mmap(a + 2 * P, 2 * P, RW, SA | MapFlags::FIXED, None, 0)
        .ctx("shared")?;
    fixed(&mut *p, a + 5 * P, P, RW | Prot::EXEC).ctx("rwx")?;
    let rs = regions(&mut *p)?;
    ensure_eq!(rs.len(), 3);
    ensure_eq!(
        (rs[0].start, rs[0].end, rs[0].prot, rs[0].shared),
        (a, a + P, Prot::READ, false)
    );
    ensure_eq!(
        (rs[1].start, rs[1].end, rs[1].shared),
        (a + 2 * P, a + 4 * P, true)
    );
    ensure_eq!((rs[2].start, rs[2].prot), (a + 5 * P, RW | Prot::EXEC));
    ensure_eq!(rs[0].backing, Backing::Anonymous);
    Ok(())
}

fn regions_report_shm_backing_and_offset(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "regions-shm", 4 * P)?;
    let st = client(&mut *p).fstat(fd).ctx("fstat")?;
    let a = map_shared(&mut *p, fd, 2 * P, Prot::READ, 2 * P).ctx("map")?;
    let r = region_at(&mut *p, a)?.ok_or(Fail("no region".into()))?;
    ensure_eq!(r.backing, Backing::Shm(st.ino));
    ensure_eq!(r.offset, 2 * P);
    ensure!(r.shared, "not shared: {r:?}");
    client(&mut *p).shm_unlink(&name).ctx("unlink")?;
    Ok(())
}

fn regions_report_locking(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 3 * P, RW)?;
    client(&mut *p).mlock(a + P, P).ctx("mlock")?;
    let rs = regions(&mut *p)?;
    let locked: Vec<_> = rs.iter().map(|r| r.locked).collect();
    ensure_eq!(locked, alloc::vec![false, true, false]);
    Ok(())
}

fn regions_are_per_client(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let mut q = proc(h)?;
    anon(&mut *p, P, RW)?;
    anon(&mut *p, 2 * P, Prot::READ)?;
    ensure_eq!(regions(&mut *p)?.len(), 2);
    ensure_eq!(regions(&mut *q)?.len(), 0);
    Ok(())
}
