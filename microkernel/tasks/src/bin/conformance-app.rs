//! The conformance app: a ring-3 task of the microkernel, linked with `client-lib`, that
//! runs the whole conformance suite against the memory server. Every request it makes
//! goes through a system call as wire bytes; its heap is memory the server mapped for it;
//! the processes the cases start are clients the kernel creates for it, whose memory
//! accesses the kernel makes in ring 3 in their own address spaces.
//!
//! Built for the host (it is a workspace member) it is a stub that says so.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the conformance app is a task of the microkernel: run `cargo xtask qemu`");
}

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod app {
    use alloc::boxed::Box;
    use alloc::format;
    use alloc::string::String;
    use client_lib::{Client, Transport};
    use conformance::Verdict;
    use conformance::harness::{Facts, Harness, MemoryAccess, Process};
    use core::fmt::Write as _;
    use ipc_proto::{ClientSpec, Errno, MapFlags, Prot, ServerStats, Signal};
    use microkernel_abi::{ACCESS_OK, AccessOp, AppMode, AppReport};
    use ms_tasks::rt::{self, Console};
    use ms_tasks::sys::{self, Sysnum};

    /// Bytes of heap, mapped (populated) from the server at start: the suite needs under
    /// 128 KiB, and every page of the app is walked by the server's check after every
    /// request.
    const HEAP_SIZE: u64 = 256 << 10;

    /// The task's entry: maps its heap, then does what its [`AppMode`] says: runs the
    /// suite (the cases `i` with `i % (n * stride) == k` for `shard` =
    /// `stride << 16 | n << 8 | k`, all for `n` = 0; exits with its [`AppReport`]), serves its starter's calls as a peer, or
    /// runs the framebuffer demo or the file and fork demo.
    #[unsafe(no_mangle)]
    extern "C" fn task_main(mode: u64, shard: u64) -> ! {
        let heap = Client::new(Syscalls { client: 0 }).mmap(
            0,
            HEAP_SIZE,
            Prot::READ | Prot::WRITE,
            MapFlags::PRIVATE | MapFlags::ANONYMOUS | MapFlags::POPULATE,
            None,
            0,
        );
        let Ok(heap) = heap else {
            let _ = writeln!(Console::line(), "app: no heap: {heap:?}");
            sys::exit(254)
        };
        // SAFETY: the range was just mapped read-write and populated for this task alone,
        // and this is the allocator's only initialisation.
        unsafe { rt::init_heap(heap, HEAP_SIZE) };
        match AppMode::try_from(mode) {
            Ok(AppMode::Conformance) => {}
            Ok(AppMode::Peer) => peer(),
            Ok(AppMode::Demo) => demo(),
            Ok(AppMode::FileDemo) => file_demo(),
            Ok(AppMode::Spin) => spin(),
            Ok(AppMode::Bench) => bench(),
            Err(_) => sys::exit(252),
        }
        let (k, n) = ((shard & 0xff) as usize, (shard >> 8 & 0xff) as usize);
        // A smoke run takes every `stride`-th share only.
        let modulus = n * ((shard >> 16) as usize).max(1);

        let mut h = match RingHarness::new() {
            Ok(h) => h,
            Err(e) => {
                let _ = writeln!(Console::line(), "app: no facts from the kernel: {e}");
                sys::exit(253)
            }
        };
        let cases: alloc::vec::Vec<_> = conformance::cases::everything()
            .into_iter()
            .enumerate()
            .filter(|&(i, _)| n == 0 || i % modulus == k)
            .map(|(_, c)| c)
            .collect();
        let _ = writeln!(
            Console::line(),
            "conformance (qemu, ring-3 app {} of {}): {} cases",
            k,
            n,
            cases.len()
        );
        // The other apps get a turn after every case (never during one: the runner's
        // leak checks count on the case running alone).
        let summary = conformance::runner::run(&mut h, &cases, "", &mut |name, verdict| {
            match verdict {
                Verdict::Failed(why) => {
                    let _ = writeln!(Console::line(), "FAIL {name}: {why}");
                }
                Verdict::Skipped(why) => {
                    let _ = writeln!(Console::line(), "skip {name}: {why}");
                }
                Verdict::Passed => {}
            }
            sys::yield_now();
        });
        let (mut passed, mut failed) = (summary.passed, summary.failed);
        let extra = (k == 0).then(|| hostile_syscalls().into_iter().chain(shared_with_a_peer()));
        for (what, ok) in extra.into_iter().flatten() {
            if ok {
                passed += 1;
            } else {
                failed += 1;
                let _ = writeln!(Console::line(), "FAIL {what}");
            }
        }
        let skipped = summary.skipped;
        let _ = writeln!(
            Console::line(),
            "app {k} of {n}: {passed} passed, {failed} failed, {skipped} skipped"
        );
        let report = AppReport {
            passed: passed as u16,
            failed: failed as u16,
            skipped: skipped as u16,
        };
        sys::exit(report.encode())
    }

    /// Samples per benchmark, and untimed warm-up runs before them.
    const BENCH_SAMPLES: usize = 10_000;
    const BENCH_WARM_UP: usize = 1_000;
    /// Pages mapped per batch of the first-touch benchmark.
    const TOUCH_BATCH: u64 = 500;
    /// Pages of the populate benchmark's mapping.
    const POPULATE_PAGES: u64 = 64;

    /// The time-stamp counter, after every earlier instruction has completed.
    fn tsc() -> u64 {
        // SAFETY: LFENCE and RDTSC only order and read the counter; CR4.TSD is clear, so
        // ring 3 may read it.
        unsafe {
            core::arch::x86_64::_mm_lfence();
            core::arch::x86_64::_rdtsc()
        }
    }

    /// Prints one benchmark's line for the kernel's log and `cargo xtask bench --guest`:
    /// the median, 10th and 90th percentiles of `samples` in TSC cycles.
    fn bench_report(name: &str, samples: &mut alloc::vec::Vec<u64>) {
        samples.sort_unstable();
        let at = |q: usize| samples.get(samples.len() * q / 100).copied().unwrap_or(0);
        let _ = writeln!(
            Console::line(),
            "bench: {name} median {} p10 {} p90 {} n {}",
            at(50),
            at(10),
            at(90),
            samples.len()
        );
        samples.clear();
    }

    /// Times `f` `BENCH_SAMPLES` times after `BENCH_WARM_UP` untimed runs.
    fn bench_each(samples: &mut alloc::vec::Vec<u64>, mut f: impl FnMut()) {
        for _ in 0..BENCH_WARM_UP {
            f();
        }
        for _ in 0..BENCH_SAMPLES {
            let t0 = tsc();
            f();
            samples.push(tsc() - t0);
        }
    }

    /// Bench mode: the guest benchmarks, run with interrupts off (the kernel starts no
    /// timer in this mode) and the server's after-every-request check off, as users run
    /// it; each line is a median of `BENCH_SAMPLES` round trips in TSC cycles.
    fn bench() -> ! {
        let mut samples = alloc::vec::Vec::with_capacity(BENCH_SAMPLES);
        // A system call that does nothing.
        bench_each(&mut samples, || {
            sys::syscall(Sysnum::Null, 0, 0, 0, 0);
        });
        bench_report("null_syscall", &mut samples);
        // A null IPC round trip to the memory server: `Hello`, encoded once.
        let mut request = [0u8; ipc_proto::MAX_REQUEST_LEN];
        let hello = ipc_proto::Request::Hello {
            major: ipc_proto::PROTOCOL_MAJOR,
            minor: ipc_proto::PROTOCOL_MINOR,
        };
        let n = ipc_proto::encode_request(&hello, &mut request).unwrap_or(0) as u64;
        let mut response = alloc::vec![0u8; ipc_proto::MAX_RESPONSE_LEN];
        let (req, resp) = (request.as_ptr() as u64, response.as_mut_ptr() as u64);
        bench_each(&mut samples, || {
            sys::syscall(Sysnum::Call, 0, req, n, resp);
        });
        bench_report("null_ipc_hello", &mut samples);
        // mmap+munmap of one anonymous page.
        let mut c = Client::new(Syscalls { client: 0 });
        let (rw, pa) = (
            Prot::READ | Prot::WRITE,
            MapFlags::PRIVATE | MapFlags::ANONYMOUS,
        );
        bench_each(&mut samples, || {
            if let Ok(a) = c.mmap(0, 4096, rw, pa, None, 0) {
                let _ = c.munmap(a, 4096);
            }
        });
        bench_report("mmap_munmap", &mut samples);
        // First touch: a write to a page never touched, fault to resume, in batches.
        let batches = (BENCH_SAMPLES + BENCH_WARM_UP).div_ceil(TOUCH_BATCH as usize);
        for batch in 0..batches {
            let Ok(a) = c.mmap(0, TOUCH_BATCH * 4096, rw, pa, None, 0) else {
                break;
            };
            for page in 0..TOUCH_BATCH {
                let p = (a + page * 4096) as *mut u8;
                let t0 = tsc();
                // SAFETY: a page of the mapping just made read-write for this task.
                unsafe { p.write_volatile(1) };
                let t = tsc() - t0;
                if batch * TOUCH_BATCH as usize + page as usize >= BENCH_WARM_UP {
                    samples.push(t);
                }
            }
            let _ = c.munmap(a, TOUCH_BATCH * 4096);
        }
        samples.truncate(BENCH_SAMPLES);
        bench_report("first_touch_fault", &mut samples);
        // A 64-page MAP_POPULATE (the munmap after it untimed).
        let len = POPULATE_PAGES * 4096;
        for i in 0..BENCH_WARM_UP + BENCH_SAMPLES {
            let t0 = tsc();
            let mapped = c.mmap(0, len, rw, pa | MapFlags::POPULATE, None, 0);
            let t = tsc() - t0;
            if let Ok(a) = mapped {
                let _ = c.munmap(a, len);
            }
            if i >= BENCH_WARM_UP {
                samples.push(t);
            }
        }
        bench_report("populate_64_pages", &mut samples);
        sys::exit(0)
    }

    /// Spin mode: never yields, never calls the kernel; only the timer's preemption lets
    /// the other apps run, and the kernel ends it once they all have.
    fn spin() -> ! {
        let mut n: u64 = 0;
        loop {
            n = core::hint::black_box(n.wrapping_add(1));
        }
    }

    /// Demo mode: draws a gradient into the framebuffer (the `fb0` device window, mapped
    /// write-combining), one band per turn between the other apps' work, then reads the
    /// picture back; exits 0 when every pixel is what it drew.
    fn demo() -> ! {
        const WIDTH: u64 = 256;
        const HEIGHT: u64 = 256;
        const BANDS: u64 = 8;
        let mut c = Client::new(Syscalls { client: 0 });
        let fb = c.open_device("fb0", ipc_proto::OFlags::RDWR);
        let rw = Prot::READ | Prot::WRITE;
        let len = WIDTH * HEIGHT * 4;
        let mapped = fb.and_then(|fd| {
            let flags = MapFlags::SHARED | MapFlags::WC;
            c.mmap(0, len, rw, flags, Some(fd), 0).map(|a| (fd, a))
        });
        let Ok((fd, fb)) = mapped else {
            let _ = writeln!(Console::line(), "demo: no framebuffer: {mapped:?}");
            sys::exit(1)
        };
        let pixel = |x: u64, y: u64| (x as u32) << 16 | (y as u32) << 8 | ((x ^ y) as u32);
        for band in 0..BANDS {
            for y in band * HEIGHT / BANDS..(band + 1) * HEIGHT / BANDS {
                for x in 0..WIDTH {
                    let p = (fb + (y * WIDTH + x) * 4) as *mut u32;
                    // SAFETY: inside the framebuffer mapping just made, read-write.
                    unsafe { p.write_volatile(pixel(x, y)) };
                }
            }
            sys::yield_now();
        }
        let drawn = (0..HEIGHT).all(|y| {
            (0..WIDTH).all(|x| {
                let p = (fb + (y * WIDTH + x) * 4) as *const u32;
                // SAFETY: as above, reading.
                let v = unsafe { p.read_volatile() };
                v == pixel(x, y)
            })
        });
        let unmapped = c.munmap(fb, len).and_then(|()| c.close(fd));
        let _ = writeln!(
            Console::line(),
            "demo: drew a {WIDTH}x{HEIGHT} gradient into fb0 (MAP_WC) in {BANDS} turns: {}",
            if drawn {
                "every pixel checks"
            } else {
                "WRONG PIXELS"
            }
        );
        sys::exit(u64::from(!(drawn && unmapped.is_ok())))
    }

    /// File and fork demo: maps a file of the file server task (`/conf/demo`) shared and
    /// private, forks — a real task with its own code, its address space a copy-on-write
    /// clone — and shows the child's private writes (file and anonymous) stay its own
    /// and copy exactly the pages written, while its shared write reaches the parent and,
    /// written back through the pager, the file. Exits 0 when everything checks (the
    /// child exits 0 when its part does).
    fn file_demo() -> ! {
        use fileserver::fixture::{DEMO, byte};
        const P: u64 = ipc_proto::PAGE_SIZE;
        let rw = Prot::READ | Prot::WRITE;
        let mut c = Client::new(Syscalls { client: 0 });
        let fd = c.open_file(DEMO.path, ipc_proto::OFlags::RDWR);
        let maps = fd.and_then(|fd| {
            let len = DEMO.size as u64;
            let shared = c.mmap(0, len, rw, MapFlags::SHARED, Some(fd), 0)?;
            let private = c.mmap(0, len, rw, MapFlags::PRIVATE, Some(fd), 0)?;
            let anon = c.mmap(0, P, rw, conformance::cases::PA, None, 0)?;
            Ok((fd, shared, private, anon))
        });
        let Ok((fd, shared, private, anon)) = maps else {
            let _ = writeln!(
                Console::line(),
                "file demo: cannot map {}: {maps:?}",
                DEMO.path
            );
            sys::exit(1)
        };
        let peek = |a: u64| {
            // SAFETY: every address passed lies in one of the mappings just made.
            unsafe { (a as *const u8).read_volatile() }
        };
        let poke = |a: u64, v: u8| {
            // SAFETY: as above, all of them writable.
            unsafe { (a as *mut u8).write_volatile(v) }
        };
        let from_file = (0..DEMO.size as u64)
            .step_by(997)
            .all(|i| peek(shared + i) == byte(DEMO.seed, i as usize));
        poke(private, 0xaa);
        poke(anon, 0x11);
        // The child's "done" flag, in the shared mapping: 1 when its checks passed.
        poke(shared + P, 0);
        match sys::fork() {
            Ok(0) => {
                let saw_parent = peek(private) == 0xaa && peek(anon) == 0x11;
                peek(private + P + 1);
                let before = free_frames();
                poke(private, 0xbb);
                poke(anon, 0x22);
                let copied = before.saturating_sub(free_frames());
                // Shared: the parent's page (already resident), no copy.
                poke(shared + 1, 0xcc);
                // Byte 0 of page 1 is the flag (written through the shared mapping).
                let untouched = peek(private + P + 1) == byte(DEMO.seed, P as usize + 1);
                let ok = saw_parent && copied == 2 && untouched;
                let _ = writeln!(
                    Console::line(),
                    "file demo: forked child saw the parent's data: {saw_parent}; its 2 private writes copied {copied} frames"
                );
                poke(shared + P, if ok { 1 } else { 2 });
                sys::exit(u64::from(!ok))
            }
            Ok(child) => {
                let mut turns = 0;
                while peek(shared + P) == 0 && turns < 10_000 {
                    sys::yield_now();
                    turns += 1;
                }
                let child_ok = peek(shared + P) == 1;
                let isolated = peek(private) == 0xaa && peek(anon) == 0x11;
                let sees_shared = peek(shared + 1) == 0xcc;
                let restored = byte(DEMO.seed, P as usize);
                poke(shared + P, restored);
                let len = DEMO.size as u64;
                let closed = c
                    .munmap(shared, len)
                    .and_then(|()| c.munmap(private, len))
                    .and_then(|()| c.munmap(anon, P))
                    .and_then(|()| c.close(fd));
                // With the last mapping and fd gone the object is released: what a
                // fresh open reads comes from the file server.
                let reread = c
                    .open_file(DEMO.path, ipc_proto::OFlags::RDONLY)
                    .and_then(|fd| {
                        let a = c.mmap(0, P, Prot::READ, MapFlags::SHARED, Some(fd), 0)?;
                        let v = (peek(a), peek(a + 1));
                        c.munmap(a, P)?;
                        c.close(fd)?;
                        Ok(v)
                    });
                let written_back = reread == Ok((byte(DEMO.seed, 0), 0xcc));
                let ok = from_file
                    && child_ok
                    && isolated
                    && sees_shared
                    && closed.is_ok()
                    && written_back;
                let _ = writeln!(
                    Console::line(),
                    "file demo: {} mapped shared and private (contents from the file server task: {from_file}); forked task {child}: its private writes stayed its own: {isolated}, its shared write reached the parent: {sees_shared} and the file: {written_back}",
                    DEMO.path
                );
                sys::exit(u64::from(!ok))
            }
            Err(e) => {
                let _ = writeln!(Console::line(), "file demo: fork failed: {e:?}");
                sys::exit(1)
            }
        }
    }

    /// The server's counters, through the kernel (`None`: the kernel gave none).
    fn server_stats() -> Option<ServerStats> {
        let mut buf = [0u8; 128];
        let n = sys::syscall(
            Sysnum::Stats,
            buf.as_mut_ptr() as u64,
            buf.len() as u64,
            0,
            0,
        );
        let n = sys::check(n).ok()? as usize;
        postcard::from_bytes(buf.get(..n)?).ok()
    }

    /// The server's free frames (and page-table frames), through the kernel.
    fn free_frames() -> u64 {
        server_stats().map_or(0, |s| s.free_frames + s.table_frames)
    }

    /// Peer mode: serves calls from the app that started it, each one
    /// `[expect: u8][write: u8][len: u64][shm name]`: open the object, map it shared,
    /// check every byte is `expect`, write `write` over it, unmap and close; the reply is
    /// empty, or what went wrong.
    fn peer() -> ! {
        let mut buf = alloc::vec![0u8; 8 + 4096];
        let mut reply = String::new();
        loop {
            let n = sys::receive(reply.as_bytes(), &mut buf).min(buf.len());
            reply = match buf.get(8..n) {
                Some(m) if m.len() > 10 => check_and_write(m).err().unwrap_or_default(),
                _ => String::from("peer: malformed call"),
            };
        }
    }

    fn check_and_write(m: &[u8]) -> Result<(), String> {
        let (expect, write) = (m[0], m[1]);
        let len = u64::from_le_bytes(m[2..10].try_into().unwrap_or_default());
        let name = core::str::from_utf8(&m[10..]).map_err(|_| String::from("name"))?;
        let mut c = Client::new(Syscalls { client: 0 });
        let fd = c
            .shm_open(name, ipc_proto::OFlags::RDWR, 0)
            .map_err(|e| format!("peer shm_open: {e}"))?;
        let rw = Prot::READ | Prot::WRITE;
        let a = c
            .mmap(0, len, rw, MapFlags::SHARED, Some(fd), 0)
            .map_err(|e| format!("peer mmap: {e}"))?;
        let mut seen = Ok(());
        for i in 0..len {
            let p = (a + i) as *mut u8;
            // SAFETY: `p` lies in the shared mapping just made, read-write; its pages are
            // installed by the server when first touched.
            let v = unsafe { p.read_volatile() };
            if v != expect && seen.is_ok() {
                seen = Err(format!("peer read {v:#x} at +{i}, not {expect:#x}"));
            }
            // SAFETY: as above.
            unsafe { p.write_volatile(write) };
        }
        c.munmap(a, len).map_err(|e| format!("peer munmap: {e}"))?;
        c.close(fd).map_err(|e| format!("peer close: {e}"))?;
        seen
    }

    /// Two tasks, each its own client in its own address space, map one shm object
    /// shared and see each other's writes: the app writes, a peer task it starts checks
    /// and overwrites, the app sees the peer's bytes.
    fn shared_with_a_peer() -> [(&'static str, bool); 2] {
        const LEN: u64 = 3 * 4096;
        let name = "/ring3-two-tasks";
        let mut c = Client::new(Syscalls { client: 0 });
        let mut peer_saw = false;
        let mut app_sees = false;
        let opened = c.shm_open(
            name,
            ipc_proto::OFlags::CREAT | ipc_proto::OFlags::EXCL | ipc_proto::OFlags::RDWR,
            0o600,
        );
        if let Ok(fd) = opened {
            let rw = Prot::READ | Prot::WRITE;
            let mapped = c
                .ftruncate(fd, LEN as i64)
                .and_then(|()| c.mmap(0, LEN, rw, MapFlags::SHARED, Some(fd), 0));
            if let Ok(a) = mapped {
                for i in 0..LEN {
                    // SAFETY: the app's own shared read-write mapping of LEN bytes.
                    unsafe { ((a + i) as *mut u8).write_volatile(0x5a) };
                }
                let peer = sys::check(sys::syscall(Sysnum::StartPeer, 0, 0, 0, 0));
                let mut call = alloc::vec![0x5a, 0xa5];
                call.extend_from_slice(&LEN.to_le_bytes());
                call.extend_from_slice(name.as_bytes());
                let mut reply = [0u8; 4096];
                if let Ok(ep) = peer {
                    let r = sys::syscall(
                        Sysnum::IpcCall,
                        ep,
                        call.as_ptr() as u64,
                        call.len() as u64,
                        reply.as_mut_ptr() as u64,
                    );
                    match sys::check(r) {
                        Ok(0) => peer_saw = true,
                        Ok(n) => {
                            let why = String::from_utf8_lossy(&reply[..n as usize]);
                            let _ = writeln!(Console::line(), "app: the peer says: {why}");
                        }
                        Err(e) => {
                            let _ = writeln!(Console::line(), "app: the call to the peer: {e}");
                        }
                    }
                }
                // SAFETY: as above, reading.
                app_sees =
                    (0..LEN).all(|i| unsafe { ((a + i) as *const u8).read_volatile() } == 0xa5);
                let _ = c.munmap(a, LEN);
            }
            let _ = c.close(fd);
            let _ = c.shm_unlink(name);
        }
        [
            (
                "app: a peer task maps the app's shm object and reads the app's writes",
                peer_saw,
            ),
            (
                "app: the app reads the peer task's writes to the same object",
                app_sees,
            ),
        ]
    }

    /// System calls a buggy or hostile task could make, each answered with its errno (and
    /// the kernel going on serving the app).
    fn hostile_syscalls() -> [(&'static str, bool); 11] {
        let mut req = [0u8; ipc_proto::MAX_REQUEST_LEN];
        let mut resp = [0u8; ipc_proto::MAX_RESPONSE_LEN];
        let n = ipc_proto::encode_request(&ipc_proto::Request::Regions { after: 0 }, &mut req)
            .unwrap_or(0);
        let (req, resp) = (req.as_ptr() as u64, resp.as_mut_ptr() as u64);
        let errno = |ret| sys::check(ret).err();
        let kernel = 0xffff_8000_0010_0000u64;
        [
            (
                "app: a request as a client the app did not start is EBADF",
                errno(sys::syscall(Sysnum::Call, 4242, req, n as u64, resp)) == Some(Errno::EBADF),
            ),
            (
                "app: a request read from kernel memory is EFAULT",
                errno(sys::syscall(Sysnum::Call, 0, kernel, n as u64, resp)) == Some(Errno::EFAULT),
            ),
            (
                "app: a response written to kernel memory is EFAULT",
                errno(sys::syscall(Sysnum::Call, 0, req, n as u64, kernel)) == Some(Errno::EFAULT),
            ),
            (
                "app: a response written to read-only memory is EFAULT",
                errno(sys::syscall(
                    Sysnum::Call,
                    0,
                    req,
                    n as u64,
                    task_main as *const () as u64,
                )) == Some(Errno::EFAULT),
            ),
            (
                "app: an oversized request is EMSGSIZE",
                errno(sys::syscall(Sysnum::Call, 0, req, 1 << 20, resp)) == Some(Errno::EMSGSIZE),
            ),
            (
                "app: a garbage client spec is EINVAL",
                errno(sys::syscall(Sysnum::Spawn, req, 0, 0, 0)) == Some(Errno::EINVAL),
            ),
            (
                "app: ending a client it did not start is EBADF",
                errno(sys::syscall(Sysnum::End, 7, 0, 0, 0)) == Some(Errno::EBADF),
            ),
            (
                "app: the kernel stub's calls are the memory server's alone (EPERM)",
                errno(sys::syscall(Sysnum::Map, 0, 0x1000_0000, 0x800, 3)) == Some(Errno::EPERM)
                    && errno(sys::syscall(Sysnum::CreateSpace, 0, 0, 0, 0)) == Some(Errno::EPERM),
            ),
            (
                "app: an IPC call straight to the memory server's endpoint is EBADF",
                errno(sys::syscall(Sysnum::IpcCall, 0, req, n as u64, resp)) == Some(Errno::EBADF),
            ),
            (
                "app: an IPC call to an endpoint it did not start is EBADF",
                errno(sys::syscall(Sysnum::IpcCall, 99, req, n as u64, resp)) == Some(Errno::EBADF),
            ),
            (
                "app: receive from a task that serves no calls is EPERM",
                errno(sys::syscall(Sysnum::Receive, resp, 0, resp, 64)) == Some(Errno::EPERM),
            ),
        ]
    }

    /// A connection to the memory server as one client: requests go through `call`.
    struct Syscalls {
        /// The client's handle (0: the task itself).
        client: u64,
    }

    impl Transport for Syscalls {
        fn call(&mut self, request: &[u8], response: &mut [u8]) -> Result<usize, Errno> {
            if response.len() < ipc_proto::MAX_RESPONSE_LEN {
                return Err(Errno::EINVAL);
            }
            let n = sys::check(sys::syscall(
                Sysnum::Call,
                self.client,
                request.as_ptr() as u64,
                request.len() as u64,
                response.as_mut_ptr() as u64,
            ))?;
            Ok(n as usize)
        }
    }

    /// A process the kernel started for the app.
    struct RingProcess {
        io: Syscalls,
    }

    impl RingProcess {
        fn access(&mut self, op: AccessOp, addr: u64) -> Result<u8, Signal> {
            let (op, value) = op.encode();
            let r = sys::syscall(Sysnum::Access, self.io.client, op, addr, value);
            match r {
                r if r & ACCESS_OK != 0 => Ok(r as u8),
                r if r == u64::from(Signal::Bus.number()) => Err(Signal::Bus),
                _ => Err(Signal::Segv),
            }
        }
    }

    impl MemoryAccess for RingProcess {
        fn read(&mut self, addr: u64) -> Result<u8, Signal> {
            self.access(AccessOp::Read, addr)
        }
        fn write(&mut self, addr: u64, value: u8) -> Result<(), Signal> {
            self.access(AccessOp::Write(value), addr).map(|_| ())
        }
        fn exec(&mut self, addr: u64) -> Result<(), Signal> {
            self.access(AccessOp::Exec, addr).map(|_| ())
        }
    }

    impl Process for RingProcess {
        fn transport(&mut self) -> &mut dyn Transport {
            &mut self.io
        }

        fn fork(&mut self, spec: ClientSpec) -> Result<Box<dyn Process>, Errno> {
            let mut buf = [0u8; 128];
            let spec = postcard::to_slice(&spec, &mut buf).map_err(|_| Errno::EINVAL)?;
            let h = sys::check(sys::syscall(
                Sysnum::Fork,
                self.io.client,
                spec.as_ptr() as u64,
                spec.len() as u64,
                0,
            ))?;
            Ok(Box::new(RingProcess {
                io: Syscalls { client: h },
            }))
        }
    }

    impl Drop for RingProcess {
        fn drop(&mut self) {
            sys::syscall(Sysnum::End, self.io.client, 0, 0, 0);
        }
    }

    /// The suite's view of the machine, through system calls.
    struct RingHarness {
        facts: Facts,
    }

    impl RingHarness {
        fn new() -> Result<RingHarness, String> {
            let mut buf = [0u8; 512];
            let n = sys::check(sys::syscall(
                Sysnum::Facts,
                buf.as_mut_ptr() as u64,
                buf.len() as u64,
                0,
                0,
            ))
            .map_err(|e| format!("{e}"))?;
            let facts = postcard::from_bytes(&buf[..n as usize]).map_err(|e| format!("{e}"))?;
            Ok(RingHarness { facts })
        }
    }

    impl Harness for RingHarness {
        fn name(&self) -> &str {
            "qemu-ring3"
        }

        fn facts(&self) -> Facts {
            self.facts.clone()
        }

        fn spawn(&mut self, spec: ClientSpec) -> Result<Box<dyn Process>, Errno> {
            let mut buf = [0u8; 128];
            let spec = postcard::to_slice(&spec, &mut buf).map_err(|_| Errno::EINVAL)?;
            let h = sys::check(sys::syscall(
                Sysnum::Spawn,
                spec.as_ptr() as u64,
                spec.len() as u64,
                0,
                0,
            ))?;
            Ok(Box::new(RingProcess {
                io: Syscalls { client: h },
            }))
        }

        fn stats(&mut self) -> ServerStats {
            server_stats().unwrap_or_else(|| panic!("the kernel gave no server stats"))
        }

        fn check(&mut self) -> Result<(), String> {
            let mut buf = [0u8; 512];
            let n = sys::syscall(
                Sysnum::Check,
                buf.as_mut_ptr() as u64,
                buf.len() as u64,
                0,
                0,
            );
            match sys::check(n) {
                Ok(0) => Ok(()),
                Ok(n) => Err(String::from_utf8_lossy(&buf[..n as usize]).into_owned()),
                Err(e) => Err(format!("check: {e}")),
            }
        }

        fn unique_name(&self, base: &str) -> String {
            format!("/ring3-{base}")
        }
    }
}
