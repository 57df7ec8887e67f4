//! `msclient COMMAND`: a client of `memserverd` (socket from `MEMSERVER_SOCKET`) for the
//! hosted tests, the load test and the hosted benchmarks. Each command prints what it
//! found and exits 0, or dies of the signal the server decided.
//!
//! - `smoke`: map, touch (real page faults), check laziness and zero fill, unmap.
//! - `segv` / `bus`: write a read-only page / touch past a shared object's end: the
//!   process must die of SIGSEGV / SIGBUS.
//! - `own-handler`: a program with its own SIGSEGV handler (installed before it
//!   connects) gets the server's signal in it, exiting 42 (write to a read-only page)
//!   or 43 (a null pointer, outside the window).
//! - `share-write NAME` / `share-read NAME`: two processes, one shared object.
//! - `hold`: map and touch 64 pages, print `holding`, wait to be killed.
//! - `stats`: print the server's counters, then one line per host file it serves
//!   (`host_file DEV:INO size=.. mapped_pages=..`; `host_files=?` when not allowed).
//! - `load OPS SEED`: mixed operations with data checks; prints `ops errors p50_ns p99_ns`.
//! - `bench`: hosted mmap+munmap pair and first touch beside Linux's, as JSON.
//! - `agent`: a conformance-suite client driven over stdin/stdout (see
//!   `memserver_hosted::harness`).

use client_lib::Client;
use ipc_proto::{MapFlags, OFlags, Prot};
use memserver_hosted::HostedClient;
use std::time::Instant;

const P: u64 = 4096;
const RW: Prot = Prot::READ.union(Prot::WRITE);
const PA: MapFlags = MapFlags::PRIVATE.union(MapFlags::ANONYMOUS);

fn connect() -> Client<HostedClient> {
    let path = std::env::var("MEMSERVER_SOCKET").unwrap_or_else(|_| "/tmp/memserver.sock".into());
    match HostedClient::connect(&path) {
        Ok(c) => Client::new(c),
        Err(e) => {
            eprintln!("msclient: cannot connect to {path}: {e}");
            std::process::exit(2);
        }
    }
}

/// Reads through a real pointer into the window.
fn peek(addr: u64) -> u8 {
    // SAFETY: `addr` lies in a mapping the server made for this process; a fault there
    // is resolved by the runtime or kills the process with the server's signal.
    unsafe { std::ptr::read_volatile(addr as *const u8) }
}

/// Writes through a real pointer into the window.
fn poke(addr: u64, v: u8) {
    // SAFETY: as for `peek`.
    unsafe { std::ptr::write_volatile(addr as *mut u8, v) }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    match arg(0).as_str() {
        "smoke" => smoke(),
        "segv" => {
            let mut c = connect();
            let a = c.mmap(0, P, Prot::READ, PA, None, 0).expect("mmap");
            assert_eq!(peek(a), 0);
            poke(a, 1);
            unreachable!("the write to a read-only page returned");
        }
        "bus" => {
            let mut c = connect();
            let name = format!("/bus-{}", std::process::id());
            let fd = c
                .shm_open(&name, OFlags::CREAT | OFlags::RDWR, 0o600)
                .expect("shm_open");
            c.ftruncate(fd, P as i64).expect("ftruncate");
            let a = c
                .mmap(0, 2 * P, RW, MapFlags::SHARED, Some(fd), 0)
                .expect("mmap");
            c.shm_unlink(&name).expect("unlink");
            poke(a, 1);
            poke(a + P, 1);
            unreachable!("the access past the object returned");
        }
        "own-handler" => {
            extern "C" fn caught(_: i32, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
                // SAFETY: the kernel's siginfo for this fault, valid during the handler.
                let addr = unsafe { (*info).si_addr() } as u64;
                // SAFETY: _exit is async-signal-safe and ends the process at once.
                unsafe { libc::_exit(if addr < 4096 { 43 } else { 42 }) };
            }
            // SAFETY: installing a plain SA_SIGINFO handler for SIGSEGV.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = caught as *const () as usize;
                sa.sa_flags = libc::SA_SIGINFO;
                libc::sigaction(libc::SIGSEGV, &sa, std::ptr::null_mut());
            }
            let mut c = connect();
            let a = c.mmap(0, P, Prot::READ, PA, None, 0).expect("mmap");
            assert_eq!(peek(a), 0);
            if arg(1) == "null" {
                peek(0);
            }
            poke(a, 1);
            unreachable!("the write to a read-only page returned");
        }
        "share-write" => {
            let mut c = connect();
            let fd = c
                .shm_open(&arg(1), OFlags::CREAT | OFlags::RDWR, 0o600)
                .expect("shm_open");
            c.ftruncate(fd, (4 * P) as i64).expect("ftruncate");
            let a = c
                .mmap(0, 4 * P, RW, MapFlags::SHARED, Some(fd), 0)
                .expect("mmap");
            for i in 0..4 {
                poke(a + i * P + i, 0xa0 + i as u8);
            }
            println!("written");
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            // The reader's write must be visible here.
            println!(
                "{}",
                if peek(a + 3 * P + 100) == 0x5e {
                    "seen"
                } else {
                    "not-seen"
                }
            );
        }
        "share-read" => {
            let mut c = connect();
            let fd = c.shm_open(&arg(1), OFlags::RDWR, 0).expect("shm_open");
            let a = c
                .mmap(0, 4 * P, RW, MapFlags::SHARED, Some(fd), 0)
                .expect("mmap");
            let ok = (0..4).all(|i| peek(a + i * P + i) == 0xa0 + i as u8);
            poke(a + 3 * P + 100, 0x5e);
            c.shm_unlink(&arg(1)).expect("unlink");
            println!("{}", if ok { "ok" } else { "mismatch" });
        }
        "hold" => {
            let mut c = connect();
            let a = c.mmap(0, 64 * P, RW, PA, None, 0).expect("mmap");
            for i in 0..64 {
                poke(a + i * P, 1);
            }
            c.mlock(a, 8 * P).expect("mlock");
            println!("holding");
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
        "stats" => {
            let mut c = connect();
            let s = c.stats().expect("stats");
            // Which host files are mapped is for the server's own user only.
            let files = c.transport().host_files().ok();
            let count = files.as_ref().map_or("?".to_string(), |f| f.0.to_string());
            println!(
                "free_frames={} total_frames={} clients={} shm_objects={} host_files={count}",
                s.free_frames, s.total_frames, s.clients, s.shm_objects
            );
            for f in files.map(|f| f.1).unwrap_or_default() {
                println!(
                    "host_file {}:{} size={} mapped_pages={}",
                    f.dev, f.ino, f.size, f.mapped_pages
                );
            }
        }
        "load" => load(
            arg(1).parse().unwrap_or(10_000),
            arg(2).parse().unwrap_or(1),
        ),
        "bench" => bench(),
        "agent" => memserver_hosted::agent::agent_main(),
        other => {
            eprintln!("msclient: unknown command `{other}`");
            std::process::exit(2);
        }
    }
}

fn smoke() {
    let mut c = connect();
    let a = c.mmap(0, 4 * P, RW, PA, None, 0).expect("mmap");
    let info = c.page_info(a + P).expect("page_info");
    assert!(info.mapped && !info.resident, "untouched page {info:?}");
    assert_eq!(peek(a + P + 5), 0);
    poke(a + P + 5, 42);
    assert_eq!(peek(a + P + 5), 42);
    let info = c.page_info(a + P).expect("page_info");
    assert!(info.resident && info.writable, "touched page {info:?}");
    c.mprotect(a, 4 * P, Prot::READ).expect("mprotect");
    assert_eq!(peek(a + P + 5), 42);
    c.munmap(a, 4 * P).expect("munmap");
    println!("ok");
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Mixed operations with data checks; every call must succeed and every byte be right.
fn load(ops: u64, seed: u64) {
    let mut c = connect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed);
    let mut lat = Vec::with_capacity(ops as usize);
    let mut live: Vec<(u64, u64, u8)> = Vec::new();
    let mut errors = 0u64;
    for i in 0..ops {
        let t = Instant::now();
        match rng.next() % 6 {
            0 | 1 => {
                let pages = 1 + rng.next() % 4;
                match c.mmap(0, pages * P, RW, PA, None, 0) {
                    Ok(a) => {
                        let v = (i as u8) | 1;
                        poke(a, v);
                        live.push((a, pages, v));
                    }
                    Err(_) => errors += 1,
                }
            }
            2 => {
                if let Some((a, pages, v)) = live.pop() {
                    if peek(a) != v {
                        errors += 1;
                    }
                    if c.munmap(a, pages * P).is_err() {
                        errors += 1;
                    }
                }
            }
            3 => {
                if let Some(&(a, pages, _)) = live.last()
                    && (c.mprotect(a, pages * P, Prot::READ).is_err()
                        || c.mprotect(a, pages * P, RW).is_err())
                {
                    errors += 1;
                }
            }
            4 => {
                if let Some(&(a, _, v)) = live.first()
                    && peek(a) != v
                {
                    errors += 1;
                }
            }
            _ => {
                if c.msync(0x2000_0000_0000, 0, ipc_proto::MsyncFlags::ASYNC)
                    .is_err()
                {
                    errors += 1;
                }
            }
        }
        lat.push(t.elapsed().as_nanos() as u64);
        if live.len() > 64 {
            let (a, pages, _) = live.remove(0);
            let _ = c.munmap(a, pages * P);
        }
    }
    lat.sort_unstable();
    let pct = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!("{ops} {errors} {} {}", pct(0.5), pct(0.99));
}

/// Hosted pair and first touch beside Linux's, same process, same run.
fn bench() {
    let mut c = connect();
    let n = 20_000u64;
    let time = |f: &mut dyn FnMut()| {
        for _ in 0..n / 10 {
            f();
        }
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        t.elapsed().as_nanos() as f64 / n as f64
    };
    let ours_pair = time(&mut || {
        let a = c.mmap(0, P, RW, PA, None, 0).expect("mmap");
        c.munmap(a, P).expect("munmap");
    });
    let linux_pair = time(&mut || {
        // SAFETY: a fresh anonymous page, unmapped straight away, never referenced.
        unsafe {
            let p = rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                P as usize,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE,
            )
            .expect("mmap");
            rustix::mm::munmap(p, P as usize).expect("munmap");
        }
    });
    let pages = 4096u64;
    let a = c.mmap(0, pages * P, RW, PA, None, 0).expect("mmap");
    let t = Instant::now();
    for i in 0..pages {
        poke(a + i * P, 1);
    }
    let ours_touch = t.elapsed().as_nanos() as f64 / pages as f64;
    c.munmap(a, pages * P).expect("munmap");
    // SAFETY: a fresh anonymous mapping, touched through its own pointer, then unmapped.
    let linux_touch = unsafe {
        let p = rustix::mm::mmap_anonymous(
            std::ptr::null_mut(),
            (pages * P) as usize,
            rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
            rustix::mm::MapFlags::PRIVATE,
        )
        .expect("mmap");
        let t = Instant::now();
        for i in 0..pages {
            std::ptr::write_volatile((p as *mut u8).add((i * P) as usize), 1);
        }
        let e = t.elapsed().as_nanos() as f64 / pages as f64;
        rustix::mm::munmap(p, (pages * P) as usize).expect("munmap");
        e
    };
    println!(
        "{{\"hosted_mmap_munmap_ours_ns\": {ours_pair:.1}, \"hosted_mmap_munmap_linux_ns\": {linux_pair:.1}, \"hosted_first_touch_ours_ns\": {ours_touch:.1}, \"hosted_first_touch_linux_ns\": {linux_touch:.1}}}"
    );
}
