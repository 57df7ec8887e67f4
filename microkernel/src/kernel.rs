//! `kmain`: from the boot code to the suite's verdict.

use crate::boot;
use crate::hw_harness::HwHarness;
use crate::kprintln;
use crate::serial::{self, EXIT_FAILURE, EXIT_SUCCESS};
use alloc::vec::Vec;
use conformance::harness::Harness;
use ipc_proto::ClientSpec;
use linked_list_allocator::LockedHeap;
use memserver::{Config, FrameRange, StandardLayout};
use microkernel_abi::{AppMode, AppReport};
use x86_64::instructions::port::Port;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// The conformance app's ELF image (built by `cargo xtask qemu` before the kernel).
static APP_IMAGE: &[u8] = include_bytes!(env!("MS_APP_IMAGE"));
/// The memory server task's ELF image (likewise).
static SERVER_IMAGE: &[u8] = include_bytes!(env!("MS_SERVER_IMAGE"));
/// The file server task's ELF image (likewise): the memory server's pager.
static FILES_IMAGE: &[u8] = include_bytes!(env!("MS_FILES_IMAGE"));
/// Frames for the kernel's serving tasks' own memory: the memory server's 24 MiB of
/// heap and the file server's 4 MiB, their images, stacks and page tables.
const SERVER_TASK_FRAMES: u64 = (40 << 20) / 4096;

/// Frames of the small `dma` bank, below 16 MiB.
const DMA_FRAMES: u64 = 64;
/// Frames of the framebuffer handed out as the `fb0` device window.
const FB_FRAMES: u64 = 256;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    kprintln!("kernel panic: {info}");
    serial::exit_qemu(EXIT_FAILURE);
}

/// The PVH start info (`struct hvm_start_info`, version 1).
#[repr(C)]
struct StartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

/// One entry of its memory map (E820 types: 1 is RAM).
#[repr(C)]
struct MemmapEntry {
    addr: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

fn phys<T>(pa: u64) -> *const T {
    (boot::DIRECT_MAP + pa) as *const T
}

/// Most RAM ranges the kernel keeps track of.
const MAX_RANGES: usize = 32;
/// Frames of kernel heap, taken from the top of the largest RAM range.
const HEAP_FRAMES: u64 = (48 << 20) / 4096;

/// The RAM ranges (start frame, frame count) of the firmware's map, above the kernel;
/// read before there is a heap, so into a fixed array.
fn free_ram(start_info: u64) -> heapless::Vec<(u64, u64), MAX_RANGES> {
    // SAFETY: QEMU passes the physical address of a valid hvm_start_info in ebx, below
    // 4 GiB, so inside the direct map; it is read once, before anything is allocated
    // over it (it lies below 1 MiB, which is never granted).
    let si = unsafe { &*phys::<StartInfo>(start_info) };
    if si.magic != 0x336e_c578 || si.version < 1 {
        kprintln!("kernel: no PVH memory map (magic {:#x})", si.magic);
        serial::exit_qemu(EXIT_FAILURE);
    }
    let first_free = boot::kernel_end_phys().div_ceil(4096);
    let mut out = heapless::Vec::new();
    for i in 0..u64::from(si.memmap_entries) {
        // SAFETY: entry `i` of the map QEMU wrote, in the direct map like the start info.
        let e = unsafe { &*phys::<MemmapEntry>(si.memmap_paddr + i * 24) };
        if e.kind != 1 {
            continue;
        }
        let lo = e.addr.div_ceil(4096).max(first_free);
        let hi = ((e.addr + e.size) / 4096).min(boot::DIRECT_MAP_SIZE / 4096);
        if hi > lo && out.push((lo, hi - lo)).is_err() {
            break;
        }
    }
    out
}

/// BAR 0 of the VGA device at 00:02.0 (QEMU's `-vga std`: 1234:1111), as a frame number.
fn framebuffer() -> Option<u64> {
    let read = |offset: u32| -> u32 {
        // SAFETY: PCI configuration mechanism #1: selecting a register of bus 0,
        // device 2 and reading it has no side effect.
        unsafe {
            Port::<u32>::new(0xcf8).write(0x8000_0000 | (2 << 11) | offset);
            Port::<u32>::new(0xcfc).read()
        }
    };
    if read(0) != 0x1111_1234 {
        return None;
    }
    let bar = u64::from(read(0x10) & !0xf);
    (bar != 0).then_some(bar / 4096)
}

/// The memory server's configuration: a `normal` bank, a small `dma` bank below 16 MiB,
/// the framebuffer as `fb0`, and `uart0`, a device with nothing to map. The same shape
/// as the in-process conformance profile, over real frames.
fn config(ram: &[(u64, u64)], fb: u64) -> (Config, Vec<(u64, u64, bool)>) {
    let mut normal = Vec::new();
    let mut dma = None;
    for &(start, count) in ram {
        if dma.is_none() && count > DMA_FRAMES && start + DMA_FRAMES <= (16 << 20) / 4096 {
            dma = Some(FrameRange {
                start,
                count: DMA_FRAMES,
            });
            normal.push(FrameRange {
                start: start + DMA_FRAMES,
                count: count - DMA_FRAMES,
            });
        } else {
            normal.push(FrameRange { start, count });
        }
    }
    let dma = dma.unwrap_or_else(|| {
        kprintln!("kernel: no RAM below 16 MiB for the dma bank");
        serial::exit_qemu(EXIT_FAILURE)
    });
    let mut grants: Vec<(u64, u64, bool)> =
        normal.iter().map(|r| (r.start, r.count, true)).collect();
    grants.push((dma.start, dma.count, true));
    grants.push((fb, FB_FRAMES, false));
    let cfg = Config::standard(StandardLayout {
        normal,
        dma,
        fb0: FrameRange {
            start: fb,
            count: FB_FRAMES,
        },
    });
    (cfg, grants)
}

/// Entered from the boot code with the PVH start info's physical address.
#[unsafe(no_mangle)]
extern "C" fn kmain(start_info: u64) -> ! {
    serial::init();
    kprintln!("microkernel: long mode, serial up");
    let mut ram = free_ram(start_info);
    let Some(big) = (0..ram.len())
        .max_by_key(|&i| ram[i].1)
        .filter(|&i| ram[i].1 > 2 * HEAP_FRAMES + SERVER_TASK_FRAMES)
    else {
        kprintln!("kernel: not enough RAM for the heap and the server (boot with -m 256M)");
        serial::exit_qemu(EXIT_FAILURE);
    };
    ram[big].1 -= HEAP_FRAMES;
    let heap_phys = (ram[big].0 + ram[big].1) * 4096;
    // The memory server task's own memory (its image, heap, stack and tables), below the
    // heap: granted to the stub, so it can be mapped, but no bank of the server's.
    ram[big].1 -= SERVER_TASK_FRAMES;
    let task_frames = ram[big].0 + ram[big].1..ram[big].0 + ram[big].1 + SERVER_TASK_FRAMES;
    // SAFETY: the heap's frames were just removed from the RAM handed out below, so
    // nothing else uses them; the direct map maps them read-write; this is the only
    // initialisation, before any allocation.
    unsafe {
        HEAP.lock().init(
            (boot::DIRECT_MAP + heap_phys) as *mut u8,
            (HEAP_FRAMES * 4096) as usize,
        )
    };
    crate::trap::init();
    crate::user::init();
    // SAFETY: IA32_PAT (0x277) takes the layout the kernel stub's cache attributes are
    // defined against; no mapping with PAT bits exists yet.
    unsafe { x86_64::registers::model_specific::Msr::new(0x277).write(kernel_stub::PAT_MSR_VALUE) };

    let fb = framebuffer().unwrap_or_else(|| {
        kprintln!("kernel: no VGA framebuffer at 00:02.0 (boot with -vga std)");
        serial::exit_qemu(EXIT_FAILURE)
    });
    let (cfg, mut grants) = config(&ram, fb);
    grants.push((task_frames.start, SERVER_TASK_FRAMES, true));
    let ram_frames: u64 = grants.iter().filter(|g| g.2).map(|g| g.1).sum();
    kprintln!(
        "microkernel: {} MiB of RAM for the memory server ({ram_frames} frames), fb0 at {:#x}",
        (ram_frames * 4096) >> 20,
        fb * 4096
    );
    let started = crate::loader::start(
        cfg,
        &grants,
        ram_frames as usize,
        boot::kernel_root_phys(),
        task_frames,
        SERVER_IMAGE,
        FILES_IMAGE,
    );
    if let Err(e) = started {
        kprintln!("kernel: the serving tasks: {e}");
        serial::exit_qemu(EXIT_FAILURE);
    }
    kprintln!(
        "microkernel: the memory server runs as a ring-3 task, its pager the file server task"
    );

    match Mode::of(cmdline(start_info)) {
        Mode::Bench => bench(),
        mode => main_job(mode),
    }
}

/// What the kernel command line (`-append`) asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The main job: the whole conformance suite under the scheduler, the demos, the
    /// spinner, the ring-3 checks.
    Full,
    /// The same with every eighth case only: the KVM smoke run CI makes, where nested
    /// virtualization makes the whole run take minutes.
    Smoke,
    /// The guest benchmarks only (`cargo xtask bench --guest`).
    Bench,
}

impl Mode {
    fn of(cmdline: &str) -> Mode {
        match cmdline.split_whitespace().next() {
            Some("bench") => Mode::Bench,
            Some("smoke") => Mode::Smoke,
            _ => Mode::Full,
        }
    }

    /// Of every `stride` cases, the conformance apps run the first `apps`.
    fn stride(self) -> u64 {
        if self == Mode::Smoke { 8 } else { 1 }
    }
}

/// The kernel command line of the PVH start info (empty if there is none).
fn cmdline(start_info: u64) -> &'static str {
    // SAFETY: `kmain` checked the start info's magic; QEMU writes it and the command
    // line (a NUL-terminated string, below 4 GiB, so in the direct map) before boot, and
    // neither is ever written again.
    let si = unsafe { &*phys::<StartInfo>(start_info) };
    if si.cmdline_paddr == 0 {
        return "";
    }
    // SAFETY: as above; the string is read up to its NUL, at most 256 bytes.
    let bytes = unsafe { core::slice::from_raw_parts(phys::<u8>(si.cmdline_paddr), 256) };
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(0);
    core::str::from_utf8(&bytes[..len]).unwrap_or("")
}

/// Passed and failed checks, as the conformance runner counts them.
#[derive(Default)]
struct Tally {
    passed: u32,
    failed: u32,
    skipped: u32,
}

impl Tally {
    fn check(&mut self, ok: bool, what: core::fmt::Arguments<'_>) {
        if ok {
            self.passed += 1;
        } else {
            self.failed += 1;
            kprintln!("FAIL {what}");
        }
    }
}

/// The guest benchmarks: one app in bench mode, the server's after-every-request check
/// off (as users run it), no timer.
fn bench() -> ! {
    crate::endpoint::set_self_check(false);
    let codes = crate::user::run_apps(APP_IMAGE, &[(AppMode::Bench as u64, 0, false)], false);
    let ok = codes == [Some(0)];
    kprintln!("bench: {}", if ok { "done" } else { "FAILED" });
    serial::exit_qemu(if ok { EXIT_SUCCESS } else { EXIT_FAILURE });
}

/// The main job: the apps under the preemptive scheduler, then the ring-3 checks.
fn main_job(mode: Mode) -> ! {
    // Five apps under the preemptive scheduler: two conformance apps, each running half
    // of the suite (case i goes to app i % 2) and yielding after every case, the
    // framebuffer demo, one step of its drawing per turn, the file demo, which forks a
    // task of its own, and a spinner that never yields: the timer preempts it, and it is
    // ended once all the others have. Each conformance app reports its failures and exits
    // with its totals; the demos (and the forked task) exit 0 when everything they show
    // checks.
    let mut h = HwHarness;
    let stride = mode.stride();
    let apps_n = 2;
    let total = crate::hw_harness::case_count(apps_n * stride, apps_n) as u32;
    let mut t = Tally::default();
    let before = h.stats();
    let shard = |k: u64| stride << 16 | apps_n << 8 | k;
    let apps = [
        (AppMode::Conformance as u64, shard(0), false),
        (AppMode::Conformance as u64, shard(1), false),
        (AppMode::Demo as u64, 0, false),
        (AppMode::FileDemo as u64, 0, false),
        (AppMode::Spin as u64, 0, true),
    ];
    crate::endpoint::set_self_check(true);
    let codes = crate::user::run_apps(APP_IMAGE, &apps, true);
    // After the apps' codes, those of the tasks they forked: the file demo's child.
    let forked = codes.get(apps.len()..);
    t.check(
        forked == Some(&[Some(0)][..]),
        format_args!("file demo: its forked task ended with {forked:?}"),
    );
    let mut reported = 0;
    for (&(mode, _, _), code) in apps.iter().zip(&codes) {
        let mode = AppMode::try_from(mode);
        let report = code.and_then(AppReport::decode);
        match (mode, *code, report) {
            (Ok(AppMode::Conformance), _, Some(r)) => {
                t.passed += u32::from(r.passed);
                t.failed += u32::from(r.failed);
                t.skipped += u32::from(r.skipped);
                reported += u32::from(r.passed) + u32::from(r.failed) + u32::from(r.skipped);
            }
            (Ok(AppMode::Demo | AppMode::FileDemo), Some(0), _) => t.passed += 1,
            // The spinner never ends by itself: the scheduler ends it once the others
            // are done, the timer having preempted it.
            (Ok(AppMode::Spin), Some(code), _) => {
                kprintln!(
                    "scheduler: the spinning app never yielded; the timer preempted it {} times, and it was ended with the others",
                    code & 0xffff
                );
                t.check(
                    code & !0xffff == crate::scheduler::ENDED_WITH_THE_OTHERS && code & 0xffff > 0,
                    format_args!(
                        "the spinning app ended with {code:#x}, not preempted and ended at the end"
                    ),
                )
            }
            (_, None, _) if APP_IMAGE.is_empty() => t.check(
                false,
                format_args!("apps: the kernel was built without them (use cargo xtask qemu)"),
            ),
            (mode, outcome, _) => {
                t.check(false, format_args!("app {mode:?}: ended with {outcome:?}"))
            }
        }
    }
    // Cases no app reported on (one died) count as failed.
    t.failed += total.saturating_sub(reported);
    // The apps, their peer and every client they started are gone, and all is back.
    let after = h.stats();
    let held = |s: &ipc_proto::ServerStats| (s.free_frames + s.table_frames, s.clients);
    let back = held(&after) == held(&before) && h.check().is_ok();
    t.check(
        back,
        format_args!("apps: not everything returned: {before:?} then {after:?}"),
    );

    // Ring 3: tasks in their own address spaces, system calls, real faults, signals.
    crate::endpoint::set_self_check(true);
    let before = h.stats();
    for (scenario, what, want) in [
        (
            0,
            "ring 3: a task touching an address with no mapping gets SIGSEGV in its handler",
            111,
        ),
        (
            1,
            "ring 3: a task writing a read-only page gets SIGSEGV in its handler",
            111,
        ),
        (
            2,
            "ring 3: a task dying of an invalid opcode is reclaimed",
            132,
        ),
        (
            4,
            "ring 3: a task reading kernel memory gets SIGSEGV in its handler",
            111,
        ),
        (
            5,
            "ring 3: a SYSCALL arriving as a page fault at the entry point (kvm-pvm) is made, its return raising no IOPL",
            111,
        ),
    ]
    .into_iter()
    .chain((0..8u64).map(|i| {
        // Tasks killed after 1 to 300 rounds of mapping and touching (pseudo-random
        // points), leaving mappings, private pages and page tables behind.
        let rounds = 1 + (i * 7919 + 13) % 300;
        (
            6 + rounds,
            "ring 3: a task killed mid-session is reclaimed",
            132,
        )
    })) {
        // The long sessions run without the check after every request (it would take
        // most of the boot's time); the invariants are checked once each task is gone.
        crate::endpoint::set_self_check(scenario < 6);
        let code = crate::user::run(scenario);
        if let Err(e) = h.check() {
            t.failed += 1;
            kprintln!("FAIL {what}: invariant violated: {e}");
        } else if code == want {
            t.passed += 1;
        } else {
            t.failed += 1;
            kprintln!("FAIL {what}: exit code {code}, expected {want}");
        }
    }
    // The agent page, the one kernel page ring 3 may use, is not writable from it, and
    // the kernel half is not reachable at all (the MMU's U/S check).
    if let Ok(mut p) = h.spawn(ClientSpec::DEFAULT) {
        for (what, got) in [
            (
                "ring 3: the agent page is read-only to tasks",
                p.write(crate::user::USER_AGENT, 0).err(),
            ),
            (
                "ring 3: the kernel's direct map is out of a task's reach",
                p.read(boot::DIRECT_MAP + 0x100000).err(),
            ),
        ] {
            if got == Some(ipc_proto::Signal::Segv) {
                t.passed += 1;
            } else {
                t.failed += 1;
                kprintln!("FAIL {what}: {got:?}");
            }
        }
    }
    let after = h.stats();
    let leaked = (before.free_frames + before.table_frames) as i64
        - (after.free_frames + after.table_frames) as i64;
    if leaked == 0 && after.clients == before.clients && h.check().is_ok() {
        t.passed += 1;
    } else {
        t.failed += 1;
        kprintln!("FAIL ring 3: tasks' frames all returned: {leaked} frames missing");
    }
    kprintln!(
        "{} passed, {} failed, {} skipped",
        t.passed,
        t.failed,
        t.skipped
    );
    serial::exit_qemu(if t.failed == 0 {
        EXIT_SUCCESS
    } else {
        EXIT_FAILURE
    });
}
