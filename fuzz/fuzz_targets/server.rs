//! (b) The server core fed arbitrary multi-client programs (requests, faults, garbage,
//! client exits), every invariant checked after every step, no leak at the end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memserver::model_stub::ModelStub;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = memserver::chaos::run(ModelStub::new(), data) {
        panic!("{e}");
    }
});
