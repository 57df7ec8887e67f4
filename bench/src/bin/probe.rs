//! A fixed workload for instruction counting under callgrind:
//! `probe <case> <iterations>` (cases: pair, wire).
use ipc_proto::*;
use memserver::machine::Machine;
use memserver::model_stub::ModelStub;
use memserver::{Config, FrameRange, Sender};
use std::hint::black_box;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let mut m = Machine::new(
        Config::with_ram(vec![FrameRange {
            start: 0x1000,
            count: 1 << 16,
        }]),
        ModelStub::new(),
    );
    let id = m.spawn(ClientSpec::DEFAULT).unwrap();
    let mut req = [0u8; MAX_REQUEST_LEN];
    let mut resp = [0u8; MAX_RESPONSE_LEN];
    for _ in 0..n {
        let k = encode_request(&examples::mmap_anon_4k(), &mut req).unwrap();
        let r = m
            .server
            .handle_message(Sender::Client(id), &req[..k], &mut resp);
        let Ok(Ok(Reply::Mapped { addr })) = decode_response(&resp[..r]) else {
            panic!()
        };
        let k = encode_request(&Request::Munmap { addr, len: 4096 }, &mut req).unwrap();
        let r = m
            .server
            .handle_message(Sender::Client(id), &req[..k], &mut resp);
        black_box(decode_response(&resp[..r]).unwrap().unwrap());
    }
}
