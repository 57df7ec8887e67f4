//! Property test: after any sequence of operations the stub agrees with a simple model (a
//! map of pages per space), no table page leaks, per-frame counts match, the TLB hook
//! fires exactly for changed present entries, and every bad call is refused with the
//! right error and changes nothing.
//!
//! The model predicts every result from the documented rules alone: the order of the
//! checks, how many tables a set of mappings needs (one root, one PDPT per 512 GiB, one
//! PD per GiB, one PT per 2 MiB holding 4 KiB mappings), which 2 MiB pages an operation
//! splits, and which leaf entries it changes.

mod common;
use common::*;
use kernel_stub::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use x86_64::VirtAddr;

/// Spaces live in slots the stub's type allows (`TestStub` has 4).
const SLOTS: usize = 4;
const TABLES: u64 = 20;
const THRESHOLD: usize = 8;
/// Two regions of test addresses: one straddling a GiB boundary and two 2 MiB chunks, one
/// in another 512 GiB.
const BASE: u64 = 0x3ff0_0000;
const BASE_PAGES: u64 = 1400;
const BASE2: u64 = 0x80_0000_0000;
const HUGE_SLOTS: [u64; 3] = [0x4000_0000, 0x4020_0000, BASE2];

/// A mapped 4 KiB page in the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    frame: u64,
    attrs: Attrs,
    /// Part of a 2 MiB mapping.
    huge: bool,
}

type Pages = BTreeMap<u64, Entry>;

#[derive(Clone, Copy, Debug)]
enum FrameSel {
    Data(u64),
    Device(u64),
    Table(u64),
    HugeRam(u64),
}

#[derive(Clone, Copy, Debug)]
enum HugeSrc {
    Ram,
    Dev(u64),
    Short,
    Misaligned,
}

#[derive(Clone, Debug)]
enum Op {
    Map {
        sp: usize,
        at: u64,
        frame: FrameSel,
        attrs: u8,
    },
    MapRange {
        sp: usize,
        at: u64,
        n: u64,
        first: u64,
        attrs: u8,
    },
    MapHuge {
        sp: usize,
        slot: usize,
        src: HugeSrc,
        attrs: u8,
    },
    Unmap {
        sp: usize,
        at: u64,
    },
    UnmapRange {
        sp: usize,
        at: u64,
        n: u64,
    },
    Protect {
        sp: usize,
        at: u64,
        attrs: u8,
    },
    ProtectRange {
        sp: usize,
        at: u64,
        n: u64,
        attrs: u8,
    },
    Create,
    Destroy {
        sp: usize,
    },
    Donate {
        frame: FrameSel,
    },
    Reclaim,
    Forged {
        pick: u8,
        raw: u64,
        at: u64,
    },
    Raw {
        sp: usize,
        addr: u64,
        n: u64,
    },
    FrameIo {
        frame: FrameSel,
        offset: usize,
        len: usize,
    },
}

fn attrs(a: u8) -> Attrs {
    Attrs {
        writable: a & 1 != 0,
        executable: a & 2 != 0,
        cache: match (a >> 2) % 8 {
            0..=3 => Cache::WriteBack,
            4..=6 => Cache::WriteCombining,
            _ => Cache::Uncached,
        },
    }
}

/// Test addresses, crowded around the GiB boundary (which is also the first huge slot's
/// start) and the boundary between the two huge slots, so operations meet each other.
fn addr() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => (240..272u64).prop_map(|p| BASE + p * PAGE_SIZE),
        2 => (760..776u64).prop_map(|p| BASE + p * PAGE_SIZE),
        3 => (0..BASE_PAGES).prop_map(|p| BASE + p * PAGE_SIZE),
        1 => (0..64u64).prop_map(|p| BASE2 + p * PAGE_SIZE),
    ]
}

fn frame_sel() -> impl Strategy<Value = FrameSel> {
    prop_oneof![
        12 => (0..DATA_FRAMES).prop_map(FrameSel::Data),
        2 => (0..16u64).prop_map(FrameSel::Device),
        1 => (0..TABLES).prop_map(FrameSel::Table),
        2 => (0..512u64).prop_map(FrameSel::HugeRam),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let sp = 0..SLOTS;
    let huge_src = prop_oneof![
        3 => Just(HugeSrc::Ram),
        3 => (0..2u64).prop_map(HugeSrc::Dev),
        1 => Just(HugeSrc::Short),
        1 => Just(HugeSrc::Misaligned),
    ];
    let raw_addr = prop_oneof![
        Just(0u64),
        Just(WINDOW_START),
        Just(WINDOW_END - PAGE_SIZE),
        Just(WINDOW_END),
        Just(0x7fff_ffff_f000),
        Just(KERNEL_HALF),
        Just(0xffff_8000_0000_0000),
        Just(BASE + 7),
        any::<u64>(),
    ];
    let raw_len = prop_oneof![Just(1u64), Just(2), Just(u64::MAX), Just(1 << 52), 0..4u64];
    prop_oneof![
        10 => (sp.clone(), addr(), frame_sel(), any::<u8>())
            .prop_map(|(sp, at, frame, attrs)| Op::Map { sp, at, frame, attrs }),
        4 => (sp.clone(), addr(), 1..40u64, 0..DATA_FRAMES, any::<u8>())
            .prop_map(|(sp, at, n, first, attrs)| Op::MapRange { sp, at, n, first, attrs }),
        4 => (sp.clone(), 0..HUGE_SLOTS.len(), huge_src, any::<u8>())
            .prop_map(|(sp, slot, src, attrs)| Op::MapHuge { sp, slot, src, attrs }),
        4 => (sp.clone(), addr()).prop_map(|(sp, at)| Op::Unmap { sp, at }),
        3 => (sp.clone(), addr(), 1..1200u64).prop_map(|(sp, at, n)| Op::UnmapRange { sp, at, n }),
        3 => (sp.clone(), addr(), any::<u8>()).prop_map(|(sp, at, attrs)| Op::Protect { sp, at, attrs }),
        3 => (sp.clone(), addr(), 1..700u64, any::<u8>())
            .prop_map(|(sp, at, n, attrs)| Op::ProtectRange { sp, at, n, attrs }),
        2 => Just(Op::Create),
        1 => sp.clone().prop_map(|sp| Op::Destroy { sp }),
        1 => frame_sel().prop_map(|frame| Op::Donate { frame }),
        1 => Just(Op::Reclaim),
        2 => (any::<u8>(), any::<u64>(), addr()).prop_map(|(pick, raw, at)| Op::Forged { pick, raw, at }),
        2 => (sp, raw_addr, raw_len).prop_map(|(sp, addr, n)| Op::Raw { sp, addr, n }),
        1 => (frame_sel(), 4000..4200usize, 0..200usize).prop_map(|(frame, offset, len)| Op::FrameIo { frame, offset, len }),
    ]
}

fn frame_number(sel: FrameSel) -> u64 {
    match sel {
        FrameSel::Data(i) => DATA + i,
        FrameSel::Device(i) => DEV + i,
        FrameSel::Table(i) => RAM + i,
        FrameSel::HugeRam(i) => HUGE_RAM + i,
    }
}

fn is_ram(frame: u64) -> bool {
    (RAM..RAM + RAM_FRAMES).contains(&frame)
}

/// The documented order of range checks ([`UserWindow`]).
fn span(start: u64, pages: u64) -> Result<(u64, u64), Error> {
    if start >= KERNEL_HALF {
        return Err(Error::KernelHalf);
    }
    if !(WINDOW_START..WINDOW_END).contains(&start) {
        return Err(Error::OutsideWindow);
    }
    let end = pages
        .checked_mul(PAGE_SIZE)
        .and_then(|l| start.checked_add(l))
        .ok_or(Error::BadRange)?;
    if end > KERNEL_HALF {
        return Err(Error::KernelHalf);
    }
    if end > WINDOW_END {
        return Err(Error::OutsideWindow);
    }
    Ok((start, end))
}

/// Tables a space with these pages holds.
fn tables_for(pages: &Pages) -> u64 {
    let pdpts: BTreeSet<u64> = pages.keys().map(|a| a >> 39).collect();
    let pds: BTreeSet<u64> = pages.keys().map(|a| a >> 30).collect();
    let pts: BTreeSet<u64> = pages
        .iter()
        .filter(|(_, e)| !e.huge)
        .map(|(a, _)| a >> 21)
        .collect();
    1 + (pdpts.len() + pds.len() + pts.len()) as u64
}

/// Tables adding `new` pages to `pages` builds.
fn tables_added(pages: &Pages, new: &[(u64, Entry)]) -> u64 {
    let keys = |shift: u32, small_only: bool| -> BTreeSet<u64> {
        new.iter()
            .filter(|(_, e)| !(small_only && e.huge))
            .map(|(a, _)| a >> shift)
            .collect()
    };
    let exists = |key: u64, shift: u32, small_only: bool| {
        let lo = key << shift;
        pages
            .range(lo..lo + (1 << shift))
            .any(|(_, e)| !(small_only && e.huge))
    };
    [(39, false), (30, false), (21, true)]
        .into_iter()
        .map(|(shift, small)| {
            keys(shift, small)
                .into_iter()
                .filter(|&k| !exists(k, shift, small))
                .count() as u64
        })
        .sum()
}

fn chunk_of(addr: u64) -> u64 {
    addr - addr % HUGE_PAGE_SIZE
}

/// Leaves of `pages` in `[start, end)` that `wanted` picks, as the stub changes them:
/// split-free 2 MiB leaves wholly inside count once (at their base), other pages one by
/// one. Also returns the 2 MiB chunks the change must split.
fn leaves(
    pages: &Pages,
    start: u64,
    end: u64,
    wanted: impl Fn(&Entry) -> bool,
) -> (BTreeSet<u64>, BTreeSet<u64>) {
    let mut changed = BTreeSet::new();
    let mut splits = BTreeSet::new();
    for (&a, e) in pages.range(start..end).filter(|(_, e)| wanted(e)) {
        let base = chunk_of(a);
        let whole = base >= start && base + HUGE_PAGE_SIZE <= end;
        if e.huge && whole {
            changed.insert(base);
        } else {
            changed.insert(a);
            if e.huge {
                splits.insert(base);
            }
        }
    }
    (changed, splits)
}

struct World {
    s: TestStub,
    spaces: Vec<Option<(SpaceCap, Pages)>>,
    dead: Vec<SpaceCap>,
    ever: BTreeSet<u64>,
    /// Frames donated and not reclaimed.
    donated: BTreeSet<u64>,
}

impl World {
    fn new() -> World {
        let mut w = World {
            s: stub(TABLES, THRESHOLD),
            spaces: vec![None; SLOTS],
            dead: vec![],
            ever: BTreeSet::new(),
            donated: (RAM..RAM + TABLES).collect(),
        };
        for i in 0..2 {
            let cap = w.s.create_space().unwrap();
            w.ever.insert(cap.to_raw());
            w.spaces[i] = Some((cap, Pages::new()));
        }
        w
    }

    fn live(&self, sp: usize) -> Option<SpaceCap> {
        self.spaces[sp].as_ref().map(|s| s.0)
    }

    fn pages_of(&self, sp: usize) -> &Pages {
        &self.spaces[sp].as_ref().unwrap().1
    }

    fn pages(&mut self, sp: usize) -> &mut Pages {
        &mut self.spaces[sp].as_mut().unwrap().1
    }

    fn model_tables(&self) -> u64 {
        self.spaces
            .iter()
            .flatten()
            .map(|(_, p)| tables_for(p))
            .sum()
    }

    fn model_pool_free(&self) -> u64 {
        self.donated.len() as u64 - self.model_tables()
    }

    /// How many mappings point at each frame.
    fn mapping_counts(&self) -> BTreeMap<u64, u32> {
        let mut counts = BTreeMap::new();
        for e in self.spaces.iter().flatten().flat_map(|(_, p)| p.values()) {
            *counts.entry(e.frame).or_default() += 1;
        }
        counts
    }

    fn mappings_of(&self, frame: u64) -> u32 {
        self.mapping_counts().get(&frame).copied().unwrap_or(0)
    }

    /// The error mapping `frame` with `a` gets, if any (the documented frame checks).
    fn frame_error(&self, frame: u64, a: Attrs) -> Option<Error> {
        if !is_ram(frame) && !(DEV..DEV + DEV_FRAMES).contains(&frame) {
            return Some(Error::NotGranted);
        }
        if self.donated.contains(&frame) {
            return Some(Error::TableFrame);
        }
        if is_ram(frame) && a.cache == Cache::Uncached {
            return Some(Error::CacheMode);
        }
        None
    }

    /// Predicts a map of `frames` at `start` with `a`; applies it to the model when it
    /// succeeds. `huge` mappings are 512 frames from `frames[0]`.
    fn predict_map(
        &mut self,
        sp: usize,
        start: u64,
        frames: &[u64],
        a: Attrs,
        huge: bool,
    ) -> Result<(), Error> {
        let (lo, hi) = span(start, frames.len() as u64)?;
        if let Some(e) = frames.iter().find_map(|&f| self.frame_error(f, a)) {
            return Err(e);
        }
        if self.pages(sp).range(lo..hi).next().is_some() {
            return Err(Error::AlreadyMapped);
        }
        let new: Vec<(u64, Entry)> = frames
            .iter()
            .enumerate()
            .map(|(i, &f)| {
                (
                    lo + i as u64 * PAGE_SIZE,
                    Entry {
                        frame: f,
                        attrs: a,
                        huge,
                    },
                )
            })
            .collect();
        if tables_added(self.pages(sp), &new) > self.model_pool_free() {
            return Err(Error::OutOfTableFrames);
        }
        self.pages(sp).extend(new);
        Ok(())
    }

    /// Marks the 2 MiB chunks split.
    fn split(&mut self, sp: usize, chunks: &BTreeSet<u64>) {
        for &base in chunks {
            for (_, e) in self.pages(sp).range_mut(base..base + HUGE_PAGE_SIZE) {
                e.huge = false;
            }
        }
    }

    /// The TLB calls the last operation made must be exactly those owed for `changed`.
    fn check_flushes(
        &mut self,
        space: SpaceCap,
        changed: &BTreeSet<u64>,
    ) -> Result<(), TestCaseError> {
        let mut calls = std::mem::take(&mut self.s.tlb_mut().calls);
        calls.sort();
        let want: Vec<Flush> = if changed.is_empty() {
            vec![]
        } else if changed.len() <= THRESHOLD {
            changed
                .iter()
                .map(|&a| Flush::Page(space.to_raw(), a))
                .collect()
        } else {
            vec![Flush::All(space.to_raw())]
        };
        prop_assert_eq!(calls, want);
        Ok(())
    }

    fn no_flushes(&mut self) -> Result<(), TestCaseError> {
        let calls = std::mem::take(&mut self.s.tlb_mut().calls);
        prop_assert!(calls.is_empty(), "unexpected flushes {:?}", calls);
        Ok(())
    }

    /// Runs one operation against the stub and the model.
    fn step(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Map {
                sp,
                at,
                frame,
                attrs: a,
            } => {
                let Some(space) = self.live(sp) else {
                    return Ok(());
                };
                let f = cap(&self.s, frame_number(frame));
                let got = self.s.map(space, page(at), f, attrs(a));
                let want = self.predict_map(sp, at, &[frame_number(frame)], attrs(a), false);
                prop_assert_eq!(got, want, "map {:#x} {:?}", at, frame);
                self.no_flushes()?;
            }
            Op::MapRange {
                sp,
                at,
                n,
                first,
                attrs: a,
            } => {
                let Some(space) = self.live(sp) else {
                    return Ok(());
                };
                let numbers: Vec<u64> = (0..n).map(|i| DATA + (first + i) % DATA_FRAMES).collect();
                let caps: Vec<FrameCap> = numbers.iter().map(|&f| cap(&self.s, f)).collect();
                let got = self.s.map_range(space, page(at), &caps, attrs(a));
                let want = self.predict_map(sp, at, &numbers, attrs(a), false);
                prop_assert_eq!(got, want, "map_range {:#x} +{}", at, n);
                self.no_flushes()?;
            }
            Op::MapHuge {
                sp,
                slot,
                src,
                attrs: a,
            } => {
                let Some(space) = self.live(sp) else {
                    return Ok(());
                };
                let first = match src {
                    HugeSrc::Ram => HUGE_RAM,
                    HugeSrc::Dev(i) => DEV + 512 * i,
                    HugeSrc::Short => SHORT_DEV,
                    HugeSrc::Misaligned => HUGE_RAM + 1,
                };
                let base = HUGE_SLOTS[slot];
                let got = self
                    .s
                    .map_huge(space, huge(base), cap(&self.s, first), attrs(a));
                let want = match (span(base, 512), src) {
                    (Err(e), _) => Err(e),
                    (Ok(_), HugeSrc::Misaligned) => Err(Error::Unaligned),
                    (Ok(_), HugeSrc::Short) => Err(Error::NotGranted),
                    _ => {
                        let numbers: Vec<u64> = (first..first + 512).collect();
                        self.predict_map(sp, base, &numbers, attrs(a), true)
                    }
                };
                prop_assert_eq!(got, want, "map_huge {:#x} {:?}", base, src);
                self.no_flushes()?;
            }
            Op::Unmap { sp, at } => {
                let Some(space) = self.live(sp) else {
                    return Ok(());
                };
                let got = self.s.unmap(space, page(at));
                let (changed, splits) = leaves(self.pages_of(sp), at, at + PAGE_SIZE, |_| true);
                if splits.len() as u64 > self.model_pool_free() {
                    prop_assert_eq!(got, Err(Error::OutOfTableFrames));
                    return self.no_flushes();
                }
                let want = self
                    .pages_of(sp)
                    .get(&at)
                    .map(|e| (frame(e.frame), e.attrs));
                prop_assert_eq!(got, Ok(want));
                self.split(sp, &splits);
                self.pages(sp).remove(&at);
                self.check_flushes(space, &changed)?;
            }
            Op::UnmapRange { sp, at, n } => {
                let Some(space) = self.live(sp) else {
                    return Ok(());
                };
                let mut removed = Vec::new();
                let got = self.s.unmap_range(space, page(at), n, |p, f, a| {
                    removed.push((
                        p.start_address().as_u64(),
                        f.start_address().as_u64() / PAGE_SIZE,
                        a,
                    ));
                });
                let (lo, hi) = match span(at, n) {
                    Ok(s) => s,
                    Err(e) => {
                        prop_assert_eq!(got, Err(e));
                        return self.no_flushes();
                    }
                };
                let (changed, splits) = leaves(self.pages_of(sp), lo, hi, |_| true);
                if splits.len() as u64 > self.model_pool_free() {
                    prop_assert_eq!(got, Err(Error::OutOfTableFrames));
                    prop_assert!(removed.is_empty());
                    return self.no_flushes();
                }
                let want: Vec<(u64, u64, Attrs)> = self
                    .pages_of(sp)
                    .range(lo..hi)
                    .map(|(&a, e)| (a, e.frame, e.attrs))
                    .collect();
                prop_assert_eq!(got, Ok(want.len() as u64));
                prop_assert_eq!(&removed, &want);
                self.split(sp, &splits);
                for (a, _, _) in want {
                    self.pages(sp).remove(&a);
                }
                self.check_flushes(space, &changed)?;
            }
            Op::Protect { sp, at, attrs: a } => {
                let Some(space) = self.live(sp) else {
                    return Ok(());
                };
                let got = self.s.protect(space, page(at), attrs(a));
                let old = self.pages(sp).get(&at).map(|e| e.attrs);
                let want = self.predict_protect(sp, at, 1, attrs(a));
                match want {
                    Err(e) => {
                        prop_assert_eq!(got, Err(e));
                        return self.no_flushes();
                    }
                    Ok((_, changed)) => {
                        prop_assert_eq!(got, Ok(old));
                        self.check_flushes(space, &changed)?;
                    }
                }
            }
            Op::ProtectRange {
                sp,
                at,
                n,
                attrs: a,
            } => {
                let Some(space) = self.live(sp) else {
                    return Ok(());
                };
                let got = self.s.protect_range(space, page(at), n, attrs(a));
                match self.predict_protect(sp, at, n, attrs(a)) {
                    Err(e) => {
                        prop_assert_eq!(got, Err(e));
                        return self.no_flushes();
                    }
                    Ok((count, changed)) => {
                        prop_assert_eq!(got, Ok(count));
                        self.check_flushes(space, &changed)?;
                    }
                }
            }
            Op::Create => {
                let got = self.s.create_space();
                let free_slot = self.spaces.iter().position(Option::is_none);
                match (free_slot, got) {
                    (None, got) => prop_assert_eq!(got, Err(Error::OutOfSpaces)),
                    (Some(_), Err(e)) => {
                        prop_assert_eq!(e, Error::OutOfTableFrames);
                        prop_assert_eq!(self.model_pool_free(), 0);
                    }
                    (Some(i), Ok(space)) => {
                        prop_assert!(self.model_pool_free() > 0);
                        prop_assert!(
                            self.ever.insert(space.to_raw()),
                            "capability reused: {:?}",
                            space
                        );
                        self.spaces[i] = Some((space, Pages::new()));
                    }
                }
                self.no_flushes()?;
            }
            Op::Destroy { sp } => {
                let Some(space) = self.live(sp) else {
                    return Ok(());
                };
                prop_assert_eq!(self.s.destroy_space(space), Ok(()));
                let (_, pages) = self.spaces[sp].take().unwrap();
                self.dead.push(space);
                let calls = std::mem::take(&mut self.s.tlb_mut().calls);
                let want = if pages.is_empty() {
                    vec![]
                } else {
                    vec![Flush::All(space.to_raw())]
                };
                prop_assert_eq!(calls, want);
            }
            Op::Donate { frame: sel } => {
                let n = frame_number(sel);
                let got = self.s.donate_table_frame(cap(&self.s, n));
                let want = if !is_ram(n) {
                    Err(Error::NotRam)
                } else if self.donated.contains(&n) {
                    Err(Error::TableFrame)
                } else if self.mappings_of(n) > 0 {
                    Err(Error::FrameInUse)
                } else {
                    self.donated.insert(n);
                    Ok(())
                };
                prop_assert_eq!(got, want);
                self.no_flushes()?;
            }
            Op::Reclaim => {
                let got = self.s.reclaim_table_frame();
                if self.model_pool_free() == 0 {
                    prop_assert_eq!(got, None);
                } else {
                    let c = got.expect("the pool has a free frame");
                    let n = c.frame().start_address().as_u64() / PAGE_SIZE;
                    prop_assert!(self.donated.remove(&n), "reclaimed a frame never donated");
                    prop_assert_eq!(self.s.frame_use(c), Ok(FrameUse::Data { mappings: 0 }));
                }
            }
            Op::Forged { pick, raw, at } => self.forged(pick, raw, at)?,
            Op::Raw { sp, addr, n } => {
                let Some(space) = self.live(sp) else {
                    return Ok(());
                };
                let want_page = match VirtAddr::try_new(addr) {
                    Err(_) => Err(Error::NonCanonical),
                    Ok(_) if addr % PAGE_SIZE != 0 => Err(Error::Unaligned),
                    Ok(_) => Ok(()),
                };
                let p = page_at(addr);
                prop_assert_eq!(p.map(|_| ()), want_page);
                let Ok(p) = p else { return Ok(()) };
                // Unmap `n` pages there, then map one.
                let got = self.s.unmap_range(space, p, n, |_, _, _| {});
                match span(addr, n) {
                    Err(e) => {
                        prop_assert_eq!(got, Err(e));
                        self.no_flushes()?;
                    }
                    Ok((lo, hi)) => {
                        let (changed, splits) = leaves(self.pages_of(sp), lo, hi, |_| true);
                        if splits.len() as u64 > self.model_pool_free() {
                            prop_assert_eq!(got, Err(Error::OutOfTableFrames));
                            return self.no_flushes();
                        }
                        let gone: Vec<u64> =
                            self.pages_of(sp).range(lo..hi).map(|(&a, _)| a).collect();
                        prop_assert_eq!(got, Ok(gone.len() as u64));
                        self.split(sp, &splits);
                        for a in gone {
                            self.pages(sp).remove(&a);
                        }
                        self.check_flushes(space, &changed)?;
                    }
                }
                let got = self.s.map(space, p, cap(&self.s, DATA), RW);
                let want = self.predict_map(sp, addr, &[DATA], RW, false);
                prop_assert_eq!(got, want, "raw map at {:#x}", addr);
                self.no_flushes()?;
            }
            Op::FrameIo {
                frame: sel,
                offset,
                len,
            } => {
                let n = frame_number(sel);
                let c = cap(&self.s, n);
                let data: Vec<u8> = (0..len).map(|i| (i as u8) ^ (n as u8)).collect();
                let got = self.s.write_frame(c, offset, &data);
                let want = if self.donated.contains(&n) {
                    Err(Error::TableFrame)
                } else if offset + len > 4096 {
                    Err(Error::OutOfBounds)
                } else if !is_ram(n) {
                    Err(Error::NotBacked)
                } else {
                    Ok(())
                };
                prop_assert_eq!(got, want);
                let mut back = vec![0u8; len];
                prop_assert_eq!(self.s.read_frame(c, offset, &mut back), want);
                if want.is_ok() {
                    prop_assert_eq!(back, data);
                }
            }
        }
        Ok(())
    }

    /// Predicts a protect of `[at, at + n pages)`; applies it when it succeeds. Returns
    /// the pages changed and the leaf entries that changed.
    fn predict_protect(
        &mut self,
        sp: usize,
        at: u64,
        n: u64,
        a: Attrs,
    ) -> Result<(u64, BTreeSet<u64>), Error> {
        let (lo, hi) = span(at, n)?;
        let pages = self.pages_of(sp);
        let differs = |e: &Entry| e.attrs != a;
        let bad_cache = pages
            .range(lo..hi)
            .any(|(_, e)| differs(e) && is_ram(e.frame) && a.cache == Cache::Uncached);
        if bad_cache {
            return Err(Error::CacheMode);
        }
        let (changed, splits) = leaves(pages, lo, hi, differs);
        if splits.len() as u64 > self.model_pool_free() {
            return Err(Error::OutOfTableFrames);
        }
        self.split(sp, &splits);
        let mut count = 0;
        for (_, e) in self.pages(sp).range_mut(lo..hi) {
            if e.attrs != a {
                e.attrs = a;
                count += 1;
            }
        }
        Ok((count, changed))
    }

    /// Operations with a capability that names no live space are refused with the right
    /// error and change nothing.
    fn forged(&mut self, pick: u8, raw: u64, at: u64) -> Result<(), TestCaseError> {
        let live: Vec<SpaceCap> = self.spaces.iter().flatten().map(|s| s.0).collect();
        let raw = match pick % 4 {
            0 if !self.dead.is_empty() => self.dead[usize::from(pick) % self.dead.len()].to_raw(),
            1 if !live.is_empty() => {
                live[usize::from(pick) % live.len()].to_raw() ^ (1 << (32 + pick % 32))
            }
            2 if !live.is_empty() => {
                live[usize::from(pick) % live.len()].to_raw() + u64::from(pick % 8)
            }
            _ => raw,
        };
        let space = SpaceCap::from_raw(raw);
        if live.contains(&space) {
            return Ok(());
        }
        let want = if self.dead.contains(&space) {
            Error::StaleSpace
        } else {
            Error::BadSpace
        };
        let f = cap(&self.s, DATA);
        prop_assert_eq!(self.s.map(space, page(at), f, RW), Err(want));
        prop_assert_eq!(
            self.s
                .map_huge(space, huge(HUGE_SLOTS[0]), cap(&self.s, HUGE_RAM), RW),
            Err(want)
        );
        prop_assert_eq!(self.s.unmap(space, page(at)), Err(want));
        prop_assert_eq!(
            self.s.unmap_range(space, page(at), 8, |_, _, _| {}),
            Err(want)
        );
        prop_assert_eq!(self.s.protect(space, page(at), RW), Err(want));
        prop_assert_eq!(self.s.protect_range(space, page(at), 8, RW), Err(want));
        prop_assert_eq!(self.s.query(space, page(at)), Err(want));
        prop_assert_eq!(self.s.for_each_mapping(space, |_, _, _, _| {}), Err(want));
        prop_assert_eq!(self.s.root_table(space), Err(want));
        prop_assert_eq!(self.s.destroy_space(space), Err(want));
        let t = self
            .s
            .translate(space, VirtAddr::new(at), Access::Read, true);
        prop_assert_eq!(t, Err(Fault::BadSpace));
        self.no_flushes()
    }

    /// Everything observable agrees with the model.
    fn check(&self) -> Result<(), TestCaseError> {
        for (space, model) in self.spaces.iter().flatten() {
            // `for_each_mapping` goes in address order, so a list compares with the map.
            let mut seen = Vec::with_capacity(model.len());
            self.s
                .for_each_mapping(*space, |va, f, a, size| {
                    let n = if size == PageSize::Huge { 512 } else { 1 };
                    let first = f.start_address().as_u64() / PAGE_SIZE;
                    for k in 0..n {
                        let e = Entry {
                            frame: first + k,
                            attrs: a,
                            huge: size == PageSize::Huge,
                        };
                        seen.push((va.as_u64() + k * PAGE_SIZE, e));
                    }
                })
                .unwrap();
            let want: Vec<(u64, Entry)> = model.iter().map(|(&a, &e)| (a, e)).collect();
            prop_assert_eq!(seen, want);
            for (&va, e) in model.iter().step_by(11) {
                self.check_page(*space, va, Some(e))?;
            }
            for probe in [
                BASE,
                BASE + 700 * PAGE_SIZE,
                BASE2,
                HUGE_SLOTS[1] + 0x5000,
                WINDOW_END - PAGE_SIZE,
            ] {
                self.check_page(*space, probe, model.get(&probe))?;
            }
        }
        for dead in self.dead.iter().take(3) {
            prop_assert_eq!(self.s.root_table(*dead), Err(Error::StaleSpace));
        }
        let model_tables = self.model_tables();
        prop_assert_eq!(self.s.tables_in_use(), model_tables);
        prop_assert_eq!(self.s.pool_free(), self.donated.len() as u64 - model_tables);
        // Every frame an operation can name (the rest are checked at the end).
        let counts = self.mapping_counts();
        let named = (RAM..RAM + TABLES)
            .chain(DATA..DATA + DATA_FRAMES)
            .chain(HUGE_RAM..HUGE_RAM + 512);
        let mut tables = 0;
        for n in named {
            let u = self.s.frame_use(cap(&self.s, n)).unwrap();
            if self.donated.contains(&n) {
                prop_assert!(
                    matches!(u, FrameUse::Pooled | FrameUse::Table),
                    "frame {:#x}: {:?}",
                    n,
                    u
                );
                tables += u64::from(u == FrameUse::Table);
            } else {
                let mappings = counts.get(&n).copied().unwrap_or(0);
                prop_assert_eq!(u, FrameUse::Data { mappings }, "frame {:#x}", n);
            }
        }
        prop_assert_eq!(tables, self.s.tables_in_use());
        Ok(())
    }

    /// `query` and `translate` of one page agree with the model entry.
    fn check_page(&self, space: SpaceCap, va: u64, e: Option<&Entry>) -> Result<(), TestCaseError> {
        let q = self.s.query(space, page(va)).unwrap();
        let t = |access, user| {
            self.s
                .translate(space, VirtAddr::new(va + 0x18), access, user)
        };
        let Some(e) = e else {
            prop_assert_eq!(q, None);
            prop_assert_eq!(t(Access::Read, true), Err(Fault::NotPresent));
            return Ok(());
        };
        let size = if e.huge {
            PageSize::Huge
        } else {
            PageSize::Small
        };
        prop_assert_eq!(q, Some((frame(e.frame), e.attrs, size)));
        let (pa, flags) = t(Access::Read, true).unwrap();
        prop_assert_eq!(pa.as_u64(), e.frame * PAGE_SIZE + 0x18);
        prop_assert_eq!(Attrs::from_flags(flags), e.attrs);
        let ok = |r: Result<_, Fault>, allowed: bool| {
            r.map(|_| ())
                == if allowed {
                    Ok(())
                } else {
                    Err(Fault::Protection)
                }
        };
        prop_assert!(ok(t(Access::Write, true), e.attrs.writable));
        prop_assert!(ok(t(Access::Write, false), e.attrs.writable));
        prop_assert!(ok(t(Access::Exec, true), e.attrs.executable));
        prop_assert!(ok(t(Access::Read, false), true));
        Ok(())
    }
}

/// Cases per run: quick for CI; `PROPTEST_CASES=5000` for a deep run.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn stub_agrees_with_model(ops in prop::collection::vec(op(), 1..80)) {
        let mut w = World::new();
        for op in ops {
            w.step(op)?;
            w.check()?;
        }
        let live: Vec<SpaceCap> = w.spaces.iter().flatten().map(|s| s.0).collect();
        for space in live {
            prop_assert_eq!(w.s.destroy_space(space), Ok(()));
        }
        prop_assert_eq!(w.s.tables_in_use(), 0);
        prop_assert_eq!(w.s.pool_free(), w.donated.len() as u64);
        for n in RAM..RAM + RAM_FRAMES {
            let u = w.s.frame_use(cap(&w.s, n)).unwrap();
            let want = if w.donated.contains(&n) { FrameUse::Pooled } else { FrameUse::Data { mappings: 0 } };
            prop_assert_eq!(u, want);
        }
    }
}
