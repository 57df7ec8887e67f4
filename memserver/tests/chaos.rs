//! Soak test: thousands of pseudo-random operation programs through the chaos engine,
//! each checking every invariant after every step and no leak at the end.

use memserver::inproc::InProcStub;
use memserver::model_stub::ModelStub;

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
        if let Err(e) = memserver::chaos::run(ModelStub::new(), &data) {
            panic!("seed {seed}: {e}");
        }
    }
}

#[test]
fn random_programs_keep_every_invariant_over_the_real_stub() {
    for seed in 0..200u64 {
        let data = bytes(seed, 1500);
        let stub = InProcStub::for_config(&memserver::chaos::config()).unwrap();
        if let Err(e) = memserver::chaos::run(stub, &data) {
            panic!("seed {seed}: {e}");
        }
    }
}

#[test]
#[ignore]
fn trace_one() {
    let data = bytes(7, 1500);
    memserver::chaos::run(ModelStub::new(), &data).unwrap();
}

#[test]
#[ignore]
fn trace_real() {
    let seed: u64 = std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let stub = InProcStub::for_config(&memserver::chaos::config()).unwrap();
    memserver::chaos::run(stub, &bytes(seed, 1500)).unwrap();
}
