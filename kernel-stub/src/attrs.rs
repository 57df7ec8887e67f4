//! Mapping attributes, the cache-mode policy, and the PAT layout.
//!
//! # PAT layout
//!
//! The kernel writes [`PAT_MSR_VALUE`] to `IA32_PAT` (MSR 0x277) on every CPU before it
//! loads any space of this stub. It keeps the power-on layout except entry 1, which
//! becomes write-combining (as Linux does):
//!
//! | index | PAT | PCD | PWT | memory type |
//! |---|---|---|---|---|
//! | 0 | 0 | 0 | 0 | write-back (WB) — power-on default |
//! | 1 | 0 | 0 | 1 | **write-combining (WC)** — power-on: write-through |
//! | 2 | 0 | 1 | 0 | uncached-minus (UC-) — power-on default |
//! | 3 | 0 | 1 | 1 | uncached (UC) — power-on default |
//! | 4–7 | 1 | … | … | power-on defaults (WB, WT, UC-, UC); never selected |
//!
//! So [`Cache::WriteBack`] is no bits, [`Cache::WriteCombining`] is `PWT`, and
//! [`Cache::Uncached`] is `PCD | PWT`. The PAT bit itself (bit 7 in 4 KiB entries, bit 12
//! in 2 MiB entries) is never set, so the same flags mean the same type at both sizes.
//!
//! # Cache policy
//!
//! Device frames may use any mode (a device window may be prefetchable memory that is fine
//! write-back). RAM may be write-back or write-combining, never uncached: the server's RAM
//! is also reachable through the kernel's write-back direct map, and mixing UC with WB
//! aliases of the same memory is what the SDM warns against; WC is allowed for `MAP_WC`
//! buffers shared with devices.

use crate::cap::FrameKind;
use x86_64::structures::paging::PageTableFlags as F;

/// Value for `IA32_PAT`: entries 0–7 are WB (06), WC (01), UC- (07), UC (00), WB (06),
/// WT (04), UC- (07), UC (00), entry 0 in the low byte.
pub const PAT_MSR_VALUE: u64 = 0x0007_0406_0007_0106;

/// A caching mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cache {
    /// Write-back: ordinary RAM.
    WriteBack,
    /// Write-combining (`MAP_WC`): framebuffers and other streaming writes.
    WriteCombining,
    /// Uncached: device registers.
    Uncached,
}

impl Cache {
    /// Whether this mode may map a frame of `kind` (see the module's cache policy).
    pub fn allowed_for(self, kind: FrameKind) -> bool {
        kind == FrameKind::Device || self != Cache::Uncached
    }
}

/// What a user mapping allows. Present and user-accessible are implied; every
/// combination is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Attrs {
    /// Writes allowed.
    pub writable: bool,
    /// Instruction fetches allowed (otherwise NX is set).
    pub executable: bool,
    /// Caching mode.
    pub cache: Cache,
}

impl Attrs {
    /// Read-only, non-executable, write-back.
    pub const READ: Attrs = Attrs {
        writable: false,
        executable: false,
        cache: Cache::WriteBack,
    };

    /// Readable and writable, non-executable, write-back.
    pub const READ_WRITE: Attrs = Attrs {
        writable: true,
        ..Attrs::READ
    };

    /// The flags of a leaf entry with these attributes (without `HUGE_PAGE`).
    pub fn flags(self) -> F {
        let mut f = F::PRESENT | F::USER_ACCESSIBLE;
        if self.writable {
            f |= F::WRITABLE;
        }
        if !self.executable {
            f |= F::NO_EXECUTE;
        }
        f | match self.cache {
            Cache::WriteBack => F::empty(),
            Cache::WriteCombining => F::WRITE_THROUGH,
            Cache::Uncached => F::NO_CACHE | F::WRITE_THROUGH,
        }
    }

    /// The attributes a leaf entry's flags describe (the inverse of [`Attrs::flags`]).
    pub fn from_flags(f: F) -> Attrs {
        let cache = match (f.contains(F::NO_CACHE), f.contains(F::WRITE_THROUGH)) {
            (false, false) => Cache::WriteBack,
            (false, true) => Cache::WriteCombining,
            // UC- (PCD alone) is never written by the stub; it is uncached too.
            (true, _) => Cache::Uncached,
        };
        Attrs {
            writable: f.contains(F::WRITABLE),
            executable: !f.contains(F::NO_EXECUTE),
            cache,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CACHES: [Cache; 3] = [Cache::WriteBack, Cache::WriteCombining, Cache::Uncached];

    /// The PAT entry `flags` select in a 4 KiB entry.
    fn pat_index(flags: F) -> u64 {
        let bit = |b: F, v: u64| if flags.contains(b) { v } else { 0 };
        bit(F::WRITE_THROUGH, 1) | bit(F::NO_CACHE, 2) | bit(F::HUGE_PAGE, 4)
    }

    /// The memory type `IA32_PAT` gives entry `i`.
    fn pat_type(i: u64) -> u64 {
        (PAT_MSR_VALUE >> (8 * i)) & 0xff
    }

    #[test]
    fn flags_round_trip_and_are_always_present_user() {
        for writable in [false, true] {
            for executable in [false, true] {
                for cache in CACHES {
                    let a = Attrs {
                        writable,
                        executable,
                        cache,
                    };
                    assert_eq!(Attrs::from_flags(a.flags()), a);
                    assert!(a.flags().contains(F::PRESENT | F::USER_ACCESSIBLE));
                    assert_eq!(a.flags().contains(F::NO_EXECUTE), !executable);
                    assert!(!a.flags().contains(F::HUGE_PAGE));
                }
            }
        }
    }

    #[test]
    fn cache_modes_select_the_documented_pat_entries() {
        let with = |cache| {
            Attrs {
                cache,
                ..Attrs::READ
            }
            .flags()
        };
        // Memory types: 06 WB, 01 WC, 00 UC.
        assert_eq!(pat_type(pat_index(with(Cache::WriteBack))), 0x06);
        assert_eq!(pat_type(pat_index(with(Cache::WriteCombining))), 0x01);
        assert_eq!(pat_type(pat_index(with(Cache::Uncached))), 0x00);
        // Entries the stub never selects keep their power-on types.
        assert_eq!(
            [
                pat_type(2),
                pat_type(4),
                pat_type(5),
                pat_type(6),
                pat_type(7)
            ],
            [7, 6, 4, 7, 0]
        );
    }

    #[test]
    fn ram_is_never_uncached_devices_take_any_mode() {
        assert!(Cache::WriteBack.allowed_for(FrameKind::Ram));
        assert!(Cache::WriteCombining.allowed_for(FrameKind::Ram));
        assert!(!Cache::Uncached.allowed_for(FrameKind::Ram));
        for c in CACHES {
            assert!(c.allowed_for(FrameKind::Device));
        }
    }
}
