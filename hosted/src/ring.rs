//! The shared-memory channel between a client and `memserverd`: one request and one
//! response at a time in a small memfd both map, with futex wake-ups (after a short
//! spin, since a round trip is often shorter than a sleep).
//!
//! Layout: two futex words (`seq_req`, bumped by the client when a request is in place;
//! `seq_resp`, set to the same value by the server when the answer is), the request's
//! kind and bytes, the response's bytes, and the page-table operations that go with it.
//! Operations beyond the channel's capacity follow on the socket (`more`).

use crate::wire::OP_LEN;
use ipc_proto::{MAX_REQUEST_LEN, MAX_RESPONSE_LEN};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Bytes of a channel.
pub const RING_SIZE: usize = 64 * 1024;
const REQ_OFF: usize = 32;
const RESP_OFF: usize = REQ_OFF + 272;
const OPS_OFF: usize = RESP_OFF + 64;
/// Operations that fit in the channel.
pub const OPS_CAP: usize = (RING_SIZE - OPS_OFF) / OP_LEN;
/// Most iterations spent polling before sleeping on the futex. Each side adapts: a wait
/// the spin ended, or a sleep that ended soon after, doubles its budget; a long sleep
/// halves it. A lone busy client gets microsecond round trips, and a crowd of them (more
/// than there are CPUs) or an idle one does not burn the CPUs the server needs.
const MAX_SPINS: u32 = 4000;
const MIN_SPINS: u32 = 16;

/// The client side's spin budget (one connection per process).
static CLIENT_SPINS: AtomicU32 = AtomicU32::new(MAX_SPINS);

const _: () = assert!(MAX_REQUEST_LEN < 272 && MAX_RESPONSE_LEN <= 64);

/// A mapped channel.
pub struct Ring {
    base: NonNull<u8>,
    server_spins: AtomicU32,
}

// SAFETY: the channel is shared memory made for exactly this exchange; each side only
// touches the parts the protocol gives it at that moment, ordered by the two atomics.
unsafe impl Send for Ring {}

impl Ring {
    /// The channel mapped at `base`.
    ///
    /// # Safety
    /// `base` must be the start of a [`RING_SIZE`]-byte shared mapping of a channel
    /// memfd that stays mapped while the value is used.
    pub unsafe fn new(base: NonNull<u8>) -> Ring {
        Ring {
            base,
            server_spins: AtomicU32::new(MAX_SPINS),
        }
    }

    /// Where the channel is mapped.
    pub fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    fn word(&self, i: usize) -> &AtomicU32 {
        // SAFETY: words 0..8 lie in the mapping's first 32 bytes, 4-byte aligned (the
        // mapping is page-aligned); AtomicU32 has u32's layout.
        unsafe { &*self.base.as_ptr().add(i * 4).cast::<AtomicU32>() }
    }

    fn bytes(&self, off: usize, len: usize) -> *mut u8 {
        debug_assert!(off + len <= RING_SIZE);
        // SAFETY: in bounds of the mapping (the offsets are the constants above).
        unsafe { self.base.as_ptr().add(off) }
    }

    /// Client: places a request and signals it; returns its sequence number.
    pub fn post_request(&self, kind: u8, payload: &[u8]) -> u32 {
        let len = payload.len().min(MAX_REQUEST_LEN + 1);
        // SAFETY: the request area is the client's until it bumps `seq_req`.
        unsafe { std::ptr::copy_nonoverlapping(payload.as_ptr(), self.bytes(REQ_OFF, len), len) };
        self.word(2).store(u32::from(kind), Ordering::Relaxed);
        self.word(3).store(len as u32, Ordering::Relaxed);
        let seq = self.word(0).load(Ordering::Relaxed).wrapping_add(1);
        self.word(0).store(seq, Ordering::Release);
        wake(self.word(0));
        seq
    }

    /// Client: waits for the answer to request `seq`.
    pub fn wait_response(&self, seq: u32) {
        wait_for(self.word(1), |v| v == seq, None, &CLIENT_SPINS);
    }

    /// Client: the response bytes (`out` must hold [`MAX_RESPONSE_LEN`]); returns the
    /// length, the operations in the channel and those following on the socket.
    pub fn response(&self, out: &mut [u8]) -> (usize, u32, u32) {
        let n = (self.word(4).load(Ordering::Relaxed) as usize)
            .min(MAX_RESPONSE_LEN)
            .min(out.len());
        // SAFETY: the response area is the client's to read once `seq_resp` matched.
        unsafe { std::ptr::copy_nonoverlapping(self.bytes(RESP_OFF, n), out.as_mut_ptr(), n) };
        (
            n,
            self.word(5).load(Ordering::Relaxed).min(OPS_CAP as u32),
            self.word(6).load(Ordering::Relaxed),
        )
    }

    /// Operation `i` of the response.
    pub fn op(&self, i: usize) -> [u8; OP_LEN] {
        let mut b = [0u8; OP_LEN];
        if i < OPS_CAP {
            // SAFETY: in bounds; the client reads only after the answer is in place.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.bytes(OPS_OFF + i * OP_LEN, OP_LEN),
                    b.as_mut_ptr(),
                    OP_LEN,
                )
            };
        }
        b
    }

    /// Server: a handle that closes the channel from another thread.
    pub fn closer(&self) -> Closer {
        Closer { base: self.base }
    }

    /// Server: waits for a request after `last`, up to `timeout`; returns its sequence
    /// number, kind and bytes (copied into `buf`), or `None` on timeout or once closed.
    pub fn next_request(
        &self,
        last: u32,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Option<(u32, u8, usize)> {
        let closed = || self.word(7).load(Ordering::Acquire) != 0;
        if !wait_for(
            self.word(0),
            |v| v != last || closed(),
            Some(timeout),
            &self.server_spins,
        ) || closed()
        {
            return None;
        }
        let seq = self.word(0).load(Ordering::Acquire);
        let kind = self.word(2).load(Ordering::Relaxed) as u8;
        let len = (self.word(3).load(Ordering::Relaxed) as usize)
            .min(MAX_REQUEST_LEN + 1)
            .min(buf.len());
        // SAFETY: the request area is the server's to read once `seq_req` moved.
        unsafe { std::ptr::copy_nonoverlapping(self.bytes(REQ_OFF, len), buf.as_mut_ptr(), len) };
        Some((seq, kind, len))
    }

    /// Server: places the answer to `seq` (the first [`OPS_CAP`] operations; the caller
    /// sends the rest, `more` of them, on the socket) and signals it.
    pub fn post_response(&self, seq: u32, resp: &[u8], ops: &[[u8; OP_LEN]], more: u32) {
        let n = resp.len().min(MAX_RESPONSE_LEN);
        // SAFETY: the response and operation areas are the server's until it sets
        // `seq_resp`; in bounds (n ≤ 64, at most OPS_CAP operations).
        unsafe {
            std::ptr::copy_nonoverlapping(resp.as_ptr(), self.bytes(RESP_OFF, n), n);
            for (i, op) in ops.iter().take(OPS_CAP).enumerate() {
                std::ptr::copy_nonoverlapping(
                    op.as_ptr(),
                    self.bytes(OPS_OFF + i * OP_LEN, OP_LEN),
                    OP_LEN,
                );
            }
        }
        self.word(4).store(n as u32, Ordering::Relaxed);
        self.word(5)
            .store(ops.len().min(OPS_CAP) as u32, Ordering::Relaxed);
        self.word(6).store(more, Ordering::Relaxed);
        self.word(1).store(seq, Ordering::Release);
        wake(self.word(1));
    }
}

/// Marks a channel closed (its client is gone) and wakes the side waiting for requests.
pub struct Closer {
    base: NonNull<u8>,
}

// SAFETY: it touches only the `closed` word, atomically, and the server keeps the channel
// mapped until the thread holding it has finished.
unsafe impl Send for Closer {}

impl Closer {
    /// Closes the channel.
    pub fn close(&self) {
        // SAFETY: word 7 of the mapping, aligned, atomic; see the Send impl for its life.
        let (closed, req) = unsafe {
            (
                &*self.base.as_ptr().add(28).cast::<AtomicU32>(),
                &*self.base.as_ptr().cast::<AtomicU32>(),
            )
        };
        closed.store(1, Ordering::Release);
        wake(req);
    }
}

/// Spins, then sleeps on the futex, until `done(word)`; `false` on timeout.
fn wait_for(
    word: &AtomicU32,
    done: impl Fn(u32) -> bool,
    timeout: Option<Duration>,
    spins: &AtomicU32,
) -> bool {
    let budget = spins.load(Ordering::Relaxed).clamp(MIN_SPINS, MAX_SPINS);
    for _ in 0..budget {
        if done(word.load(Ordering::Acquire)) {
            spins.store((budget * 2).min(MAX_SPINS), Ordering::Relaxed);
            return true;
        }
        std::hint::spin_loop();
    }
    let slept = std::time::Instant::now();
    let deadline = timeout.map(|t| slept + t);
    // How long the sleep lasted says whether spinning longer would have paid: an answer
    // that came soon after means spin more next time, a long idle spell means less.
    let adapt = || {
        let waited = slept.elapsed();
        let next = if waited < Duration::from_micros(100) {
            budget * 2
        } else if waited > Duration::from_millis(2) {
            budget / 2
        } else {
            budget
        };
        spins.store(next.clamp(MIN_SPINS, MAX_SPINS), Ordering::Relaxed);
    };
    loop {
        let v = word.load(Ordering::Acquire);
        if done(v) {
            adapt();
            return true;
        }
        let left = match deadline {
            Some(d) => match d.checked_duration_since(std::time::Instant::now()) {
                Some(l) => Some(l),
                None => {
                    adapt();
                    return false;
                }
            },
            None => None,
        };
        let ts = left.map(|l| libc::timespec {
            tv_sec: l.as_secs() as libc::time_t,
            tv_nsec: libc::c_long::from(l.subsec_nanos() as i32),
        });
        // SAFETY: FUTEX_WAIT (shared: the word is in memory two processes map) on a
        // valid aligned u32, sleeping only while it still holds `v`.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT,
                v,
                ts.as_ref()
                    .map_or(std::ptr::null(), |t| t as *const libc::timespec),
            )
        };
    }
}

fn wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE on a valid aligned u32; wakes whoever sleeps on it.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX) };
}
