//! Validation of C-style arguments (`int` flags, `-1` fds, signed offsets) into the
//! protocol's typed values, with the errnos a libc would give.

use ipc_proto::{
    Advice, Errno, Fd, MapFlags, MlockallFlags, MmapArgs, Mode, MremapFlags, MsyncFlags, OFlags,
    Prot,
};

/// The arguments of C `mmap(addr, len, prot, flags, fd, off)` as protocol values.
///
/// A negative `fd` means "none"; a negative `off` is `EINVAL`; unknown flag bits are
/// `EINVAL` (the server would refuse them at decode time too).
pub fn mmap(
    addr: u64,
    len: u64,
    prot: i32,
    flags: i32,
    fd: i32,
    off: i64,
) -> Result<MmapArgs, Errno> {
    let offset = u64::try_from(off).map_err(|_| Errno::EINVAL)?;
    Ok(MmapArgs {
        addr,
        len,
        prot: Prot::from_raw(prot as u32)?,
        flags: MapFlags::from_raw(flags as u32)?,
        fd: fd_opt(fd),
        offset,
    })
}

/// A C fd: negative is "no fd".
pub fn fd_opt(fd: i32) -> Option<Fd> {
    u32::try_from(fd).ok().map(Fd)
}

/// A C fd that must be valid: negative is `EBADF`.
pub fn fd(fd: i32) -> Result<Fd, Errno> {
    fd_opt(fd).ok_or(Errno::EBADF)
}

/// `prot` of `mprotect`.
pub fn prot(prot: i32) -> Result<Prot, Errno> {
    Prot::from_raw(prot as u32)
}

/// `flags` of `msync`.
pub fn msync_flags(flags: i32) -> Result<MsyncFlags, Errno> {
    MsyncFlags::from_raw(flags as u32)
}

/// `flags` of `mlockall`.
pub fn mlockall_flags(flags: i32) -> Result<MlockallFlags, Errno> {
    MlockallFlags::from_raw(flags as u32)
}

/// `flags` of `mremap`.
pub fn mremap_flags(flags: i32) -> Result<MremapFlags, Errno> {
    MremapFlags::from_raw(flags as u32)
}

/// `advice` of `madvise`: unknown advice is `EINVAL`, as Linux answers.
pub fn advice(advice: i32) -> Result<Advice, Errno> {
    u32::try_from(advice)
        .map_err(|_| Errno::EINVAL)
        .and_then(Advice::from_raw)
}

/// `oflag` of `shm_open`.
pub fn oflags(oflag: i32) -> Result<OFlags, Errno> {
    OFlags::from_raw(oflag as u32)
}

/// `mode` of `shm_open`: bits beyond the permission and special bits are ignored, as the
/// kernel ignores them in `open(2)`.
pub fn mode(mode: u32) -> Mode {
    // Cannot fail: masked to Mode::MASK.
    Mode::from_raw(mode & Mode::MASK).unwrap_or_default()
}

/// `length` of `ftruncate`: negative is `EINVAL`.
pub fn length(len: i64) -> Result<u64, Errno> {
    u64::try_from(len).map_err(|_| Errno::EINVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmap_args_are_validated_like_the_server() {
        let a = mmap(0, 4096, 3, 0x22, -1, 0).unwrap();
        assert_eq!(a.prot, Prot::READ | Prot::WRITE);
        assert_eq!(a.flags, MapFlags::PRIVATE | MapFlags::ANONYMOUS);
        assert_eq!(a.fd, None);
        assert_eq!(mmap(0, 4096, 8, 0x22, -1, 0), Err(Errno::EINVAL));
        assert_eq!(mmap(0, 4096, 3, 0x40000, -1, 0), Err(Errno::EINVAL));
        assert_eq!(mmap(0, 4096, 3, 0x22, -1, -4096), Err(Errno::EINVAL));
        assert_eq!(mmap(0, 4096, 3, 0x01, 5, 8192).unwrap().fd, Some(Fd(5)));
    }

    #[test]
    fn fds_lengths_and_modes() {
        assert_eq!(fd(-1), Err(Errno::EBADF));
        assert_eq!(fd(0), Ok(Fd(0)));
        assert_eq!(length(-1), Err(Errno::EINVAL));
        assert_eq!(length(10), Ok(10));
        assert_eq!(mode(0o100644).bits(), 0o644);
    }
}
