//! Reading (and, for boot images and tests, writing) a ustar archive: 512-byte headers (name, octal mode, uid, gid and size, a
//! checksum, a type, a `ustar` magic and a name prefix), each followed by its data padded
//! to 512 bytes, ended by zero blocks. Every field is checked; nothing is trusted.

use crate::TarFile;
use alloc::string::String;
use alloc::vec::Vec;
use ipc_proto::Errno;
use ipc_proto::pager::FilePath;

const BLOCK: usize = 512;

/// The regular files of `image`, in archive order; `EINVAL` if anything is malformed.
pub(crate) fn files(image: &[u8]) -> Result<Vec<TarFile<'_>>, Errno> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let header = image.get(at..at + BLOCK).ok_or(Errno::EINVAL)?;
        if header.iter().all(|&b| b == 0) {
            return Ok(out);
        }
        if octal(&header[148..156])? != checksum(header) {
            return Err(Errno::EINVAL);
        }
        let size = usize::try_from(octal(&header[124..136])?).map_err(|_| Errno::EINVAL)?;
        let data_at = at + BLOCK;
        let data = image
            .get(data_at..data_at.checked_add(size).ok_or(Errno::EINVAL)?)
            .ok_or(Errno::EINVAL)?;
        match header[156] {
            b'0' | 0 => out.push(TarFile {
                path: path(header)?,
                mode: octal(&header[100..108])? as u32,
                uid: octal(&header[108..116])? as u32,
                gid: octal(&header[116..124])? as u32,
                data,
            }),
            // Directories, links, devices: not files to map.
            _ => {}
        }
        at = data_at + size.div_ceil(BLOCK) * BLOCK;
    }
}

/// One entry for [`write()`]: a regular file (`kind` `b'0'`) or a directory (`b'5'`).
pub struct Entry<'a> {
    /// The path in the archive (at most 99 bytes: no prefix field is written).
    pub name: &'a str,
    /// `b'0'` for a regular file, `b'5'` for a directory.
    pub kind: u8,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Contents.
    pub data: &'a [u8],
}

/// A ustar archive of `entries`, in order, ended by two zero blocks. A name too long for
/// the header is `ENAMETOOLONG`.
pub fn write(entries: &[Entry<'_>]) -> Result<Vec<u8>, Errno> {
    let mut out = Vec::new();
    for e in entries {
        if e.name.len() >= 100 {
            return Err(Errno::ENAMETOOLONG);
        }
        let mut h = [0u8; BLOCK];
        h[..e.name.len()].copy_from_slice(e.name.as_bytes());
        put_octal(&mut h[100..108], u64::from(e.mode));
        put_octal(&mut h[108..116], u64::from(e.uid));
        put_octal(&mut h[116..124], u64::from(e.gid));
        put_octal(&mut h[124..136], e.data.len() as u64);
        put_octal(&mut h[136..148], 0);
        h[156] = e.kind;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum = checksum(&h);
        put_octal(&mut h[148..155], sum);
        h[155] = b' ';
        out.extend_from_slice(&h);
        out.extend_from_slice(e.data);
        out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
    }
    out.resize(out.len() + 2 * BLOCK, 0);
    Ok(out)
}

/// `v` in octal, zero-padded to fill `field` but its last byte, which is NUL.
fn put_octal(field: &mut [u8], mut v: u64) {
    let (digits, nul) = field.split_at_mut(field.len() - 1);
    nul[0] = 0;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (v & 7) as u8;
        v >>= 3;
    }
}

/// The header's checksum: the sum of its bytes with the checksum field as spaces.
fn checksum(header: &[u8]) -> u64 {
    header
        .iter()
        .enumerate()
        .map(|(i, &b)| u64::from(if (148..156).contains(&i) { b' ' } else { b }))
        .sum()
}

/// An octal field: digits, optionally space- or NUL-padded on either side.
fn octal(field: &[u8]) -> Result<u64, Errno> {
    let digits = field
        .split(|&b| b == 0 || b == b' ')
        .find(|s| !s.is_empty())
        .unwrap_or(&[]);
    digits.iter().try_fold(0u64, |v, &d| {
        if !(b'0'..=b'7').contains(&d) {
            return Err(Errno::EINVAL);
        }
        v.checked_mul(8)
            .and_then(|v| v.checked_add(u64::from(d - b'0')))
            .ok_or(Errno::EINVAL)
    })
}

/// A NUL-terminated text field.
fn text(field: &[u8]) -> Result<&str, Errno> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    core::str::from_utf8(&field[..end]).map_err(|_| Errno::EINVAL)
}

/// The member's path in the file system: `/`, the ustar prefix, the name (without a
/// leading `./`).
fn path(header: &[u8]) -> Result<FilePath, Errno> {
    let name = text(&header[0..100])?;
    let prefix = if &header[257..262] == b"ustar" {
        text(&header[345..500])?
    } else {
        ""
    };
    let mut p = String::from("/");
    for part in [prefix, name] {
        let part = part.trim_start_matches("./").trim_matches('/');
        if !part.is_empty() {
            if p.len() > 1 {
                p.push('/');
            }
            p.push_str(part);
        }
    }
    FilePath::new(&p).map_err(|_| Errno::EINVAL)
}
