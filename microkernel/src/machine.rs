//! The machine: the kernel's half of the memory server. The kernel owns the real kernel
//! stub, which writes the x86_64 page tables the CPU walks; the memory server itself is
//! a ring-3 task (`tasks/src/bin/memserver-task.rs`) that the kernel calls with every
//! request, its own `PageFault` / `ClientStarted` / `ClientExited` messages included, and
//! that changes page tables only through system calls the kernel applies to the stub,
//! which checks its capabilities.
//!
//! A call to the server runs it: the task sleeps in `receive`, the kernel writes the
//! message into its buffer and resumes it (nested on the kernel stack below whatever made
//! the call: a task's system call, a page fault, the kernel itself) until its next
//! `receive`, which carries the reply. The server's own memory is never lazy, so it
//! takes no page faults and a call never re-enters it.
//!
//! A client's memory access for the conformance suite is made in ring 3 by the agent
//! page ([`crate::user`]) with the client's space loaded in CR3: the MMU checks user,
//! present, writable and no-execute itself, and a fault goes to the server as any
//! task's does.

use crate::boot::{DIRECT_MAP, DIRECT_MAP_SIZE};
use crate::user::AgentOp;
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use client_lib::Transport;
use conformance::harness::{Facts, Harness, MemoryAccess, Process};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use ipc_proto::CacheMode;
use ipc_proto::{Access, ClientId, ClientSpec, Errno, Reply, Request, ServerStats, Signal};
use kernel_stub::x86_64::structures::paging::PhysFrame;
use kernel_stub::x86_64::{PhysAddr, VirtAddr};
use kernel_stub::{DirectMap, FrameState, KernelCapability, LocalTlb, Stub};
use memserver::StubDriver;
use memserver::{Config, Frame, FrameRange, KernelStub, PageAttrs, StubError};
use spin::Mutex;
use x86_64::registers::control::{Cr3, Cr3Flags};

/// The stub: page tables in RAM reached through the direct map, `invlpg` for the TLB.
pub type HwStub = StubDriver<DirectMap, LocalTlb, Box<[FrameState]>, 256>;
type Space = <HwStub as KernelStub>::Space;

/// The kernel's right to grant frames: this type is private to the kernel.
pub struct Kernel;

// SAFETY: `Kernel` is constructed only by the kernel's boot code (this crate has no user
// code), which grants the stub only free RAM from the firmware's map and the device
// window it found, never the kernel's own frames.
unsafe impl KernelCapability for Kernel {}

/// A task that serves calls: it sleeps in `receive` until one arrives. The memory
/// server task is endpoint 0; an app's peer tasks follow.
#[derive(Default)]
struct Endpoint {
    space: Option<Space>,
    /// The client the task is (none for the memory server itself).
    client: Option<ClientId>,
    /// The client that started it, the only one that may call it (none: the kernel).
    owner: Option<ClientId>,
    rip: u64,
    rsp: u64,
    buf: u64,
    cap: u64,
    reply: Vec<u8>,
    running: bool,
    dead: bool,
}

struct Machine {
    stub: HwStub,
    cfg: Config,
    next_client: u32,
    livelocks: u32,
    /// The apps the scheduler runs (each a client), and their image (peers run it too).
    apps: alloc::collections::BTreeSet<u32>,
    app_image: &'static [u8],
    /// Clients started for a task (spawned, forked, peers), each with its owner.
    owned: BTreeMap<u32, u32>,
    /// The spaces the server task made, by the handle it names them with.
    spaces: Vec<Option<Space>>,
    /// Each client's space handle.
    clients: BTreeMap<u32, u32>,
    /// The client whose `ClientStarted` or `ClientCloned` is being delivered: the space
    /// the server makes meanwhile is that client's.
    binding: Option<ClientId>,
    /// The memory server task (0) and the apps' peer tasks.
    endpoints: Vec<Endpoint>,
    /// Frames set aside for the server task's own memory, handed out at its loading.
    task_frames: core::ops::Range<u64>,
}

impl Machine {
    fn space_of(&self, client: ClientId) -> Option<Space> {
        let h = *self.clients.get(&client.0)?;
        self.spaces.get(h as usize).copied().flatten()
    }

    /// Whether `frame` is one of the server's (a bank's or a device's): the only frames
    /// its stub calls may name.
    fn servers_frame(&self, frame: u64) -> bool {
        let inside = |r: &FrameRange| (r.start..r.start + r.count).contains(&frame);
        self.cfg
            .banks
            .iter()
            .flat_map(|b| b.ranges.iter())
            .any(inside)
            || self.cfg.devices.iter().map(|d| &d.frames).any(inside)
    }
}

static MACHINE: Mutex<Option<Machine>> = Mutex::new(None);
static CURRENT: AtomicU32 = AtomicU32::new(0);
static RETRIES: AtomicU32 = AtomicU32::new(0);
/// Which endpoint runs in ring 3 now (`NOT_AN_ENDPOINT`: none, an app or a small task).
static RUNNING: AtomicU32 = AtomicU32::new(NOT_AN_ENDPOINT);
const NOT_AN_ENDPOINT: u32 = u32::MAX;

/// What the server task's `receive` ends a run with.
const RECEIVED: u64 = 0x5EC0_0000;
/// Where the server task's heap is, and how big.
const SERVER_HEAP: u64 = 0x1000_0000;
const SERVER_HEAP_LEN: u64 = 24 << 20;
/// Its stack's top, and size.
const SERVER_STACK_TOP: u64 = 0x2000_0000;
const SERVER_STACK_LEN: u64 = 256 * 1024;
/// The sender of control messages to the server task (see the task).
const CONTROL: u64 = u64::MAX;
/// The file server task's endpoint: the memory server's pager, called by it alone.
const FILES_EP: u32 = 1;
/// The file server task's heap and stack (at the server's addresses, in its own space).
const FILES_HEAP_LEN: u64 = 4 << 20;
const FILES_STACK_LEN: u64 = 64 * 1024;
/// The longest message a serving task takes or answers: a page and its pager header.
const MAX_MESSAGE: u64 = 8192;

/// Makes the stub over the direct map with the kernel's PML4 as the template of every
/// space, loads the memory server task from `image` and the file server task (its pager)
/// from `files_image` into frames `task_frames` (granted RAM the server's configuration
/// does not include), and starts them, the server with `cfg`. An empty `files_image`
/// (a kernel built without its tasks) leaves the server without files.
pub fn start(
    cfg: Config,
    grants: &[(u64, u64, bool)],
    ram_frames: usize,
    kernel_root: u64,
    task_frames: core::ops::Range<u64>,
    image: &[u8],
    files_image: &[u8],
) -> Result<(), &'static str> {
    // SAFETY: the boot code maps physical 0..4 GiB read-write at DIRECT_MAP in the
    // kernel's half of every space; the frames the stub will use as tables are granted
    // RAM that nothing else in the kernel touches; there is one DirectMap, on one CPU.
    let phys = unsafe { DirectMap::new(VirtAddr::new(DIRECT_MAP), PhysAddr::new(DIRECT_MAP_SIZE)) }
        .expect("direct map fits");
    let states = alloc::vec![FrameState::UNUSED; ram_frames].into_boxed_slice();
    let stub_cfg = kernel_stub::Config {
        kernel_template: Some(PhysFrame::containing_address(PhysAddr::new(kernel_root))),
        ..kernel_stub::Config::default()
    };
    let mut stub: Stub<DirectMap, LocalTlb, Box<[FrameState]>, 256> =
        Stub::new(phys, LocalTlb::default(), states, stub_cfg);
    for &(start, count, ram) in grants {
        let f = |n: u64| PhysFrame::containing_address(PhysAddr::new(n * 4096));
        let range = PhysFrame::range(f(start), f(start + count));
        let granted = if ram {
            stub.grant_ram(&Kernel, range)
        } else {
            stub.grant_device(&Kernel, range)
        };
        granted.map_err(|_| "grants from the memory map overlap")?;
    }
    // The agent page: a frame of the kernel image every client's space maps read-execute
    // at USER_AGENT (see `map_agent`); a device frame to the stub, so it counts nothing.
    let agent = crate::user::agent_page_phys() / 4096;
    let f = |n: u64| PhysFrame::containing_address(PhysAddr::new(n * 4096));
    stub.grant_device(&Kernel, PhysFrame::range(f(agent), f(agent + 1)))
        .map_err(|_| "the agent page overlaps a grant")?;
    let mut config = [0u8; 4096];
    let config =
        postcard::to_slice(&cfg, &mut config).map_err(|_| "the configuration is too big")?;
    *MACHINE.lock() = Some(Machine {
        stub: StubDriver::new(stub),
        cfg,
        next_client: 1,
        livelocks: 0,
        apps: alloc::collections::BTreeSet::new(),
        app_image: &[],
        owned: BTreeMap::new(),
        spaces: Vec::new(),
        clients: BTreeMap::new(),
        binding: None,
        // The memory server (0) and the file server (1), both the kernel's.
        endpoints: alloc::vec![Endpoint::default(), Endpoint::default()],
        task_frames,
    });
    start_serving_task(0, image, SERVER_HEAP_LEN, SERVER_STACK_LEN)
        .map_err(|_| "the memory server task did not start")?;
    server_call(CONTROL, config).map_err(|_| "the memory server task took no configuration")?;
    if !files_image.is_empty() {
        start_serving_task(FILES_EP, files_image, FILES_HEAP_LEN, FILES_STACK_LEN)
            .map_err(|_| "the file server task did not start")?;
    }
    Ok(())
}

/// Loads a kernel-started serving task (the memory server, the file server) into
/// endpoint `ep` and runs it to its first `receive`.
fn start_serving_task(
    ep: u32,
    image: &[u8],
    heap_len: u64,
    stack_len: u64,
) -> Result<(), &'static str> {
    let (entry, stack_top) = load_serving_task(ep, image, heap_len, stack_len)?;
    let space = with(|m| m.endpoints[ep as usize].space).ok_or("no task space")?;
    let code = run_task(Entry {
        space,
        endpoint: ep,
        client: None,
        rip: entry,
        rsp: stack_top,
        regs: [SERVER_HEAP, heap_len, 0],
    });
    if code != Some(RECEIVED) {
        return Err("the task did not reach receive");
    }
    Ok(())
}

/// Maps a serving task's segments, heap (`heap_len` bytes at `SERVER_HEAP`) and stack
/// (`stack_len` bytes below `SERVER_STACK_TOP`) into a new space made straight with the
/// stub, from the frames set aside for the kernel's tasks; the entry point and stack top.
fn load_serving_task(
    ep: u32,
    image: &[u8],
    heap_len: u64,
    stack_len: u64,
) -> Result<(u64, u64), &'static str> {
    let (entry, segments) = crate::elf::parse(image).ok_or("the task image is not an ELF")?;
    with(|m| {
        let space = with_tables(m, |s| s.create_space())?;
        m.endpoints[ep as usize].space = Some(space);
        let rw = ipc_proto::Prot::READ | ipc_proto::Prot::WRITE;
        let stack = SERVER_STACK_TOP - stack_len;
        let extra = [(SERVER_HEAP, heap_len), (stack, stack_len)];
        let pieces = segments
            .iter()
            .map(|s| (s.vaddr, s.memsz, s.bytes, s.prot))
            .chain(extra.iter().map(|&(va, len)| (va, len, &[][..], rw)));
        for (vaddr, len, bytes, prot) in pieces {
            let attrs = PageAttrs {
                writable: prot.contains(ipc_proto::Prot::WRITE),
                executable: prot.contains(ipc_proto::Prot::EXEC),
                cache: CacheMode::WriteBack,
            };
            for page in 0..len.div_ceil(4096) {
                let frame = take_task_frame(m)?;
                let start = (page * 4096) as usize;
                if let Some(chunk) = bytes.get(start..bytes.len().min(start + 4096)) {
                    // SAFETY: a frame set aside for the task, zeroed, reached through the
                    // direct map; nothing else refers to it.
                    unsafe {
                        let dst = (DIRECT_MAP + frame.addr()) as *mut u8;
                        core::ptr::copy_nonoverlapping(chunk.as_ptr(), dst, chunk.len());
                    }
                }
                let va = vaddr + page * 4096;
                with_tables(m, |s| s.map(space, va, frame, attrs))?;
            }
        }
        Ok((entry, SERVER_STACK_TOP))
    })
}

/// How many of `pages` pages from `va` lie below the agent page: the server's unmap and
/// protect never reach it.
fn below_agent(va: u64, pages: u64) -> u64 {
    pages.min(crate::user::USER_AGENT.saturating_sub(va) / 4096)
}

/// Maps the agent page read-execute at `USER_AGENT` in a client's new space, with
/// table frames from the kernel's own reserve when the stub's pool has none.
fn map_agent(m: &mut Machine, space: Space) -> Result<(), &'static str> {
    let frame = Frame(crate::user::agent_page_phys() / 4096);
    let attrs = PageAttrs {
        writable: false,
        executable: true,
        cache: CacheMode::WriteBack,
    };
    with_tables(m, |s| s.map(space, crate::user::USER_AGENT, frame, attrs))
}

/// A zeroed frame from those set aside for the kernel's serving tasks.
fn take_task_frame(m: &mut Machine) -> Result<Frame, &'static str> {
    let n = m
        .task_frames
        .next()
        .ok_or("not enough frames for the server task")?;
    m.stub.zero_frame(Frame(n));
    Ok(Frame(n))
}

/// Runs a stub operation for the server task's own space, donating frames set aside for
/// the task as page tables when the stub asks for them.
fn with_tables<T>(
    m: &mut Machine,
    mut op: impl FnMut(&mut HwStub) -> Result<T, StubError>,
) -> Result<T, &'static str> {
    loop {
        match op(&mut m.stub) {
            Ok(v) => return Ok(v),
            Err(StubError::OutOfTableFrames) => {
                let f = take_task_frame(m)?;
                m.stub
                    .donate_table_frame(f)
                    .map_err(|_| "the stub refused a table frame")?;
            }
            Err(_) => return Err("the stub refused the server task's memory"),
        }
    }
}

fn with<R>(f: impl FnOnce(&mut Machine) -> R) -> R {
    let Some(mut m) = MACHINE.try_lock() else {
        crate::kprintln!(
            "kernel: the machine was re-entered (a fault inside the kernel's own work)"
        );
        crate::serial::exit_qemu(crate::serial::EXIT_FAILURE);
    };
    f(m.as_mut().expect("machine started"))
}

/// A space loaded in CR3, and what to go back to.
struct Saved {
    root: PhysFrame,
    flags: Cr3Flags,
    active: Option<Space>,
}

/// Loads `space` in CR3 (and tells the stub's TLB hook); what was loaded before.
fn load_space(space: Space) -> Option<Saved> {
    let root = with(|m| {
        let root = m.stub.stub().root_table(space).ok()?;
        let tlb = m.stub.stub_mut().tlb_mut();
        let active = tlb.active.replace(space);
        Some((root, active))
    });
    let (root, active) = root?;
    let (outer, flags) = Cr3::read();
    // SAFETY: every space the stub makes shares the kernel half (entries 256..512) with
    // the kernel's, so the kernel's code, stack and heap stay mapped.
    unsafe { Cr3::write(root, Cr3Flags::empty()) };
    Some(Saved {
        root: outer,
        flags,
        active,
    })
}

/// Goes back to what [`load_space`] replaced.
fn restore(saved: Saved) {
    // SAFETY: a space that was loaded before, which shares the kernel half too.
    unsafe { Cr3::write(saved.root, saved.flags) };
    with(|m| m.stub.stub_mut().tlb_mut().active = saved.active);
}

/// Where a ring-3 run starts: the task's space and its registers.
struct Entry {
    space: Space,
    /// The endpoint it is (`NOT_AN_ENDPOINT`: a scheduled app).
    endpoint: u32,
    /// The client it is (none: the memory server itself).
    client: Option<ClientId>,
    rip: u64,
    rsp: u64,
    /// `rdi`, `rsi` and `rax` at entry.
    regs: [u64; 3],
}

/// Runs a task in ring 3 (nested below whatever runs now) until it ends its run —
/// `receive`, `yield`, `exit`, or a kill — with its space loaded and it current;
/// the code its run ended with (`None`: its space is gone). What ran before is current
/// again afterwards.
fn run_task(e: Entry) -> Option<u64> {
    let saved = load_space(e.space)?;
    let outer = RUNNING.swap(e.endpoint, Ordering::AcqRel);
    let outer_client = e.client.map(|c| CURRENT.swap(c.0, Ordering::Relaxed));
    let outer_fault = LAST_TASK_FAULT.swap(u64::MAX, Ordering::Relaxed);
    let [rdi, rsi, rax] = e.regs;
    // SAFETY: the task's space is loaded, mapping its code and stack user-accessible (the
    // kernel loaded them, or the task sleeps where `receive`/`yield` left it, its wrapper
    // keeping every other register itself); it comes back through the `exit`, `receive`
    // or `yield` system calls, or dies through `return_to_kernel`.
    let code = unsafe { crate::user::enter_user(e.rip, e.rsp, rdi, rsi, rax) };
    LAST_TASK_FAULT.store(outer_fault, Ordering::Relaxed);
    if let Some(c) = outer_client {
        CURRENT.store(c, Ordering::Relaxed);
    }
    RUNNING.store(outer, Ordering::Release);
    restore(saved);
    Some(code)
}

/// Sends `message` to the server task as `sender` (a client's number, 0 for the kernel,
/// [`CONTROL`]) and runs it until it answers; the answer.
fn server_call(sender: u64, message: &[u8]) -> Result<Vec<u8>, Errno> {
    endpoint_call(0, sender, message)
}

/// Sends `message` from `sender` to endpoint `ep` and runs it until its next `receive`:
/// the reply. The call nests on the kernel stack below the caller; a peer that dies
/// instead is gone (`ESRCH` now and after); the memory server dying is fatal.
fn endpoint_call(ep: u32, sender: u64, message: &[u8]) -> Result<Vec<u8>, Errno> {
    let (space, client, rip, rsp, total) = with(|m| {
        let e = m.endpoints.get_mut(ep as usize).ok_or(Errno::ESRCH)?;
        let space = e.space.ok_or(Errno::ESRCH)?;
        if e.dead {
            return Err(Errno::ESRCH);
        }
        if e.running {
            // A call back into a task that is itself waiting on a call: no cycles.
            return Err(Errno::EBUSY);
        }
        let total = 8 + message.len();
        if total as u64 > e.cap {
            return Err(Errno::EMSGSIZE);
        }
        let mut bytes = Vec::with_capacity(total);
        bytes.extend_from_slice(&sender.to_le_bytes());
        bytes.extend_from_slice(message);
        let (buf, rip, rsp, client) = (e.buf, e.rip, e.rsp, e.client);
        write_user(m, space, buf, &bytes)?;
        // Marked only once the message is in: a failed delivery leaves it callable.
        m.endpoints[ep as usize].running = true;
        Ok((space, client, rip, rsp, total as u64))
    })?;
    let code = run_task(Entry {
        space,
        endpoint: ep,
        client,
        rip,
        rsp,
        regs: [0, 0, total],
    })
    .ok_or(Errno::ESRCH)?;
    let died = with(|m| {
        let e = &mut m.endpoints[ep as usize];
        e.running = false;
        if code == RECEIVED {
            return Ok(core::mem::take(&mut e.reply));
        }
        if ep == 0 {
            crate::kprintln!("kernel: the memory server task died (code {code:#x})");
            crate::serial::exit_qemu(crate::serial::EXIT_FAILURE);
        }
        e.dead = true;
        Err(e.client)
    });
    match died {
        Ok(reply) => Ok(reply),
        Err(client) => {
            if let Some(c) = client {
                with(|m| m.owned.remove(&c.0));
                end_client(c);
            }
            Err(Errno::ESRCH)
        }
    }
}

/// A request to the server, through the wire format, as `sender`.
fn server_request(sender: memserver::Sender, req: &Request) -> Result<Reply, Errno> {
    let mut buf = [0u8; ipc_proto::MAX_REQUEST_LEN];
    let n = ipc_proto::encode_request(req, &mut buf)?;
    let from = match sender {
        memserver::Sender::Kernel => 0,
        memserver::Sender::Client(c) => u64::from(c.0),
    };
    let reply = server_call(from, &buf[..n])?;
    ipc_proto::decode_response(&reply)?
}

/// Announces a new client as the kernel: started with `spec`, or cloned from `parent`
/// (the memory half of `fork`).
fn new_client(spec: ClientSpec, parent: Option<ClientId>) -> Result<ClientId, Errno> {
    let client = with(|m| {
        let c = ClientId(m.next_client);
        m.next_client += 1;
        m.binding = Some(c);
        c
    });
    let req = match parent {
        None => Request::ClientStarted { client, spec },
        Some(parent) => Request::ClientCloned {
            parent,
            child: client,
            spec,
        },
    };
    let r = server_request(memserver::Sender::Kernel, &req);
    with(|m| m.binding = None);
    r.map(|_| client)
}

/// Ends a client as the kernel.
fn end_client(client: ClientId) {
    let _ = server_request(memserver::Sender::Kernel, &Request::ClientExited { client });
}

/// Turns the server's after-every-request invariant check on or off.
pub fn set_self_check(on: bool) {
    let _ = server_call(CONTROL, &[u8::from(on)]);
}

/// The server's invariants, checked in full now, and the kernel's count of faults the
/// server answered without installing anything.
fn check_all() -> Result<(), String> {
    let verdict = server_call(CONTROL, &[2]).map_err(|e| format!("check: {e}"))?;
    if !verdict.is_empty() {
        return Err(String::from_utf8_lossy(&verdict).into_owned());
    }
    match with(|m| m.livelocks) {
        0 => Ok(()),
        n => Err(format!("{n} faults resolved without effect")),
    }
}

fn stats() -> ServerStats {
    match server_request(memserver::Sender::Kernel, &Request::Stats) {
        Ok(Reply::Stats(s)) => s,
        other => {
            crate::kprintln!("kernel: no stats from the memory server: {other:?}");
            crate::serial::exit_qemu(crate::serial::EXIT_FAILURE);
        }
    }
}

/// Whether the memory server task is what runs in ring 3 now.
pub fn server_running() -> bool {
    RUNNING.load(Ordering::Acquire) == 0
}

/// Whether one of the kernel's own serving tasks (the memory server, the file server)
/// runs in ring 3 now: their memory is never lazy, so any exception there is fatal.
pub fn kernel_task_running() -> bool {
    matches!(RUNNING.load(Ordering::Acquire), 0 | FILES_EP)
}

/// The memory server task's `pager_call(request, len, reply, cap)`: sends the request
/// to the file server task and copies its answer back; the answer's length.
pub fn pager_call([a0, a1, a2, a3]: [u64; 4]) -> u64 {
    if !server_running() {
        return neg(Errno::EPERM);
    }
    let call = || -> Result<u64, Errno> {
        let request = with(|m| {
            let me = m.endpoints[0].space.ok_or(Errno::ESRCH)?;
            if a1 > MAX_MESSAGE {
                return Err(Errno::EMSGSIZE);
            }
            read_user(m, me, a0, a1)
        })?;
        let reply = endpoint_call(FILES_EP, 0, &request)?;
        if reply.len() as u64 > a3 {
            return Err(Errno::EMSGSIZE);
        }
        with(|m| {
            let me = m.endpoints[0].space.ok_or(Errno::ESRCH)?;
            write_user(m, me, a2, &reply)
        })?;
        Ok(reply.len() as u64)
    };
    call().unwrap_or_else(neg)
}

/// The kernel's `PageFault` to the server for the current client. `None`: the page is
/// installed, retry; `Some(signal)`: deliver it.
fn user_fault(addr: u64, access: Access) -> Option<Signal> {
    // Two faults can be legitimate (read-install, then copy-on-write); more means the
    // server resolved a fault without installing anything.
    if RETRIES.fetch_add(1, Ordering::Relaxed) >= 3 {
        with(|m| m.livelocks += 1);
        return Some(Signal::Segv);
    }
    let client = ClientId(CURRENT.load(Ordering::Relaxed));
    match server_request(
        memserver::Sender::Kernel,
        &Request::PageFault {
            client,
            addr,
            access,
        },
    ) {
        Ok(Reply::FaultResolved) => None,
        Ok(Reply::Signal(s)) => Some(s),
        _ => Some(Signal::Segv),
    }
}

/// The kernel's own CR3 while a task runs.
static KERNEL_CR3: Mutex<Option<Saved>> = Mutex::new(None);
static LAST_TASK_FAULT: AtomicU64 = AtomicU64::new(u64::MAX);

/// A ring-3 task's page fault, with the repeat count kept per address.
pub fn task_fault(addr: u64, access: Access) -> Option<Signal> {
    if LAST_TASK_FAULT.swap(addr, Ordering::Relaxed) != addr {
        RETRIES.store(0, Ordering::Relaxed);
    }
    user_fault(addr, access)
}

/// Starts a client for a ring-3 task: maps `code` (read-execute) and a 64 KiB stack in
/// its space through the server, as a loader acting for it, loads the space; returns
/// the entry point and the stack top.
pub fn load_task(code: &[u8]) -> Option<(u64, u64)> {
    let id = new_client(ClientSpec::DEFAULT, None).ok()?;
    let rx = ipc_proto::Prot::READ | ipc_proto::Prot::EXEC;
    let rw = ipc_proto::Prot::READ | ipc_proto::Prot::WRITE;
    let entry = place(id, 0, code, code.len() as u64, rx)?;
    let stack = place(id, 0, &[], 16 * 4096, rw)?;
    enter_space(id)?;
    Some((entry, stack + 16 * 4096))
}

/// Bytes of an app's stack.
const APP_STACK: u64 = 64 * 1024;

/// Starts an app: a client whose space holds the ELF `image`'s loadable segments at
/// their addresses (with their protections) and a stack; the client, the entry point and
/// the stack top. A malformed image loads nothing (and a half-loaded app is ended).
fn load_app(image: &'static [u8]) -> Option<(ClientId, u64, u64)> {
    let (entry, segments) = crate::elf::parse(image)?;
    let id = new_client(ClientSpec::DEFAULT, None).ok()?;
    with(|m| {
        m.apps.insert(id.0);
        m.app_image = image;
    });
    let loaded = segments
        .iter()
        .try_for_each(|s| place(id, s.vaddr, s.bytes, s.memsz, s.prot).map(|_| ()))
        .and_then(|()| app_stack(id));
    match loaded {
        Some(stack_top) => Some((id, entry, stack_top)),
        None => {
            end_app(id);
            None
        }
    }
}

/// Ends an app: the clients it started and its peers first (as a process group), then
/// the app itself.
fn end_app(app: ClientId) {
    let owned: Vec<ClientId> = with(|m| {
        m.apps.remove(&app.0);
        for e in m.endpoints.iter_mut().skip(1) {
            if e.owner == Some(app) {
                e.dead = true;
            }
        }
        let mine: Vec<u32> = m
            .owned
            .iter()
            .filter(|&(_, &owner)| owner == app.0)
            .map(|(&c, _)| c)
            .collect();
        for c in &mine {
            m.owned.remove(c);
        }
        mine.into_iter().map(ClientId).collect()
    });
    for c in owned.into_iter().chain([app]) {
        end_client(c);
    }
}

/// What a task's `yield` ends its run with, and where it resumes.
const YIELDED: u64 = 0x91E1_D000;
static YIELD_AT: Mutex<(u64, u64)> = Mutex::new((0, 0));

/// The `yield` system call of a scheduled app: its run ends here, to resume at
/// `user_rip` / `user_rsp` (its wrapper keeps its other registers) after the others had
/// their turn. Anything else (a serving task, a small task) may not yield.
pub fn yield_now(user_rip: u64, user_rsp: u64) -> u64 {
    let me = CURRENT.load(Ordering::Relaxed);
    let scheduled =
        RUNNING.load(Ordering::Acquire) == NOT_AN_ENDPOINT && with(|m| m.apps.contains(&me));
    if !scheduled {
        return neg(Errno::EPERM);
    }
    *YIELD_AT.lock() = (user_rip, user_rsp);
    crate::user::kill(YIELDED)
}

/// Apps forked since the scheduler last looked, with where each resumes.
static FORKED: Mutex<Vec<(ClientId, u64, u64)>> = Mutex::new(Vec::new());

/// The `fork` system call of a scheduled app: a new app whose address space is a
/// copy-on-write clone of the caller's (the server's `ClientCloned`), queued to resume
/// at `user_rip` / `user_rsp` (the call's return, its wrapper restoring the callee-saved
/// registers from its copy of the stack) with 0; the caller gets the child's number.
/// The child is a process of its own: it outlives its parent and is not its to end.
pub fn task_fork(user_rip: u64, user_rsp: u64) -> u64 {
    let me = CURRENT.load(Ordering::Relaxed);
    let scheduled =
        RUNNING.load(Ordering::Acquire) == NOT_AN_ENDPOINT && with(|m| m.apps.contains(&me));
    if !scheduled {
        return neg(Errno::EPERM);
    }
    match new_client(ClientSpec::DEFAULT, Some(ClientId(me))) {
        Ok(child) => {
            with(|m| m.apps.insert(child.0));
            FORKED.lock().push((child, user_rip, user_rsp));
            u64::from(child.0)
        }
        Err(e) => neg(e),
    }
}

/// The scheduler: runs one app of `image` per entry of `args` (its `rdi` and `rsi` at
/// start), round robin, each until it yields or ends, and the apps they fork; their exit
/// codes (`None`: it did not load), the forked apps' after the others, in the order they
/// were forked. Apps yield only between pieces of work (the conformance app between
/// cases), so each runs alone while it works.
pub fn run_apps(image: &'static [u8], args: &[(u64, u64)]) -> Vec<Option<u64>> {
    struct Run {
        index: usize,
        id: ClientId,
        rip: u64,
        rsp: u64,
        /// `rdi`, `rsi` and `rax` at its next start.
        regs: [u64; 3],
    }
    let mut codes = alloc::vec![None; args.len()];
    let mut ready = alloc::collections::VecDeque::new();
    for (index, &a) in args.iter().enumerate() {
        if let Some((id, rip, rsp)) = load_app(image) {
            ready.push_back(Run {
                index,
                id,
                rip,
                rsp,
                regs: [a.0, a.1, 0],
            });
        }
    }
    while let Some(mut run) = ready.pop_front() {
        let code = with(|m| m.space_of(run.id)).and_then(|space| {
            run_task(Entry {
                space,
                endpoint: NOT_AN_ENDPOINT,
                client: Some(run.id),
                rip: run.rip,
                rsp: run.rsp,
                regs: run.regs,
            })
        });
        // A child resumes from its `fork` with 0 in rax.
        for (id, rip, rsp) in core::mem::take(&mut *FORKED.lock()) {
            codes.push(None);
            ready.push_back(Run {
                index: codes.len() - 1,
                id,
                rip,
                rsp,
                regs: [0; 3],
            });
        }
        let Some(code) = code else {
            end_app(run.id);
            continue;
        };
        if code == YIELDED {
            (run.rip, run.rsp) = *YIELD_AT.lock();
            run.regs = [0; 3];
            ready.push_back(run);
        } else {
            codes[run.index] = Some(code);
            end_app(run.id);
        }
    }
    codes
}

/// An app's stack, with an inaccessible guard page below it (an overflow is a fault the
/// server answers with `SIGSEGV`, not a write into whatever was mapped below); its top.
fn app_stack(id: ClientId) -> Option<u64> {
    let rw = ipc_proto::Prot::READ | ipc_proto::Prot::WRITE;
    let at = place(id, 0, &[], APP_STACK + 4096, rw)?;
    let guard = Request::Mprotect {
        addr: at,
        len: 4096,
        prot: ipc_proto::Prot::empty(),
    };
    server_request(memserver::Sender::Client(id), &guard).ok()?;
    Some(at + 4096 + APP_STACK)
}

/// Maps `len` bytes for `id` (at `addr` exactly, or anywhere for 0), populated, copies
/// `bytes` to the start through the direct map, then sets `prot`; the address.
fn place(id: ClientId, addr: u64, bytes: &[u8], len: u64, prot: ipc_proto::Prot) -> Option<u64> {
    let rw = ipc_proto::Prot::READ | ipc_proto::Prot::WRITE;
    let mut flags = conformance::cases::PA | ipc_proto::MapFlags::POPULATE;
    if addr != 0 {
        flags |= ipc_proto::MapFlags::FIXED_NOREPLACE;
    }
    let len = len.max(bytes.len() as u64).div_ceil(4096) * 4096;
    let args = ipc_proto::MmapArgs {
        addr,
        len,
        prot: rw,
        flags,
        fd: None,
        offset: 0,
    };
    let at = match server_request(memserver::Sender::Client(id), &Request::Mmap(args)) {
        Ok(Reply::Mapped { addr }) => addr,
        _ => return None,
    };
    with(|m| {
        let space = m.space_of(id)?;
        write_user(m, space, at, bytes).ok()
    })?;
    if prot != rw {
        let protect = Request::Mprotect {
            addr: at,
            len,
            prot,
        };
        server_request(memserver::Sender::Client(id), &protect).ok()?;
    }
    Some(at)
}

/// Loads `id`'s space in CR3 to run it as the current task.
fn enter_space(id: ClientId) -> Option<()> {
    let space = with(|m| m.space_of(id))?;
    let saved = load_space(space)?;
    *KERNEL_CR3.lock() = Some(saved);
    CURRENT.store(id.0, Ordering::Relaxed);
    LAST_TASK_FAULT.store(u64::MAX, Ordering::Relaxed);
    Some(())
}

/// After a small task ended: back to the kernel's space, and the client is gone.
pub fn end_task() {
    if let Some(saved) = KERNEL_CR3.lock().take() {
        restore(saved);
    }
    end_client(ClientId(CURRENT.load(Ordering::Relaxed)));
}

/// A task's request, through the wire format as any client's.
fn task_call(req: &Request) -> Result<Reply, Errno> {
    let client = ClientId(CURRENT.load(Ordering::Relaxed));
    server_request(memserver::Sender::Client(client), req)
}

fn neg(e: Errno) -> u64 {
    (-(e as i64)) as u64
}

/// The `mmap` system call: anonymous memory; the address or `-errno`.
pub fn task_mmap(len: u64, prot: u64, flags: u64) -> u64 {
    let (Ok(prot), Ok(flags)) = (
        ipc_proto::Prot::from_raw(prot as u32),
        ipc_proto::MapFlags::from_raw(flags as u32),
    ) else {
        return neg(Errno::EINVAL);
    };
    let args = ipc_proto::MmapArgs {
        addr: 0,
        len,
        prot,
        flags,
        fd: None,
        offset: 0,
    };
    match task_call(&Request::Mmap(args)) {
        Ok(Reply::Mapped { addr }) => addr,
        Ok(_) => neg(Errno::EPROTO),
        Err(e) => neg(e),
    }
}

/// The `munmap` system call.
pub fn task_munmap(addr: u64, len: u64) -> u64 {
    match task_call(&Request::Munmap { addr, len }) {
        Ok(_) => 0,
        Err(e) => neg(e),
    }
}

/// Makes `op` at `addr` as `client`: a ring-3 run of the agent page with the client's
/// space loaded, so the MMU checks user, present, writable and no-execute exactly as for
/// any task, and a page fault takes the same path to the server as any task's.
fn access(client: ClientId, addr: u64, op: AgentOp) -> Result<u8, Signal> {
    let space = with(|m| m.space_of(client)).ok_or(Signal::Segv)?;
    let saved = load_space(space).ok_or(Signal::Segv)?;
    // What runs now (the kernel, or the app whose system call this is) resumes after.
    let outer_client = CURRENT.swap(client.0, Ordering::Relaxed);
    let outer_fault = LAST_TASK_FAULT.swap(u64::MAX, Ordering::Relaxed);
    let r = crate::user::run_agent(op, addr);
    CURRENT.store(outer_client, Ordering::Relaxed);
    LAST_TASK_FAULT.store(outer_fault, Ordering::Relaxed);
    restore(saved);
    r
}

/// One client of the bare-metal server.
pub struct HwProcess {
    id: ClientId,
}

impl Transport for HwProcess {
    fn call(&mut self, request: &[u8], response: &mut [u8]) -> Result<usize, Errno> {
        let reply = server_call(u64::from(self.id.0), request)?;
        let out = response.get_mut(..reply.len()).ok_or(Errno::EMSGSIZE)?;
        out.copy_from_slice(&reply);
        Ok(reply.len())
    }
}

impl MemoryAccess for HwProcess {
    fn read(&mut self, addr: u64) -> Result<u8, Signal> {
        access(self.id, addr, AgentOp::Read)
    }
    fn write(&mut self, addr: u64, value: u8) -> Result<(), Signal> {
        access(self.id, addr, AgentOp::Write(value)).map(|_| ())
    }
    fn exec(&mut self, addr: u64) -> Result<(), Signal> {
        access(self.id, addr, AgentOp::Exec).map(|_| ())
    }
}

impl Process for HwProcess {
    fn transport(&mut self) -> &mut dyn Transport {
        self
    }

    fn fork(&mut self, spec: ClientSpec) -> Result<Box<dyn Process>, Errno> {
        let child = new_client(spec, Some(self.id))?;
        Ok(Box::new(HwProcess { id: child }))
    }
}

impl Drop for HwProcess {
    fn drop(&mut self) {
        end_client(self.id);
    }
}

/// The kernel's own harness over the server task, for the checks it runs itself.
pub struct HwHarness;

impl Harness for HwHarness {
    fn name(&self) -> &str {
        "qemu"
    }

    fn facts(&self) -> Facts {
        with(|m| conformance::inproc::facts_of(&m.cfg, true))
    }

    fn spawn(&mut self, spec: ClientSpec) -> Result<Box<dyn Process>, Errno> {
        let id = new_client(spec, None)?;
        Ok(Box::new(HwProcess { id }))
    }

    fn stats(&mut self) -> ServerStats {
        stats()
    }

    fn check(&mut self) -> Result<(), String> {
        check_all()
    }

    fn unique_name(&self, base: &str) -> String {
        format!("/qemu-{base}")
    }
}

/// The conformance app's system calls (numbers and arguments in `tasks/src/sys.rs`): its
/// requests as any client's, the clients it starts and their ring-3 accesses, and the
/// server's counters and invariants the runner checks after every case.
pub fn app_syscall(nr: u64, a: [u64; 4]) -> u64 {
    // The server task may only write to the console (its panic message, say).
    if server_running() && nr != 4 {
        return neg(Errno::EPERM);
    }
    match app_call(nr, a) {
        Ok(v) => v,
        Err(e) => neg(e),
    }
}

fn app_call(nr: u64, [a0, a1, a2, a3]: [u64; 4]) -> Result<u64, Errno> {
    match nr {
        4 => {
            // The server's memory is never lazy; an app's may be (a forked task's text
            // is not installed until it touches it).
            let bytes = match with(|m| m.endpoints[0].space) {
                Some(s) if server_running() => with(|m| read_user(m, s, a0, a1))?,
                _ => copy_in(a0, a1)?,
            };
            crate::kprint!("{}", String::from_utf8_lossy(&bytes));
            Ok(0)
        }
        5 => {
            let client = app_client(a0)?;
            if a2 > ipc_proto::MAX_REQUEST_LEN as u64 {
                return Err(Errno::EMSGSIZE);
            }
            let request = copy_in(a1, a2)?;
            let reply = server_call(u64::from(client.0), &request)?;
            copy_out(a3, &reply)?;
            Ok(reply.len() as u64)
        }
        6 | 7 => {
            let (parent, spec_at, spec_len) = match nr {
                6 => (None, a0, a1),
                _ => (Some(app_client(a0)?), a1, a2),
            };
            let spec: ClientSpec = postcard::from_bytes(&copy_in(spec_at, spec_len.min(256))?)
                .map_err(|_| Errno::EINVAL)?;
            let id = new_client(spec, parent)?;
            with(|m| m.owned.insert(id.0, CURRENT.load(Ordering::Relaxed)));
            Ok(u64::from(id.0))
        }
        8 => {
            let client = app_client(a0)?;
            let peer = with(|m| m.endpoints.iter().any(|e| e.client == Some(client)));
            if a0 == 0 || peer {
                return Err(Errno::EBADF); // itself, or a peer task (it ends with its owner)
            }
            with(|m| m.owned.remove(&client.0));
            end_client(client);
            Ok(0)
        }
        9 => {
            if a0 == 0 {
                return Err(Errno::EINVAL); // the app's own accesses are its own
            }
            let client = app_client(a0)?;
            let op = match (a1, a3) {
                (0, _) => AgentOp::Read,
                (1, v) => AgentOp::Write(v as u8),
                (2, _) => AgentOp::Exec,
                _ => return Err(Errno::EINVAL),
            };
            Ok(match access(client, a2, op) {
                Ok(b) => 0x1_0000 | u64::from(b),
                Err(s) => u64::from(s.number()),
            })
        }
        10 => {
            let mut buf = [0u8; 128];
            let bytes = postcard::to_slice(&stats(), &mut buf).map_err(|_| Errno::EPROTO)?;
            copy_out_capped(a0, a1, bytes)
        }
        11 => match check_all() {
            Ok(()) => Ok(0),
            Err(e) => copy_out_capped(a0, a1, e.as_bytes()).map(|n| n.max(1)),
        },
        12 => {
            let facts = with(|m| conformance::inproc::facts_of(&m.cfg, true));
            let mut buf = [0u8; 512];
            let bytes = postcard::to_slice(&facts, &mut buf).map_err(|_| Errno::EPROTO)?;
            copy_out_capped(a0, a1, bytes)
        }
        13 => start_peer(),
        14 => {
            let owner = CURRENT.load(Ordering::Relaxed);
            let ep = u32::try_from(a0).map_err(|_| Errno::EBADF)?;
            let mine = with(|m| {
                let e = m.endpoints.get(ep as usize)?;
                (ep != 0 && e.owner == Some(ClientId(owner))).then_some(())
            });
            mine.ok_or(Errno::EBADF)?;
            let message = copy_in(a1, a2)?;
            let reply = endpoint_call(ep, u64::from(owner), &message)?;
            copy_out(a3, &reply)?;
            Ok(reply.len() as u64)
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// Starts a peer of the calling app: the app's own image as a new task and client,
/// owned by the caller, run until it waits in `receive`; its endpoint handle.
fn start_peer() -> Result<u64, Errno> {
    let owner = ClientId(CURRENT.load(Ordering::Relaxed));
    let image = with(|m| m.app_image);
    let (entry, segments) = crate::elf::parse(image).ok_or(Errno::EINVAL)?;
    let id = new_client(ClientSpec::DEFAULT, None)?;
    with(|m| m.owned.insert(id.0, owner.0));
    let loaded = segments
        .iter()
        .try_for_each(|s| place(id, s.vaddr, s.bytes, s.memsz, s.prot).map(|_| ()))
        .and_then(|()| app_stack(id));
    let (Some(stack_top), Some(space)) = (loaded, with(|m| m.space_of(id))) else {
        return Err(Errno::ENOMEM); // its client ends with the app
    };
    let ep = with(|m| {
        m.endpoints.push(Endpoint {
            space: Some(space),
            client: Some(id),
            owner: Some(owner),
            running: true,
            ..Endpoint::default()
        });
        (m.endpoints.len() - 1) as u32
    });
    // Its first run: from the entry point, in peer mode, to its first `receive`.
    let code = run_task(Entry {
        space,
        endpoint: ep,
        client: Some(id),
        rip: entry,
        rsp: stack_top,
        regs: [1, 0, 0],
    });
    let code = code.unwrap_or(0);
    with(|m| {
        let e = &mut m.endpoints[ep as usize];
        e.running = false;
        e.dead = code != RECEIVED;
    });
    if code != RECEIVED {
        return Err(Errno::ESRCH);
    }
    Ok(u64::from(ep))
}

/// The client a handle names for the calling task: 0 is the task itself, others must be
/// clients it started (anything else, a forged handle, is `EBADF`).
fn app_client(handle: u64) -> Result<ClientId, Errno> {
    let me = CURRENT.load(Ordering::Relaxed);
    with(|m| {
        caller_space(m)?;
        match handle {
            0 => Ok(ClientId(me)),
            h if h <= u64::from(u32::MAX) && m.owned.get(&(h as u32)) == Some(&me) => {
                Ok(ClientId(h as u32))
            }
            _ => Err(Errno::EBADF),
        }
    })
}

/// The pages of `[addr, addr + len)` in `space`, through the direct map: calls `f` with
/// each page's piece. A page not mapped (or not writable, for `write`) is `EFAULT`: a
/// task's pages are faulted in first ([`fault_in`]); the server's are all populated.
fn user_pieces(
    m: &Machine,
    space: Space,
    addr: u64,
    len: u64,
    write: bool,
    mut f: impl FnMut(*mut u8, usize),
) -> Result<(), Errno> {
    let end = addr.checked_add(len).ok_or(Errno::EFAULT)?;
    if end > 0x0000_8000_0000_0000 {
        return Err(Errno::EFAULT);
    }
    let mut at = addr;
    while at < end {
        let page = at & !0xfff;
        let (frame, attrs) = m.stub.query(space, page).ok_or(Errno::EFAULT)?;
        if write && !attrs.writable {
            return Err(Errno::EFAULT);
        }
        let n = (end.min(page + 4096) - at) as usize;
        f((DIRECT_MAP + frame.addr() + (at - page)) as *mut u8, n);
        at += n as u64;
    }
    Ok(())
}

/// Copies `len` bytes (at most [`MAX_MESSAGE`]) from `space`.
fn read_user(m: &Machine, space: Space, addr: u64, len: u64) -> Result<Vec<u8>, Errno> {
    if len > MAX_MESSAGE {
        return Err(Errno::EMSGSIZE);
    }
    let mut out = Vec::with_capacity(len as usize);
    user_pieces(m, space, addr, len, false, |p, n| {
        // SAFETY: `p..p + n` lies in one frame of the task's, mapped by the direct map.
        out.extend_from_slice(unsafe { core::slice::from_raw_parts(p, n) })
    })?;
    Ok(out)
}

/// Copies `bytes` into `space`.
fn write_user(m: &Machine, space: Space, addr: u64, bytes: &[u8]) -> Result<(), Errno> {
    let mut from = 0;
    user_pieces(m, space, addr, bytes.len() as u64, true, |p, n| {
        // SAFETY: `p..p + n` lies in one writable frame of the task's, in the direct map.
        unsafe { core::ptr::copy_nonoverlapping(bytes[from..].as_ptr(), p, n) };
        from += n;
    })
}

/// The calling task's space (an app or a peer: the current client's).
fn caller_space(m: &Machine) -> Result<Space, Errno> {
    let me = CURRENT.load(Ordering::Relaxed);
    // An app, or one of its peers (the clients an app starts run no code of their own).
    let peer = || {
        m.endpoints
            .iter()
            .any(|e| e.client == Some(ClientId(me)) && !e.dead)
    };
    if !m.apps.contains(&me) && !peer() {
        return Err(Errno::EPERM);
    }
    m.space_of(ClientId(me)).ok_or(Errno::EPERM)
}

/// Makes the calling task's pages of `[addr, addr + len)` present (and writable, for
/// `write`) as its own accesses would: a page that is not gets the kernel's `PageFault`
/// for it, and a signal answer is `EFAULT`. Buffers on lazily mapped memory work.
fn fault_in(addr: u64, len: u64, write: bool) -> Result<(), Errno> {
    if len == 0 {
        return Ok(());
    }
    let end = addr.checked_add(len).ok_or(Errno::EFAULT)?;
    if end > 0x0000_8000_0000_0000 {
        return Err(Errno::EFAULT);
    }
    let client = ClientId(CURRENT.load(Ordering::Relaxed));
    let mut page = addr & !0xfff;
    while page < end {
        let ready = with(|m| {
            let installed = m.stub.query(caller_space(m)?, page);
            Ok::<_, Errno>(installed.is_some_and(|(_, a)| a.writable || !write))
        })?;
        if !ready {
            let access = if write { Access::Write } else { Access::Read };
            let fault = Request::PageFault {
                client,
                addr: page,
                access,
            };
            match server_request(memserver::Sender::Kernel, &fault) {
                Ok(Reply::FaultResolved) => {}
                _ => return Err(Errno::EFAULT),
            }
        }
        page += 4096;
    }
    Ok(())
}

/// Copies `len` bytes from the calling task.
fn copy_in(addr: u64, len: u64) -> Result<Vec<u8>, Errno> {
    if len > 4096 {
        return Err(Errno::EMSGSIZE);
    }
    fault_in(addr, len, false)?;
    with(|m| read_user(m, caller_space(m)?, addr, len))
}

/// Copies `bytes` to the calling task.
fn copy_out(addr: u64, bytes: &[u8]) -> Result<(), Errno> {
    fault_in(addr, bytes.len() as u64, true)?;
    with(|m| write_user(m, caller_space(m)?, addr, bytes))
}

/// Copies as much of `bytes` as fits in the caller's `cap`-byte buffer; the length.
fn copy_out_capped(addr: u64, cap: u64, bytes: &[u8]) -> Result<u64, Errno> {
    let n = bytes.len().min(cap as usize);
    copy_out(addr, &bytes[..n])?;
    Ok(n as u64)
}

/// `receive` by endpoint `ep`: keeps its reply (`a0`, `a1` bytes), where the next message
/// goes (`a2`, `a3` bytes) and where to resume it, and ends its run.
fn receive(ep: u32, [a0, a1, a2, a3]: [u64; 4], user_rip: u64, user_rsp: u64) -> ! {
    with(|m| {
        let space = m.endpoints[ep as usize].space;
        let reply = space
            .filter(|_| a1 <= MAX_MESSAGE)
            .map(|s| read_user(m, s, a0, a1));
        let e = &mut m.endpoints[ep as usize];
        // A reply the kernel cannot read is none at all (the caller sees EPROTO).
        e.reply = match reply {
            Some(Ok(r)) => r,
            _ => Vec::new(),
        };
        (e.buf, e.cap) = (a2, a3);
        (e.rip, e.rsp) = (user_rip, user_rsp);
    });
    crate::user::kill(RECEIVED)
}

/// A peer task's `receive` (the app's other syscalls are [`app_syscall`]'s).
pub fn peer_receive(a: [u64; 4], user_rip: u64, user_rsp: u64) -> u64 {
    match RUNNING.load(Ordering::Acquire) {
        0 | NOT_AN_ENDPOINT => neg(Errno::EPERM),
        ep => receive(ep, a, user_rip, user_rsp),
    }
}

/// The memory server task's system calls (numbers and arguments in `tasks/src/sys.rs`):
/// `receive`, and the kernel stub's operations on the spaces it made and the frames of
/// its configuration. `user_rip` and `user_rsp` are where `receive` resumes.
pub fn server_syscall(nr: u64, [a0, a1, a2, a3]: [u64; 4], user_rip: u64, user_rsp: u64) -> u64 {
    const NONE: u64 = u64::MAX;
    if !server_running() {
        return neg(Errno::EPERM);
    }
    let code = |r: Result<(), StubError>| match r {
        Ok(()) => 0,
        Err(StubError::OutOfTableFrames) => 1,
        Err(StubError::OutOfSpaces) => 2,
        Err(StubError::Refused) => 3,
    };
    let attrs = PageAttrs::from_bits;
    let pack = |f: Frame, a: PageAttrs| f.0 << 12 | a.bits();
    if nr == 20 {
        receive(0, [a0, a1, a2, a3], user_rip, user_rsp);
    }
    with(|m| {
        let space = |h: u64| m.spaces.get(h as usize).copied().flatten();
        match nr {
            21 => match m.stub.create_space() {
                Ok(s) => {
                    let h = m.spaces.len() as u32;
                    m.spaces.push(Some(s));
                    if let Some(c) = m.binding.take() {
                        m.clients.insert(c.0, h);
                        if map_agent(m, s).is_err() {
                            crate::kprintln!("kernel: no table frames for the agent page");
                            crate::serial::exit_qemu(crate::serial::EXIT_FAILURE);
                        }
                    }
                    u64::from(h)
                }
                Err(StubError::OutOfTableFrames) => NONE - 1,
                Err(_) => NONE,
            },
            22 => {
                if let Some(s) = m.spaces.get_mut(a0 as usize).and_then(Option::take) {
                    m.stub.destroy_space(s);
                    m.clients.retain(|_, h| u64::from(*h) != a0);
                }
                0
            }
            23 => match space(a0) {
                Some(s) if m.servers_frame(a2) => code(m.stub.map(s, a1, Frame(a2), attrs(a3))),
                _ => code(Err(StubError::Refused)),
            },
            24 => {
                if let Some(s) = space(a0) {
                    m.stub.unmap(s, a1, below_agent(a1, a2));
                }
                0
            }
            25 => {
                if let Some(s) = space(a0) {
                    m.stub.protect(s, a1, below_agent(a1, a2), attrs(a3));
                }
                0
            }
            // The agent page is the kernel's: the server neither sees nor changes it.
            26 if a1 & !0xfff == crate::user::USER_AGENT => NONE,
            26 => match space(a0).and_then(|s| m.stub.query(s, a1)) {
                Some((f, a)) => pack(f, a),
                None => NONE,
            },
            27 => {
                let (Some(s), Some(me)) = (space(a0), m.endpoints[0].space) else {
                    return 0;
                };
                let max = a3.min(1024) as usize;
                let mut entries: Vec<u64> = Vec::with_capacity(2 * max);
                m.stub.for_each_mapping(s, &mut |va, f, a| {
                    if va >= a1 && va != crate::user::USER_AGENT && entries.len() < 2 * max {
                        entries.push(va);
                        entries.push(pack(f, a));
                    }
                });
                let bytes: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
                match write_user(m, me, a2, &bytes) {
                    Ok(()) => (entries.len() / 2) as u64,
                    Err(_) => 0,
                }
            }
            28 => {
                if m.servers_frame(a0) {
                    m.stub.zero_frame(Frame(a0));
                }
                0
            }
            29 => {
                if m.servers_frame(a0) && m.servers_frame(a1) {
                    m.stub.copy_frame(Frame(a0), Frame(a1));
                }
                0
            }
            32 => {
                let me = m.endpoints[0].space;
                match me.filter(|_| a2 <= 4096 && m.servers_frame(a0)) {
                    Some(me) => match read_user(m, me, a1, a2) {
                        Ok(data) => {
                            m.stub.fill_frame(Frame(a0), &data);
                            0
                        }
                        Err(_) => NONE,
                    },
                    None => NONE,
                }
            }
            33 => {
                let me = m.endpoints[0].space;
                match me.filter(|_| a2 <= 4096 && m.servers_frame(a0)) {
                    Some(me) => {
                        let mut page = alloc::vec![0u8; a2 as usize];
                        m.stub.read_frame(Frame(a0), &mut page);
                        match write_user(m, me, a1, &page) {
                            Ok(()) => 0,
                            Err(_) => NONE,
                        }
                    }
                    None => NONE,
                }
            }
            30 if m.servers_frame(a0) => code(m.stub.donate_table_frame(Frame(a0))),
            30 => code(Err(StubError::Refused)),
            31 => match m.stub.reclaim_table_frame() {
                Some(f) if m.servers_frame(f.0) => f.0,
                // One of the task's own table frames: it stays the kernel's.
                Some(f) => {
                    let _ = m.stub.donate_table_frame(f);
                    NONE
                }
                None => NONE,
            },
            _ => neg(Errno::ENOSYS),
        }
    })
}
