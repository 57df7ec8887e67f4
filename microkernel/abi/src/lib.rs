//! The microkernel's system call ABI, declared once (as Hubris's `sys/abi`): the kernel
//! decodes with these types and every ring-3 task encodes with them, so neither side
//! matches on a bare number.
//!
//! A system call is `syscall` with the number in `rax` and up to four arguments in
//! `rdi`, `rsi`, `rdx`, `r10`; the result comes back in `rax`, `-errno` on failure
//! ([`encode_result`], [`decode_result`]). Every other register is preserved, `rcx` and
//! `r11` excepted (the instruction clobbers them).
#![no_std]
#![forbid(unsafe_code)]

use ipc_proto::Errno;

/// Declares [`Sysnum`] and its `TryFrom<u64>` from one list.
macro_rules! sysnums {
    ($($(#[$doc:meta])* $name:ident = $value:literal,)*) => {
        /// Every system call, by number.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u64)]
        pub enum Sysnum {
            $($(#[$doc])* $name = $value,)*
        }

        impl Sysnum {
            /// Every call, in number order.
            pub const ALL: &'static [Sysnum] = &[$(Sysnum::$name,)*];
        }

        impl TryFrom<u64> for Sysnum {
            type Error = Errno;

            /// A number no call has is `ENOSYS`.
            fn try_from(n: u64) -> Result<Self, Errno> {
                match n {
                    $($value => Ok(Sysnum::$name),)*
                    _ => Err(Errno::ENOSYS),
                }
            }
        }
    };
}

sysnums! {
    /// `exit(code)`: ends the task.
    Exit = 0,
    /// `mmap(len, prot, flags)`: anonymous memory for a small task; the address.
    Mmap = 1,
    /// `munmap(addr, len)`, for a small task.
    Munmap = 2,
    /// `on_signal(rip)`: a small task's signal handler (the signal in `rdi`).
    OnSignal = 3,
    /// `write(ptr, len)`: bytes to the serial console.
    Write = 4,
    /// `call(client, request, len, response)`: one wire request to the memory server as
    /// `client` (0: the task itself); the response's length.
    Call = 5,
    /// `spawn(spec, len)`: a new client with the encoded `ClientSpec`; its handle.
    Spawn = 6,
    /// `fork(client, spec, len)`: a copy-on-write clone of `client`; its handle.
    Fork = 7,
    /// `end(client)`: the client exits.
    End = 8,
    /// `access(client, op, addr, value)`: one ring-3 access ([`AccessOp`]) in the
    /// client's space; `ACCESS_OK | byte`, or the signal's number.
    Access = 9,
    /// `stats(buf, cap)`: the server's encoded `ServerStats`.
    Stats = 10,
    /// `check(buf, cap)`: 0, or the length of the invariant violation's text.
    Check = 11,
    /// `facts(buf, cap)`: the encoded conformance `Facts` of this machine.
    Facts = 12,
    /// `start_peer()`: the app's own image started as a new task (and client), entered
    /// in [`AppMode::Peer`]; it serves calls once it waits in `receive`. Its endpoint.
    StartPeer = 13,
    /// `ipc_call(endpoint, message, len, reply)`: a call to a peer the caller started
    /// (as a [`Header`] and the message), waiting for its reply (at most 4096 bytes);
    /// the reply's length.
    IpcCall = 14,
    /// `yield()`: a scheduled app lets the other apps have a turn.
    Yield = 15,
    /// `fork()`, for a scheduled app: a new app whose address space is a copy-on-write
    /// clone of the caller's and which resumes from this call with 0; the caller gets
    /// the child's client number.
    ForkTask = 16,
    /// `null()`: does nothing and returns 0 (the benchmarks' null system call).
    Null = 17,
    /// `receive(reply, len, buf, cap)`, for a task that serves calls (the memory server,
    /// the file server, an app's peer): answers the last message with `reply`, then
    /// waits for the next: a [`Header`] and the message in `buf`; its total length.
    Receive = 20,
    /// `create_space()`: a new address space's handle, [`NONE`] when the stub has no
    /// room for another, [`NONE`]` - 1` when it needs a table frame first.
    CreateSpace = 21,
    /// `destroy_space(space)`.
    DestroySpace = 22,
    /// `map(space, vaddr, frame, attrs)`: a [`StubStatus`].
    Map = 23,
    /// `unmap(space, vaddr, pages)`.
    Unmap = 24,
    /// `protect(space, vaddr, pages, attrs)`.
    Protect = 25,
    /// `query(space, vaddr)`: `frame << 12 | attrs`, or [`NONE`].
    Query = 26,
    /// `mappings(space, from, buf, n)`: up to `n` installed pages at or above `from`, as
    /// `[vaddr, frame << 12 | attrs]` pairs; how many.
    Mappings = 27,
    /// `zero_frame(frame)`.
    ZeroFrame = 28,
    /// `copy_frame(src, dst)`.
    CopyFrame = 29,
    /// `donate_table_frame(frame)`: a [`StubStatus`].
    Donate = 30,
    /// `reclaim_table_frame()`: a frame, or [`NONE`].
    Reclaim = 31,
    /// `fill_frame(frame, buf, len)`: the frame becomes `len` (at most a page) bytes of
    /// the caller's `buf` followed by zeroes; 0, or [`NONE`] when refused.
    FillFrame = 32,
    /// `read_frame(frame, buf, len)`: copies the frame's first `len` bytes (at most a
    /// page) to the caller's `buf`; 0, or [`NONE`] when refused.
    ReadFrame = 33,
    /// `pager_call(request, len, reply, cap)`: the memory server task's call to its
    /// pager, the file server task; the reply's length.
    PagerCall = 34,
}

impl Sysnum {
    /// Whether only the memory server task may make this call: the kernel stub's.
    pub fn is_stub_call(self) -> bool {
        (Sysnum::CreateSpace as u64..=Sysnum::ReadFrame as u64).contains(&(self as u64))
    }
}

/// "Nothing" in the stub calls' results.
pub const NONE: u64 = u64::MAX;

/// What a kernel stub call that can be refused answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum StubStatus {
    /// Done.
    Ok = 0,
    /// The stub needs a table frame donated first.
    OutOfTableFrames = 1,
    /// No room for another address space.
    OutOfSpaces = 2,
    /// The stub refused (a frame or space not the caller's, an overlap).
    Refused = 3,
}

impl From<u64> for StubStatus {
    /// Any code the kernel does not send is a refusal.
    fn from(code: u64) -> Self {
        match code {
            0 => StubStatus::Ok,
            1 => StubStatus::OutOfTableFrames,
            2 => StubStatus::OutOfSpaces,
            _ => StubStatus::Refused,
        }
    }
}

/// The largest message a serving task takes or answers: a page and its pager header.
pub const MAX_MESSAGE: u64 = 8192;

/// Who sent a message to a serving task: the 8 bytes before every message `receive`
/// delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Header {
    /// The kernel itself (its `ClientStarted`, `PageFault`, … requests).
    Kernel,
    /// A client, named by the kernel, never by the message.
    Client(u32),
    /// The kernel's control channel to the memory server task ([`Control`]).
    Control,
}

impl Header {
    /// Its size on the wire.
    pub const LEN: usize = 8;
    const KERNEL: u64 = 0;
    const CONTROL: u64 = u64::MAX;

    /// The 8 bytes (little-endian) the message follows.
    pub fn encode(self) -> [u8; Self::LEN] {
        let raw = match self {
            Header::Kernel => Self::KERNEL,
            Header::Client(c) => u64::from(c),
            Header::Control => Self::CONTROL,
        };
        raw.to_le_bytes()
    }

    /// Splits a received message into its header and body; `None` when it is shorter
    /// than a header or names no sender the kernel sends as.
    pub fn decode(message: &[u8]) -> Option<(Header, &[u8])> {
        let (head, body) = message.split_first_chunk::<{ Self::LEN }>()?;
        let header = match u64::from_le_bytes(*head) {
            Self::KERNEL => Header::Kernel,
            Self::CONTROL => Header::Control,
            c => Header::Client(u32::try_from(c).ok()?),
        };
        Some((header, body))
    }
}

/// Declares a C-like enum and its `TryFrom` its number (`EINVAL` for any other).
macro_rules! numbered {
    ($(#[$doc:meta])* $name:ident: $repr:ty { $($(#[$vdoc:meta])* $v:ident = $n:literal,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr($repr)]
        pub enum $name {
            $($(#[$vdoc])* $v = $n,)*
        }

        impl TryFrom<$repr> for $name {
            type Error = Errno;

            fn try_from(n: $repr) -> Result<Self, Errno> {
                match n {
                    $($n => Ok($name::$v),)*
                    _ => Err(Errno::EINVAL),
                }
            }
        }
    };
}

numbered! {
    /// The kernel's control messages to the memory server task (one byte, after its
    /// configuration, which is the first control message).
    Control: u8 {
        /// The check of the server's invariants after every request: off (what users
        /// run).
        SelfCheckOff = 0,
        /// … on (the conformance suite's runs).
        SelfCheckOn = 1,
        /// Check every invariant now; the answer is the first violation's text, or empty.
        CheckNow = 2,
    }
}

/// One access [`Sysnum::Access`] makes in ring 3 for a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessOp {
    /// Read a byte.
    Read,
    /// Write the byte given.
    Write(u8),
    /// Call the address (its byte must be `ret`).
    Exec,
}

impl AccessOp {
    /// The `op` and `value` arguments.
    pub fn encode(self) -> (u64, u64) {
        match self {
            AccessOp::Read => (0, 0),
            AccessOp::Write(v) => (1, u64::from(v)),
            AccessOp::Exec => (2, 0),
        }
    }

    /// From the `op` and `value` arguments; an unknown `op` is `EINVAL`.
    pub fn decode(op: u64, value: u64) -> Result<Self, Errno> {
        match op {
            0 => Ok(AccessOp::Read),
            1 => Ok(AccessOp::Write(value as u8)),
            2 => Ok(AccessOp::Exec),
            _ => Err(Errno::EINVAL),
        }
    }
}

/// The bit [`Sysnum::Access`] sets in a successful answer (below it: the byte read).
pub const ACCESS_OK: u64 = 0x1_0000;

numbered! {
    /// What an app started from the kernel's image does (its first argument, `rdi`).
    AppMode: u64 {
        /// Runs its share of the conformance suite (`rsi`: `stride << 16 | apps << 8 |
        /// index`) and exits with an [`AppReport`].
        Conformance = 0,
        /// A peer started by [`Sysnum::StartPeer`]: serves its owner's IPC calls.
        Peer = 1,
        /// Draws into the framebuffer, a band per turn.
        Demo = 2,
        /// Maps a file shared and private and forks.
        FileDemo = 3,
        /// Spins forever, never yielding: only preemption lets the others run.
        Spin = 4,
        /// Measures the guest benchmarks and prints them.
        Bench = 5,
    }
}

/// A conformance app's exit code: its passed, failed and skipped counts, marked as a
/// report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AppReport {
    /// Cases passed.
    pub passed: u16,
    /// Cases failed.
    pub failed: u16,
    /// Cases the transport could not run (never counted as passed).
    pub skipped: u16,
}

impl AppReport {
    const MARK: u64 = 1 << 32;

    /// As an exit code: the mark in bits 32..40, skipped in 40..56, passed in 16..32,
    /// failed in 0..16.
    pub fn encode(self) -> u64 {
        u64::from(self.skipped) << 40
            | Self::MARK
            | u64::from(self.passed) << 16
            | u64::from(self.failed)
    }

    /// From an exit code; `None` when it is not a report.
    pub fn decode(code: u64) -> Option<Self> {
        ((code >> 32) & 0xff == 1 && code >> 56 == 0).then_some(AppReport {
            passed: (code >> 16) as u16,
            failed: code as u16,
            skipped: (code >> 40) as u16,
        })
    }
}

/// A system call's result in `rax`: the value, or `-errno`.
pub fn encode_result(r: Result<u64, Errno>) -> u64 {
    match r {
        Ok(v) => v,
        Err(e) => (-(e as i64)) as u64,
    }
}

/// The other way: values from `-4095` to `-1` are errors (an unknown errno is `EPROTO`).
pub fn decode_result(ret: u64) -> Result<u64, Errno> {
    let v = ret as i64;
    if (-4095..0).contains(&v) {
        Err(Errno::from_raw((-v) as u16).unwrap_or(Errno::EPROTO))
    } else {
        Ok(ret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_number_decodes_to_its_call_and_others_are_enosys() {
        for &s in Sysnum::ALL {
            assert_eq!(Sysnum::try_from(s as u64), Ok(s));
        }
        for n in [18, 19, 35, 0x77, u64::MAX] {
            assert_eq!(Sysnum::try_from(n), Err(Errno::ENOSYS));
        }
        assert!(Sysnum::Map.is_stub_call() && !Sysnum::PagerCall.is_stub_call());
        assert!(!Sysnum::Receive.is_stub_call());
    }

    #[test]
    fn headers_round_trip_and_short_or_foreign_ones_are_refused() {
        for h in [Header::Kernel, Header::Client(7), Header::Control] {
            let mut m = h.encode().to_vec();
            m.extend_from_slice(b"body");
            assert_eq!(Header::decode(&m), Some((h, &b"body"[..])));
        }
        assert_eq!(Header::decode(&[0; 7]), None);
        assert_eq!(Header::decode(&(1u64 << 40).to_le_bytes()), None);
    }

    #[test]
    fn results_and_reports_round_trip() {
        assert_eq!(
            decode_result(encode_result(Err(Errno::EBADF))),
            Err(Errno::EBADF)
        );
        assert_eq!(decode_result(encode_result(Ok(42))), Ok(42));
        assert_eq!(decode_result(u64::MAX - 4095), Ok(u64::MAX - 4095));
        assert_eq!(decode_result(u64::MAX - 4094), Err(Errno::EPROTO));
        let r = AppReport {
            passed: 123,
            failed: 4,
            skipped: 5,
        };
        assert_eq!(AppReport::decode(r.encode()), Some(r));
        assert_eq!(AppReport::decode(0), None);
        for op in [AccessOp::Read, AccessOp::Write(9), AccessOp::Exec] {
            let (a, b) = op.encode();
            assert_eq!(AccessOp::decode(a, b), Ok(op));
        }
        assert_eq!(AccessOp::decode(3, 0), Err(Errno::EINVAL));
        assert_eq!(StubStatus::from(99), StubStatus::Refused);
        assert_eq!(Control::try_from(3), Err(Errno::EINVAL));
        assert_eq!(AppMode::try_from(9), Err(Errno::EINVAL));
    }
}
