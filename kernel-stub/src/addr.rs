//! User addresses: validating raw syscall values, the window mappings must stay in, and
//! the checked page spans every range operation starts from.

use crate::error::Error;
use crate::{KERNEL_HALF, PAGE_SIZE};
use x86_64::VirtAddr;
use x86_64::structures::paging::{Page, Size2MiB};

/// The 4 KiB page starting at a raw address: refuses a non-canonical or unaligned one.
/// (Whether the stub accepts the page is its window's business.)
pub fn page_at(addr: u64) -> Result<Page, Error> {
    let va = VirtAddr::try_new(addr).map_err(|_| Error::NonCanonical)?;
    Page::from_start_address(va).map_err(|_| Error::Unaligned)
}

/// The 2 MiB page starting at a raw address: refuses a non-canonical or unaligned one.
pub fn huge_page_at(addr: u64) -> Result<Page<Size2MiB>, Error> {
    let va = VirtAddr::try_new(addr).map_err(|_| Error::NonCanonical)?;
    Page::from_start_address(va).map_err(|_| Error::Unaligned)
}

/// The user address of a validated span position. Below [`KERNEL_HALF`] truncation
/// changes nothing, so this never fails.
pub(crate) fn user_va(addr: u64) -> VirtAddr {
    VirtAddr::new_truncate(addr)
}

/// The 4 KiB page at a validated user address.
pub(crate) fn user_page(addr: u64) -> Page {
    Page::containing_address(user_va(addr))
}

/// The part of the lower half user mappings may use: `[start, end)`, page-aligned, below
/// [`KERNEL_HALF`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserWindow {
    start: u64,
    end: u64,
}

impl UserWindow {
    /// The whole lower half except page 0 (so a null pointer never maps).
    pub const DEFAULT: UserWindow = UserWindow {
        start: PAGE_SIZE,
        end: KERNEL_HALF,
    };

    /// The window `[start, end)`: both page-aligned ([`Error::Unaligned`]), `start < end`
    /// ([`Error::BadRange`]), `end <= KERNEL_HALF` ([`Error::KernelHalf`]).
    pub fn new(start: u64, end: u64) -> Result<UserWindow, Error> {
        if !start.is_multiple_of(PAGE_SIZE) || !end.is_multiple_of(PAGE_SIZE) {
            return Err(Error::Unaligned);
        }
        if start >= end {
            return Err(Error::BadRange);
        }
        if end > KERNEL_HALF {
            return Err(Error::KernelHalf);
        }
        Ok(UserWindow { start, end })
    }

    /// Lowest address a mapping may use.
    pub fn start(self) -> u64 {
        self.start
    }

    /// One past the highest.
    pub fn end(self) -> u64 {
        self.end
    }

    /// The span of `pages` 4 KiB pages from `start`, checked in this order: the start lies
    /// in the user half ([`Error::KernelHalf`]) and in the window
    /// ([`Error::OutsideWindow`]), the length does not overflow ([`Error::BadRange`]), the
    /// end stays in the user half and in the window.
    pub(crate) fn span(self, start: VirtAddr, pages: u64) -> Result<Span, Error> {
        let start = start.as_u64();
        if start >= KERNEL_HALF {
            return Err(Error::KernelHalf);
        }
        if start < self.start || start >= self.end {
            return Err(Error::OutsideWindow);
        }
        let end = pages
            .checked_mul(PAGE_SIZE)
            .and_then(|len| start.checked_add(len))
            .ok_or(Error::BadRange)?;
        if end > KERNEL_HALF {
            return Err(Error::KernelHalf);
        }
        if end > self.end {
            return Err(Error::OutsideWindow);
        }
        Ok(Span { start, end })
    }
}

impl Default for UserWindow {
    fn default() -> Self {
        UserWindow::DEFAULT
    }
}

/// A checked range of user addresses `[start, end)`: page-aligned, inside the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: u64,
    pub(crate) end: u64,
}

impl Span {
    /// Whether the span holds no page.
    pub(crate) fn is_empty(self) -> bool {
        self.start == self.end
    }

    /// The part of `[lo, hi)` inside the span.
    pub(crate) fn clamp(self, lo: u64, hi: u64) -> (u64, u64) {
        (lo.max(self.start), hi.min(self.end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_addresses_must_be_canonical_and_aligned() {
        assert_eq!(
            page_at(0x1000).map(|p| p.start_address().as_u64()),
            Ok(0x1000)
        );
        assert_eq!(page_at(0x0000_8000_0000_0000), Err(Error::NonCanonical));
        assert_eq!(page_at(0xffff_7fff_ffff_f000), Err(Error::NonCanonical));
        assert_eq!(page_at(0x1008), Err(Error::Unaligned));
        assert!(
            page_at(0xffff_8000_0000_0000).is_ok(),
            "canonical; the window refuses it"
        );
        assert_eq!(huge_page_at(0x40_1000), Err(Error::Unaligned));
        assert!(huge_page_at(0x40_0000).is_ok());
    }

    #[test]
    fn windows_are_validated() {
        assert_eq!(
            UserWindow::new(0x1000, 0x2000).map(|w| (w.start(), w.end())),
            Ok((0x1000, 0x2000))
        );
        assert_eq!(UserWindow::new(0x1001, 0x2000), Err(Error::Unaligned));
        assert_eq!(UserWindow::new(0x2000, 0x2000), Err(Error::BadRange));
        assert_eq!(
            UserWindow::new(0, KERNEL_HALF + 0x1000),
            Err(Error::KernelHalf)
        );
        assert_eq!(UserWindow::default(), UserWindow::DEFAULT);
    }

    #[test]
    fn spans_are_checked_in_order() {
        let w = UserWindow::new(0x10_0000, 0x20_0000).unwrap();
        let va = VirtAddr::new;
        assert_eq!(
            w.span(va(0x10_0000), 0x100),
            Ok(Span {
                start: 0x10_0000,
                end: 0x20_0000
            })
        );
        assert_eq!(w.span(va(0x1f_f000), 0).map(Span::is_empty), Ok(true));
        assert_eq!(w.span(va(0xffff_8000_0000_0000), 1), Err(Error::KernelHalf));
        assert_eq!(w.span(va(0xf_f000), 1), Err(Error::OutsideWindow));
        assert_eq!(w.span(va(0x20_0000), 0), Err(Error::OutsideWindow));
        assert_eq!(w.span(va(0x10_0000), u64::MAX), Err(Error::BadRange));
        assert_eq!(w.span(va(0x10_0000), 0x101), Err(Error::OutsideWindow));
        let full = UserWindow::DEFAULT;
        assert_eq!(full.span(va(0x7fff_ffff_f000), 2), Err(Error::KernelHalf));
        assert_eq!(
            full.span(va(0x7fff_ffff_f000), 1).map(|s| s.end),
            Ok(KERNEL_HALF)
        );
        assert_eq!(full.span(va(0x1000), (1 << 52) - 1), Err(Error::BadRange));
    }

    #[test]
    fn clamping_keeps_the_overlap() {
        let s = Span {
            start: 0x3000,
            end: 0x8000,
        };
        assert_eq!(s.clamp(0, 0x10_0000), (0x3000, 0x8000));
        assert_eq!(s.clamp(0x4000, 0x5000), (0x4000, 0x5000));
        assert_eq!(user_page(0x5000).start_address().as_u64(), 0x5000);
    }
}
