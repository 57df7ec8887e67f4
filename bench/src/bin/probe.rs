//! A fixed workload for instruction counting under callgrind: `probe <case> <n>` runs
//! `n` iterations of `pair` (server-core mmap+munmap), `mprotect`, `wire`
//! (encode+decode) or `file` (a file page's first fault, paged in).
//! `cargo xtask bench` runs it with n and 0 iterations and divides the difference.

use bench::{Ours, encode_decode};
use ipc_proto::{MAX_REQUEST_LEN, MAX_RESPONSE_LEN};
use std::hint::black_box;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let case = args.get(1).map(String::as_str).unwrap_or("pair");
    let n: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    match case {
        "pair" => {
            let mut ours = Ours::new(1 << 12, 1 << 20);
            for _ in 0..n {
                ours.mmap_munmap();
            }
        }
        "mprotect" => {
            let mut ours = Ours::new(1 << 12, 1 << 20);
            let a = ours.mmap(3 * 4096, ipc_proto::Prot::READ | ipc_proto::Prot::WRITE);
            for _ in 0..n {
                ours.mprotect_split_merge(a);
            }
        }
        "wire" => {
            let mut req = [0u8; MAX_REQUEST_LEN];
            let mut resp = [0u8; MAX_RESPONSE_LEN];
            for _ in 0..n {
                black_box(encode_decode(&mut req, &mut resp));
            }
        }
        "file" => {
            // First reads of file pages, each paged in from the RAM file server.
            let mut ours = Ours::new(1 << 12, 1 << 20).with_file(256);
            let mut left = n;
            while left > 0 {
                let k = left.min(256);
                let (fd, a) = ours.map_file(256);
                for i in 0..k {
                    black_box(ours.file_touch(a + i * 4096));
                }
                ours.unmap_file(fd, a, 256);
                left -= k;
            }
        }
        other => {
            eprintln!("unknown case {other}: pair | mprotect | wire | file");
            std::process::exit(2);
        }
    }
}
