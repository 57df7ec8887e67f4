//! (b) The server core over the real kernel stub, fed arbitrary multi-client programs
//! (requests, faults, garbage, client exits, files opened, mapped, written and synced
//! through a file server that may fail), every invariant checked after every step, no
//! leak at the end.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&fail_every, program)) = data.split_first() else {
        return;
    };
    let stub = memserver_testkit::ram_stub(&memserver_testkit::chaos::config()).expect("simulable");
    // The file server: the conformance files and one bigger than memory, failing every
    // `n`th request when the first byte asks for it.
    let mut fs = fileserver::fixture::conformance_fs();
    let big: Vec<u8> = (0..200 * 4096u32).map(|i| (i / 4096) as u8).collect();
    fs.create("/chaos/big", 0o666, 0, 0, &big)
        .expect("a new file");
    let n = u32::from(fail_every % 16);
    let mut calls = 0u32;
    let pager = Box::new(move |req: &[u8], out: &mut [u8]| {
        calls += 1;
        if n > 1 && calls.is_multiple_of(n) {
            return Err(ipc_proto::Errno::EIO);
        }
        Ok(fs.handle_message(req, out))
    });
    if let Err(e) = memserver_testkit::chaos::run_with_pager(stub, program, Some(pager)) {
        panic!("{e}");
    }
});
