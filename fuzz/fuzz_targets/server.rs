//! (b) The server core over the real kernel stub, fed arbitrary multi-client programs
//! (requests, faults, garbage, client exits), every invariant checked after every step,
//! no leak at the end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memserver::inproc::InProcStub;

fuzz_target!(|data: &[u8]| {
    let stub = InProcStub::for_config(&memserver::chaos::config()).expect("simulable");
    if let Err(e) = memserver::chaos::run(stub, data) {
        panic!("{e}");
    }
});
