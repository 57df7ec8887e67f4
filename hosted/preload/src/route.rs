//! Whose memory a call is about: the server owns its window (`Setup.window_lo..hi`),
//! the host kernel everything else. The window is learnt by connecting (the first call
//! that needs it connects); a process that cannot reach the server has nothing in it,
//! so then every call that names an address is the host's.

use crate::log;
use memserver_hosted::c_abi;

/// `[start, end)`.
pub type Span = (u64, u64);

/// Where a call on a range goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// All of it lies in the server's window.
    Server,
    /// None of it does.
    Host,
    /// It straddles the window's edge: the server's part, and the host's parts below
    /// and above it.
    Split {
        /// The part in the window.
        server: Span,
        /// The parts outside.
        host: [Option<Span>; 2],
    },
}

/// The server's window, or `None` (said once on stderr) when it cannot be reached.
pub fn window() -> Result<Span, i32> {
    c_abi::window().inspect_err(|&e| log::unreachable(e))
}

/// Where a call on `[addr, addr + len)` goes, the window being `w`.
pub fn classify(addr: u64, len: u64, (lo, hi): Span) -> Route {
    let Some(end) = addr.checked_add(len) else {
        return Route::Host;
    };
    let (s, e) = (addr.max(lo), end.min(hi));
    if len == 0 {
        return if addr >= lo && addr < hi {
            Route::Server
        } else {
            Route::Host
        };
    }
    if s >= e {
        return Route::Host;
    }
    if (s, e) == (addr, end) {
        return Route::Server;
    }
    Route::Split {
        server: (s, e),
        host: [
            (addr < lo).then_some((addr, lo)),
            (end > hi).then_some((hi, end)),
        ],
    }
}

/// Where a call on `[addr, addr + len)` goes: the host's when the server cannot be
/// reached.
pub fn range(addr: u64, len: u64) -> Route {
    window().map_or(Route::Host, |w| classify(addr, len, w))
}

/// Where a new mapping goes: without an address, to the server (`Err(errno)` when it
/// cannot be reached); with a hint, to whoever owns the hinted address; `MAP_FIXED`,
/// to whoever owns the whole range (`Err(EINVAL)` when it straddles the window's edge:
/// one mapping cannot be both's).
pub fn new_mapping(addr: u64, len: u64, fixed: bool) -> Result<Route, i32> {
    if addr == 0 && !fixed {
        return window().map(|_| Route::Server);
    }
    let Ok(w) = window() else {
        return Ok(Route::Host);
    };
    if !fixed {
        return Ok(classify(addr, 0, w));
    }
    match classify(addr, len, w) {
        Route::Split { .. } => Err(libc::EINVAL),
        r => Ok(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Span = (0x1000, 0x9000);

    #[test]
    fn ranges_are_the_servers_the_hosts_or_split_at_the_edges() {
        assert_eq!(classify(0x2000, 0x1000, W), Route::Server);
        assert_eq!(classify(0x9000, 0x1000, W), Route::Host);
        assert_eq!(classify(0, 0x1000, W), Route::Host);
        assert_eq!(classify(u64::MAX - 10, 100, W), Route::Host);
        assert_eq!(
            classify(0, 0xa000, W),
            Route::Split {
                server: W,
                host: [Some((0, 0x1000)), Some((0x9000, 0xa000))]
            }
        );
        assert_eq!(
            classify(0x8000, 0x2000, W),
            Route::Split {
                server: (0x8000, 0x9000),
                host: [None, Some((0x9000, 0xa000))]
            }
        );
        assert_eq!(classify(0x1000, 0, W), Route::Server);
        assert_eq!(classify(0x9000, 0, W), Route::Host);
    }
}
