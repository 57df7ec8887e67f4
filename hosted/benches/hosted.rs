//! Hosted end to end, beside Linux in the same run: a C-ABI (`ms_mmap`, `ms_munmap`)
//! pair through `memserverd` (socket round trips, page-table operations applied with
//! `mmap(MAP_FIXED)`), and a first touch (a real SIGSEGV, the fault forwarded, the page
//! installed, the access retried), against the same calls as Linux syscalls; and a first
//! read of each page of a mapped host file (the server places the mapping, the host's page
//! cache serves the fault) against Linux's own mapping of the same file.

use criterion::{Criterion, criterion_group, criterion_main};
use memserver_hosted::c_abi::{ms_mmap, ms_munmap};
use rustix::mm::{MapFlags as LMap, ProtFlags};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const P: u64 = 4096;
const PAGES: u64 = 4096;

struct Daemon(Child, std::path::PathBuf);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_file(&self.1);
    }
}

fn daemon() -> Daemon {
    let sock = std::env::temp_dir().join(format!("memserverd-bench-{}.sock", std::process::id()));
    let child = Command::new(env!("CARGO_BIN_EXE_memserverd"))
        .arg("--socket")
        .arg(&sock)
        .args(["--mem", "256M"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start memserverd");
    for _ in 0..500 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Daemon(child, sock)
}

fn rw() -> ProtFlags {
    ProtFlags::READ | ProtFlags::WRITE
}

fn hosted(c: &mut Criterion) {
    let d = daemon();
    // SAFETY: set before any other thread exists and before the C ABI's first call.
    unsafe { std::env::set_var("MEMSERVER_SOCKET", &d.1) };
    let (prot, flags) = (
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
    );
    let map = |len: u64| {
        let p = ms_mmap(std::ptr::null_mut(), len as usize, prot, flags, -1, 0);
        assert_ne!(p, libc::MAP_FAILED, "ms_mmap");
        p
    };

    let mut g = c.benchmark_group("hosted_mmap_munmap");
    g.bench_function("ours", |b| {
        b.iter(|| {
            let a = map(P);
            assert_eq!(ms_munmap(a, P as usize), 0);
        })
    });
    g.bench_function("linux", |b| {
        b.iter(|| {
            // SAFETY: a fresh anonymous page, unmapped at once, never referenced.
            unsafe {
                let p = rustix::mm::mmap_anonymous(
                    std::ptr::null_mut(),
                    P as usize,
                    rw(),
                    LMap::PRIVATE,
                )
                .expect("mmap");
                rustix::mm::munmap(p, P as usize).expect("munmap");
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("hosted_first_touch");
    g.bench_function("ours", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(PAGES);
                let a = map(PAGES * P) as u64;
                let t = Instant::now();
                for i in 0..n {
                    // SAFETY: a page of the mapping just made for this process; the first
                    // write faults and the runtime has the server install it.
                    unsafe { std::ptr::write_volatile((a + i * P) as *mut u8, 1) };
                }
                total += t.elapsed();
                assert_eq!(ms_munmap(a as *mut _, (PAGES * P) as usize), 0);
                left -= n;
            }
            total
        })
    });
    g.bench_function("linux", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(PAGES);
                // SAFETY: a fresh anonymous mapping, written through its own pointer within
                // its bounds, then unmapped.
                unsafe {
                    let p = rustix::mm::mmap_anonymous(
                        std::ptr::null_mut(),
                        (PAGES * P) as usize,
                        rw(),
                        LMap::PRIVATE,
                    )
                    .expect("mmap");
                    let t = Instant::now();
                    for i in 0..n {
                        std::ptr::write_volatile((p as *mut u8).add((i * P) as usize), 1);
                    }
                    total += t.elapsed();
                    rustix::mm::munmap(p, (PAGES * P) as usize).expect("munmap");
                }
                left -= n;
            }
            total
        })
    });
    g.finish();

    host_file_fault(c);
}

/// Reads the first byte of each page of a fresh mapping of a cached file of [`PAGES`]
/// pages: through `memserverd` (`ms_mmap` of the process's own fd) and plainly.
fn host_file_fault(c: &mut Criterion) {
    let path = std::env::temp_dir().join(format!("host-file-bench-{}", std::process::id()));
    std::fs::write(&path, vec![7u8; (PAGES * P) as usize]).expect("write the bench file");
    let file = std::fs::File::open(&path).expect("open the bench file");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    let len = (PAGES * P) as usize;
    let read_pages = |a: u64, n: u64| {
        let t = Instant::now();
        for i in 0..n {
            // SAFETY: a page of the file mapping just made, inside the file.
            let v = unsafe { std::ptr::read_volatile((a + i * P) as *const u8) };
            assert_eq!(v, 7);
        }
        t.elapsed()
    };
    let mut g = c.benchmark_group("host_file_fault");
    g.bench_function("ours", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(PAGES);
                let a = ms_mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ,
                    libc::MAP_SHARED,
                    fd,
                    0,
                );
                assert_ne!(a, libc::MAP_FAILED, "ms_mmap of a host file");
                total += read_pages(a as u64, n);
                assert_eq!(ms_munmap(a, len), 0);
                left -= n;
            }
            total
        })
    });
    g.bench_function("linux", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(PAGES);
                // SAFETY: a fresh read-only mapping of the bench file, read within its
                // bounds, then unmapped.
                unsafe {
                    let p = rustix::mm::mmap(
                        std::ptr::null_mut(),
                        len,
                        ProtFlags::READ,
                        LMap::SHARED,
                        &file,
                        0,
                    )
                    .expect("mmap");
                    total += read_pages(p as u64, n);
                    rustix::mm::munmap(p, len).expect("munmap");
                }
                left -= n;
            }
            total
        })
    });
    g.finish();
    let _ = std::fs::remove_file(&path);
}

criterion_group!(benches, hosted);
criterion_main!(benches);
