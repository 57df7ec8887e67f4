//! Differential testing against Linux: random sequences of `mmap` (hint, `MAP_FIXED`,
//! `MAP_FIXED_NOREPLACE`), `munmap`, `mprotect`, `mlock`/`munlock`, `msync`, `mremap` (in
//! place, and `MREMAP_MAYMOVE | MREMAP_FIXED` into the window) and `madvise` inside a
//! window of address space, applied both to our server (real kernel stub, in-process)
//! and to this very process through real syscalls. Every return value and errno must
//! agree, and so must the resulting layout: our `Regions` against `/proc/self/maps`,
//! compared page by page (region boundaries may differ: Linux keeps a VMA split where
//! its internal flags differ, we merge on what a user can see).
//!
//! Deliberate differences, handled here and listed in docs/reliability.md:
//! - `mprotect` over a hole: both answer `ENOMEM`, but Linux has already changed the
//!   pages before the hole; we change nothing. After such a call the test puts Linux's
//!   pages back to our protections and goes on.
//! - `mlock` over a hole or a `PROT_NONE` page: both answer `ENOMEM`; Linux has locked
//!   the mappings before the hole (or all of them, for `PROT_NONE`), we lock nothing.
//!   The test unlocks Linux's pages again where ours are not locked.
//! - A hint that is not free: Linux looks from its own `mmap_base`, we look inside our
//!   window; the test only hints at free ranges.
//! - `mremap` follows mapping boundaries, and Linux keeps mappings apart where nothing a
//!   user sees differs (anon_vma ancestry after a move): the test skips an `mremap`
//!   whose range holds a boundary one side has and the other has not.
//! - Linux 6.17 moves a range of several mappings and gaps when the move is pure
//!   (`MREMAP_FIXED`, equal lengths); we keep the one-mapping rule (`EFAULT`). The test
//!   makes such a move unequal, where both refuse it.
//! - A failed `MREMAP_FIXED`: Linux may have unmapped the destination (and a shrinking
//!   move's tail) before it fails; we change nothing. The test unmaps ours where
//!   Linux's pages are gone.
//! - `madvise` over a hole: both answer `ENOMEM`; Linux has advised the mapped parts
//!   (dropped pages, split mappings), we change nothing. Contents are not compared, and
//!   the layouts agree page by page. `MADV_WILLNEED` is left out (Linux: `EBADF` on
//!   anonymous memory, a page-cache call).
//!
//! `DIFF_DEBUG=1` prints both layouts at a divergence.
//!
//! This file holds a single test so no other test thread maps memory into the window.

use client_lib::Client;
use ipc_proto::{Advice, ClientSpec, Errno, MapFlags, MremapFlags, MsyncFlags, Prot};
use memserver::{Config, FrameRange};
use memserver_testkit::Machine;
use memserver_testkit::RamStub;
use rustix::mm;
use std::cell::RefCell;
use std::ffi::c_void;
use std::rc::Rc;

const P: u64 = 4096;
/// Pages in the window.
const W: u64 = 48;
/// Where the window lies: far below where Linux places mappings on its own (top-down
/// from just under 128 TiB), so nothing else lands in it.
const WIN: u64 = 0x5000_0000_0000;
/// Sequences and operations per sequence.
const SEQUENCES: u64 = 10_000;
const OPS: u64 = 24;

mod common;
use common::{Proc, Rng};

type Sys = Rc<RefCell<Machine<RamStub>>>;

#[derive(Clone, Copy, Debug)]
enum Op {
    Mmap {
        addr: u64,
        len: u64,
        prot: Prot,
        flags: MapFlags,
    },
    Munmap {
        addr: u64,
        len: u64,
    },
    Mprotect {
        addr: u64,
        len: u64,
        prot: Prot,
    },
    Mlock {
        addr: u64,
        len: u64,
        lock: bool,
    },
    Msync {
        addr: u64,
        len: u64,
        flags: MsyncFlags,
    },
    /// In place (no flags), or `MREMAP_MAYMOVE | MREMAP_FIXED` to a place in the window:
    /// a free move goes wherever each side finds room, which the layouts cannot compare.
    Mremap {
        addr: u64,
        old_len: u64,
        new_len: u64,
        to: Option<u64>,
    },
    Madvise {
        addr: u64,
        len: u64,
        advice: Advice,
    },
}

const PROTS: [Prot; 5] = [
    Prot::NONE,
    Prot::READ,
    Prot::READ.union(Prot::WRITE),
    Prot::READ.union(Prot::EXEC),
    Prot::all(),
];

/// A range inside the window: page-aligned mostly, sometimes a length that is not a
/// multiple of the page, sometimes zero, sometimes an unaligned start.
fn range(rng: &mut Rng) -> (u64, u64) {
    let page = rng.below(W);
    let pages = 1 + rng.below((W - page).min(10));
    let mut addr = WIN + page * P;
    let mut len = pages * P;
    match rng.below(20) {
        0 => len = 0,
        1 => len -= 1 + rng.below(P - 1),
        2 => addr += 1 + rng.below(P - 1),
        _ => {}
    }
    (addr, len)
}

fn gen_op(rng: &mut Rng, ours: &mut Client<Proc<RamStub>>) -> Op {
    let prot = PROTS[rng.below(5) as usize];
    let (addr, len) = range(rng);
    match rng.below(13) {
        10 | 11 => {
            let to = (rng.below(2) == 0).then(|| WIN + rng.below(W - 8) * P);
            // In place, growth stays inside the window (Linux would grow past its end).
            let room = match to {
                Some(t) => WIN + W * P - t,
                None => (WIN + W * P).saturating_sub(addr & !(P - 1)),
            };
            let mut new_len = ((1 + rng.below(8)) * P).min(room.max(P));
            if rng.below(8) == 0 {
                new_len -= 1;
            }
            let old_len = if rng.below(10) == 0 { 0 } else { len };
            // Linux 6.17 moves a range of several mappings and gaps when the move is
            // pure (MREMAP_FIXED, equal lengths); we keep the one-mapping rule (EFAULT,
            // docs/semantics.md). Such a move is made unequal, where both refuse it.
            let same = old_len.div_ceil(P) == new_len.div_ceil(P);
            if to.is_some() && same && old_len > 0 && !in_one_region(ours, addr, old_len) {
                new_len = old_len.div_ceil(P) * P + P;
            }
            Op::Mremap {
                addr,
                old_len,
                new_len,
                to,
            }
        }
        12 => {
            // MADV_WILLNEED is left out: Linux answers EBADF for anonymous memory.
            let advice = [
                Advice::Normal,
                Advice::Random,
                Advice::DontNeed,
                Advice::Free,
                Advice::DontFork,
                Advice::DoFork,
            ][rng.below(6) as usize];
            Op::Madvise { addr, len, advice }
        }
        0..=3 => {
            let kind = if rng.below(4) == 0 {
                MapFlags::SHARED
            } else {
                MapFlags::PRIVATE
            };
            let flags = kind | MapFlags::ANONYMOUS;
            let flags = match rng.below(3) {
                0 => flags | MapFlags::FIXED,
                1 => flags | MapFlags::FIXED_NOREPLACE,
                // A hint, only where the range is free (and aligned, and not empty):
                // otherwise the two sides look for room in different places.
                _ if addr % P == 0 && len > 0 && is_free(ours, addr, len) => flags,
                _ => flags | MapFlags::FIXED,
            };
            Op::Mmap {
                addr,
                len,
                prot,
                flags,
            }
        }
        4 | 5 => Op::Munmap { addr, len },
        6 | 7 => Op::Mprotect { addr, len, prot },
        8 => Op::Mlock {
            addr,
            len,
            lock: rng.below(2) == 0,
        },
        _ => {
            let flags = [
                MsyncFlags::ASYNC,
                MsyncFlags::SYNC,
                MsyncFlags::SYNC | MsyncFlags::INVALIDATE,
                MsyncFlags::ASYNC | MsyncFlags::SYNC,
                MsyncFlags::empty(),
            ][rng.below(5) as usize];
            Op::Msync { addr, len, flags }
        }
    }
}

/// Whether Linux's mappings begin and end at the same places as our regions within
/// `[addr, addr + len]`.
fn same_boundaries(c: &mut Client<Proc<RamStub>>, addr: u64, len: u64) -> bool {
    let (lo, hi) = (addr & !(P - 1), addr.saturating_add(len.div_ceil(P) * P));
    let inside = |a: &u64| lo <= *a && *a <= hi;
    let mut ours: Vec<u64> = c
        .regions()
        .map(|r| r.unwrap())
        .flat_map(|r| [r.start, r.end])
        .filter(inside)
        .collect();
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
    let mut theirs: Vec<u64> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.split_once('-'))
        .flat_map(|(s, e)| {
            [
                u64::from_str_radix(s, 16).unwrap(),
                u64::from_str_radix(e, 16).unwrap(),
            ]
        })
        .filter(|a| (WIN..=WIN + W * P).contains(a))
        .filter(inside)
        .collect();
    ours.sort_unstable();
    ours.dedup();
    theirs.sort_unstable();
    theirs.dedup();
    ours == theirs
}

/// Whether `[addr, addr + len)` lies inside one of our regions.
fn in_one_region(c: &mut Client<Proc<RamStub>>, addr: u64, len: u64) -> bool {
    let end = addr.saturating_add(len.div_ceil(P) * P);
    c.regions()
        .map(|r| r.unwrap())
        .any(|r| r.start <= addr && end <= r.end)
}

fn is_free(c: &mut Client<Proc<RamStub>>, addr: u64, len: u64) -> bool {
    let end = addr + len.div_ceil(P) * P;
    c.regions()
        .map(|r| r.unwrap())
        .all(|r| r.end <= addr || r.start >= end)
}

/// Applies `op` to our server.
fn ours(c: &mut Client<Proc<RamStub>>, op: Op) -> Result<u64, Errno> {
    match op {
        Op::Mmap {
            addr,
            len,
            prot,
            flags,
        } => c.mmap(addr, len, prot, flags, None, 0),
        Op::Munmap { addr, len } => c.munmap(addr, len).map(|()| 0),
        Op::Mprotect { addr, len, prot } => c.mprotect(addr, len, prot).map(|()| 0),
        Op::Mlock { addr, len, lock } => if lock {
            c.mlock(addr, len)
        } else {
            c.munlock(addr, len)
        }
        .map(|()| 0),
        Op::Msync { addr, len, flags } => c.msync(addr, len, flags).map(|()| 0),
        Op::Mremap {
            addr,
            old_len,
            new_len,
            to,
        } => match to {
            Some(to) => c.mremap(
                addr,
                old_len,
                new_len,
                MremapFlags::MAYMOVE | MremapFlags::FIXED,
                to,
            ),
            None => c.mremap(addr, old_len, new_len, MremapFlags::empty(), 0),
        },
        Op::Madvise { addr, len, advice } => c.madvise(addr, len, advice).map(|()| 0),
    }
}

fn errno(e: rustix::io::Errno) -> Errno {
    Errno::from_raw(e.raw_os_error() as u16).unwrap_or(Errno::EPROTO)
}

fn ptr(addr: u64) -> *mut c_void {
    addr as usize as *mut c_void
}

/// Applies `op` to this process, with real syscalls.
fn linux(op: Op) -> Result<u64, Errno> {
    // SAFETY: for all calls below, every address lies in the window, which this test owns
    // and which nothing in Rust ever points into; the mappings made there are never read
    // or written through a reference, so changing or removing them invalidates nothing.
    unsafe {
        match op {
            Op::Mmap {
                addr,
                len,
                prot,
                flags,
            } => mm::mmap_anonymous(
                ptr(addr),
                len as usize,
                mm::ProtFlags::from_bits_retain(prot.bits()),
                mm::MapFlags::from_bits_retain(flags.bits() & !MapFlags::ANONYMOUS.bits()),
            )
            .map(|p| p as u64),
            Op::Munmap { addr, len } => mm::munmap(ptr(addr), len as usize).map(|()| 0),
            Op::Mprotect { addr, len, prot } => mm::mprotect(
                ptr(addr),
                len as usize,
                mm::MprotectFlags::from_bits_retain(prot.bits()),
            )
            .map(|()| 0),
            Op::Mlock { addr, len, lock } => if lock {
                mm::mlock(ptr(addr), len as usize)
            } else {
                mm::munlock(ptr(addr), len as usize)
            }
            .map(|()| 0),
            Op::Msync { addr, len, flags } => mm::msync(
                ptr(addr),
                len as usize,
                mm::MsyncFlags::from_bits_retain(flags.bits()),
            )
            .map(|()| 0),
            Op::Mremap {
                addr,
                old_len,
                new_len,
                to,
            } => match to {
                Some(to) => mm::mremap_fixed(
                    ptr(addr),
                    old_len as usize,
                    new_len as usize,
                    mm::MremapFlags::MAYMOVE,
                    ptr(to),
                ),
                None => mm::mremap(
                    ptr(addr),
                    old_len as usize,
                    new_len as usize,
                    mm::MremapFlags::empty(),
                ),
            }
            .map(|p| p as u64),
            Op::Madvise { addr, len, advice } => {
                let advice = match advice {
                    Advice::Normal => mm::Advice::Normal,
                    Advice::Random => mm::Advice::Random,
                    Advice::Sequential => mm::Advice::Sequential,
                    Advice::WillNeed => mm::Advice::WillNeed,
                    Advice::DontNeed => mm::Advice::LinuxDontNeed,
                    Advice::Free => mm::Advice::LinuxFree,
                    Advice::DontFork => mm::Advice::LinuxDontFork,
                    Advice::DoFork => mm::Advice::LinuxDoFork,
                };
                mm::madvise(ptr(addr), len as usize, advice).map(|()| 0)
            }
        }
    }
    .map_err(errno)
}

/// What each page of the window is: `None` unmapped, else (r, w, x, shared).
type Layout = Vec<Option<(bool, bool, bool, bool)>>;

fn linux_layout() -> Layout {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
    let mut out = vec![None; W as usize];
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(span), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        let Some((s, e)) = span.split_once('-') else {
            continue;
        };
        let (s, e) = (
            u64::from_str_radix(s, 16).unwrap(),
            u64::from_str_radix(e, 16).unwrap(),
        );
        let p = perms.as_bytes();
        let v = (p[0] == b'r', p[1] == b'w', p[2] == b'x', p[3] == b's');
        for page in 0..W {
            let a = WIN + page * P;
            if s <= a && a < e {
                out[page as usize] = Some(v);
            }
        }
    }
    out
}

fn our_layout(c: &mut Client<Proc<RamStub>>) -> Layout {
    let mut out = vec![None; W as usize];
    for r in c.regions() {
        let r = r.unwrap();
        let v = (
            r.prot.contains(Prot::READ) || r.prot.contains(Prot::WRITE),
            r.prot.contains(Prot::WRITE),
            r.prot.contains(Prot::EXEC),
            r.shared,
        );
        for page in 0..W {
            let a = WIN + page * P;
            if r.start <= a && a < r.end {
                out[page as usize] = Some(v);
            }
        }
    }
    out
}

/// After an `mprotect` that failed over a hole, gives Linux's pages our protections
/// again (Linux changed the pages before the hole; we changed none).
fn resync_protections(c: &mut Client<Proc<RamStub>>) {
    for r in c.regions() {
        let r = r.unwrap();
        // SAFETY: as in `linux`: the window's pages are never accessed from Rust.
        unsafe {
            mm::mprotect(
                ptr(r.start),
                (r.end - r.start) as usize,
                mm::MprotectFlags::from_bits_retain(r.prot.bits()),
            )
        }
        .expect("mprotect of a mapped region");
    }
}

/// After an `mlock` that failed, unlocks Linux's pages that ours left unlocked.
fn resync_locks(c: &mut Client<Proc<RamStub>>) {
    for r in c.regions() {
        let r = r.unwrap();
        if !r.locked {
            // SAFETY: as in `linux`: the window's pages are never accessed from Rust.
            unsafe { mm::munlock(ptr(r.start), (r.end - r.start) as usize) }
                .expect("munlock of a mapped region");
        }
    }
}

fn system() -> Sys {
    let mut cfg = Config::with_ram(vec![FrameRange {
        start: 0x100,
        count: 4096,
    }]);
    cfg.mmap_min = WIN;
    cfg.mmap_max = WIN + W * P;
    // Invariants are checked in full after every sequence instead of every request,
    // which keeps 10 000 sequences within seconds.
    let stub = memserver_testkit::ram_stub(&cfg).unwrap();
    Rc::new(RefCell::new(Machine::new(cfg, stub)))
}

fn reset_window() {
    // SAFETY: the window is this test's; unmapping it invalidates no Rust reference.
    unsafe { mm::munmap(ptr(WIN), (W * P) as usize) }.expect("munmap of the window");
}

#[test]
fn random_sequences_agree_with_linux() {
    // Claim the window: it must be free (MAP_FIXED_NOREPLACE) so we clobber nothing.
    // SAFETY: a fresh mapping in free address space.
    let got = unsafe {
        mm::mmap_anonymous(
            ptr(WIN),
            (W * P) as usize,
            mm::ProtFlags::empty(),
            mm::MapFlags::PRIVATE | mm::MapFlags::FIXED_NOREPLACE | mm::MapFlags::NORESERVE,
        )
    }
    .expect("the test window is free");
    assert_eq!(got as u64, WIN);
    let sys = system();
    let mut divergences = Vec::new();
    let mut ops_run = 0u64;
    for seq in 0..SEQUENCES {
        reset_window();
        let id = sys.borrow_mut().spawn(ClientSpec::DEFAULT).unwrap();
        let mut c = Client::new(Proc {
            sys: sys.clone(),
            id,
        });
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (seq + 1).wrapping_mul(0x1000_0000_01b3));
        let mut history = Vec::new();
        for _ in 0..OPS {
            let op = gen_op(&mut rng, &mut c);
            if let Op::Mremap {
                addr,
                old_len,
                new_len,
                ..
            } = op
                && !same_boundaries(&mut c, addr, old_len.max(new_len))
            {
                // Linux keeps mappings apart where users cannot see why (anon_vma
                // ancestry after a move); mremap's one-mapping rule follows those.
                continue;
            }
            history.push(op);
            let (a, b) = (ours(&mut c, op), linux(op));
            ops_run += 1;
            if a != b {
                if std::env::var_os("DIFF_DEBUG").is_some() {
                    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
                    for l in maps.lines().filter(|l| l.starts_with("5000")) {
                        eprintln!("linux {l}");
                    }
                    for r in c.regions() {
                        eprintln!("ours {:?}", r.unwrap());
                    }
                }
                divergences.push(format!(
                    "sequence {seq}: {op:?}: ours {a:?}, Linux {b:?}\n  after {history:?}"
                ));
                break;
            }
            if let Op::Mremap {
                addr,
                old_len,
                new_len,
                to: Some(to),
            } = op
                && matches!(a, Err(Errno::EFAULT | Errno::ENOMEM | Errno::EAGAIN))
            {
                // Linux may unmap a fixed destination (and a shrinking move's tail)
                // before it finds it cannot move; we change nothing. Where Linux's pages
                // are gone, unmap ours too.
                let theirs = linux_layout();
                let gone = |s: u64, e: u64| {
                    (s..e)
                        .step_by(P as usize)
                        .all(|a| a >= WIN + W * P || theirs[((a - WIN) / P) as usize].is_none())
                };
                let new_end = to + new_len.div_ceil(P) * P;
                if gone(to, new_end) {
                    c.munmap(to, new_len).unwrap();
                }
                let (tail, old_end) = (
                    addr + new_len.div_ceil(P) * P,
                    addr + old_len.div_ceil(P) * P,
                );
                if addr % P == 0 && tail < old_end && gone(tail, old_end) {
                    c.munmap(tail, old_end - tail).unwrap();
                }
            }
            if matches!(op, Op::Mprotect { .. }) && a == Err(Errno::ENOMEM) {
                resync_protections(&mut c);
            }
            if matches!(op, Op::Mlock { lock: true, .. }) && a == Err(Errno::ENOMEM) {
                resync_locks(&mut c);
            }
            let (mine, theirs) = (our_layout(&mut c), linux_layout());
            if mine != theirs {
                divergences.push(format!(
                    "sequence {seq}: layouts differ after {op:?}\n  ours  {mine:?}\n  Linux {theirs:?}\n  after {history:?}"
                ));
                break;
            }
        }
        sys.borrow().server.check_invariants().unwrap();
        drop(c);
        sys.borrow_mut().exit(id).unwrap();
        if divergences.len() >= 5 {
            break;
        }
    }
    reset_window();
    let m = sys.borrow();
    m.server.check_invariants().unwrap();
    assert_eq!(m.server.stats().violations, 0);
    assert!(
        divergences.is_empty(),
        "{} divergences in {ops_run} operations:\n{}",
        divergences.len(),
        divergences.join("\n")
    );
    eprintln!("{SEQUENCES} sequences, {ops_run} operations: ours and Linux agree");
}
