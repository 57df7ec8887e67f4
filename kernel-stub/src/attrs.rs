//! Mapping attributes and the PAT layout.
//!
//! # PAT layout
//!
//! The kernel writes [`PAT_MSR_VALUE`] to `IA32_PAT` (MSR 0x277) on every CPU. It keeps
//! the power-on layout except entry 1, which becomes write-combining (as Linux does):
//!
//! | index | PAT | PCD | PWT | type |
//! |---|---|---|---|---|
//! | 0 | 0 | 0 | 0 | write-back (WB) |
//! | 1 | 0 | 0 | 1 | **write-combining (WC)** |
//! | 2 | 0 | 1 | 0 | uncached-minus (UC-) |
//! | 3 | 0 | 1 | 1 | uncached (UC) |
//! | 4–7 | 1 | … | … | as 0–3 (unused here) |
//!
//! So WB is no bits, WC is `PWT`, UC is `PCD | PWT`, and the PAT bit (whose position
//! differs between 4 KiB and 2 MiB entries) is never used.

use x86_64::structures::paging::PageTableFlags as F;

/// Value for `IA32_PAT`: WB, WC, UC-, UC, then the same again.
pub const PAT_MSR_VALUE: u64 = 0x0007_0406_0007_0106;

/// A caching mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cache {
    /// Write-back: ordinary RAM.
    WriteBack,
    /// Write-combining (`MAP_WC`): framebuffers.
    WriteCombining,
    /// Uncached: device registers.
    Uncached,
}

/// What a user mapping allows. Present and user-accessible are implied.
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

    /// The leaf entry flags (without `HUGE_PAGE`).
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

    /// The attributes a leaf entry's flags describe.
    pub fn from_flags(f: F) -> Attrs {
        let cache = match (f.contains(F::NO_CACHE), f.contains(F::WRITE_THROUGH)) {
            (false, false) => Cache::WriteBack,
            (false, true) => Cache::WriteCombining,
            _ => Cache::Uncached,
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

    #[test]
    fn flags_round_trip_and_layout() {
        for writable in [false, true] {
            for executable in [false, true] {
                for cache in [Cache::WriteBack, Cache::WriteCombining, Cache::Uncached] {
                    let a = Attrs {
                        writable,
                        executable,
                        cache,
                    };
                    assert_eq!(Attrs::from_flags(a.flags()), a);
                    assert!(a.flags().contains(F::PRESENT | F::USER_ACCESSIBLE));
                }
            }
        }
        let wc = Attrs {
            cache: Cache::WriteCombining,
            ..Attrs::READ
        }
        .flags();
        assert!(wc.contains(F::WRITE_THROUGH) && !wc.contains(F::NO_CACHE));
        // PAT entry 1 is WC (type 0x01), entry 0 WB (0x06), entry 3 UC (0x00).
        assert_eq!(PAT_MSR_VALUE & 0xff, 0x06);
        assert_eq!((PAT_MSR_VALUE >> 8) & 0xff, 0x01);
        assert_eq!((PAT_MSR_VALUE >> 24) & 0xff, 0x00);
    }
}
