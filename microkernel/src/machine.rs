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
    use memserver::KernelStub;
    let id = with(|m| m.new_client(ClientSpec::DEFAULT, None)).ok()?;
    let rw = ipc_proto::Prot::READ | ipc_proto::Prot::WRITE;
    let flags = conformance::cases::PA | ipc_proto::MapFlags::POPULATE;
    let len = (code.len() as u64).div_ceil(4096) * 4096;
    let entry = map_for(id, len, rw, flags)?;
    let stack = map_for(id, 16 * 4096, rw, flags)?;
    with(|m| {
        let space = m.server.space_of(id)?;
        for (i, chunk) in code.chunks(4096).enumerate() {
            let (frame, _) = m.server.stub().query(space, entry + i as u64 * 4096)?;
            let dst = (DIRECT_MAP + frame.addr()) as *mut u8;
            // SAFETY: the frame is the task's own freshly populated page, reached through
            // the direct map; nothing else refers to it.
            unsafe { core::ptr::copy_nonoverlapping(chunk.as_ptr(), dst, chunk.len()) };
        }
        m.server
            .handle(
                Sender::Client(id),
                &Request::Mprotect {
                    addr: entry,
                    len,
                    prot: ipc_proto::Prot::READ | ipc_proto::Prot::EXEC,
                },
            )
            .ok()?;
        let root = m.server.stub().stub().root_table(space).ok()?;
        m.server.stub_mut().stub_mut().tlb_mut().active = Some(space);
        *KERNEL_CR3.lock() = Some(Cr3::read());
        CURRENT.store(id.0, Ordering::Relaxed);
        LAST_TASK_FAULT.store(u64::MAX, Ordering::Relaxed);
        // SAFETY: the task's space shares the kernel half, so the kernel keeps running.
        unsafe { Cr3::write(root, Cr3Flags::empty()) };
        Some((entry, stack + 16 * 4096))
    })
}

fn map_for(
    id: ClientId,
    len: u64,
    prot: ipc_proto::Prot,
    flags: ipc_proto::MapFlags,
) -> Option<u64> {
    let args = ipc_proto::MmapArgs {
        addr: 0,
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
        let _ = m
            .server
            .handle(Sender::Kernel, &Request::ClientExited { client });
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
    let (kernel_root, flags) = Cr3::read();
    CURRENT.store(client.0, Ordering::Relaxed);
    LAST_TASK_FAULT.store(u64::MAX, Ordering::Relaxed);
    // SAFETY: the client's space shares the kernel half (entries 256..512) with the
    // kernel's, so code, stack and heap stay mapped; only lower-half user pages change.
    unsafe { Cr3::write(root, Cr3Flags::empty()) };
    let r = crate::user::run_agent(op, addr);
    // SAFETY: back to the kernel's own space, which maps everything the kernel uses.
    unsafe { Cr3::write(kernel_root, flags) };
    with(|m| m.server.stub_mut().stub_mut().tlb_mut().active = None);
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
