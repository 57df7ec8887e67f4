//! What travels between a client and `memserverd` around the protocol's postcard bytes.
//!
//! Each message in the shared-memory channel ([`crate::ring`]) has a kind:
//! [`KIND_REQUEST`] (a postcard `Request`), [`KIND_FAULT`] (the client runtime's report
//! of a page fault: address `u64 LE` and access `u8`, which the server, playing the
//! kernel, turns into `PageFault` for that connection's client only), [`KIND_SPEC`],
//! [`KIND_EXIT`]. Every answer is a postcard `Response` plus the page-table [`Op`]s the
//! client must apply to its own address space first. At connection set-up the server
//! sends [`Setup`] on the Unix socket with three fds attached (`SCM_RIGHTS`): the memfd
//! of "physical memory", the client's doorbell socket and its channel.

/// A postcard request follows.
pub const KIND_REQUEST: u8 = 0;
/// A page-fault report follows.
pub const KIND_FAULT: u8 = 1;
/// A postcard `ClientSpec` follows: the client asks to run with this identity and these
/// limits. Only a process of the server's own user (or root) may, before it maps
/// anything: that user plays the kernel's part of starting clients (a launcher, the
/// conformance harness). Answered with an empty `Done` or `EPERM`.
pub const KIND_SPEC: u8 = 2;
/// An empty payload: the client is done; the server reclaims everything it held, answers
/// `Done`, and closes the connection (so a caller knows the exit is complete).
pub const KIND_EXIT: u8 = 3;
/// A postcard `ClientSpec` follows: clone this client (the memory half of `fork`). The
/// answer is not a `Response` but `[0][secret: u64 LE]` (the clone waits for a
/// connection presenting the secret) or `[1][errno: u16 LE]`. A client that is not the
/// server's own user gets its own identity in the clone whatever the spec says.
pub const KIND_FORK: u8 = 4;
/// A `u64 LE` secret follows: this new connection becomes the clone made with it
/// (first message only, same user). Answered with an empty `Done` or an errno.
pub const KIND_ADOPT: u8 = 5;
/// A `u32 LE` process id follows: answer once no connection of that process is left
/// and everything its clients held is reclaimed (or `EBUSY` after ten seconds).
/// Only the server's own user (or root) may ask: a test harness waits with it for what
/// it is about to check, instead of sleeping.
pub const KIND_AWAIT_EXIT: u8 = 6;
/// Bytes of one encoded [`Op`].
pub const OP_LEN: usize = 26;

/// What the server tells a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setup {
    /// Lowest address of the client's window.
    pub window_lo: u64,
    /// One past its highest.
    pub window_hi: u64,
    /// Frame number of the memfd's first page.
    pub frame_base: u64,
    /// Bytes of the memfd.
    pub mem_size: u64,
}

impl Setup {
    /// Its 32-byte encoding.
    pub fn encode(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for (i, v) in [
            self.window_lo,
            self.window_hi,
            self.frame_base,
            self.mem_size,
        ]
        .into_iter()
        .enumerate()
        {
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Decodes [`encode`](Self::encode)'s bytes.
    pub fn decode(b: &[u8; 32]) -> Setup {
        let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        Setup {
            window_lo: w(0),
            window_hi: w(1),
            frame_base: w(2),
            mem_size: w(3),
        }
    }
}

/// One change to a client's page tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Map `frame` at `addr`.
    Map {
        /// Page address.
        addr: u64,
        /// Frame number.
        frame: u64,
        /// Writable.
        write: bool,
        /// Executable.
        exec: bool,
    },
    /// Remove `pages` pages from `addr`.
    Unmap {
        /// First page.
        addr: u64,
        /// Page count.
        pages: u64,
    },
    /// Change the rights of the installed pages among `pages` pages from `addr`.
    Protect {
        /// First page.
        addr: u64,
        /// Page count.
        pages: u64,
        /// Writable.
        write: bool,
        /// Executable.
        exec: bool,
    },
}

impl Op {
    /// Its fixed-size encoding.
    pub fn encode(&self) -> [u8; OP_LEN] {
        let (kind, a, b, w, x) = match *self {
            Op::Map {
                addr,
                frame,
                write,
                exec,
            } => (0u8, addr, frame, write, exec),
            Op::Unmap { addr, pages } => (1, addr, pages, false, false),
            Op::Protect {
                addr,
                pages,
                write,
                exec,
            } => (2, addr, pages, write, exec),
        };
        let mut out = [0u8; OP_LEN];
        out[0] = kind;
        out[1..9].copy_from_slice(&a.to_le_bytes());
        out[9..17].copy_from_slice(&b.to_le_bytes());
        out[17] = u8::from(w) | (u8::from(x) << 1);
        out
    }

    /// Decodes one op; `None` for an unknown kind.
    pub fn decode(b: &[u8; OP_LEN]) -> Option<Op> {
        let a = u64::from_le_bytes(b[1..9].try_into().ok()?);
        let v = u64::from_le_bytes(b[9..17].try_into().ok()?);
        let (write, exec) = (b[17] & 1 != 0, b[17] & 2 != 0);
        match b[0] {
            0 => Some(Op::Map {
                addr: a,
                frame: v,
                write,
                exec,
            }),
            1 => Some(Op::Unmap { addr: a, pages: v }),
            2 => Some(Op::Protect {
                addr: a,
                pages: v,
                write,
                exec,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_and_setup_round_trip() {
        for op in [
            Op::Map {
                addr: 0x2000_0000_1000,
                frame: 77,
                write: true,
                exec: false,
            },
            Op::Unmap {
                addr: 0x2000_0000_0000,
                pages: 9,
            },
            Op::Protect {
                addr: 4096,
                pages: 1,
                write: false,
                exec: true,
            },
        ] {
            assert_eq!(Op::decode(&op.encode()), Some(op));
        }
        let mut bad = [0u8; OP_LEN];
        bad[0] = 9;
        assert_eq!(Op::decode(&bad), None);
        let s = Setup {
            window_lo: 1,
            window_hi: 2,
            frame_base: 3,
            mem_size: 4,
        };
        assert_eq!(Setup::decode(&s.encode()), s);
    }
}
