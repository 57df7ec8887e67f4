//! Host files (issue 18): `mmap` of a process's own regular file, with the server
//! deciding placement, rights and accounting and the host's page cache holding the
//! pages. One object per file shared by every client, `MAP_SHARED` writes seen by
//! `read(2)` and every mapping, `pwrite` seen through the mappings, `MAP_PRIVATE`
//! copy-on-write, the zero tail, `SIGBUS` past the end, `mremap` moving a mapping with
//! its file, and Linux's errnos (`EACCES` by open mode, `ENODEV` for a directory,
//! `EOVERFLOW`). Only a transport with a host
//! kernel runs them ([`Need::HostFiles`](crate::Need::HostFiles)).

use super::*;
use crate::harness::HostOpen;
use crate::runner::Outcome;
use crate::{ensure, ensure_eq};
use ipc_proto::{Backing, MmapArgs};

cases![
    host_file_shared_mapping_reads_the_file_and_a_zero_tail if HostFiles,
    host_file_pwrite_is_seen_through_the_mapping if HostFiles,
    host_file_shared_write_is_seen_by_read_and_another_client if HostFiles,
    host_file_private_mapping_is_copy_on_write if HostFiles,
    host_file_past_the_end_is_sigbus if HostFiles,
    host_file_rights_follow_the_open_mode if HostFiles,
    host_file_directory_is_enodev if HostFiles,
    host_file_offset_past_the_maximum_is_eoverflow if HostFiles,
    host_file_is_one_object_alive_while_mapped if HostFiles,
    host_file_mremap_moves_a_mapping_with_its_file if HostFiles,
];

/// The test file: two pages and ten bytes.
const SIZE: u64 = 2 * P + 10;
const SHARED: MapFlags = MapFlags::SHARED;

fn byte(i: u64) -> u8 {
    (i % 253) as u8 ^ 0x5a
}

/// Runs `body` with a fresh host file of [`SIZE`] bytes of [`byte`], removed afterwards
/// whatever the outcome.
fn with_file(
    h: &mut dyn Harness,
    base: &str,
    body: impl FnOnce(&mut dyn Harness, &str) -> Outcome,
) -> Outcome {
    let contents: Vec<u8> = (0..SIZE).map(byte).collect();
    let path = h
        .make_host_file(base, &contents)
        .ok_or_else(|| Fail(String::from("the harness made no host file")))?;
    let r = body(h, &path);
    h.remove_host_file(&path);
    r
}

/// Maps `len` bytes of host file `path`, opened `open`, at `offset`.
fn map(
    p: &mut dyn Process,
    path: &str,
    open: HostOpen,
    len: u64,
    prot: Prot,
    flags: MapFlags,
    offset: u64,
) -> Result<u64, Errno> {
    let args = MmapArgs {
        addr: 0,
        len,
        prot,
        flags,
        fd: None,
        offset,
    };
    p.mmap_host_file(path, open, args)
}

fn read_file(h: &mut dyn Harness, path: &str) -> Result<Vec<u8>, Fail> {
    h.read_host_file(path)
        .ok_or_else(|| Fail(String::from("read the host file")))
}

fn host_file_shared_mapping_reads_the_file_and_a_zero_tail(h: &mut dyn Harness) -> Outcome {
    with_file(h, "hf-read", |h, path| {
        let mut p = proc(h)?;
        let a = map(&mut *p, path, HostOpen::ReadWrite, 3 * P, RW, SHARED, 0).ctx("mmap")?;
        for i in [0, 1, P - 1, P, 2 * P, SIZE - 1] {
            ensure_eq!(p.read(a + i), Ok(byte(i)));
        }
        for i in [SIZE, SIZE + 1, 3 * P - 1] {
            ensure_eq!(p.read(a + i), Ok(0));
        }
        let r = region_at(&mut *p, a)?.ok_or_else(|| Fail(String::from("no region")))?;
        ensure!(
            matches!(r.backing, Backing::File(_)),
            "backing {:?}",
            r.backing
        );
        Ok(())
    })
}

fn host_file_pwrite_is_seen_through_the_mapping(h: &mut dyn Harness) -> Outcome {
    with_file(h, "hf-pwrite", |h, path| {
        let mut p = proc(h)?;
        let a = map(
            &mut *p,
            path,
            HostOpen::ReadOnly,
            3 * P,
            Prot::READ,
            SHARED,
            0,
        )
        .ctx("mmap")?;
        ensure_eq!(p.read(a + P + 7), Ok(byte(P + 7)));
        // SQLite's way: pwrite a page, read it back through the mapping.
        ensure!(h.pwrite_host_file(path, P + 7, &[0xee, 0xef]), "pwrite");
        ensure_eq!(p.read(a + P + 7), Ok(0xee));
        ensure_eq!(p.read(a + P + 8), Ok(0xef));
        Ok(())
    })
}

fn host_file_shared_write_is_seen_by_read_and_another_client(h: &mut dyn Harness) -> Outcome {
    with_file(h, "hf-share", |h, path| {
        let mut p = proc(h)?;
        let mut q = proc(h)?;
        let a = map(&mut *p, path, HostOpen::ReadWrite, 2 * P, RW, SHARED, 0).ctx("mmap p")?;
        let b = map(&mut *q, path, HostOpen::ReadWrite, 3 * P, RW, SHARED, 0).ctx("mmap q")?;
        p.write(a + 100, 0xa1).ctx("write p")?;
        ensure_eq!(q.read(b + 100), Ok(0xa1));
        q.write(b + P + 1, 0xb2).ctx("write q")?;
        ensure_eq!(p.read(a + P + 1), Ok(0xb2));
        let file = read_file(h, path)?;
        ensure_eq!((file[100], file[P as usize + 1]), (0xa1, 0xb2));
        // Still there once every mapping is gone.
        drop((p, q));
        let file = read_file(h, path)?;
        ensure_eq!((file[100], file[P as usize + 1]), (0xa1, 0xb2));
        Ok(())
    })
}

fn host_file_private_mapping_is_copy_on_write(h: &mut dyn Harness) -> Outcome {
    with_file(h, "hf-private", |h, path| {
        let mut p = proc(h)?;
        let private = MapFlags::PRIVATE;
        // A read-only fd may be mapped private and written: the copies are the process's.
        let a = map(&mut *p, path, HostOpen::ReadOnly, 2 * P, RW, private, 0).ctx("private")?;
        let s = map(&mut *p, path, HostOpen::ReadOnly, P, Prot::READ, SHARED, 0).ctx("shared")?;
        p.write(a + 5, 0xcc).ctx("write")?;
        ensure_eq!(p.read(a + 5), Ok(0xcc));
        ensure_eq!(p.read(s + 5), Ok(byte(5)));
        ensure_eq!(read_file(h, path)?[5], byte(5));
        // A later pwrite shows through a page not yet copied, not through a copy.
        ensure_eq!(p.read(a + P + 9), Ok(byte(P + 9)));
        ensure!(h.pwrite_host_file(path, 9, &[0x99]), "pwrite");
        ensure!(h.pwrite_host_file(path, P + 9, &[0x98]), "pwrite");
        ensure_eq!(p.read(a + 9), Ok(byte(9)));
        ensure_eq!(p.read(a + P + 9), Ok(0x98));
        Ok(())
    })
}

fn host_file_past_the_end_is_sigbus(h: &mut dyn Harness) -> Outcome {
    with_file(h, "hf-bus", |h, path| {
        let mut p = proc(h)?;
        let a = map(
            &mut *p,
            path,
            HostOpen::ReadOnly,
            5 * P,
            Prot::READ,
            SHARED,
            0,
        )
        .ctx("mmap")?;
        ensure_eq!(p.read(a + 2 * P + 100), Ok(0));
        expect_signal(p.read(a + 3 * P), Signal::Bus, "read past the end")?;
        expect_signal(p.read(a + 4 * P + 1), Signal::Bus, "read further")?;
        Ok(())
    })
}

fn host_file_rights_follow_the_open_mode(h: &mut dyn Harness) -> Outcome {
    with_file(h, "hf-rights", |h, path| {
        let mut p = proc(h)?;
        let (ro, wo) = (HostOpen::ReadOnly, HostOpen::WriteOnly);
        expect_err(
            map(&mut *p, path, ro, P, RW, SHARED, 0),
            Errno::EACCES,
            "rdonly",
        )?;
        expect_err(
            map(&mut *p, path, wo, P, Prot::READ, SHARED, 0),
            Errno::EACCES,
            "wronly",
        )?;
        let a = map(&mut *p, path, ro, P, Prot::READ, SHARED, 0).ctx("mmap read-only")?;
        expect_err(
            client(&mut *p).mprotect(a, P, RW),
            Errno::EACCES,
            "mprotect",
        )?;
        expect_signal(p.write(a, 1), Signal::Segv, "write a read-only mapping")?;
        Ok(())
    })
}

fn host_file_directory_is_enodev(h: &mut dyn Harness) -> Outcome {
    let dir = h
        .host_directory()
        .ok_or_else(|| Fail(String::from("no host directory")))?;
    let mut p = proc(h)?;
    let r = map(
        &mut *p,
        &dir,
        HostOpen::ReadOnly,
        P,
        Prot::READ,
        MapFlags::PRIVATE,
        0,
    );
    expect_err(r, Errno::ENODEV, "mmap of a directory")
}

fn host_file_offset_past_the_maximum_is_eoverflow(h: &mut dyn Harness) -> Outcome {
    with_file(h, "hf-overflow", |h, path| {
        let mut p = proc(h)?;
        let off = (i64::MAX as u64) & !(P - 1);
        let r = map(
            &mut *p,
            path,
            HostOpen::ReadOnly,
            2 * P,
            Prot::READ,
            SHARED,
            off,
        );
        expect_err(r, Errno::EOVERFLOW, "offset + length past the maximum")?;
        // The last page the maximum offset allows maps.
        let last = off - P;
        map(
            &mut *p,
            path,
            HostOpen::ReadOnly,
            P,
            Prot::READ,
            SHARED,
            last,
        )
        .ctx("last page")?;
        Ok(())
    })
}

fn host_file_is_one_object_alive_while_mapped(h: &mut dyn Harness) -> Outcome {
    with_file(h, "hf-object", |h, path| {
        let objects = h.stats().shm_objects;
        let mut p = proc(h)?;
        let mut q = proc(h)?;
        let rw = HostOpen::ReadWrite;
        let a = map(&mut *p, path, rw, P, RW, SHARED, 0).ctx("mmap p")?;
        let b = map(&mut *q, path, rw, 2 * P, Prot::READ, MapFlags::PRIVATE, 0).ctx("q")?;
        let c = map(&mut *q, path, rw, P, Prot::READ, SHARED, P).ctx("q again")?;
        ensure_eq!(h.stats().shm_objects, objects + 1);
        let id = |p: &mut dyn Process, at: u64| -> Result<Backing, Fail> {
            Ok(region_at(p, at)?
                .ok_or_else(|| Fail(String::from("no region")))?
                .backing)
        };
        let (x, y, z) = (id(&mut *p, a)?, id(&mut *q, b)?, id(&mut *q, c)?);
        ensure!(x == y && y == z, "one object: {x:?} {y:?} {z:?}");
        client(&mut *p).munmap(a, P).ctx("munmap p")?;
        ensure_eq!(h.stats().shm_objects, objects + 1);
        client(&mut *q).munmap(b, 2 * P).ctx("munmap q")?;
        client(&mut *q).munmap(c, P).ctx("munmap q again")?;
        ensure_eq!(h.stats().shm_objects, objects);
        Ok(())
    })
}

fn host_file_mremap_moves_a_mapping_with_its_file(h: &mut dyn Harness) -> Outcome {
    with_file(h, "hf-mremap", |h, path| {
        let mut p = proc(h)?;
        // The file's page, then a page of something else, so growing must move.
        let at = hole(&mut *p, 2)?;
        let args = MmapArgs {
            addr: at,
            len: P,
            prot: RW,
            flags: SHARED | MapFlags::FIXED,
            fd: None,
            offset: 0,
        };
        let a = p
            .mmap_host_file(path, HostOpen::ReadWrite, args)
            .ctx("mmap fixed")?;
        ensure_eq!(a, at);
        let after = fixed(&mut *p, at + P, P, Prot::READ).ctx("block")?;
        p.write(a + 3, 0x33).ctx("write")?;
        let b = client(&mut *p)
            .mremap(a, P, 3 * P, ipc_proto::MremapFlags::MAYMOVE, 0)
            .ctx("mremap")?;
        ensure!(b != a, "moved");
        ensure_eq!(p.read(b + 3), Ok(0x33));
        ensure_eq!(p.read(b + P + 1), Ok(byte(P + 1)));
        p.write(b + 2 * P, 0x44).ctx("write the grown part")?;
        ensure_eq!(read_file(h, path)?[2 * P as usize], 0x44);
        expect_signal(p.read(a), Signal::Segv, "the old place")?;
        client(&mut *p).munmap(after, P).ctx("munmap")?;
        Ok(())
    })
}
