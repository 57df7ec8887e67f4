//! Whose memory a call is about: the server owns its windows (the main one and the
//! `MAP_32BIT` one, `Setup::windows`), the host kernel everything else. The windows are
//! learnt by connecting (the first call that needs them connects); a process that
//! cannot reach the server has nothing in them, so then every call that names an
//! address is the host's.

use crate::log;
use memserver_hosted::c_abi;

/// `[start, end)`.
pub type Span = (u64, u64);

/// The server's windows.
pub type Windows = [Span; 2];

/// Most pieces a range cut at two windows' edges makes.
pub const MAX_PIECES: usize = 5;

/// Where a call on a range goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// All of it lies in one of the server's windows.
    Server,
    /// None of it does.
    Host,
    /// It crosses a window's edge: its pieces in address order, each the server's
    /// (`true`) or the host's.
    Split([Option<(Span, bool)>; MAX_PIECES]),
}

/// The server's windows, or `Err(errno)` (said once on stderr) when it cannot be
/// reached.
pub fn windows() -> Result<Windows, i32> {
    c_abi::windows().inspect_err(|&e| log::unreachable(e))
}

/// Where a call on `[addr, addr + len)` goes, the windows being `ws`.
pub fn classify(addr: u64, len: u64, ws: &Windows) -> Route {
    let Some(end) = addr.checked_add(len) else {
        return Route::Host;
    };
    if len == 0 {
        let inside = ws.iter().any(|&(lo, hi)| addr >= lo && addr < hi);
        return if inside { Route::Server } else { Route::Host };
    }
    if ws.iter().any(|&(lo, hi)| addr >= lo && end <= hi) {
        return Route::Server;
    }
    if !ws.iter().any(|&(lo, hi)| addr < hi && end > lo) {
        return Route::Host;
    }
    // Cut at every window edge inside the range, in address order (no allocation: a
    // program's own allocator may be what called us).
    let mut cuts = [end; MAX_PIECES + 1];
    cuts[0] = addr;
    let mut n = 1;
    for e in ws.iter().flat_map(|&(lo, hi)| [lo, hi]) {
        if e > addr && e < end {
            cuts[n] = e;
            n += 1;
        }
    }
    cuts[1..n].sort_unstable();
    let mut pieces = [None; MAX_PIECES];
    for (i, piece) in pieces.iter_mut().enumerate().take(n) {
        let (s, e) = (cuts[i], cuts[i + 1]);
        let server = ws.iter().any(|&(lo, hi)| s >= lo && e <= hi);
        *piece = Some(((s, e), server));
    }
    Route::Split(pieces)
}

/// Where a call on `[addr, addr + len)` goes: the host's when the server cannot be
/// reached.
pub fn range(addr: u64, len: u64) -> Route {
    windows().map_or(Route::Host, |ws| classify(addr, len, &ws))
}

/// Where a new mapping goes: without an address, to the server (`Err(errno)` when it
/// cannot be reached); with a hint, to whoever owns the hinted address; `MAP_FIXED`,
/// to whoever owns the whole range (`Err(EINVAL)` when it crosses a window's edge: one
/// mapping cannot be both's).
pub fn new_mapping(addr: u64, len: u64, fixed: bool) -> Result<Route, i32> {
    if addr == 0 && !fixed {
        return windows().map(|_| Route::Server);
    }
    let Ok(ws) = windows() else {
        return Ok(Route::Host);
    };
    if !fixed {
        return Ok(classify(addr, 0, &ws));
    }
    match classify(addr, len, &ws) {
        Route::Split(_) => Err(libc::EINVAL),
        r => Ok(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WS: Windows = [(0x10_000, 0x90_000), (0x1000, 0x2000)];

    fn split(pieces: &[((u64, u64), bool)]) -> Route {
        let mut p = [None; MAX_PIECES];
        for (i, &x) in pieces.iter().enumerate() {
            p[i] = Some(x);
        }
        Route::Split(p)
    }

    #[test]
    fn ranges_are_the_servers_the_hosts_or_cut_at_every_window_edge() {
        assert_eq!(classify(0x20_000, 0x1000, &WS), Route::Server);
        assert_eq!(classify(0x1000, 0x1000, &WS), Route::Server);
        assert_eq!(classify(0x90_000, 0x1000, &WS), Route::Host);
        assert_eq!(classify(0x3000, 0x1000, &WS), Route::Host);
        assert_eq!(classify(u64::MAX - 10, 100, &WS), Route::Host);
        assert_eq!(
            classify(0, 0xa0_000, &WS),
            split(&[
                ((0, 0x1000), false),
                ((0x1000, 0x2000), true),
                ((0x2000, 0x10_000), false),
                ((0x10_000, 0x90_000), true),
                ((0x90_000, 0xa0_000), false),
            ])
        );
        assert_eq!(
            classify(0x8f_000, 0x2000, &WS),
            split(&[((0x8f_000, 0x90_000), true), ((0x90_000, 0x91_000), false)])
        );
        assert_eq!(classify(0x10_000, 0, &WS), Route::Server);
        assert_eq!(classify(0x90_000, 0, &WS), Route::Host);
    }
}
