use criterion::{Criterion, criterion_group, criterion_main};
use ipc_proto::*;
use memserver::machine::Machine;
use memserver::model_stub::ModelStub;
use memserver::{Config, FrameRange, Sender};
use std::hint::black_box;

fn server_pair(c: &mut Criterion) {
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
    c.bench_function("ours_mmap_munmap", |b| {
        b.iter(|| {
            let n = encode_request(&examples::mmap_anon_4k(), &mut req).unwrap();
            let r = m
                .server
                .handle_message(Sender::Client(id), &req[..n], &mut resp);
            let Ok(Ok(Reply::Mapped { addr })) = decode_response(&resp[..r]) else {
                panic!()
            };
            let n = encode_request(&Request::Munmap { addr, len: 4096 }, &mut req).unwrap();
            let r = m
                .server
                .handle_message(Sender::Client(id), &req[..n], &mut resp);
            black_box(decode_response(&resp[..r]).unwrap().unwrap());
        })
    });
    c.bench_function("linux_mmap_munmap", |b| {
        b.iter(|| unsafe {
            let p = rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                4096,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE,
            )
            .unwrap();
            rustix::mm::munmap(p, 4096).unwrap();
        })
    });
}

criterion_group!(benches, server_pair);
criterion_main!(benches);
