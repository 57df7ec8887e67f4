//! The memory server on bare metal: [`Server`] over the real kernel stub, which writes
//! the x86_64 page tables the CPU walks, and the conformance harness whose clients are
//! address spaces of that stub.
//!
//! A client's memory access is made in ring 3 by the agent page ([`crate::user`]) with
//! the client's space loaded in CR3: the MMU checks user, present, writable and
//! no-execute itself, and a fault goes to the server as any task's does.

use crate::boot::{DIRECT_MAP, DIRECT_MAP_SIZE};
use crate::user::AgentOp;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use client_lib::Transport;
use conformance::harness::{Facts, Harness, MemoryAccess, Process};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use ipc_proto::{Access, ClientId, ClientSpec, Errno, Reply, Request, ServerStats, Signal};
use kernel_stub::x86_64::structures::paging::PhysFrame;
use kernel_stub::x86_64::{PhysAddr, VirtAddr};
use kernel_stub::{DirectMap, FrameState, KernelCapability, LocalTlb, Stub};
use memserver::inproc::StubDriver;
use memserver::{Config, Sender, Server};
use spin::Mutex;
use x86_64::registers::control::{Cr3, Cr3Flags};

/// The stub: page tables in RAM reached through the direct map, `invlpg` for the TLB.
pub type HwStub = StubDriver<DirectMap, LocalTlb, Box<[FrameState]>, 256>;

/// The kernel's right to grant frames: this type is private to the kernel.
pub struct Kernel;

// SAFETY: `Kernel` is constructed only by the kernel's boot code (this crate has no user
// code), which grants the stub only free RAM from the firmware's map and the device
// window it found, never the kernel's own frames.
unsafe impl KernelCapability for Kernel {}

struct Machine {
    server: Server<HwStub>,
    cfg: Config,
    next_client: u32,
    livelocks: u32,
    /// The conformance app while it runs: its own client, and the clients it started.
    app: Option<ClientId>,
    owned: alloc::collections::BTreeSet<u32>,
}

impl Machine {
    /// Announces a new client as the kernel: started with `spec`, or cloned from
    /// `parent` (the memory half of `fork`).
    fn new_client(
        &mut self,
        spec: ClientSpec,
        parent: Option<ClientId>,
    ) -> Result<ClientId, Errno> {
        let client = ClientId(self.next_client);
        self.next_client += 1;
        let req = match parent {
            None => Request::ClientStarted { client, spec },
            Some(parent) => Request::ClientCloned {
                parent,
                child: client,
                spec,
            },
        };
        self.server.handle(Sender::Kernel, &req).map(|_| client)
    }
}

static MACHINE: Mutex<Option<Machine>> = Mutex::new(None);
static CURRENT: AtomicU32 = AtomicU32::new(0);
static RETRIES: AtomicU32 = AtomicU32::new(0);

/// Makes the stub over the direct map with the kernel's PML4 as the template of every
/// space, and the server over it.
pub fn start(cfg: Config, grants: &[(u64, u64, bool)], ram_frames: usize, kernel_root: u64) {
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
        granted.expect("grants from the memory map do not overlap");
    }
    let server = Server::new(cfg.clone(), StubDriver::new(stub));
    *MACHINE.lock() = Some(Machine {
        server,
        cfg,
        next_client: 1,
        livelocks: 0,
        app: None,
        owned: alloc::collections::BTreeSet::new(),
    });
}

fn with<R>(f: impl FnOnce(&mut Machine) -> R) -> R {
    let mut m = MACHINE.lock();
    f(m.as_mut().expect("machine started"))
}

/// Turns the server's after-every-request invariant check on or off.
pub fn set_self_check(on: bool) {
    with(|m| m.server.set_self_check(on));
}

/// The kernel's `PageFault` to the server for the current client. `None`: the page is
/// installed, retry; `Some(signal)`: deliver it.
fn user_fault(addr: u64, access: Access) -> Option<Signal> {
    let Some(mut guard) = MACHINE.try_lock() else {
        crate::kprintln!("kernel: page fault while the server was busy");
        crate::serial::exit_qemu(crate::serial::EXIT_FAILURE);
    };
    let m = guard.as_mut()?;
    // Two faults can be legitimate (read-install, then copy-on-write); more means the
    // server resolved a fault without installing anything.
    if RETRIES.fetch_add(1, Ordering::Relaxed) >= 3 {
        m.livelocks += 1;
        return Some(Signal::Segv);
    }
    let client = ClientId(CURRENT.load(Ordering::Relaxed));
    match m.server.handle(
        Sender::Kernel,
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
static KERNEL_CR3: Mutex<Option<(PhysFrame, Cr3Flags)>> = Mutex::new(None);
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
    let id = with(|m| m.new_client(ClientSpec::DEFAULT, None)).ok()?;
    let rx = ipc_proto::Prot::READ | ipc_proto::Prot::EXEC;
    let entry = place(id, 0, code, code.len() as u64, rx)?;
    let stack = place(
        id,
        0,
        &[],
        16 * 4096,
        ipc_proto::Prot::READ | ipc_proto::Prot::WRITE,
    )?;
    enter_space(id)?;
    Some((entry, stack + 16 * 4096))
}

/// Bytes of an app's stack.
const APP_STACK: u64 = 256 * 1024;

/// Starts the conformance app: a client whose space holds the ELF `image`'s loadable
/// segments at their addresses (with their protections) and a stack; loads the space;
/// returns the entry point and the stack top. A malformed image loads nothing.
pub fn load_elf(image: &[u8]) -> Option<(u64, u64)> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(image.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(image.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(image.get(o..o + 8)?.try_into().ok()?));
    // ELF64, little-endian, executable, x86_64.
    if image.get(..6)? != b"\x7fELF\x02\x01" || u16_at(16)? != 2 || u16_at(18)? != 62 {
        return None;
    }
    let id = with(|m| {
        let id = m.new_client(ClientSpec::DEFAULT, None).ok()?;
        m.app = Some(id);
        Some(id)
    })?;
    let (entry, phoff) = (u64_at(24)?, u64_at(32)? as usize);
    let (phentsize, phnum) = (usize::from(u16_at(54)?), usize::from(u16_at(56)?));
    for i in 0..phnum {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(ph)? != 1 {
            continue; // not PT_LOAD
        }
        let flags = u32_at(ph + 4)?;
        let (offset, vaddr) = (u64_at(ph + 8)? as usize, u64_at(ph + 16)?);
        let (filesz, memsz) = (u64_at(ph + 32)? as usize, u64_at(ph + 40)?);
        let bytes = image.get(offset..offset.checked_add(filesz)?)?;
        let mut prot = ipc_proto::Prot::empty();
        for (bit, p) in [
            (4, ipc_proto::Prot::READ),
            (2, ipc_proto::Prot::WRITE),
            (1, ipc_proto::Prot::EXEC),
        ] {
            if flags & bit != 0 {
                prot |= p;
            }
        }
        // The linker script starts every segment on its own page.
        if vaddr % 4096 != 0 {
            return None;
        }
        place(id, vaddr, bytes, memsz, prot)?;
    }
    let rw = ipc_proto::Prot::READ | ipc_proto::Prot::WRITE;
    let stack = place(id, 0, &[], APP_STACK, rw)?;
    enter_space(id)?;
    Some((entry, stack + APP_STACK))
}

/// Maps `len` bytes for `id` (at `addr` exactly, or anywhere for 0), populated, copies
/// `bytes` to the start through the direct map, then sets `prot`; the address.
fn place(id: ClientId, addr: u64, bytes: &[u8], len: u64, prot: ipc_proto::Prot) -> Option<u64> {
    use memserver::KernelStub;
    let rw = ipc_proto::Prot::READ | ipc_proto::Prot::WRITE;
    let mut flags = conformance::cases::PA | ipc_proto::MapFlags::POPULATE;
    if addr != 0 {
        flags |= ipc_proto::MapFlags::FIXED_NOREPLACE;
    }
    let len = len.max(bytes.len() as u64).div_ceil(4096) * 4096;
    let at = map_for(id, addr, len, rw, flags)?;
    with(|m| {
        let space = m.server.space_of(id)?;
        for (i, chunk) in bytes.chunks(4096).enumerate() {
            let (frame, _) = m.server.stub().query(space, at + i as u64 * 4096)?;
            let dst = (DIRECT_MAP + frame.addr()) as *mut u8;
            // SAFETY: the frame is the task's own freshly populated page, reached through
            // the direct map; nothing else refers to it.
            unsafe { core::ptr::copy_nonoverlapping(chunk.as_ptr(), dst, chunk.len()) };
        }
        if prot != rw {
            let protect = Request::Mprotect {
                addr: at,
                len,
                prot,
            };
            m.server.handle(Sender::Client(id), &protect).ok()?;
        }
        Some(at)
    })
}

/// Loads `id`'s space in CR3 to run it as the current task.
fn enter_space(id: ClientId) -> Option<()> {
    with(|m| {
        let space = m.server.space_of(id)?;
        let root = m.server.stub().stub().root_table(space).ok()?;
        m.server.stub_mut().stub_mut().tlb_mut().active = Some(space);
        *KERNEL_CR3.lock() = Some(Cr3::read());
        CURRENT.store(id.0, Ordering::Relaxed);
        LAST_TASK_FAULT.store(u64::MAX, Ordering::Relaxed);
        // SAFETY: the task's space shares the kernel half, so the kernel keeps running.
        unsafe { Cr3::write(root, Cr3Flags::empty()) };
        Some(())
    })
}

fn map_for(
    id: ClientId,
    addr: u64,
    len: u64,
    prot: ipc_proto::Prot,
    flags: ipc_proto::MapFlags,
) -> Option<u64> {
    let args = ipc_proto::MmapArgs {
        addr,
        len,
        prot,
        flags,
        fd: None,
        offset: 0,
    };
    match with(|m| m.server.handle(Sender::Client(id), &Request::Mmap(args))) {
        Ok(Reply::Mapped { addr }) => Some(addr),
        _ => None,
    }
}

/// After a task ended: back to the kernel's space, and the client is gone.
pub fn end_task() {
    if let Some((frame, flags)) = KERNEL_CR3.lock().take() {
        // SAFETY: the kernel's own space, which maps everything the kernel uses.
        unsafe { Cr3::write(frame, flags) };
    }
    let client = ClientId(CURRENT.load(Ordering::Relaxed));
    with(|m| {
        m.server.stub_mut().stub_mut().tlb_mut().active = None;
        // An app's processes end with it (as a process group would).
        m.app = None;
        let owned = core::mem::take(&mut m.owned);
        for client in owned.into_iter().map(ClientId).chain([client]) {
            let _ = m
                .server
                .handle(Sender::Kernel, &Request::ClientExited { client });
        }
    });
}

/// A task's request, through the wire format as any client's.
fn task_call(req: &Request) -> Result<Reply, Errno> {
    let client = ClientId(CURRENT.load(Ordering::Relaxed));
    let mut buf = [0u8; ipc_proto::MAX_REQUEST_LEN];
    let mut out = [0u8; ipc_proto::MAX_RESPONSE_LEN];
    let n = ipc_proto::encode_request(req, &mut buf)?;
    let m = with(|m| {
        m.server
            .handle_message(Sender::Client(client), &buf[..n], &mut out)
    });
    ipc_proto::decode_response(&out[..m])?
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
fn access(client: ClientId, addr: u64, op: crate::user::AgentOp) -> Result<u8, Signal> {
    let root = with(|m| {
        let space = m.server.space_of(client)?;
        let root = m.server.stub().stub().root_table(space).ok()?;
        m.server.stub_mut().stub_mut().tlb_mut().active = Some(space);
        Some(root)
    })
    .ok_or(Signal::Segv)?;
    // What runs now (the kernel, or the app whose system call this is) resumes after.
    let (outer_root, flags) = Cr3::read();
    let outer_client = CURRENT.swap(client.0, Ordering::Relaxed);
    let outer_fault = LAST_TASK_FAULT.swap(u64::MAX, Ordering::Relaxed);
    // SAFETY: the client's space shares the kernel half (entries 256..512) with the
    // kernel's, so code, stack and heap stay mapped; only lower-half user pages change.
    unsafe { Cr3::write(root, Cr3Flags::empty()) };
    let r = crate::user::run_agent(op, addr);
    // SAFETY: back to the space that was loaded, which shares the kernel half too.
    unsafe { Cr3::write(outer_root, flags) };
    CURRENT.store(outer_client, Ordering::Relaxed);
    LAST_TASK_FAULT.store(outer_fault, Ordering::Relaxed);
    with(|m| {
        let outer = m.app.map(|_| ClientId(outer_client));
        m.server.stub_mut().stub_mut().tlb_mut().active = outer.and_then(|c| m.server.space_of(c));
    });
    r
}

/// One client of the bare-metal server.
pub struct HwProcess {
    id: ClientId,
}

impl Transport for HwProcess {
    fn call(&mut self, request: &[u8], response: &mut [u8]) -> Result<usize, Errno> {
        Ok(with(|m| {
            m.server
                .handle_message(Sender::Client(self.id), request, response)
        }))
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
        let parent = self.id;
        let child = with(|m| m.new_client(spec, Some(parent)))?;
        Ok(Box::new(HwProcess { id: child }))
    }
}

impl Drop for HwProcess {
    fn drop(&mut self) {
        let client = self.id;
        let _ = with(|m| {
            m.server
                .handle(Sender::Kernel, &Request::ClientExited { client })
        });
    }
}

/// The conformance harness of the bare-metal server.
pub struct HwHarness;

impl Harness for HwHarness {
    fn name(&self) -> &str {
        "qemu"
    }

    fn facts(&self) -> Facts {
        with(|m| conformance::inproc::facts_of(&m.cfg, true))
    }

    fn spawn(&mut self, spec: ClientSpec) -> Result<Box<dyn Process>, Errno> {
        let id = with(|m| m.new_client(spec, None))?;
        Ok(Box::new(HwProcess { id }))
    }

    fn stats(&mut self) -> ServerStats {
        with(|m| m.server.stats())
    }

    fn check(&mut self) -> Result<(), String> {
        with(|m| {
            m.server.check_invariants()?;
            if m.livelocks != 0 {
                return Err(format!("{} faults resolved without effect", m.livelocks));
            }
            Ok(())
        })
    }

    fn unique_name(&self, base: &str) -> String {
        format!("/qemu-{base}")
    }
}

/// The conformance app's system calls (numbers and arguments in `app/src/sys.rs`): its
/// requests as any client's, the clients it starts and their ring-3 accesses, and the
/// server's counters and invariants the runner checks after every case.
pub fn app_syscall(nr: u64, a: [u64; 4]) -> u64 {
    match app_call(nr, a) {
        Ok(v) => v,
        Err(e) => neg(e),
    }
}

fn app_call(nr: u64, [a0, a1, a2, a3]: [u64; 4]) -> Result<u64, Errno> {
    match nr {
        4 => {
            let bytes = copy_in(a0, a1)?;
            crate::kprint!("{}", String::from_utf8_lossy(&bytes));
            Ok(0)
        }
        5 => {
            let client = app_client(a0)?;
            if a2 > ipc_proto::MAX_REQUEST_LEN as u64 {
                return Err(Errno::EMSGSIZE);
            }
            let request = copy_in(a1, a2)?;
            let mut out = [0u8; ipc_proto::MAX_RESPONSE_LEN];
            let n = with(|m| {
                m.server
                    .handle_message(Sender::Client(client), &request, &mut out)
            });
            copy_out(a3, &out[..n])?;
            Ok(n as u64)
        }
        6 | 7 => {
            let (parent, spec_at, spec_len) = match nr {
                6 => (None, a0, a1),
                _ => (Some(app_client(a0)?), a1, a2),
            };
            let spec: ClientSpec = postcard::from_bytes(&copy_in(spec_at, spec_len.min(256))?)
                .map_err(|_| Errno::EINVAL)?;
            with(|m| {
                let id = m.new_client(spec, parent)?;
                m.owned.insert(id.0);
                Ok(u64::from(id.0))
            })
        }
        8 => with(|m| {
            if a0 > u64::from(u32::MAX) || !m.owned.remove(&(a0 as u32)) {
                return Err(Errno::EBADF);
            }
            let client = ClientId(a0 as u32);
            m.server
                .handle(Sender::Kernel, &Request::ClientExited { client })
                .map(|_| 0)
        }),
        9 => {
            let client = app_client(a0)?;
            if a0 == 0 {
                return Err(Errno::EINVAL); // the app's own accesses are its own
            }
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
            let stats = with(|m| m.server.stats());
            let mut buf = [0u8; 128];
            let bytes = postcard::to_slice(&stats, &mut buf).map_err(|_| Errno::EPROTO)?;
            copy_out_capped(a0, a1, bytes)
        }
        11 => {
            let verdict = with(|m| {
                m.server.check_invariants()?;
                if m.livelocks != 0 {
                    return Err(format!("{} faults resolved without effect", m.livelocks));
                }
                Ok(())
            });
            match verdict {
                Ok(()) => Ok(0),
                Err(e) => copy_out_capped(a0, a1, e.as_bytes()).map(|n| n.max(1)),
            }
        }
        12 => {
            let facts = with(|m| conformance::inproc::facts_of(&m.cfg, true));
            let mut buf = [0u8; 512];
            let bytes = postcard::to_slice(&facts, &mut buf).map_err(|_| Errno::EPROTO)?;
            copy_out_capped(a0, a1, bytes)
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// The client a handle names: 0 is the app itself, others must be clients it started
/// (anything else, a forged handle, is `EBADF`).
fn app_client(handle: u64) -> Result<ClientId, Errno> {
    with(|m| {
        let app = m.app.ok_or(Errno::EPERM)?;
        match handle {
            0 => Ok(app),
            h if h <= u64::from(u32::MAX) && m.owned.contains(&(h as u32)) => {
                Ok(ClientId(h as u32))
            }
            _ => Err(Errno::EBADF),
        }
    })
}

/// The user pages of `[addr, addr + len)` in the app's space, through the direct map:
/// calls `f` with each page's piece. A page not mapped (or not writable, for `write`)
/// is `EFAULT`; the app's memory is all populated, so nothing needs faulting in.
fn user_pieces(
    addr: u64,
    len: u64,
    write: bool,
    mut f: impl FnMut(*mut u8, usize),
) -> Result<(), Errno> {
    use memserver::KernelStub;
    let end = addr.checked_add(len).ok_or(Errno::EFAULT)?;
    if end > 0x0000_8000_0000_0000 {
        return Err(Errno::EFAULT);
    }
    with(|m| {
        let space = m
            .app
            .and_then(|c| m.server.space_of(c))
            .ok_or(Errno::EPERM)?;
        let mut at = addr;
        while at < end {
            let page = at & !0xfff;
            let (frame, attrs) = m.server.stub().query(space, page).ok_or(Errno::EFAULT)?;
            if write && !attrs.writable {
                return Err(Errno::EFAULT);
            }
            let n = (end.min(page + 4096) - at) as usize;
            f((DIRECT_MAP + frame.addr() + (at - page)) as *mut u8, n);
            at += n as u64;
        }
        Ok(())
    })
}

/// Copies `len` bytes (at most a page's worth of messages) from the app.
fn copy_in(addr: u64, len: u64) -> Result<alloc::vec::Vec<u8>, Errno> {
    if len > 4096 {
        return Err(Errno::EMSGSIZE);
    }
    let mut out = alloc::vec::Vec::with_capacity(len as usize);
    user_pieces(addr, len, false, |p, n| {
        // SAFETY: `p..p + n` lies in one frame of the app's, mapped by the direct map.
        out.extend_from_slice(unsafe { core::slice::from_raw_parts(p, n) })
    })?;
    Ok(out)
}

/// Copies `bytes` to the app.
fn copy_out(addr: u64, bytes: &[u8]) -> Result<(), Errno> {
    let mut from = 0;
    user_pieces(addr, bytes.len() as u64, true, |p, n| {
        // SAFETY: `p..p + n` lies in one writable frame of the app's, in the direct map.
        unsafe { core::ptr::copy_nonoverlapping(bytes[from..].as_ptr(), p, n) };
        from += n;
    })
}

/// Copies as much of `bytes` as fits in the app's `cap`-byte buffer; the length copied.
fn copy_out_capped(addr: u64, cap: u64, bytes: &[u8]) -> Result<u64, Errno> {
    let n = bytes.len().min(cap as usize);
    copy_out(addr, &bytes[..n])?;
    Ok(n as u64)
}
