//! Loading: the serving tasks' images into spaces made straight with the stub, the
//! agent page into every client's space, and apps, peers and small tasks into memory
//! the memory server maps for them.

use crate::boot::{DIRECT_MAP, DIRECT_MAP_SIZE};
use crate::trap::TrapFrame;
use crate::uslice::USlice;
use crate::{
    endpoint::{Endpoint, FILES_EP, RECEIVED, new_client, server_call, server_request},
    run::{Entry, enter_space, run_task},
    scheduler::end_app,
    state::{HwStub, Kernel, KernelState, STATE, Space, with},
    umem::write_user,
};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use ipc_proto::CacheMode;
use ipc_proto::{ClientId, ClientSpec, Reply, Request};
use kernel_stub::x86_64::structures::paging::PhysFrame;
use kernel_stub::x86_64::{PhysAddr, VirtAddr};
use kernel_stub::{DirectMap, FrameState, LocalTlb, Stub};
use memserver::StubDriver;
use memserver::{Config, Frame, KernelStub, PageAttrs, StubError};
use microkernel_abi::Header;

/// Where the server task's heap is, and how big.
pub(crate) const SERVER_HEAP: u64 = 0x1000_0000;

pub(crate) const SERVER_HEAP_LEN: u64 = 24 << 20;
/// Its stack's top, and size.
pub(crate) const SERVER_STACK_TOP: u64 = 0x2000_0000;

pub(crate) const SERVER_STACK_LEN: u64 = 256 * 1024;
/// The file server task's heap and stack (at the server's addresses, in its own space).
pub(crate) const FILES_HEAP_LEN: u64 = 4 << 20;

pub(crate) const FILES_STACK_LEN: u64 = 64 * 1024;
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
    *STATE.lock() = Some(KernelState {
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
    server_call(Header::Control, config)
        .map_err(|_| "the memory server task took no configuration")?;
    if !files_image.is_empty() {
        start_serving_task(FILES_EP, files_image, FILES_HEAP_LEN, FILES_STACK_LEN)
            .map_err(|_| "the file server task did not start")?;
    }
    Ok(())
}

/// Loads a kernel-started serving task (the memory server, the file server) into
/// endpoint `ep` and runs it to its first `receive`.
pub(crate) fn start_serving_task(
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
        regs: TrapFrame::start(entry, stack_top, SERVER_HEAP, heap_len, false),
    });
    if code != Some(RECEIVED) {
        return Err("the task did not reach receive");
    }
    Ok(())
}

/// Maps a serving task's segments, heap (`heap_len` bytes at `SERVER_HEAP`) and stack
/// (`stack_len` bytes below `SERVER_STACK_TOP`) into a new space made straight with the
/// stub, from the frames set aside for the kernel's tasks; the entry point and stack top.
pub(crate) fn load_serving_task(
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
pub(crate) fn below_agent(va: u64, pages: u64) -> u64 {
    pages.min(crate::user::USER_AGENT.saturating_sub(va) / 4096)
}

/// Maps the agent page read-execute at `USER_AGENT` in a client's new space, with
/// table frames from the kernel's own reserve when the stub's pool has none.
pub(crate) fn map_agent(m: &mut KernelState, space: Space) -> Result<(), &'static str> {
    let frame = Frame(crate::user::agent_page_phys() / 4096);
    let attrs = PageAttrs {
        writable: false,
        executable: true,
        cache: CacheMode::WriteBack,
    };
    with_tables(m, |s| s.map(space, crate::user::USER_AGENT, frame, attrs))
}

/// A zeroed frame from those set aside for the kernel's serving tasks.
pub(crate) fn take_task_frame(m: &mut KernelState) -> Result<Frame, &'static str> {
    let n = m
        .task_frames
        .next()
        .ok_or("not enough frames for the server task")?;
    m.stub.zero_frame(Frame(n));
    Ok(Frame(n))
}

/// Runs a stub operation for the server task's own space, donating frames set aside for
/// the task as page tables when the stub asks for them.
pub(crate) fn with_tables<T>(
    m: &mut KernelState,
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
pub(crate) const APP_STACK: u64 = 64 * 1024;

/// Starts an app: a client whose space holds the ELF `image`'s loadable segments at
/// their addresses (with their protections) and a stack; the client, the entry point and
/// the stack top. A malformed image loads nothing (and a half-loaded app is ended).
pub(crate) fn load_app(image: &'static [u8]) -> Option<(ClientId, u64, u64)> {
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

/// An app's stack, with an inaccessible guard page below it (an overflow is a fault the
/// server answers with `SIGSEGV`, not a write into whatever was mapped below); its top.
pub(crate) fn app_stack(id: ClientId) -> Option<u64> {
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
pub(crate) fn place(
    id: ClientId,
    addr: u64,
    bytes: &[u8],
    len: u64,
    prot: ipc_proto::Prot,
) -> Option<u64> {
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
        let to = USlice::new(at, bytes.len() as u64, u64::MAX).ok()?;
        write_user(m, space, to, bytes).ok()
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
