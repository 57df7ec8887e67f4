//! Criterion benchmarks: each case measured for ours and for Linux in the same run.
//! `cargo xtask bench` runs them and prints the ratios.

use bench::{Ours, P, encode_decode, linux};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ipc_proto::{MAX_REQUEST_LEN, MAX_RESPONSE_LEN, Prot};
use rustix::mm::ProtFlags;
use std::hint::black_box;
use std::time::{Duration, Instant};

fn pair(c: &mut Criterion) {
    let mut g = c.benchmark_group("mmap_munmap");
    let mut ours = Ours::new(1 << 16, 1 << 20);
    g.bench_function("ours", |b| b.iter(|| ours.mmap_munmap()));
    g.bench_function("linux", |b| b.iter(linux::mmap_munmap));
    g.finish();
}

fn mprotect(c: &mut Criterion) {
    let mut g = c.benchmark_group("mprotect_split_merge");
    let mut ours = Ours::new(1 << 16, 1 << 20);
    let a = ours.mmap(3 * P, Prot::READ | Prot::WRITE);
    g.bench_function("ours", |b| b.iter(|| ours.mprotect_split_merge(a)));
    let m = linux::Mapping::new(3 * P, ProtFlags::READ | ProtFlags::WRITE);
    g.bench_function("linux", |b| b.iter(|| m.mprotect_split_merge()));
    g.finish();
}

/// Region counts for the scaling cases; Linux's default `vm.max_map_count` is 65 530, so
/// its largest point stays just under it.
const SCALE: [(u64, u64); 3] = [(10, 10), (1000, 1000), (65536, 65000)];

fn scaling(c: &mut Criterion) {
    let mut g = c.benchmark_group("mmap_munmap_at");
    for (ours_n, linux_n) in SCALE {
        let mut ours = Ours::new(1 << 16, 1 << 20);
        ours.populate_regions(ours_n);
        g.bench_with_input(BenchmarkId::new("ours", ours_n), &ours_n, |b, _| {
            b.iter(|| ours.mmap_munmap())
        });
        let held = linux::populate_regions(linux_n);
        g.bench_with_input(BenchmarkId::new("linux", ours_n), &ours_n, |b, _| {
            b.iter(linux::mmap_munmap)
        });
        drop(held);
    }
    g.finish();
}

/// Times `touch` on pages `0..iters` in batches of at most `pages`: each batch runs on a
/// fresh mapping that `map` makes and `unmap` removes outside the timed part, so only
/// the first touches are measured.
fn batched<T, M>(
    cx: &mut T,
    iters: u64,
    pages: u64,
    map: impl Fn(&mut T) -> M,
    touch: impl Fn(&mut T, &M, u64),
    unmap: impl Fn(&mut T, M),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(pages);
        let m = map(cx);
        let t = Instant::now();
        for i in 0..n {
            touch(cx, &m, i);
        }
        total += t.elapsed();
        unmap(cx, m);
        left -= n;
    }
    total
}

fn first_touch(c: &mut Criterion) {
    const PAGES: u64 = 4096;
    let mut g = c.benchmark_group("first_touch");
    let mut ours = Ours::new(1 << 14, 1 << 20);
    g.bench_function("ours", |b| {
        b.iter_custom(|iters| {
            batched(
                &mut ours,
                iters,
                PAGES,
                |o| o.fresh_region(PAGES),
                |o, &a, i| o.first_touch(a + i * P),
                |o, a| o.munmap(a, PAGES * P),
            )
        })
    });
    g.bench_function("linux", |b| {
        b.iter_custom(|iters| {
            batched(
                &mut (),
                iters,
                PAGES,
                |_| linux::Mapping::new(PAGES * P, ProtFlags::READ | ProtFlags::WRITE),
                |_, m, i| m.touch(i),
                |_, m| drop(m),
            )
        })
    });
    g.finish();
}

/// A first read of a page of a shared file mapping whose contents are in memory: ours
/// pages it in from a RAM file server (`ours`) or finds it in the page cache because
/// another mapping holds it (`ours_cached`); Linux faults a resident memfd page in.
fn file_fault(c: &mut Criterion) {
    const PAGES: u64 = 1024;
    let mut g = c.benchmark_group("file_fault");
    let mut ours = Ours::new(1 << 14, 1 << 20).with_file(PAGES);
    let ours_touches = |ours: &mut Ours, iters| {
        batched(
            ours,
            iters,
            PAGES,
            |o| o.map_file(PAGES),
            |o, &(_, a), i| {
                black_box(o.file_touch(a + i * P));
            },
            |o, (fd, a)| o.unmap_file(fd, a, PAGES),
        )
    };
    g.bench_function("ours", |b| {
        b.iter_custom(|iters| ours_touches(&mut ours, iters))
    });
    // Another mapping keeps every page of the file cached.
    let (hold_fd, hold) = ours.map_file(PAGES);
    for i in 0..PAGES {
        ours.file_touch(hold + i * P);
    }
    g.bench_function("ours_cached", |b| {
        b.iter_custom(|iters| ours_touches(&mut ours, iters))
    });
    ours.unmap_file(hold_fd, hold, PAGES);
    g.bench_function("linux", |b| {
        b.iter_custom(|iters| {
            batched(
                &mut (),
                iters,
                PAGES,
                |_| linux::file_mapping(PAGES),
                |_, (m, _), i| {
                    black_box(m.read(i));
                },
                |_, mapping| drop(mapping),
            )
        })
    });
    g.finish();
}

fn wire(c: &mut Criterion) {
    let mut req = [0u8; MAX_REQUEST_LEN];
    let mut resp = [0u8; MAX_RESPONSE_LEN];
    c.bench_function("encode_decode", |b| {
        b.iter(|| black_box(encode_decode(&mut req, &mut resp)))
    });
}

criterion_group!(
    benches,
    pair,
    mprotect,
    scaling,
    first_touch,
    file_fault,
    wire
);
criterion_main!(benches);
