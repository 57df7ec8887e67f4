//! Validated flag sets with the Linux x86_64 bit values, so a C caller's `int` passes through.
//!
//! Every set decodes only if all its bits are known: an unknown bit is refused at decode
//! time and the server answers `EINVAL` (see [`crate::codec`]). Constructing a set from an
//! `int` goes through [`Prot::from_raw`] & co., which give the same `EINVAL`.

use crate::Errno;
use bitflags::bitflags;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

bitflags! {
    /// Page protection (`PROT_*`). The empty set is `PROT_NONE`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Prot: u32 {
        /// Pages may be read.
        const READ = 0x1;
        /// Pages may be written.
        const WRITE = 0x2;
        /// Pages may be executed.
        const EXEC = 0x4;
    }
}

impl Prot {
    /// `PROT_NONE`: no access at all.
    pub const NONE: Prot = Prot::empty();
}

bitflags! {
    /// Mapping flags (`MAP_*`).
    ///
    /// Linux values; the three extensions from the seeds use bits Linux leaves free on
    /// x86_64 and that BSD uses for the same meaning where it has one
    /// (`MAP_INHERIT` 0x80, `MAP_HASSEMAPHORE` 0x200), plus `MAP_WC` at 0x400.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct MapFlags: u32 {
        /// Changes are shared with every other mapping of the object.
        const SHARED = 0x01;
        /// Changes are private (copy-on-write).
        const PRIVATE = 0x02;
        /// `addr` is a requirement, and whatever is mapped there is replaced.
        const FIXED = 0x10;
        /// Not backed by a file or object: zero-filled memory.
        const ANONYMOUS = 0x20;
        /// Place the mapping in the low 2 GiB.
        const BIT32 = 0x40;
        /// BSD: the region survives into a child created by address-space clone
        /// (seed 003). Extension of this protocol.
        const INHERIT = 0x80;
        /// Stack-like region that grows down (seed 004).
        const GROWSDOWN = 0x0100;
        /// BSD: the region may contain semaphores (seed 003); accepted, no effect,
        /// because all memory here is coherent. Extension of this protocol.
        const HASSEMAPHORE = 0x0200;
        /// Map with write-combining caching where possible (seed 002; device windows).
        /// Extension of this protocol.
        const WC = 0x0400;
        /// Refuse (`ETXTBSY`) if the object is open for writing, and refuse opening it
        /// for writing while so mapped (seed 004; Linux has since dropped this).
        const DENYWRITE = 0x0800;
        /// Ignored, as on Linux.
        const EXECUTABLE = 0x1000;
        /// Populate and lock the pages (`mmap` + `mlock`).
        const LOCKED = 0x2000;
        /// Do not account the mapping against the commit limit.
        const NORESERVE = 0x4000;
        /// Allocate and install every page now rather than on first touch.
        const POPULATE = 0x8000;
        /// With `POPULATE`: do not block; accepted, since population never blocks here.
        const NONBLOCK = 0x10000;
        /// A thread stack; accepted, no effect.
        const STACK = 0x20000;
        /// Like `FIXED`, but fail with `EEXIST` instead of replacing anything.
        const FIXED_NOREPLACE = 0x100000;
    }
}

impl MapFlags {
    /// `MAP_ANON`, the BSD spelling of `MAP_ANONYMOUS`.
    pub const ANON: MapFlags = MapFlags::ANONYMOUS;
    /// `MAP_FILE` is zero on Linux: a compatibility spelling with no bit.
    pub const FILE: MapFlags = MapFlags::empty();
}

bitflags! {
    /// `msync` flags (`MS_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct MsyncFlags: u32 {
        /// Schedule the write-back and return.
        const ASYNC = 0x1;
        /// Invalidate other cached copies.
        const INVALIDATE = 0x2;
        /// Write back and wait for completion.
        const SYNC = 0x4;
    }
}

bitflags! {
    /// `mlockall` flags (`MCL_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct MlockallFlags: u32 {
        /// Lock every page currently mapped.
        const CURRENT = 0x1;
        /// Lock every page mapped from now on.
        const FUTURE = 0x2;
        /// Lock pages as they are faulted in rather than populating now.
        const ONFAULT = 0x4;
    }
}

bitflags! {
    /// `mremap` flags (`MREMAP_*`, since protocol 1.3).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct MremapFlags: u32 {
        /// The mapping may move if it cannot be resized where it is.
        const MAYMOVE = 0x1;
        /// With `MAYMOVE`: move to `new_addr`, replacing whatever is there.
        const FIXED = 0x2;
        /// With `MAYMOVE` and equal lengths: move the pages, leave the old range mapped
        /// (and empty).
        const DONTUNMAP = 0x4;
    }
}

/// `madvise` advice (`MADV_*`, Linux x86_64 values; since protocol 1.3). A value not
/// listed here does not decode (`EINVAL`, as Linux answers unknown advice).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Advice {
    /// No special treatment (0).
    Normal,
    /// Expect random access (1): accepted, a hint only.
    Random,
    /// Expect sequential access (2): accepted, a hint only.
    Sequential,
    /// Expect access soon (3): page the range in.
    WillNeed,
    /// Do not expect access soon (4): drop the pages; private anonymous memory reads as
    /// zero afterwards, shared and file mappings re-read their object.
    DontNeed,
    /// The pages may be freed (8): private anonymous memory only.
    Free,
    /// Do not give the range to a child at address-space clone (10).
    DontFork,
    /// Undo `DontFork` (11).
    DoFork,
}

impl Advice {
    /// Every advice the protocol knows.
    pub const ALL: [Advice; 8] = [
        Advice::Normal,
        Advice::Random,
        Advice::Sequential,
        Advice::WillNeed,
        Advice::DontNeed,
        Advice::Free,
        Advice::DontFork,
        Advice::DoFork,
    ];

    /// The Linux `MADV_*` number.
    pub const fn raw(self) -> u32 {
        match self {
            Advice::Normal => 0,
            Advice::Random => 1,
            Advice::Sequential => 2,
            Advice::WillNeed => 3,
            Advice::DontNeed => 4,
            Advice::Free => 8,
            Advice::DontFork => 10,
            Advice::DoFork => 11,
        }
    }

    /// Validates a raw C value: unknown advice is `EINVAL`.
    pub const fn from_raw(raw: u32) -> Result<Advice, Errno> {
        Ok(match raw {
            0 => Advice::Normal,
            1 => Advice::Random,
            2 => Advice::Sequential,
            3 => Advice::WillNeed,
            4 => Advice::DontNeed,
            8 => Advice::Free,
            10 => Advice::DontFork,
            11 => Advice::DoFork,
            _ => return Err(Errno::EINVAL),
        })
    }
}

impl Serialize for Advice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.raw())
    }
}

impl<'de> Deserialize<'de> for Advice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = u32::deserialize(d)?;
        Advice::from_raw(raw).map_err(|_| serde::de::Error::custom("unknown advice"))
    }
}

impl postcard::experimental::max_size::MaxSize for Advice {
    // Every advice number fits in one varint byte; a u32's bound keeps it honest if
    // larger ones are added.
    const POSTCARD_MAX_SIZE: usize = varint_len(u32::MAX as u64);
}

bitflags! {
    /// Open flags (`O_*`) accepted by `shm_open` and the bank/device opens.
    ///
    /// `O_RDONLY` is zero: a set without `WRONLY`/`RDWR` opens read-only.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct OFlags: u32 {
        /// Write-only access (refused by `shm_open`, as POSIX leaves it unspecified).
        const WRONLY = 0o1;
        /// Read-write access.
        const RDWR = 0o2;
        /// Create the object if it does not exist.
        const CREAT = 0o100;
        /// With `CREAT`: fail with `EEXIST` if it exists.
        const EXCL = 0o200;
        /// Truncate an existing object to size zero.
        const TRUNC = 0o1000;
        /// Close on exec; accepted, no effect (fds here are never inherited by exec).
        const CLOEXEC = 0o2000000;
    }
}

impl OFlags {
    /// `O_RDONLY`: zero, as in POSIX.
    pub const RDONLY: OFlags = OFlags::empty();
    /// `O_ACCMODE`: the access-mode bits.
    pub const ACCMODE: OFlags = OFlags::WRONLY.union(OFlags::RDWR);
}

/// Permission bits of a newly created object (`mode_t`, at most `0o7777`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Mode(u32);

impl Mode {
    /// Every bit a mode may carry.
    pub const MASK: u32 = 0o7777;

    /// Validates a raw mode; bits beyond [`Mode::MASK`] are `EINVAL`.
    pub const fn from_raw(raw: u32) -> Result<Mode, Errno> {
        if raw & !Self::MASK != 0 {
            return Err(Errno::EINVAL);
        }
        Ok(Mode(raw))
    }

    /// The raw permission bits.
    pub const fn bits(self) -> u32 {
        self.0
    }
}

/// Serde, `MaxSize` and `from_raw` for a bitflags set: the wire form is the raw `u32`
/// varint, and decoding refuses unknown bits.
macro_rules! validated_bits {
    ($($ty:ty),*) => {$(
        impl $ty {
            /// Validates a raw C value: any unknown bit is `EINVAL`.
            pub const fn from_raw(raw: u32) -> Result<Self, Errno> {
                match Self::from_bits(raw) {
                    Some(f) => Ok(f),
                    None => Err(Errno::EINVAL),
                }
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_u32(self.bits())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = u32::deserialize(d)?;
                <$ty>::from_bits(raw).ok_or_else(|| serde::de::Error::custom("unknown flag bits"))
            }
        }

        impl postcard::experimental::max_size::MaxSize for $ty {
            const POSTCARD_MAX_SIZE: usize = varint_len(<$ty>::all().bits() as u64);
        }
    )*};
}

validated_bits!(
    Prot,
    MapFlags,
    MsyncFlags,
    MlockallFlags,
    MremapFlags,
    OFlags
);

impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = u32::deserialize(d)?;
        Mode::from_raw(raw).map_err(|_| serde::de::Error::custom("mode bits beyond 0o7777"))
    }
}

impl postcard::experimental::max_size::MaxSize for Mode {
    const POSTCARD_MAX_SIZE: usize = varint_len(Mode::MASK as u64);
}

/// Bytes a postcard varint of `v` takes: seven payload bits per byte.
pub(crate) const fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_values() {
        assert_eq!(MapFlags::SHARED.bits(), 0x01);
        assert_eq!(MapFlags::PRIVATE.bits(), 0x02);
        assert_eq!(MapFlags::FIXED.bits(), 0x10);
        assert_eq!(MapFlags::ANONYMOUS.bits(), 0x20);
        assert_eq!(MapFlags::BIT32.bits(), 0x40);
        assert_eq!(MapFlags::GROWSDOWN.bits(), 0x100);
        assert_eq!(MapFlags::LOCKED.bits(), 0x2000);
        assert_eq!(MapFlags::NORESERVE.bits(), 0x4000);
        assert_eq!(MapFlags::POPULATE.bits(), 0x8000);
        assert_eq!(MapFlags::NONBLOCK.bits(), 0x10000);
        assert_eq!(MapFlags::FIXED_NOREPLACE.bits(), 0x100000);
        assert_eq!(OFlags::CREAT.bits(), 0x40);
        assert_eq!(OFlags::EXCL.bits(), 0x80);
        assert_eq!(OFlags::TRUNC.bits(), 0x200);
        assert_eq!(OFlags::CLOEXEC.bits(), 0x80000);
        assert_eq!(MsyncFlags::SYNC.bits(), 4);
        assert_eq!(MlockallFlags::FUTURE.bits(), 2);
        assert_eq!(MremapFlags::MAYMOVE.bits(), 1);
        assert_eq!(MremapFlags::FIXED.bits(), 2);
        assert_eq!(MremapFlags::DONTUNMAP.bits(), 4);
    }

    #[test]
    fn advice_numbers_round_trip_and_unknown_is_einval() {
        for a in Advice::ALL {
            assert_eq!(Advice::from_raw(a.raw()), Ok(a));
        }
        assert_eq!(Advice::DontNeed.raw(), 4);
        assert_eq!(Advice::Free.raw(), 8);
        // MADV_REMOVE (9), MADV_HUGEPAGE (14), MADV_COLD (20): not ours.
        for raw in [5, 6, 7, 9, 12, 14, 20, 100, u32::MAX] {
            assert_eq!(Advice::from_raw(raw), Err(Errno::EINVAL));
        }
        assert_eq!(MremapFlags::from_raw(8), Err(Errno::EINVAL));
    }

    #[test]
    fn unknown_bits_are_einval() {
        assert_eq!(Prot::from_raw(8), Err(Errno::EINVAL));
        assert_eq!(MapFlags::from_raw(0x40000), Err(Errno::EINVAL)); // MAP_HUGETLB
        assert_eq!(MsyncFlags::from_raw(8), Err(Errno::EINVAL));
        assert_eq!(MlockallFlags::from_raw(8), Err(Errno::EINVAL));
        assert_eq!(OFlags::from_raw(0o4000), Err(Errno::EINVAL)); // O_NONBLOCK
        assert_eq!(Mode::from_raw(0o10000), Err(Errno::EINVAL));
        assert_eq!(Prot::from_raw(7), Ok(Prot::all()));
        assert_eq!(Mode::from_raw(0o644).map(Mode::bits), Ok(0o644));
    }

    #[test]
    fn varint_lengths() {
        assert_eq!(varint_len(0), 1);
        assert_eq!(varint_len(127), 1);
        assert_eq!(varint_len(128), 2);
        assert_eq!(varint_len(u32::MAX as u64), 5);
        assert_eq!(varint_len(u64::MAX), 10);
    }
}
