//! Soak test: thousands of pseudo-random operation programs through the chaos engine,
//! each checking every invariant after every step and no leak at the end.

use memserver_testkit::ModelStub;

/// xorshift64*: a fixed, dependency-free byte stream so failures reproduce.
fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

#[test]
fn random_programs_keep_every_invariant() {
    for seed in 0..400u64 {
        let data = bytes(seed, 1500);
        if let Err(e) = memserver_testkit::chaos::run(ModelStub::new(), &data) {
            panic!("seed {seed}: {e}");
        }
    }
}

#[test]
fn random_programs_keep_every_invariant_over_the_real_stub() {
    for seed in 0..200u64 {
        let data = bytes(seed, 1500);
        let stub = memserver_testkit::ram_stub(&memserver_testkit::chaos::config()).unwrap();
        if let Err(e) = memserver_testkit::chaos::run(stub, &data) {
            panic!("seed {seed}: {e}");
        }
    }
}

/// The conformance fixture's file server, failing every `n`th request (never, for 0) as
/// a crashed or broken file server would.
fn files(n: u32) -> Box<dyn memserver::Pager> {
    let mut fs = fileserver::fixture::conformance_fs();
    let big: Vec<u8> = (0..200 * 4096u32).map(|i| (i / 4096) as u8).collect();
    fs.create("/chaos/big", 0o666, 0, 0, &big).unwrap();
    let mut calls = 0u32;
    Box::new(move |req: &[u8], out: &mut [u8]| {
        calls += 1;
        if n != 0 && calls.is_multiple_of(n) {
            return Err(ipc_proto::Errno::EIO);
        }
        Ok(fs.handle_message(req, out))
    })
}

#[test]
fn random_programs_with_files_keep_every_invariant() {
    let mut total = memserver::PagerCounters::default();
    for seed in 0..300u64 {
        let data = bytes(seed, 1500);
        let pager = files([0, 0, 5, 11][seed as usize % 4]);
        match memserver_testkit::chaos::run_with_pager(ModelStub::new(), &data, Some(pager)) {
            Ok(c) => {
                total.page_ins += c.page_ins;
                total.page_outs += c.page_outs;
                total.evictions += c.evictions;
            }
            Err(e) => panic!("seed {seed}: {e}"),
        }
    }
    // The programs really page files in, write them back and run out of memory.
    eprintln!("{total:?}");
    assert!(total.page_ins > 100 && total.page_outs > 10 && total.evictions > 10);
}

#[test]
fn random_programs_with_files_keep_every_invariant_over_the_real_stub() {
    for seed in 0..150u64 {
        let data = bytes(seed, 1500);
        let stub = memserver_testkit::ram_stub(&memserver_testkit::chaos::config()).unwrap();
        let pager = files([0, 7][seed as usize % 2]);
        if let Err(e) = memserver_testkit::chaos::run_with_pager(stub, &data, Some(pager)) {
            panic!("seed {seed}: {e}");
        }
    }
}

#[test]
#[ignore]
fn trace_one() {
    let data = bytes(7, 1500);
    memserver_testkit::chaos::run(ModelStub::new(), &data).unwrap();
}

#[test]
#[ignore]
fn trace_real() {
    let seed: u64 = std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let stub = memserver_testkit::ram_stub(&memserver_testkit::chaos::config()).unwrap();
    memserver_testkit::chaos::run(stub, &bytes(seed, 1500)).unwrap();
}
