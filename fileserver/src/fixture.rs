//! The files the conformance suite maps: what a file server must hold for the suite's
//! file cases to run against it. Every transport serves [`conformance_fs`]; another
//! implementation can build the same files from [`FILES`] and [`byte`].
//!
//! Read-only files come from a boot image (a ustar archive, as a kernel would load one);
//! writable ones are created in RAM. Each writing case has a file of its own, so cases
//! stay independent in any order, and they only ever invert bytes they find (or restore
//! what they change), so a second run against the same file server still passes.

use crate::{RamFs, TarEntry, write_tar};
use alloc::vec::Vec;

/// One file of the fixture.
#[derive(Clone, Copy, Debug)]
pub struct FixtureFile {
    /// Its absolute path.
    pub path: &'static str,
    /// Its size in bytes.
    pub size: usize,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Loaded from the boot image (read-only) rather than created writable.
    pub read_only: bool,
    /// Seeds its contents: byte `i` is [`byte`]`(seed, i)`.
    pub seed: u8,
}

const fn file(path: &'static str, size: usize, mode: u32, uid: u32, seed: u8) -> FixtureFile {
    FixtureFile {
        path,
        size,
        mode,
        uid,
        gid: uid,
        read_only: false,
        seed,
    }
}

/// A read-only text of 10 000 bytes: two full pages and a partial third.
pub const TEXT: FixtureFile = FixtureFile {
    read_only: true,
    ..file("/conf/text", 10_000, 0o644, 0, 1)
};
/// Root's file, mode 0600: other users get `EACCES`.
pub const SECRET: FixtureFile = file("/conf/secret", 100, 0o600, 0, 2);
/// Written and `msync`ed by one case.
pub const MSYNC: FixtureFile = file("/conf/msync", 3 * 4096, 0o666, 0, 3);
/// Written and unmapped by one case.
pub const UNMAP: FixtureFile = file("/conf/unmap", 2 * 4096, 0o666, 0, 4);
/// Written by a client that then exits.
pub const EXIT: FixtureFile = file("/conf/exit", 2 * 4096, 0o666, 0, 5);
/// Mapped shared by two clients at once.
pub const SHARED: FixtureFile = file("/conf/shared", 2 * 4096, 0o666, 0, 6);
/// Truncated and grown again by one case.
pub const TRUNC: FixtureFile = file("/conf/trunc", 3 * 4096, 0o666, 0, 7);
/// Mapped by a client that forks.
pub const FORK: FixtureFile = file("/conf/fork", 2 * 4096, 0o666, 0, 8);
/// Written by the microkernel demo and its cloned task.
pub const DEMO: FixtureFile = file("/conf/demo", 2 * 4096, 0o666, 0, 9);

/// Every file of the fixture.
pub const FILES: &[FixtureFile] = &[TEXT, SECRET, MSYNC, UNMAP, EXIT, SHARED, TRUNC, FORK, DEMO];

/// Byte `i` of the fixture file seeded `seed`: varies within a page and between pages and
/// files, and is never the same as its inverse.
pub const fn byte(seed: u8, i: usize) -> u8 {
    (i.wrapping_mul(7) ^ (i >> 12).wrapping_mul(29) ^ seed as usize) as u8
}

/// The contents of `f`.
pub fn contents(f: &FixtureFile) -> Vec<u8> {
    (0..f.size).map(|i| byte(f.seed, i)).collect()
}

/// A file server holding [`FILES`]: the read-only ones loaded from a ustar image, the
/// others created writable. Files may grow to 1 MiB.
pub fn conformance_fs() -> RamFs {
    let mut fs = RamFs::new(1 << 20);
    let data: Vec<(FixtureFile, Vec<u8>)> = FILES.iter().map(|f| (*f, contents(f))).collect();
    let entries: Vec<TarEntry<'_>> = data
        .iter()
        .filter(|(f, _)| f.read_only)
        .map(|(f, d)| TarEntry {
            name: f.path.trim_start_matches('/'),
            kind: b'0',
            mode: f.mode,
            uid: f.uid,
            gid: f.gid,
            data: d,
        })
        .collect();
    // The fixture is a constant: a failure here is a bug in it, caught by its test.
    let image = write_tar(&entries).unwrap_or_default();
    let _ = fs.load_tar(&image);
    for (f, d) in data.iter().filter(|(f, _)| !f.read_only) {
        let _ = fs.create(f.path, f.mode, f.uid, f.gid, d);
    }
    fs
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc_proto::pager::{FilePath, PagerReply, PagerRequest};

    #[test]
    fn every_file_is_served_with_its_contents_and_rights() {
        let mut fs = conformance_fs();
        assert_eq!(fs.len(), FILES.len());
        for f in FILES {
            assert_eq!(fs.contents(f.path), Some(&contents(f)[..]), "{}", f.path);
            let write = fs.handle(&PagerRequest::Lookup {
                path: FilePath::new(f.path).unwrap(),
                write: true,
                uid: 0,
                gid: 0,
            });
            assert_eq!(write.is_ok(), !f.read_only, "{}", f.path);
            let Ok(PagerReply::Object {
                mode, uid, size, ..
            }) = fs.handle(&PagerRequest::Lookup {
                path: FilePath::new(f.path).unwrap(),
                write: false,
                uid: 0,
                gid: 0,
            })
            else {
                panic!("{} not found", f.path);
            };
            assert_eq!((mode, uid, size), (f.mode, f.uid, f.size as u64));
        }
    }

    #[test]
    fn bytes_differ_within_and_between_pages_and_files() {
        assert_ne!(byte(3, 0), byte(3, 1));
        assert_ne!(byte(3, 0), byte(3, 4096));
        assert_ne!(byte(3, 5), byte(4, 5));
    }
}
