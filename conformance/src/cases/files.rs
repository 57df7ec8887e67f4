//! File mappings through the server's pager (seeds 002, 003, 004): contents paged in,
//! the partial last page zero-filled, `SIGBUS` beyond the end, open modes and mode bits
//! (`EACCES`), `MAP_DENYWRITE` (`ETXTBSY`), one frame per page whatever the number of
//! mappings, copy-on-write for `MAP_PRIVATE`, and dirty pages written back by `msync`,
//! `munmap` and exit. The files are [`fileserver::fixture`]'s.

use super::*;
use crate::runner::Outcome;
use crate::{ensure, ensure_eq};
use ipc_proto::{Backing, MsyncFlags, ObjectKind};

use fileserver::fixture::{EXIT, FixtureFile, MSYNC, SECRET, SHARED, TEXT, TRUNC, UNMAP, byte};

cases![
    files_map_reads_the_contents,
    files_partial_last_page_is_zero_filled,
    files_beyond_the_end_is_sigbus,
    files_missing_file_is_enoent,
    files_bad_open_flags_are_einval,
    files_mode_bits_deny_other_users,
    files_read_only_file_cannot_be_opened_for_writing,
    files_shared_write_needs_a_writable_fd,
    files_private_mapping_is_copy_on_write,
    files_two_clients_share_one_frame_and_see_each_others_writes,
    files_msync_writes_back,
    files_munmap_writes_back,
    files_exit_writes_back,
    files_ftruncate_changes_the_file_and_its_mappings,
    files_ftruncate_needs_a_writable_fd,
    files_denywrite_mapping_makes_opening_for_write_etxtbsy,
    files_fstat_and_regions_report_a_file,
    files_mremap_moves_a_file_mapping_with_its_file,
];

/// Byte `i` of fixture file `f` as created.
fn orig(f: &FixtureFile, i: u64) -> u8 {
    byte(f.seed, i as usize)
}

/// Opens `f` in `p`.
fn open(p: &mut dyn Process, f: &FixtureFile, oflag: OFlags) -> Result<Fd, Errno> {
    client(p).open_file(f.path, oflag)
}

/// Maps `len` bytes of `fd` with `flags` and `prot` at offset 0.
fn map(p: &mut dyn Process, fd: Fd, len: u64, prot: Prot, flags: MapFlags) -> Result<u64, Fail> {
    client(p)
        .mmap(0, len, prot, flags, Some(fd), 0)
        .ctx("mmap file")
}

/// What a fresh client reads at `offsets` of `f`: the file's contents as the pager has
/// them, once nobody else holds the file (so nothing is served from a cache).
fn read_fresh(h: &mut dyn Harness, f: &FixtureFile, offsets: &[u64]) -> Result<Vec<u8>, Fail> {
    let mut q = proc(h)?;
    let fd = open(&mut *q, f, OFlags::RDONLY).ctx("open in a fresh client")?;
    let a = map(
        &mut *q,
        fd,
        f.size.next_multiple_of(P as usize) as u64,
        Prot::READ,
        MapFlags::SHARED,
    )?;
    offsets.iter().map(|&o| peek(&mut *q, a + o)).collect()
}

fn files_map_reads_the_contents(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let fd = open(&mut *p, &TEXT, OFlags::RDONLY).ctx("open")?;
    let a = map(&mut *p, fd, 3 * P, Prot::READ, MapFlags::PRIVATE)?;
    for i in [0, 1, 4095, 4096, 8191, 8192, 9999] {
        ensure_eq!(peek(&mut *p, a + i)?, orig(&TEXT, i));
    }
    // An offset into the file maps from there.
    let b = client(&mut *p)
        .mmap(0, P, Prot::READ, MapFlags::SHARED, Some(fd), P)
        .ctx("mmap at offset")?;
    ensure_eq!(peek(&mut *p, b + 7)?, orig(&TEXT, P + 7));
    Ok(())
}

fn files_partial_last_page_is_zero_filled(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let fd = open(&mut *p, &TEXT, OFlags::RDONLY).ctx("open")?;
    let a = map(&mut *p, fd, 3 * P, Prot::READ, MapFlags::SHARED)?;
    ensure_eq!(peek(&mut *p, a + 9999)?, orig(&TEXT, 9999));
    for i in [10_000, 10_001, 3 * P - 1] {
        ensure_eq!(peek(&mut *p, a + i)?, 0);
    }
    Ok(())
}

fn files_beyond_the_end_is_sigbus(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let fd = open(&mut *p, &TEXT, OFlags::RDONLY).ctx("open")?;
    // Seed 004: mapping past the end succeeds; touching a page wholly past it is SIGBUS.
    let a = map(&mut *p, fd, 5 * P, Prot::READ, MapFlags::PRIVATE)?;
    expect_signal(p.read(a + 3 * P), Signal::Bus, "read of page 3")?;
    expect_signal(p.read(a + 4 * P + 9), Signal::Bus, "read of page 4")?;
    ensure_eq!(peek(&mut *p, a + 2 * P)?, orig(&TEXT, 2 * P));
    Ok(())
}

fn files_missing_file_is_enoent(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    expect_err(
        client(&mut *p).open_file("/conf/no-such-file", OFlags::RDONLY),
        Errno::ENOENT,
        "open of a missing file",
    )?;
    expect_err(
        client(&mut *p).open_file("relative", OFlags::RDONLY),
        Errno::EINVAL,
        "open of a relative path",
    )
}

fn files_bad_open_flags_are_einval(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    expect_err(
        open(&mut *p, &MSYNC, OFlags::WRONLY),
        Errno::EINVAL,
        "O_WRONLY",
    )?;
    // Files are created at the file server, not through the memory server.
    expect_err(open(&mut *p, &MSYNC, CREATE), Errno::EINVAL, "O_CREAT")
}

fn files_mode_bits_deny_other_users(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    expect_err(
        open(&mut *p, &SECRET, OFlags::RDONLY),
        Errno::EACCES,
        "user opens 0600 root file",
    )?;
    let mut root = proc_with(h, spec(|s| (s.uid, s.gid) = (0, 0)))?;
    let fd = open(&mut *root, &SECRET, OFlags::RDONLY).ctx("root opens it")?;
    let a = map(&mut *root, fd, P, Prot::READ, MapFlags::SHARED)?;
    ensure_eq!(peek(&mut *root, a + 99)?, orig(&SECRET, 99));
    Ok(())
}

fn files_read_only_file_cannot_be_opened_for_writing(h: &mut dyn Harness) -> Outcome {
    let mut root = proc_with(h, spec(|s| (s.uid, s.gid) = (0, 0)))?;
    // The boot image is read-only even for root.
    expect_err(
        open(&mut *root, &TEXT, OFlags::RDWR),
        Errno::EACCES,
        "O_RDWR of the image",
    )?;
    expect_err(
        open(&mut *root, &TEXT, OFlags::RDONLY | OFlags::TRUNC),
        Errno::EACCES,
        "O_TRUNC of the image",
    )
}

fn files_shared_write_needs_a_writable_fd(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let fd = open(&mut *p, &MSYNC, OFlags::RDONLY).ctx("open")?;
    expect_err(
        client(&mut *p).mmap(0, P, RW, MapFlags::SHARED, Some(fd), 0),
        Errno::EACCES,
        "shared writable mapping of a read-only fd",
    )?;
    let a = map(&mut *p, fd, P, Prot::READ, MapFlags::SHARED)?;
    expect_err(
        client(&mut *p).mprotect(a, P, RW),
        Errno::EACCES,
        "mprotect to writable",
    )?;
    expect_signal(
        p.write(a, 1),
        Signal::Segv,
        "write to the read-only mapping",
    )
}

fn files_private_mapping_is_copy_on_write(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    // A read-only fd maps privately writable: the writes are the client's own.
    let fd = open(&mut *p, &TEXT, OFlags::RDONLY).ctx("open")?;
    let a = map(&mut *p, fd, 2 * P, RW, MapFlags::PRIVATE)?;
    let b = map(&mut *p, fd, 2 * P, Prot::READ, MapFlags::SHARED)?;
    ensure_eq!(peek(&mut *p, a + 5)?, orig(&TEXT, 5));
    poke(&mut *p, a + 5, !orig(&TEXT, 5))?;
    ensure_eq!(peek(&mut *p, a + 5)?, !orig(&TEXT, 5));
    ensure_eq!(peek(&mut *p, b + 5)?, orig(&TEXT, 5));
    // The other page was not copied: it still reads the file.
    ensure_eq!(peek(&mut *p, a + P + 5)?, orig(&TEXT, P + 5));
    drop(p);
    ensure_eq!(read_fresh(h, &TEXT, &[5])?, [orig(&TEXT, 5)]);
    Ok(())
}

fn files_two_clients_share_one_frame_and_see_each_others_writes(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let mut q = proc(h)?;
    let fp = open(&mut *p, &SHARED, OFlags::RDWR).ctx("open in p")?;
    let fq = open(&mut *q, &SHARED, OFlags::RDWR).ctx("open in q")?;
    let a = map(&mut *p, fp, 2 * P, RW, MapFlags::SHARED)?;
    let b = map(&mut *q, fq, 2 * P, RW, MapFlags::SHARED)?;
    let old = peek(&mut *p, a + P + 3)?;
    let before = free_frames(h);
    ensure_eq!(peek(&mut *q, b + P + 3)?, old);
    let after = free_frames(h);
    ensure!(
        !h.facts().exclusive || after >= before,
        "the second client's touch took a frame ({before} -> {after})"
    );
    poke(&mut *q, b + P + 3, !old)?;
    ensure_eq!(peek(&mut *p, a + P + 3)?, !old);
    poke(&mut *p, a + 1, 0x5a)?;
    ensure_eq!(peek(&mut *q, b + 1)?, 0x5a);
    // Put the first byte back for the next run.
    poke(&mut *p, a + 1, orig(&SHARED, 1))
}

fn files_msync_writes_back(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let fd = open(&mut *p, &MSYNC, OFlags::RDWR).ctx("open")?;
    let a = map(&mut *p, fd, 3 * P, RW, MapFlags::SHARED)?;
    let old = peek(&mut *p, a + P + 10)?;
    poke(&mut *p, a + P + 10, !old)?;
    if let Some(f) = h.file_contents(MSYNC.path) {
        ensure!(f[P as usize + 10] == old, "written back before msync");
    }
    client(&mut *p)
        .msync(a, 3 * P, MsyncFlags::SYNC)
        .ctx("msync")?;
    // Where the transport can look at the file server, the write is there now, with the
    // mapping still in place.
    if let Some(f) = h.file_contents(MSYNC.path) {
        ensure!(f[P as usize + 10] == !old, "not written back by msync");
    }
    // Everywhere: once the pager alone holds the file, a fresh open reads the write.
    client(&mut *p).munmap(a, 3 * P).ctx("munmap")?;
    client(&mut *p).close(fd).ctx("close")?;
    ensure_eq!(
        read_fresh(h, &MSYNC, &[P + 10, P + 11])?,
        [!old, orig(&MSYNC, P + 11)]
    );
    // MS_ASYNC writes back too, and a second msync with nothing dirty is a no-op.
    let fd = open(&mut *p, &MSYNC, OFlags::RDWR).ctx("reopen")?;
    let a = map(&mut *p, fd, 3 * P, RW, MapFlags::SHARED)?;
    let old = peek(&mut *p, a + 2 * P)?;
    poke(&mut *p, a + 2 * P, !old)?;
    client(&mut *p)
        .msync(a, 3 * P, MsyncFlags::ASYNC)
        .ctx("msync async")?;
    client(&mut *p)
        .msync(a, 3 * P, MsyncFlags::SYNC)
        .ctx("msync clean")?;
    drop(p);
    ensure_eq!(read_fresh(h, &MSYNC, &[2 * P])?, [!old]);
    Ok(())
}

fn files_munmap_writes_back(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let fd = open(&mut *p, &UNMAP, OFlags::RDWR).ctx("open")?;
    let a = map(&mut *p, fd, 2 * P, RW, MapFlags::SHARED)?;
    let old = peek(&mut *p, a + 7)?;
    poke(&mut *p, a + 7, !old)?;
    client(&mut *p).munmap(a, 2 * P).ctx("munmap")?;
    // The fd still holds the file (and its cache); the write is at the file server.
    if let Some(f) = h.file_contents(UNMAP.path) {
        ensure!(f[7] == !old, "not written back by munmap");
    }
    client(&mut *p).close(fd).ctx("close")?;
    ensure_eq!(read_fresh(h, &UNMAP, &[7])?, [!old]);
    Ok(())
}

fn files_exit_writes_back(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let fd = open(&mut *p, &EXIT, OFlags::RDWR).ctx("open")?;
    let a = map(&mut *p, fd, 2 * P, RW, MapFlags::SHARED)?;
    let old = peek(&mut *p, a + P)?;
    poke(&mut *p, a + P, !old)?;
    // The client ends with the fd open and the page dirty.
    drop(p);
    ensure_eq!(
        read_fresh(h, &EXIT, &[P, P + 1])?,
        [!old, orig(&EXIT, P + 1)]
    );
    Ok(())
}

fn files_ftruncate_changes_the_file_and_its_mappings(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let mut q = proc(h)?;
    let fd = open(&mut *p, &TRUNC, OFlags::RDWR).ctx("open")?;
    let fq = open(&mut *q, &TRUNC, OFlags::RDONLY).ctx("open in q")?;
    let b = map(&mut *q, fq, 3 * P, Prot::READ, MapFlags::SHARED)?;
    peek(&mut *q, b + 2 * P)?;
    client(&mut *p).ftruncate(fd, 5000).ctx("shrink")?;
    ensure_eq!(client(&mut *p).fstat(fd).ctx("fstat")?.size, 5000);
    expect_signal(q.read(b + 2 * P), Signal::Bus, "read past the new end")?;
    // The rest of the now partial page is zero, and stays zero when the file grows.
    ensure_eq!(peek(&mut *q, b + 5000)?, 0);
    client(&mut *p)
        .ftruncate(fd, TRUNC.size as i64)
        .ctx("grow")?;
    ensure_eq!(peek(&mut *q, b + 6000)?, 0);
    ensure_eq!(peek(&mut *q, b + 2 * P + 1)?, 0);
    ensure_eq!(
        client(&mut *q).fstat(fq).ctx("fstat q")?.size,
        TRUNC.size as u64
    );
    Ok(())
}

fn files_ftruncate_needs_a_writable_fd(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let fd = open(&mut *p, &TRUNC, OFlags::RDONLY).ctx("open")?;
    expect_err(
        client(&mut *p).ftruncate(fd, 0),
        Errno::EINVAL,
        "ftruncate of O_RDONLY",
    )?;
    ensure_eq!(
        client(&mut *p).fstat(fd).ctx("fstat")?.size,
        TRUNC.size as u64
    );
    Ok(())
}

fn files_denywrite_mapping_makes_opening_for_write_etxtbsy(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let mut q = proc(h)?;
    let fd = open(&mut *p, &MSYNC, OFlags::RDONLY).ctx("open")?;
    let a = map(
        &mut *p,
        fd,
        P,
        Prot::READ,
        MapFlags::PRIVATE | MapFlags::DENYWRITE,
    )?;
    expect_err(
        open(&mut *q, &MSYNC, OFlags::RDWR),
        Errno::ETXTBSY,
        "O_RDWR while denied",
    )?;
    open(&mut *q, &MSYNC, OFlags::RDONLY).ctx("O_RDONLY while denied")?;
    client(&mut *p).munmap(a, P).ctx("munmap")?;
    open(&mut *q, &MSYNC, OFlags::RDWR).ctx("O_RDWR after munmap")?;
    Ok(())
}

fn files_fstat_and_regions_report_a_file(h: &mut dyn Harness) -> Outcome {
    let mut p = proc(h)?;
    let fd = open(&mut *p, &TEXT, OFlags::RDONLY).ctx("open")?;
    let st = client(&mut *p).fstat(fd).ctx("fstat")?;
    ensure_eq!(st.kind, ObjectKind::File);
    ensure_eq!(st.size, TEXT.size as u64);
    ensure_eq!(
        (st.mode.bits(), st.uid, st.gid),
        (TEXT.mode, TEXT.uid, TEXT.gid)
    );
    let a = client(&mut *p)
        .mmap(0, P, Prot::READ, MapFlags::PRIVATE, Some(fd), P)
        .ctx("mmap")?;
    let r = region_at(&mut *p, a)?.ok_or_else(|| Fail(String::from("no region")))?;
    ensure_eq!(r.backing, Backing::File(st.ino));
    ensure_eq!(r.offset, P);
    // Every open of the file is the same object.
    let again = open(&mut *p, &TEXT, OFlags::RDONLY).ctx("second open")?;
    ensure_eq!(client(&mut *p).fstat(again).ctx("fstat again")?.ino, st.ino);
    Ok(())
}

fn files_mremap_moves_a_file_mapping_with_its_file(h: &mut dyn Harness) -> Outcome {
    use ipc_proto::{Backing, MremapFlags};
    let mut p = proc(h)?;
    let fd = open(&mut *p, &TEXT, OFlags::RDONLY).ctx("open")?;
    let a = hole(&mut *p, 3)?;
    let a = client(&mut *p)
        .mmap(
            a,
            2 * P,
            Prot::READ,
            MapFlags::SHARED | MapFlags::FIXED,
            Some(fd),
            P,
        )
        .ctx("mmap at offset")?;
    fixed(&mut *p, a + 2 * P, P, Prot::READ).ctx("neighbour")?;
    ensure_eq!(peek(&mut *p, a + 5)?, orig(&TEXT, P + 5));
    let b = client(&mut *p)
        .mremap(a, 2 * P, 3 * P, MremapFlags::MAYMOVE, 0)
        .ctx("mremap")?;
    ensure!(b != a, "a blocked growth stayed in place");
    ensure_eq!(peek(&mut *p, b + 5)?, orig(&TEXT, P + 5));
    ensure_eq!(peek(&mut *p, b + P + 9)?, orig(&TEXT, 2 * P + 9));
    // The file is 10 000 bytes: the grown page is wholly past its end.
    expect_signal(p.read(b + 2 * P), Signal::Bus, "read past the end")?;
    let r = region_at(&mut *p, b)?.ok_or("none").ctx("moved region")?;
    let st = client(&mut *p).fstat(fd).ctx("fstat")?;
    ensure_eq!(r.backing, Backing::File(st.ino));
    ensure_eq!(r.offset, P);
    client(&mut *p).close(fd).ctx("close")
}
