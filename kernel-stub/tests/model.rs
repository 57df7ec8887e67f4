//! Property test: after any sequence of operations the stub agrees with a simple model
//! (a map of pages per space), no table page leaks, per-frame counts match, the TLB hook
//! fires exactly when a present entry changed, and every bad call is refused.

mod common;
use common::*;
use kernel_stub::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

const BASE: u64 = 0x4000_0000;
const TABLES: u64 = 24;

#[derive(Clone, Debug)]
enum Op {
    Map {
        sp: usize,
        page: u64,
        frame: u64,
        attrs: u8,
    },
    Unmap {
        sp: usize,
        page: u64,
    },
    Protect {
        sp: usize,
        page: u64,
        attrs: u8,
    },
    UnmapRange {
        sp: usize,
        page: u64,
        n: u64,
    },
    ProtectRange {
        sp: usize,
        page: u64,
        n: u64,
        attrs: u8,
    },
    MapHuge {
        sp: usize,
        half: u64,
    },
    Destroy {
        sp: usize,
    },
    Create,
    Forged {
        raw: u64,
        page: u64,
    },
    Bad {
        sp: usize,
        addr: u64,
    },
}

fn attrs(a: u8) -> Attrs {
    Attrs {
        writable: a & 1 != 0,
        executable: a & 2 != 0,
        cache: if a & 4 != 0 {
            Cache::WriteCombining
        } else {
            Cache::WriteBack
        },
    }
}

fn op() -> impl Strategy<Value = Op> {
    let sp = 0usize..3;
    let page = 0u64..1100;
    prop_oneof![
        6 => (sp.clone(), page.clone(), 0u64..64, any::<u8>()).prop_map(|(sp, page, frame, attrs)| Op::Map { sp, page, frame, attrs }),
        3 => (sp.clone(), page.clone()).prop_map(|(sp, page)| Op::Unmap { sp, page }),
        2 => (sp.clone(), page.clone(), any::<u8>()).prop_map(|(sp, page, attrs)| Op::Protect { sp, page, attrs }),
        2 => (sp.clone(), page.clone(), 1u64..600).prop_map(|(sp, page, n)| Op::UnmapRange { sp, page, n }),
        2 => (sp.clone(), page.clone(), 1u64..40, any::<u8>()).prop_map(|(sp, page, n, attrs)| Op::ProtectRange { sp, page, n, attrs }),
        1 => (sp.clone(), 0u64..2).prop_map(|(sp, half)| Op::MapHuge { sp, half }),
        1 => sp.clone().prop_map(|sp| Op::Destroy { sp }),
        1 => Just(Op::Create),
        1 => (any::<u64>(), page.clone()).prop_map(|(raw, page)| Op::Forged { raw, page }),
        1 => (sp, prop_oneof![Just(0u64), Just(0xffff_8000_0000_0000), Just(0x0000_8000_0000_0000), Just(0x4000_0007), any::<u64>()]).prop_map(|(sp, addr)| Op::Bad { sp, addr }),
    ]
}

/// Model: per live space, every 4 KiB page → (frame number, attrs).
type Pages = BTreeMap<u64, (u64, Attrs)>;

struct World {
    s: TestStub,
    spaces: Vec<Option<(SpaceCap, Pages)>>,
    dead: Vec<SpaceCap>,
    flushes: (u64, u64),
}

impl World {
    fn check(&mut self) -> Result<(), TestCaseError> {
        let mut counts: BTreeMap<u64, u32> = BTreeMap::new();
        for (sp, model) in self.spaces.iter().flatten() {
            let mut seen: Pages = BTreeMap::new();
            self.s
                .for_each_mapping(*sp, |va, f, a, size| {
                    let n = if size == PageSize::Huge { 512 } else { 1 };
                    let first = f.start_address().as_u64() / PAGE_SIZE;
                    for k in 0..n {
                        seen.insert(va + k * PAGE_SIZE, (first + k, a));
                    }
                })
                .unwrap();
            prop_assert_eq!(&seen, model);
            for (&va, &(f, a)) in model.iter().step_by(7) {
                let (pa, _) = self.s.translate(*sp, va + 8, Access::Read).unwrap();
                prop_assert_eq!(pa.as_u64(), f * PAGE_SIZE + 8);
                let w = self.s.translate(*sp, va, Access::Write);
                prop_assert_eq!(w.is_ok(), a.writable);
                let x = self.s.translate(*sp, va, Access::Exec);
                prop_assert_eq!(x.is_ok(), a.executable);
            }
            for &(f, _) in model.values() {
                *counts.entry(f).or_default() += 1;
            }
            prop_assert_eq!(
                self.s.translate(*sp, BASE + 2000 * PAGE_SIZE, Access::Read),
                Err(Fault::NotPresent)
            );
        }
        for i in 0..64 {
            let f = RAM + 512 + i;
            let cap = self.s.frame_cap(f * PAGE_SIZE).unwrap();
            prop_assert_eq!(self.s.map_count(cap), counts.get(&f).copied().unwrap_or(0));
        }
        prop_assert_eq!(self.s.pool_free() + self.s.tables_in_use(), TABLES);
        prop_assert_eq!((self.s.tlb().pages, self.s.tlb().alls), self.flushes);
        Ok(())
    }

    fn live(&self, i: usize) -> Option<SpaceCap> {
        self.spaces.get(i).and_then(|s| s.as_ref()).map(|s| s.0)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn stub_agrees_with_model(ops in prop::collection::vec(op(), 1..60)) {
        let mut s = stub(TABLES);
        let a = s.create_space().unwrap();
        let b = s.create_space().unwrap();
        let mut w = World { s, spaces: vec![Some((a, BTreeMap::new())), Some((b, BTreeMap::new()))], dead: vec![], flushes: (0, 0) };
        for op in ops {
            match op {
                Op::Map { sp, page, frame, attrs: at } => {
                    let Some(cap) = w.live(sp) else { continue };
                    let va = BASE + page * PAGE_SIZE;
                    let f = data(&w.s, frame);
                    let r = w.s.map(cap, va, f, attrs(at));
                    let model = &mut w.spaces[sp].as_mut().unwrap().1;
                    if let std::collections::btree_map::Entry::Vacant(e) = model.entry(va) {
                        match r {
                            Ok(()) => { e.insert((RAM + 512 + frame, attrs(at))); }
                            Err(e) => prop_assert_eq!(e, Error::OutOfTableFrames),
                        }
                    } else {
                        prop_assert_eq!(r, Err(Error::AlreadyMapped));
                    }
                }
                Op::Unmap { sp, page } => {
                    let Some(cap) = w.live(sp) else { continue };
                    let va = BASE + page * PAGE_SIZE;
                    let r = w.s.unmap(cap, va);
                    let model = &mut w.spaces[sp].as_mut().unwrap().1;
                    match (r, model.get(&va).copied()) {
                        (Ok(Some((f, a))), Some((mf, ma))) => {
                            prop_assert_eq!((f.start_address().as_u64() / PAGE_SIZE, a), (mf, ma));
                            model.remove(&va);
                            w.flushes = (w.s.tlb().pages, w.s.tlb().alls);
                            prop_assert!(w.flushes.0 + w.flushes.1 > 0);
                        }
                        (Ok(None), None) => {}
                        (Err(Error::OutOfTableFrames), Some(_)) => {}
                        (r, m) => prop_assert!(false, "unmap {:?} vs model {:?}", r, m),
                    }
                }
                Op::Protect { sp, page, attrs: at } => {
                    let Some(cap) = w.live(sp) else { continue };
                    let va = BASE + page * PAGE_SIZE;
                    let before = (w.s.tlb().pages, w.s.tlb().alls);
                    let r = w.s.protect(cap, va, attrs(at));
                    let model = &mut w.spaces[sp].as_mut().unwrap().1;
                    match (r, model.get_mut(&va)) {
                        (Ok(Some(old)), Some(e)) => {
                            prop_assert_eq!(old, e.1);
                            let changed = old != attrs(at);
                            e.1 = attrs(at);
                            let now = (w.s.tlb().pages, w.s.tlb().alls);
                            if changed { prop_assert!(now != before) } else { prop_assert_eq!(now, before) }
                            w.flushes = now;
                        }
                        (Ok(None), None) => prop_assert_eq!((w.s.tlb().pages, w.s.tlb().alls), before),
                        (Err(Error::OutOfTableFrames), Some(_)) => {}
                        (r, m) => prop_assert!(false, "protect {:?} vs model {:?}", r, m),
                    }
                }
                Op::UnmapRange { sp, page, n } => {
                    let Some(cap) = w.live(sp) else { continue };
                    let va = BASE + page * PAGE_SIZE;
                    let mut got = BTreeMap::new();
                    let r = w.s.unmap_range(cap, va, n, |v, f, a| { got.insert(v, (f.start_address().as_u64() / PAGE_SIZE, a)); });
                    let model = &mut w.spaces[sp].as_mut().unwrap().1;
                    let want: Pages = model.range(va..va + n * PAGE_SIZE).map(|(k, v)| (*k, *v)).collect();
                    match r {
                        Ok(k) => {
                            prop_assert_eq!(k as usize, want.len());
                            prop_assert_eq!(&got, &want);
                            for k in want.keys() { model.remove(k); }
                        }
                        Err(e) => {
                            // Only a huge split can fail; what was removed before it is gone.
                            prop_assert_eq!(e, Error::OutOfTableFrames);
                            for k in got.keys() { model.remove(k); }
                        }
                    }
                    w.flushes = (w.s.tlb().pages, w.s.tlb().alls);
                }
                Op::ProtectRange { sp, page, n, attrs: at } => {
                    let Some(cap) = w.live(sp) else { continue };
                    let va = BASE + page * PAGE_SIZE;
                    let model = &mut w.spaces[sp].as_mut().unwrap().1;
                    let before = (w.s.tlb().pages, w.s.tlb().alls);
                    match w.s.protect_range(cap, va, n, attrs(at)) {
                        Ok(changed) => {
                            let mut want = 0;
                            for (_, e) in model.range_mut(va..va + n * PAGE_SIZE) {
                                if e.1 != attrs(at) { want += 1; }
                                e.1 = attrs(at);
                            }
                            prop_assert_eq!(changed, want);
                            let now = (w.s.tlb().pages, w.s.tlb().alls);
                            if want == 0 { prop_assert_eq!(now, before) }
                        }
                        Err(e) => {
                            prop_assert_eq!(e, Error::OutOfTableFrames);
                            // Resync the model from the stub for the touched range.
                            let mut seen = BTreeMap::new();
                            w.s.for_each_mapping(cap, |v, f, a, size| {
                                let k = if size == PageSize::Huge { 512 } else { 1 };
                                for i in 0..k { seen.insert(v + i * PAGE_SIZE, (f.start_address().as_u64() / PAGE_SIZE + i, a)); }
                            }).unwrap();
                            *model = seen;
                        }
                    }
                    w.flushes = (w.s.tlb().pages, w.s.tlb().alls);
                }
                Op::MapHuge { sp, half } => {
                    let Some(cap) = w.live(sp) else { continue };
                    let va = BASE + half * HUGE_PAGE_SIZE;
                    let first = w.s.frame_cap((DEV + half * 512) * PAGE_SIZE).unwrap();
                    let r = w.s.map_huge(cap, va, first, attrs(3));
                    let model = &mut w.spaces[sp].as_mut().unwrap().1;
                    let busy = model.range(va..va + HUGE_PAGE_SIZE).next().is_some();
                    match r {
                        Ok(()) => {
                            prop_assert!(!busy);
                            for k in 0..512 { model.insert(va + k * PAGE_SIZE, (DEV + half * 512 + k, attrs(3))); }
                        }
                        Err(Error::AlreadyMapped) => prop_assert!(busy),
                        Err(e) => prop_assert_eq!(e, Error::OutOfTableFrames),
                    }
                }
                Op::Destroy { sp } => {
                    let Some(cap) = w.live(sp) else { continue };
                    w.s.destroy_space(cap).unwrap();
                    w.spaces[sp] = None;
                    w.dead.push(cap);
                    w.flushes = (w.s.tlb().pages, w.s.tlb().alls);
                }
                Op::Create => {
                    match w.s.create_space() {
                        Ok(cap) => {
                            prop_assert!(!w.dead.contains(&cap));
                            match w.spaces.iter().position(|s| s.is_none()) {
                                Some(i) => w.spaces[i] = Some((cap, BTreeMap::new())),
                                None => w.spaces.push(Some((cap, BTreeMap::new()))),
                            }
                        }
                        Err(e) => prop_assert!(e == Error::OutOfTableFrames || e == Error::OutOfSpaces),
                    }
                }
                Op::Forged { raw, page } => {
                    let cap = SpaceCap::from_raw(raw);
                    let live = w.spaces.iter().flatten().any(|s| s.0 == cap);
                    if !live {
                        let f = data(&w.s, 0);
                        let r = w.s.map(cap, BASE + page * PAGE_SIZE, f, attrs(1));
                        prop_assert!(matches!(r, Err(Error::BadSpace | Error::StaleSpace)), "{:?}", r);
                    }
                    for &d in &w.dead {
                        prop_assert_eq!(w.s.unmap(d, BASE), Err(Error::StaleSpace));
                    }
                }
                Op::Bad { sp, addr } => {
                    let Some(cap) = w.live(sp) else { continue };
                    let f = data(&w.s, 0);
                    let r = w.s.map(cap, addr, f, attrs(1));
                    let ok_addr = addr % PAGE_SIZE == 0 && (0x1000..0x8000_0000_0000).contains(&addr);
                    if ok_addr {
                        let model = &mut w.spaces[sp].as_mut().unwrap().1;
                        match r {
                            Ok(()) => { model.insert(addr, (RAM + 512, attrs(1))); }
                            Err(e) => prop_assert!(e == Error::AlreadyMapped || e == Error::OutOfTableFrames),
                        }
                    } else {
                        prop_assert!(matches!(r, Err(Error::NonCanonical | Error::KernelHalf | Error::Unaligned | Error::OutsideWindow)), "{:?} at {:#x}", r, addr);
                    }
                    // Keep the model check's address window assumption: drop stray pages.
                    if ok_addr && r.is_ok() && !(BASE..BASE + 1100 * PAGE_SIZE).contains(&addr) {
                        w.s.unmap(cap, addr).unwrap();
                        w.spaces[sp].as_mut().unwrap().1.remove(&addr);
                        w.flushes = (w.s.tlb().pages, w.s.tlb().alls);
                    }
                }
            }
            w.check()?;
        }
        let caps: Vec<SpaceCap> = w.spaces.iter().flatten().map(|s| s.0).collect();
        for cap in caps { w.s.destroy_space(cap).unwrap(); }
        prop_assert_eq!(w.s.pool_free(), TABLES);
        prop_assert_eq!(w.s.tables_in_use(), 0);
        for i in 0..64 {
            let cap = data(&w.s, i);
            prop_assert_eq!(w.s.map_count(cap), 0);
        }
    }
}
