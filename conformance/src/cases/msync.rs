//! `msync`: flag and range validation.

use super::*;
use crate::ensure_eq;
use crate::runner::Outcome;
use ipc_proto::MsyncFlags;

cases![
    msync_async_sync_and_invalidate_succeed,
    msync_both_async_and_sync_is_einval,
    msync_unaligned_address_is_einval,
    msync_unmapped_range_is_enomem,
    msync_partly_unmapped_range_is_enomem,
    msync_len_zero_succeeds,
    msync_unknown_bits_are_einval,
    msync_invalidate_of_locked_memory_is_ebusy,
    msync_keeps_shared_data,
    msync_invalidate_of_locked_memory_before_a_hole_is_ebusy,
];

fn msync_async_sync_and_invalidate_succeed(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 2 * P, RW)?;
    for f in [
        MsyncFlags::ASYNC,
        MsyncFlags::SYNC,
        MsyncFlags::SYNC | MsyncFlags::INVALIDATE,
        MsyncFlags::ASYNC | MsyncFlags::INVALIDATE,
        MsyncFlags::empty(),
    ] {
        ensure_eq!(client(&mut *p).msync(a, 2 * P, f), Ok(()));
    }
    Ok(())
}

fn msync_both_async_and_sync_is_einval(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, P, RW)?;
    expect_err(
        client(&mut *p).msync(a, P, MsyncFlags::ASYNC | MsyncFlags::SYNC),
        Errno::EINVAL,
        "msync MS_ASYNC|MS_SYNC",
    )
}

fn msync_unaligned_address_is_einval(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, P, RW)?;
    expect_err(
        client(&mut *p).msync(a + 1, 10, MsyncFlags::SYNC),
        Errno::EINVAL,
        "msync a+1",
    )
}

fn msync_unmapped_range_is_enomem(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = hole(&mut *p, 2)?;
    expect_err(
        client(&mut *p).msync(a, 2 * P, MsyncFlags::SYNC),
        Errno::ENOMEM,
        "msync of nothing",
    )
}

fn msync_partly_unmapped_range_is_enomem(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 2 * P, RW)?;
    expect_err(
        client(&mut *p).msync(a, 3 * P, MsyncFlags::ASYNC),
        Errno::ENOMEM,
        "msync past the end of a mapping",
    )?;
    let b = anon(&mut *p, 3 * P, RW)?;
    client(&mut *p).munmap(b + P, P).ctx("punch")?;
    expect_err(
        client(&mut *p).msync(b, 3 * P, MsyncFlags::ASYNC),
        Errno::ENOMEM,
        "msync over a hole",
    )
}

fn msync_len_zero_succeeds(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = hole(&mut *p, 1)?;
    ensure_eq!(client(&mut *p).msync(a, 0, MsyncFlags::SYNC), Ok(()));
    Ok(())
}

fn msync_unknown_bits_are_einval(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, P, RW)?;
    ensure_eq!(MsyncFlags::from_raw(0x8), Err(Errno::EINVAL));
    let mut buf = [0u8; ipc_proto::MAX_REQUEST_LEN];
    let req = ipc_proto::Request::Msync {
        addr: a,
        len: P,
        flags: MsyncFlags::SYNC,
    };
    let n = ipc_proto::encode_request(&req, &mut buf).ctx("encode")?;
    ensure_eq!(buf[n - 1], 0x04);
    buf[n - 1] = 0x0c;
    ensure_eq!(
        super::mmap::raw_call(&mut *p, &buf[..n]),
        Err(Errno::EINVAL)
    );
    Ok(())
}

fn msync_invalidate_of_locked_memory_is_ebusy(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 2 * P, RW)?;
    client(&mut *p).mlock(a, P).ctx("mlock")?;
    expect_err(
        client(&mut *p).msync(a, 2 * P, MsyncFlags::SYNC | MsyncFlags::INVALIDATE),
        Errno::EBUSY,
        "MS_INVALIDATE over locked memory",
    )?;
    ensure_eq!(
        client(&mut *p).msync(a + P, P, MsyncFlags::SYNC | MsyncFlags::INVALIDATE),
        Ok(())
    );
    Ok(())
}

fn msync_invalidate_of_locked_memory_before_a_hole_is_ebusy(h: &mut dyn Harness) -> Outcome {
    // Linux reports the locked mapping (EBUSY) over the hole (ENOMEM).
    let mut p = proc(h)?;
    let a = hole(&mut *p, 3)?;
    fixed(&mut *p, a, P, RW).ctx("map")?;
    client(&mut *p).mlock(a, P).ctx("mlock")?;
    expect_err(
        client(&mut *p).msync(a, 3 * P, MsyncFlags::SYNC | MsyncFlags::INVALIDATE),
        Errno::EBUSY,
        "MS_INVALIDATE over a locked page and a hole",
    )?;
    expect_err(
        client(&mut *p).msync(a, 3 * P, MsyncFlags::SYNC),
        Errno::ENOMEM,
        "MS_SYNC over the hole",
    )
}

fn msync_keeps_shared_data(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let (name, fd) = shm(h, &mut *p, "msync-data", 2 * P)?;
    let a = map_shared(&mut *p, fd, 2 * P, RW, 0).ctx("map")?;
    poke(&mut *p, a + P + 1, 0x99)?;
    client(&mut *p)
        .msync(a, 2 * P, MsyncFlags::SYNC)
        .ctx("msync")?;
    let b = map_shared(&mut *p, fd, 2 * P, Prot::READ, 0).ctx("second map")?;
    ensure_eq!(peek(&mut *p, b + P + 1)?, 0x99);
    client(&mut *p).shm_unlink(&name).ctx("unlink")?;
    Ok(())
}
