//! A range of a task's memory, checked once where it enters the kernel (Hubris's
//! `umem::USlice`): inside the lower (user) half, without overflow, and no longer than
//! the call allows. Every copy to or from a task takes one, never a raw address and
//! length.

use ipc_proto::Errno;

/// The first address past the user half of a 48-bit address space.
pub const USER_END: u64 = 0x0000_8000_0000_0000;
/// The page size the copies walk by.
const PAGE: u64 = 4096;

/// `[addr, addr + len)` in a task's address space, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct USlice {
    addr: u64,
    len: u64,
}

impl USlice {
    /// Checks a range a task named: `EFAULT` if it wraps or reaches the kernel half,
    /// `EMSGSIZE` if it is longer than `max` bytes.
    pub fn new(addr: u64, len: u64, max: u64) -> Result<Self, Errno> {
        if len > max {
            return Err(Errno::EMSGSIZE);
        }
        let end = addr.checked_add(len).ok_or(Errno::EFAULT)?;
        if end > USER_END {
            return Err(Errno::EFAULT);
        }
        Ok(USlice { addr, len })
    }

    /// Its first `n` bytes (all of it if it is shorter).
    pub fn prefix(self, n: u64) -> USlice {
        USlice {
            addr: self.addr,
            len: self.len.min(n),
        }
    }

    /// Its length in bytes.
    pub fn len(self) -> u64 {
        self.len
    }

    /// Whether it has no bytes.
    pub fn is_empty(self) -> bool {
        self.len == 0
    }

    /// Its pieces, one per page it touches: `(page, offset in the page, length)`.
    pub fn pieces(self) -> impl Iterator<Item = (u64, u64, usize)> {
        let end = self.addr + self.len;
        let mut at = self.addr;
        core::iter::from_fn(move || {
            if at >= end {
                return None;
            }
            let page = at & !(PAGE - 1);
            let n = end.min(page + PAGE) - at;
            let piece = (page, at - page, n as usize);
            at += n;
            Some(piece)
        })
    }

    /// The pages it touches.
    pub fn pages(self) -> impl Iterator<Item = u64> {
        self.pieces().map(|(page, _, _)| page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_into_the_kernel_half_or_wrapping_are_efault() {
        assert_eq!(USlice::new(USER_END - 8, 16, 64), Err(Errno::EFAULT));
        assert_eq!(USlice::new(u64::MAX - 4, 8, 64), Err(Errno::EFAULT));
        assert_eq!(
            USlice::new(0xffff_ffff_8000_0000, 1, 64),
            Err(Errno::EFAULT)
        );
        assert!(USlice::new(USER_END - 8, 8, 64).is_ok());
    }

    #[test]
    fn ranges_longer_than_the_call_allows_are_emsgsize() {
        assert_eq!(USlice::new(0x1000, 4097, 4096), Err(Errno::EMSGSIZE));
        assert_eq!(USlice::new(0x1000, 4096, 4096).map(USlice::len), Ok(4096));
    }

    #[test]
    fn pieces_cover_the_range_page_by_page() {
        let s = USlice::new(0x1ff0, 0x2020, 1 << 20).expect("valid");
        let pieces: Vec<_> = s.pieces().collect();
        assert_eq!(
            pieces,
            [
                (0x1000, 0xff0, 0x10),
                (0x2000, 0, 0x1000),
                (0x3000, 0, 0x1000),
                (0x4000, 0, 0x10)
            ]
        );
        assert_eq!(pieces.iter().map(|p| p.2 as u64).sum::<u64>(), s.len());
        assert_eq!(
            s.pages().collect::<Vec<_>>(),
            [0x1000, 0x2000, 0x3000, 0x4000]
        );
        let empty = USlice::new(0x5000, 0, 8).expect("valid");
        assert!(empty.is_empty() && !s.is_empty());
        assert_eq!(empty.pieces().count(), 0);
        assert_eq!(s.prefix(0x20).len(), 0x20);
        assert_eq!(s.prefix(1 << 30), s);
    }
}
