//! What travels between a client runtime and `memserverd` on their `SOCK_SEQPACKET`
//! connection, around the protocol's postcard bytes. One packet is one message.
//!
//! Client to server: `[kind: u8][payload]`, the kinds below. The first message of a
//! connection is [`KIND_HELLO`] or [`KIND_ADOPT`], each with the client's userfaultfd
//! attached (`SCM_RIGHTS`): the server resolves every fault of the client's window
//! through it, so no page reaches the process any other way.
//!
//! Server to client, every answer: `[len: u16 LE][payload][count: u16 LE][count ×
//! HostOp]`, with the descriptors the operations map attached in order. The payload is
//! a postcard `Response` for [`KIND_REQUEST`], [`KIND_MMAP_FILE`], [`KIND_SPEC`],
//! [`KIND_EXIT`], [`KIND_AWAIT_EXIT`] and [`KIND_LIMITS`]; an encoded [`Setup`] (or a
//! `Response` carrying the refusal) for [`KIND_HELLO`] and [`KIND_ADOPT`]; `[token: u64
//! LE]` (or a refusal) for [`KIND_FORK`]; a list of host files (or a refusal) for
//! [`KIND_HOST_FILES`]. The operations are the host mappings the server decided for the
//! request (placement, backing, protection), never pages: the client applies them to
//! its window before it returns to the program; and, for `shm_open`, the descriptor of
//! the object's bytes the program gets as its fd.

/// First message: empty payload, the client's userfaultfd attached.
pub const KIND_HELLO: u8 = 0;
/// A postcard `Request` follows.
pub const KIND_REQUEST: u8 = 1;
/// A postcard `ClientSpec` follows: run with this identity and these limits. Only a
/// process of the server's own user (or root) may, before it maps anything (the
/// launcher's or the conformance harness's part of the kernel).
pub const KIND_SPEC: u8 = 2;
/// Empty: the client is done; everything it held is reclaimed before the answer.
pub const KIND_EXIT: u8 = 3;
/// A postcard `ClientSpec` follows: the process is about to `fork`; clone this client
/// copy-on-write for the child (its identity stays the caller's unless the caller is
/// trusted). Answered with a token the child presents in [`KIND_ADOPT`].
pub const KIND_FORK: u8 = 4;
/// `[token: u64 LE]`, the child's userfaultfd attached: first message of a forked
/// child, which becomes the clone its parent prepared. Answered with a [`Setup`].
pub const KIND_ADOPT: u8 = 5;
/// `[pid: u32 LE]`: answer once no connection of that process is left and everything
/// its clients held is reclaimed (`EBUSY` after ten seconds). Only the server's own user
/// (or root) may ask: a test harness waits with it for what it is about to check.
pub const KIND_AWAIT_EXIT: u8 = 6;

/// A postcard `Request::Mmap` follows (its fd is ignored), the process's own fd of a
/// regular file attached: map that file. The server checks the fd (`ENODEV` unless a
/// regular file), opens the file's object with the rights of the fd's open mode, and
/// runs the ordinary `mmap`; the answer's [`HostOp::MapFile`] attaches the same open
/// file description back, so the host enforces its open mode too.
pub const KIND_MMAP_FILE: u8 = 7;
/// Empty: which host files the server serves, answered with [`encode_host_files`]'s
/// payload. Only the server's own user (or root) may ask (`EPERM`): which files other
/// users map is theirs to know.
pub const KIND_HOST_FILES: u8 = 8;
/// Empty, or `[pid: i32 LE]`: the resource limits of this connection's process (or of
/// process `pid`) changed (`setrlimit`, `prlimit`); the server reads them again from
/// `/proc/<pid>/limits` for every client of that process (what a process says of its
/// limits is never taken on trust). Safe to repeat.
pub const KIND_LIMITS: u8 = 9;

/// Bytes of an encoded [`Setup`].
pub const SETUP_LEN: usize = 44;
/// Bytes of an encoded [`HostOp`].
pub const OP_LEN: usize = 42;
/// The largest packet either side sends.
pub const MAX_PACKET: usize = 64 * 1024;
/// Most descriptors attached to one answer (the kernel's `SCM_MAX_FD` is 253).
pub const MAX_FDS: usize = 64;

/// What the server tells a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setup {
    /// Lowest address of the client's window.
    pub window_lo: u64,
    /// One past its highest.
    pub window_hi: u64,
    /// Bytes of "physical memory" the server manages.
    pub mem_size: u64,
    /// The client's number (as the server logs it).
    pub client: u32,
    /// Lowest address of the window below 2 GiB that `MAP_32BIT` places into.
    pub low_lo: u64,
    /// One past its highest.
    pub low_hi: u64,
}

impl Setup {
    /// The client's two windows, the main one first: the only addresses the server
    /// maps into.
    pub fn windows(&self) -> [(u64, u64); 2] {
        [(self.window_lo, self.window_hi), (self.low_lo, self.low_hi)]
    }

    /// Whether `[addr, addr + len)` (non-empty) lies inside one window.
    pub fn owns(&self, addr: u64, len: u64) -> bool {
        len > 0
            && self
                .windows()
                .iter()
                .any(|&(lo, hi)| addr >= lo && addr.checked_add(len).is_some_and(|e| e <= hi))
    }

    /// Its encoding.
    pub fn encode(&self) -> [u8; SETUP_LEN] {
        let mut b = [0u8; SETUP_LEN];
        b[..8].copy_from_slice(&self.window_lo.to_le_bytes());
        b[8..16].copy_from_slice(&self.window_hi.to_le_bytes());
        b[16..24].copy_from_slice(&self.mem_size.to_le_bytes());
        b[24..28].copy_from_slice(&self.client.to_le_bytes());
        b[28..36].copy_from_slice(&self.low_lo.to_le_bytes());
        b[36..].copy_from_slice(&self.low_hi.to_le_bytes());
        b
    }

    /// Decodes [`encode`](Self::encode)'s bytes; `None` unless exactly that long.
    pub fn decode(b: &[u8]) -> Option<Setup> {
        if b.len() != SETUP_LEN {
            return None;
        }
        Some(Setup {
            window_lo: u64_at(b, 0)?,
            window_hi: u64_at(b, 8)?,
            mem_size: u64_at(b, 16)?,
            client: u32::from_le_bytes(b.get(24..28)?.try_into().ok()?),
            low_lo: u64_at(b, 28)?,
            low_hi: u64_at(b, 36)?,
        })
    }
}

fn u64_at(b: &[u8], i: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?))
}

/// Access a host mapping allows (`PROT_*` bits).
pub type HostProt = u8;

/// One change to the client's host mappings, in its window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostOp {
    /// Private anonymous memory at `[addr, addr + len)`, replacing what was there.
    MapAnon {
        /// First byte.
        addr: u64,
        /// Bytes.
        len: u64,
        /// `PROT_*`.
        prot: HostProt,
    },
    /// The next attached descriptor (a memory object's memfd), mapped at `[addr, addr +
    /// len)` from `offset`, shared or private, replacing what was there.
    MapObject {
        /// First byte.
        addr: u64,
        /// Bytes.
        len: u64,
        /// `PROT_*`.
        prot: HostProt,
        /// `MAP_SHARED` (else `MAP_PRIVATE`).
        shared: bool,
        /// Offset in the object.
        offset: u64,
    },
    /// The next attached descriptor (the process's own regular file), mapped at
    /// `[addr, addr + len)` from `offset`, shared or private, replacing what was there.
    /// Not registered with the userfaultfd: the host's page cache serves its faults.
    MapFile {
        /// First byte.
        addr: u64,
        /// Bytes.
        len: u64,
        /// `PROT_*`.
        prot: HostProt,
        /// `MAP_SHARED` (else `MAP_PRIVATE`).
        shared: bool,
        /// Offset in the file.
        offset: u64,
    },
    /// Nothing at `[addr, addr + len)` any more: an inaccessible reservation again.
    Reserve {
        /// First byte.
        addr: u64,
        /// Bytes.
        len: u64,
    },
    /// New access for `[addr, addr + len)`.
    Protect {
        /// First byte.
        addr: u64,
        /// Bytes.
        len: u64,
        /// `PROT_*`.
        prot: HostProt,
    },
    /// The mapping at `[old, old + old_len)` now lies at `[new, new + new_len)`, its
    /// pages moved, not copied (`new == old` grows or shrinks it in place).
    Remap {
        /// Old start.
        old: u64,
        /// Old length.
        old_len: u64,
        /// New start.
        new: u64,
        /// New length.
        new_len: u64,
        /// `MREMAP_DONTUNMAP`: the old range stays mapped, empty.
        dont_unmap: bool,
        /// What the mapping is of (its registration differs).
        backing: RemapBacking,
    },
    /// `madvise(addr, len, advice)` on the host mapping.
    Advise {
        /// First byte.
        addr: u64,
        /// Bytes.
        len: u64,
        /// Linux's advice number.
        advice: u8,
    },
    /// The next attached descriptor is the process's own descriptor of the bytes of
    /// the object its server fd `fd` names (what `shm_open` returns to the program).
    Descriptor {
        /// The server's fd.
        fd: u32,
    },
}

/// What a moved mapping is of: it is registered again as such.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemapBacking {
    /// Private anonymous memory.
    Anon,
    /// A memory object's or device's memfd.
    Object,
    /// A host file: never registered.
    HostFile,
}

impl RemapBacking {
    fn to_byte(self) -> u8 {
        match self {
            RemapBacking::Anon => 0,
            RemapBacking::Object => 1,
            RemapBacking::HostFile => 2,
        }
    }

    fn from_byte(b: u8) -> Option<RemapBacking> {
        Some(match b {
            0 => RemapBacking::Anon,
            1 => RemapBacking::Object,
            2 => RemapBacking::HostFile,
            _ => return None,
        })
    }
}

impl HostOp {
    /// Whether it consumes an attached descriptor.
    pub fn takes_fd(&self) -> bool {
        matches!(
            self,
            HostOp::MapObject { .. } | HostOp::MapFile { .. } | HostOp::Descriptor { .. }
        )
    }

    /// Its fixed-size encoding.
    pub fn encode(&self) -> [u8; OP_LEN] {
        let (kind, a, b, c, d, x, y) = match *self {
            HostOp::MapAnon { addr, len, prot } => (0u8, addr, len, 0, 0, prot, 0),
            HostOp::MapObject {
                addr,
                len,
                prot,
                shared,
                offset,
            } => (1, addr, len, offset, 0, prot, u8::from(shared)),
            HostOp::MapFile {
                addr,
                len,
                prot,
                shared,
                offset,
            } => (7, addr, len, offset, 0, prot, u8::from(shared)),
            HostOp::Reserve { addr, len } => (2, addr, len, 0, 0, 0, 0),
            HostOp::Protect { addr, len, prot } => (3, addr, len, 0, 0, prot, 0),
            HostOp::Remap {
                old,
                old_len,
                new,
                new_len,
                dont_unmap,
                backing,
            } => (
                4,
                old,
                old_len,
                new,
                new_len,
                u8::from(dont_unmap),
                backing.to_byte(),
            ),
            HostOp::Advise { addr, len, advice } => (5, addr, len, 0, 0, advice, 0),
            HostOp::Descriptor { fd } => (6, u64::from(fd), 0, 0, 0, 0, 0),
        };
        let mut out = [0u8; OP_LEN];
        out[0] = kind;
        for (i, v) in [a, b, c, d].into_iter().enumerate() {
            out[1 + i * 8..9 + i * 8].copy_from_slice(&v.to_le_bytes());
        }
        out[33] = x;
        out[34] = y;
        out
    }

    /// Decodes one operation; `None` for an unknown kind.
    pub fn decode(b: &[u8]) -> Option<HostOp> {
        let w = |i: usize| u64_at(b, 1 + i * 8);
        let (x, y) = (*b.get(33)?, *b.get(34)?);
        Some(match *b.first()? {
            0 => HostOp::MapAnon {
                addr: w(0)?,
                len: w(1)?,
                prot: x,
            },
            1 => HostOp::MapObject {
                addr: w(0)?,
                len: w(1)?,
                offset: w(2)?,
                prot: x,
                shared: y != 0,
            },
            2 => HostOp::Reserve {
                addr: w(0)?,
                len: w(1)?,
            },
            3 => HostOp::Protect {
                addr: w(0)?,
                len: w(1)?,
                prot: x,
            },
            4 => HostOp::Remap {
                old: w(0)?,
                old_len: w(1)?,
                new: w(2)?,
                new_len: w(3)?,
                dont_unmap: x != 0,
                backing: RemapBacking::from_byte(y)?,
            },
            5 => HostOp::Advise {
                addr: w(0)?,
                len: w(1)?,
                advice: x,
            },
            6 => HostOp::Descriptor {
                fd: u32::try_from(w(0)?).ok()?,
            },
            7 => HostOp::MapFile {
                addr: w(0)?,
                len: w(1)?,
                offset: w(2)?,
                prot: x,
                shared: y != 0,
            },
            _ => return None,
        })
    }
}

/// Writes an answer (`payload` then `ops`) into `out`; returns its length, or `None`
/// when it does not fit.
pub fn encode_answer(payload: &[u8], ops: &[HostOp], out: &mut Vec<u8>) -> Option<()> {
    out.clear();
    out.extend_from_slice(&u16::try_from(payload.len()).ok()?.to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&u16::try_from(ops.len()).ok()?.to_le_bytes());
    for op in ops {
        out.extend_from_slice(&op.encode());
    }
    (out.len() <= MAX_PACKET).then_some(())
}

/// Splits an answer into its payload and its operations' bytes.
pub fn decode_answer(b: &[u8]) -> Option<(&[u8], impl Iterator<Item = Option<HostOp>> + '_)> {
    let n = usize::from(u16::from_le_bytes(b.get(..2)?.try_into().ok()?));
    let payload = b.get(2..2 + n)?;
    let rest = b.get(2 + n..)?;
    let count = usize::from(u16::from_le_bytes(rest.get(..2)?.try_into().ok()?));
    let ops = rest.get(2..)?;
    if ops.len() != count * OP_LEN {
        return None;
    }
    Some((payload, ops.chunks(OP_LEN).map(HostOp::decode)))
}

/// One host file the server serves, as [`KIND_HOST_FILES`] answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostFileEntry {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// Its size when it was last mapped.
    pub size: u64,
    /// Pages of regions mapping it, across all clients.
    pub mapped_pages: u64,
}

/// Bytes of an encoded [`HostFileEntry`].
const HOST_FILE_LEN: usize = 32;
/// Most entries one [`KIND_HOST_FILES`] answer lists (it must fit one packet); the
/// count in front is the whole number.
pub const MAX_HOST_FILES_LISTED: usize = 255;

/// [`KIND_HOST_FILES`]'s answer: `[count: u32 LE][entries: u8][entries ×
/// (dev, ino, size, mapped_pages: u64 LE)]`, the first [`MAX_HOST_FILES_LISTED`] of
/// `count`.
pub fn encode_host_files(files: &[HostFileEntry]) -> Vec<u8> {
    let listed = &files[..files.len().min(MAX_HOST_FILES_LISTED)];
    let mut out = Vec::with_capacity(5 + listed.len() * HOST_FILE_LEN);
    out.extend_from_slice(&u32::try_from(files.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.push(listed.len() as u8);
    for f in listed {
        for v in [f.dev, f.ino, f.size, f.mapped_pages] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// Decodes [`encode_host_files`]'s bytes: the whole count and the entries listed.
pub fn decode_host_files(b: &[u8]) -> Option<(u32, Vec<HostFileEntry>)> {
    let count = u32::from_le_bytes(b.get(..4)?.try_into().ok()?);
    let listed = usize::from(*b.get(4)?);
    let rest = b.get(5..)?;
    if rest.len() != listed * HOST_FILE_LEN {
        return None;
    }
    let entries = rest
        .chunks(HOST_FILE_LEN)
        .map(|e| {
            Some(HostFileEntry {
                dev: u64_at(e, 0)?,
                ino: u64_at(e, 8)?,
                size: u64_at(e, 16)?,
                mapped_pages: u64_at(e, 24)?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some((count, entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_round_trips() {
        let ops = [
            HostOp::MapAnon {
                addr: 0x2000_0000_0000,
                len: 8192,
                prot: 3,
            },
            HostOp::MapObject {
                addr: 1 << 40,
                len: 4096,
                prot: 1,
                shared: true,
                offset: 12288,
            },
            HostOp::Reserve {
                addr: 4096,
                len: 4096,
            },
            HostOp::Protect {
                addr: 4096,
                len: 4096,
                prot: 5,
            },
            HostOp::Remap {
                old: 1,
                old_len: 2,
                new: 3,
                new_len: 4,
                dont_unmap: true,
                backing: RemapBacking::HostFile,
            },
            HostOp::MapFile {
                addr: 1 << 41,
                len: 8192,
                prot: 3,
                shared: false,
                offset: 4096,
            },
            HostOp::Advise {
                addr: 4096,
                len: 4096,
                advice: 4,
            },
            HostOp::Descriptor { fd: 3 },
        ];
        let mut out = Vec::new();
        encode_answer(b"xyz", &ops, &mut out).expect("fits");
        let (payload, decoded) = decode_answer(&out).expect("decodes");
        assert_eq!(payload, b"xyz");
        let decoded: Vec<_> = decoded.map(|o| o.expect("known kind")).collect();
        assert_eq!(decoded, ops);
    }

    #[test]
    fn truncated_or_padded_answers_are_refused() {
        let mut out = Vec::new();
        encode_answer(b"ab", &[HostOp::Reserve { addr: 0, len: 1 }], &mut out).expect("fits");
        for cut in 0..out.len() {
            assert!(decode_answer(&out[..cut]).is_none(), "cut at {cut}");
        }
        out.push(0);
        assert!(decode_answer(&out).is_none());
        assert_eq!(HostOp::decode(&[9; OP_LEN]), None);
    }

    #[test]
    fn host_file_lists_round_trip_and_are_bounded() {
        let files: Vec<HostFileEntry> = (0..300)
            .map(|i| HostFileEntry {
                dev: 8,
                ino: i,
                size: 4096 * i,
                mapped_pages: i + 1,
            })
            .collect();
        let bytes = encode_host_files(&files);
        assert!(bytes.len() + 4 <= MAX_PACKET);
        let (count, listed) = decode_host_files(&bytes).expect("decodes");
        assert_eq!(count, 300);
        assert_eq!(listed, files[..MAX_HOST_FILES_LISTED]);
        assert!(decode_host_files(&bytes[..bytes.len() - 1]).is_none());
        assert_eq!(
            decode_host_files(&encode_host_files(&[])),
            Some((0, vec![]))
        );
    }

    #[test]
    fn setup_round_trips_and_rejects_other_lengths() {
        let s = Setup {
            window_lo: 1,
            window_hi: 2,
            mem_size: 3,
            client: 4,
            low_lo: 5,
            low_hi: 6,
        };
        assert_eq!(Setup::decode(&s.encode()), Some(s));
        assert_eq!(Setup::decode(&s.encode()[..SETUP_LEN - 1]), None);
    }
}
