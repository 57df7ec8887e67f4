//! `mmap` of anonymous memory: arguments, flags, zero fill, laziness, commit.

use super::*;
use crate::runner::Outcome;
use crate::{ensure, ensure_eq};

cases![
    mmap_anon_returns_page_aligned_address,
    mmap_len_zero_is_einval,
    mmap_anon_is_zero_filled,
    mmap_anon_is_lazy_until_touched,
    mmap_len_is_rounded_up_to_a_page,
    mmap_neither_shared_nor_private_is_einval,
    mmap_both_shared_and_private_is_einval,
    mmap_unknown_flag_bits_are_einval_on_the_wire,
    mmap_unknown_prot_bits_are_einval_on_the_wire,
    mmap_huge_length_is_enomem,
    mmap_length_beyond_the_window_is_enomem,
    mmap_fixed_unaligned_address_is_einval,
    mmap_without_fd_or_anonymous_is_ebadf,
    mmap_unknown_fd_is_ebadf,
    mmap_of_a_closed_fd_is_ebadf,
    mmap_impossible_length_is_enomem_not_eoverflow,
    mmap_prot_none_read_is_sigsegv,
    mmap_read_only_read_is_zero_and_write_is_sigsegv,
    mmap_write_only_is_readable,
    mmap_exec_mapping_executes,
    mmap_without_exec_fetch_is_sigsegv,
    mmap_populate_makes_pages_resident,
    mmap_locked_is_resident_and_locked,
    mmap_private_writable_beyond_memory_is_enomem,
    mmap_noreserve_skips_the_commit_check,
    mmap_read_only_private_is_not_charged,
    mmap_noreserve_fault_without_frames_is_sigbus,
    mmap_accepts_linux_and_bsd_hint_flags,
    mmap_shared_anonymous_is_zero_filled_and_writable,
    mmap_growsdown_shared_is_einval,
    mmap_anonymous_ignores_an_fd,
    mmap_anon_pages_are_distinct,
    mmap_data_survives_many_touches,
    mmap_fixed_below_the_floor_is_eperm,
];

fn mmap_anon_returns_page_aligned_address(h: &mut dyn Harness) -> Outcome {
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

fn mmap_len_zero_is_einval(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    expect_err(
        client(&mut *p).mmap(0, 0, RW, PA, None, 0),
        Errno::EINVAL,
        "mmap len 0",
    )
}

fn mmap_anon_is_zero_filled(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 3 * P, RW)?;
    for off in [0, 1, P - 1, P, 2 * P + 17, 3 * P - 1] {
        ensure_eq!(p.read(a + off), Ok(0));
    }
    Ok(())
}

fn mmap_anon_is_lazy_until_touched(h: &mut dyn Harness) -> Outcome {
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

fn mmap_len_is_rounded_up_to_a_page(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 1, RW)?;
    let r = region_at(&mut *p, a)?.ok_or(Fail("no region".into()))?;
    ensure_eq!(r.end - r.start, P);
    poke(&mut *p, a + P - 1, 9)?;
    ensure_eq!(peek(&mut *p, a + P - 1)?, 9);
    Ok(())
}

fn mmap_neither_shared_nor_private_is_einval(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    expect_err(
        client(&mut *p).mmap(0, P, RW, MapFlags::ANONYMOUS, None, 0),
        Errno::EINVAL,
        "mmap without MAP_SHARED or MAP_PRIVATE",
    )
}

fn mmap_both_shared_and_private_is_einval(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    expect_err(
        client(&mut *p).mmap(0, P, RW, PA | MapFlags::SHARED, None, 0),
        Errno::EINVAL,
        "mmap with both MAP_SHARED and MAP_PRIVATE",
    )
}

/// Sends raw request bytes and decodes the response.
pub(super) fn raw_call(p: &mut dyn Process, bytes: &[u8]) -> ipc_proto::Response {
    let mut out = [0u8; ipc_proto::MAX_RESPONSE_LEN];
    let n = p.transport().call(bytes, &mut out)?;
    ipc_proto::decode_response(&out[..n])?
}

fn mmap_unknown_flag_bits_are_einval_on_the_wire(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    // golden vector `mmap_anon_4k` is 01 00 80 20 03 22 00 00; 0x08 is no MAP_ flag.
    ensure_eq!(
        raw_call(&mut *p, &[0x01, 0x00, 0x80, 0x20, 0x03, 0x2a, 0x00, 0x00]),
        Err(Errno::EINVAL)
    );
    ensure_eq!(
        raw_call(&mut *p, &[0x01, 0x00, 0x80, 0x20, 0x03, 0x22, 0x00, 0x00]).map(|_| ()),
        Ok(())
    );
    Ok(())
}

fn mmap_unknown_prot_bits_are_einval_on_the_wire(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    ensure_eq!(
        raw_call(&mut *p, &[0x01, 0x00, 0x80, 0x20, 0x0b, 0x22, 0x00, 0x00]),
        Err(Errno::EINVAL)
    );
    Ok(())
}

fn mmap_huge_length_is_enomem(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    expect_err(
        client(&mut *p).mmap(0, u64::MAX, RW, PA, None, 0),
        Errno::ENOMEM,
        "mmap of u64::MAX bytes",
    )?;
    expect_err(
        client(&mut *p).mmap(0, u64::MAX - P + 2, Prot::READ, PA, None, 0),
        Errno::ENOMEM,
        "mmap whose rounded length overflows",
    )
}

fn mmap_length_beyond_the_window_is_enomem(h: &mut dyn Harness) -> Outcome {
    let f = h.facts();
    let mut p = proc(h)?;
    let len = f.mmap_max - f.mmap_min + P;
    expect_err(
        client(&mut *p).mmap(0, len, Prot::READ, PA | MapFlags::NORESERVE, None, 0),
        Errno::ENOMEM,
        "mmap larger than the address space",
    )?;
    expect_err(
        fixed(&mut *p, f.mmap_max - P, 2 * P, Prot::READ),
        Errno::ENOMEM,
        "MAP_FIXED across the top of the window",
    )
}

fn mmap_fixed_unaligned_address_is_einval(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = hole(&mut *p, 2)?;
    expect_err(
        fixed(&mut *p, a + 1, P, RW),
        Errno::EINVAL,
        "MAP_FIXED at a+1",
    )?;
    expect_err(
        client(&mut *p).mmap(a + 8, P, RW, PA | MapFlags::FIXED_NOREPLACE, None, 0),
        Errno::EINVAL,
        "MAP_FIXED_NOREPLACE unaligned",
    )
}

fn mmap_without_fd_or_anonymous_is_ebadf(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    expect_err(
        client(&mut *p).mmap(0, P, RW, MapFlags::PRIVATE, None, 0),
        Errno::EBADF,
        "file mapping without an fd",
    )
}

fn mmap_unknown_fd_is_ebadf(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    expect_err(
        client(&mut *p).mmap(0, P, RW, MapFlags::SHARED, Some(Fd(977)), 0),
        Errno::EBADF,
        "mmap of fd 977",
    )?;
    expect_err(
        client(&mut *p).mmap_c(0, P, 3, 0x01, -1, 0),
        Errno::EBADF,
        "mmap of fd -1 without MAP_ANONYMOUS",
    )
}

fn mmap_prot_none_read_is_sigsegv(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, P, Prot::NONE)?;
    expect_signal(p.read(a), Signal::Segv, "read of PROT_NONE")?;
    expect_signal(p.write(a, 1), Signal::Segv, "write of PROT_NONE")
}

fn mmap_read_only_read_is_zero_and_write_is_sigsegv(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 2 * P, Prot::READ)?;
    ensure_eq!(peek(&mut *p, a + P + 3)?, 0);
    expect_signal(p.write(a + P + 3, 1), Signal::Segv, "write of PROT_READ")?;
    ensure_eq!(peek(&mut *p, a + P + 3)?, 0);
    Ok(())
}

fn mmap_write_only_is_readable(h: &mut dyn Harness) -> Outcome {
    // x86 has no write-only pages: PROT_WRITE implies read.
    let mut p = proc(h)?;
    let a = anon(&mut *p, P, Prot::WRITE)?;
    poke(&mut *p, a, 0x5a)?;
    ensure_eq!(peek(&mut *p, a)?, 0x5a);
    Ok(())
}

fn mmap_exec_mapping_executes(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, P, RW)?;
    poke(&mut *p, a, 0xc3)?;
    client(&mut *p)
        .mprotect(a, P, Prot::READ | Prot::EXEC)
        .ctx("mprotect r-x")?;
    ensure_eq!(p.exec(a), Ok(()));
    let info = client(&mut *p).page_info(a).ctx("page_info")?;
    ensure!(info.executable && !info.writable, "page is {info:?}");
    Ok(())
}

fn mmap_without_exec_fetch_is_sigsegv(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, P, RW)?;
    poke(&mut *p, a, 0xc3)?;
    expect_signal(p.exec(a), Signal::Segv, "fetch from a non-exec page (NX)")
}

fn mmap_populate_makes_pages_resident(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = client(&mut *p)
        .mmap(0, 3 * P, RW, PA | MapFlags::POPULATE, None, 0)
        .ctx("mmap populate")?;
    for i in 0..3 {
        let info = client(&mut *p).page_info(a + i * P).ctx("page_info")?;
        ensure!(info.resident && info.installed, "page {i} is {info:?}");
    }
    ensure_eq!(peek(&mut *p, a + 2 * P)?, 0);
    Ok(())
}

fn mmap_locked_is_resident_and_locked(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = client(&mut *p)
        .mmap(0, 2 * P, RW, PA | MapFlags::LOCKED, None, 0)
        .ctx("mmap locked")?;
    let info = client(&mut *p).page_info(a + P).ctx("page_info")?;
    ensure!(info.resident && info.locked, "page is {info:?}");
    let r = region_at(&mut *p, a)?.ok_or(Fail("no region".into()))?;
    ensure!(r.locked, "region not locked: {r:?}");
    Ok(())
}

fn mmap_private_writable_beyond_memory_is_enomem(h: &mut dyn Harness) -> Outcome {
    let f = h.facts();
    let mut p = proc(h)?;
    expect_err(
        client(&mut *p).mmap(0, (f.total_frames + 16) * P, RW, PA, None, 0),
        Errno::ENOMEM,
        "private writable mapping larger than memory",
    )
}

fn mmap_noreserve_skips_the_commit_check(h: &mut dyn Harness) -> Outcome {
    let f = h.facts();
    let mut p = proc(h)?;
    let len = (f.total_frames + 16) * P;
    let a = client(&mut *p)
        .mmap(0, len, RW, PA | MapFlags::NORESERVE, None, 0)
        .ctx("MAP_NORESERVE larger than memory")?;
    poke(&mut *p, a + len - 1, 3)?;
    ensure_eq!(peek(&mut *p, a + len - 1)?, 3);
    Ok(())
}

fn mmap_read_only_private_is_not_charged(h: &mut dyn Harness) -> Outcome {
    let f = h.facts();
    let mut p = proc(h)?;
    client(&mut *p)
        .mmap(0, (f.total_frames + 16) * P, Prot::READ, PA, None, 0)
        .ctx("read-only mapping larger than memory")?;
    Ok(())
}

fn mmap_noreserve_fault_without_frames_is_sigbus(h: &mut dyn Harness) -> Outcome {
    let f = h.facts();
    let (bank, frames) = f.small_bank.clone();
    let mut p = proc(h)?;
    let fd = client(&mut *p).open_bank(&bank).ctx("open_bank")?;
    let len = (frames + 4) * P;
    let a = client(&mut *p)
        .mmap(0, len, RW, PA | MapFlags::NORESERVE, Some(fd), 0)
        .ctx("mmap bank noreserve")?;
    let mut faulted = None;
    for i in 0..frames + 4 {
        if let Err(s) = p.write(a + i * P, 1) {
            faulted = Some((i, s));
            break;
        }
    }
    match faulted {
        Some((i, Signal::Bus)) if i <= frames => Ok(()),
        other => Err(Fail(format!(
            "touching {} pages of a {frames}-frame bank: {other:?}",
            frames + 4
        ))),
    }
}

fn mmap_accepts_linux_and_bsd_hint_flags(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    for extra in [
        MapFlags::HASSEMAPHORE,
        MapFlags::INHERIT,
        MapFlags::NONBLOCK,
        MapFlags::STACK,
        MapFlags::EXECUTABLE,
        MapFlags::DENYWRITE,
    ] {
        let a = client(&mut *p)
            .mmap(0, P, RW, PA | extra, None, 0)
            .map_err(|e| Fail(format!("mmap with {extra:?}: {e:?}")))?;
        poke(&mut *p, a, 1)?;
    }
    Ok(())
}

fn mmap_shared_anonymous_is_zero_filled_and_writable(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = client(&mut *p)
        .mmap(0, 2 * P, RW, SA, None, 0)
        .ctx("mmap shared anonymous")?;
    ensure_eq!(peek(&mut *p, a + P)?, 0);
    poke(&mut *p, a + P, 0x77)?;
    ensure_eq!(peek(&mut *p, a + P)?, 0x77);
    let r = region_at(&mut *p, a)?.ok_or(Fail("no region".into()))?;
    ensure!(r.shared, "region not shared: {r:?}");
    Ok(())
}

fn mmap_growsdown_shared_is_einval(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    expect_err(
        client(&mut *p).mmap(0, P, RW, SA | MapFlags::GROWSDOWN, None, 0),
        Errno::EINVAL,
        "shared MAP_GROWSDOWN",
    )
}

fn mmap_anonymous_ignores_an_fd(h: &mut dyn Harness) -> Outcome {
    // Linux ignores the fd of an anonymous mapping (unless it names a bank, seed 000).
    let mut p = proc(h)?;
    let a = client(&mut *p)
        .mmap(0, P, RW, PA, Some(Fd(999)), 0)
        .ctx("anonymous mapping with a stray fd")?;
    poke(&mut *p, a, 1)
}

fn mmap_anon_pages_are_distinct(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 4 * P, RW)?;
    let b = anon(&mut *p, 4 * P, RW)?;
    for i in 0..4 {
        poke(&mut *p, a + i * P, i as u8 + 1)?;
        poke(&mut *p, b + i * P, i as u8 + 101)?;
    }
    for i in 0..4 {
        ensure_eq!(peek(&mut *p, a + i * P)?, i as u8 + 1);
        ensure_eq!(peek(&mut *p, b + i * P)?, i as u8 + 101);
    }
    Ok(())
}

fn mmap_data_survives_many_touches(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let a = anon(&mut *p, 16 * P, RW)?;
    for i in 0..64u64 {
        poke(&mut *p, a + (i * 1031) % (16 * P), i as u8)?;
    }
    for i in 0..64u64 {
        ensure_eq!(peek(&mut *p, a + (i * 1031) % (16 * P))?, i as u8);
    }
    Ok(())
}

fn mmap_fixed_below_the_floor_is_eperm(h: &mut dyn Harness) -> Outcome {
    let f = h.facts();
    let mut p = proc(h)?;
    let floor = f
        .low_window
        .map_or(f.mmap_min, |(lo, _)| lo.min(f.mmap_min));
    expect_err(
        fixed(&mut *p, floor - P, P, RW),
        Errno::EPERM,
        "MAP_FIXED below the lowest usable address",
    )?;
    expect_err(fixed(&mut *p, 0, P, RW), Errno::EPERM, "MAP_FIXED at 0")?;
    // Between a low window and the main range nothing may lie: no room there.
    match f.low_window {
        Some((_, hi)) if hi < f.mmap_min => expect_err(
            fixed(&mut *p, hi, P, RW),
            Errno::ENOMEM,
            "MAP_FIXED between the low window and the main range",
        ),
        _ => Ok(()),
    }
}

fn mmap_of_a_closed_fd_is_ebadf(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let name = h.unique_name("closed-fd");
    let fd = client(&mut *p)
        .shm_open(&name, CREATE | ipc_proto::OFlags::EXCL, 0o600)
        .ctx("shm_open")?;
    client(&mut *p).ftruncate(fd, P as i64).ctx("ftruncate")?;
    client(&mut *p).close(fd).ctx("close")?;
    expect_err(
        client(&mut *p).mmap(0, P, RW, MapFlags::SHARED, Some(fd), 0),
        Errno::EBADF,
        "mmap of a closed fd",
    )?;
    expect_err(
        client(&mut *p).mmap_c(0, P, 3, 0x01, fd.0 as i32, 0),
        Errno::EBADF,
        "mmap_c of a closed fd",
    )?;
    client(&mut *p).shm_unlink(&name).ctx("shm_unlink")
}

fn mmap_impossible_length_is_enomem_not_eoverflow(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    // Linux and POSIX: no room in the address space is ENOMEM; EOVERFLOW is for an
    // object's offset + length only, and anonymous memory ignores its offset.
    for len in [0u64.wrapping_sub(P), u64::MAX, 1 << 62] {
        expect_err(
            client(&mut *p).mmap(0, len, RW, PA, None, 0),
            Errno::ENOMEM,
            &format!("mmap(NULL, {len:#x})"),
        )?;
        expect_err(
            client(&mut *p).mmap(0, len, RW, PA, None, !(P - 1)),
            Errno::ENOMEM,
            &format!("mmap(NULL, {len:#x}) at a huge offset"),
        )?;
    }
    expect_err(
        client(&mut *p).mmap_c(0, 0u64.wrapping_sub(P), 3, 0x22, -1, 0),
        Errno::ENOMEM,
        "mmap_c(NULL, (size_t)-4096)",
    )?;
    let (name, fd) = shm(h, &mut *p, "impossible-length", P)?;
    expect_err(
        map_shared(&mut *p, fd, 0u64.wrapping_sub(P), RW, 0),
        Errno::ENOMEM,
        "shared mapping of (size_t)-4096",
    )?;
    let a = client(&mut *p)
        .mmap(0, P, RW, PA, None, (i64::MAX as u64) & !(P - 1))
        .ctx("anonymous memory at a huge offset")?;
    client(&mut *p).munmap(a, P).ctx("munmap")?;
    client(&mut *p).close(fd).ctx("close")?;
    client(&mut *p).shm_unlink(&name).ctx("shm_unlink")
}
