//! The in-process harness: the server core, the kernel stub and a simulated CPU in one
//! process; each client's requests go through real encode/decode.

use crate::harness::{Facts, Harness, MemoryAccess, Process};
use alloc::boxed::Box;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::sync::Arc;
use client_lib::Transport;
use core::cell::RefCell;
use fileserver::RamFs;
use ipc_proto::{ClientId, ClientSpec, Errno, ServerStats, Signal};
use memserver::{BankConfig, Config, StandardLayout};
use memserver_testkit::ModelStub;
use memserver_testkit::RamStub;
use memserver_testkit::{Machine, SimulatedCpu};
use spin::Mutex;

/// Frames of the default bank in the conformance profile.
pub const RAM_FRAMES: u64 = 4096;
/// Frames of the small `dma` bank.
pub const DMA_FRAMES: u64 = 64;
/// Frames of the `fb0` device window.
pub const FB_FRAMES: u64 = 256;

/// First frame of the simulated physical memory: the `dma` bank at 1 MiB, then the
/// `normal` bank, then the `fb0` window, contiguous so the in-process stub can simulate
/// all of it.
const PHYS_BASE: u64 = 0x100;

/// The server configuration every transport runs the suite against: a `normal` bank, a
/// small `dma` bank, a mappable `fb0` window and an unmappable `uart0`.
pub fn profile() -> Config {
    let mut cfg = Config::standard(StandardLayout::contiguous(
        PHYS_BASE, DMA_FRAMES, RAM_FRAMES, FB_FRAMES,
    ));
    cfg.self_check = true;
    cfg
}

/// The facts of a server configured with `cfg`.
pub fn facts_of(cfg: &Config, exclusive: bool) -> Facts {
    let frames = |b: &BankConfig| b.ranges.iter().map(|r| r.count).sum::<u64>();
    Facts {
        mmap_min: cfg.mmap_min,
        mmap_max: cfg.mmap_max,
        low_window: cfg.low_window,
        default_bank: cfg.banks[0].name.clone(),
        small_bank: (cfg.banks[1].name.clone(), frames(&cfg.banks[1])),
        device: (
            cfg.devices[0].name.clone(),
            cfg.devices[0].frames.count * ipc_proto::PAGE_SIZE,
        ),
        unmappable_device: cfg.devices[1].name.clone(),
        total_frames: cfg.banks.iter().map(frames).sum(),
        max_shm_objects: cfg.max_shm_objects,
        max_open_files: cfg.max_open_files,
        max_object_size: cfg.max_object_size,
        exclusive,
    }
}

type Shared<K> = Rc<RefCell<Machine<K>>>;

/// The in-process harness over any simulated stub.
pub struct InProc<K: SimulatedCpu> {
    machine: Shared<K>,
    facts: Facts,
    /// The file server behind the server's pager, shared so cases can look at it.
    files: Arc<Mutex<RamFs>>,
}

impl InProc<RamStub> {
    /// A harness running the conformance profile over the real kernel stub.
    pub fn real() -> InProc<RamStub> {
        let cfg = profile();
        let stub = memserver_testkit::ram_stub(&cfg).expect("the profile is simulable");
        InProc::with_config(cfg, stub)
    }
}

impl InProc<ModelStub> {
    /// A harness running the conformance profile over the model stub.
    pub fn model() -> InProc<ModelStub> {
        InProc::with_config(profile(), ModelStub::new())
    }
}

impl<K: SimulatedCpu + 'static> InProc<K> {
    /// A harness running `cfg` over `stub`.
    pub fn with_config(cfg: Config, stub: K) -> InProc<K> {
        let facts = facts_of(&cfg, true);
        let mut machine = Machine::new(cfg, stub);
        let files = Arc::new(Mutex::new(fileserver::fixture::conformance_fs()));
        let fs = files.clone();
        let pager = move |req: &[u8], out: &mut [u8]| Ok(fs.lock().handle_message(req, out));
        // A fresh server has no files open, so connecting its pager cannot be refused.
        let _ = machine.server.set_pager(Box::new(pager));
        InProc {
            machine: Rc::new(RefCell::new(machine)),
            facts,
            files,
        }
    }

    /// The machine, for tests that look inside.
    pub fn machine(&self) -> &Shared<K> {
        &self.machine
    }
}

struct InProcProcess<K: SimulatedCpu> {
    machine: Shared<K>,
    id: ClientId,
}

impl<K: SimulatedCpu> Transport for InProcProcess<K> {
    fn call(&mut self, request: &[u8], response: &mut [u8]) -> Result<usize, Errno> {
        Ok(self.machine.borrow_mut().call(self.id, request, response))
    }
}

impl<K: SimulatedCpu> MemoryAccess for InProcProcess<K> {
    fn read(&mut self, addr: u64) -> Result<u8, Signal> {
        self.machine.borrow_mut().read(self.id, addr)
    }
    fn write(&mut self, addr: u64, value: u8) -> Result<(), Signal> {
        self.machine.borrow_mut().write(self.id, addr, value)
    }
    fn exec(&mut self, addr: u64) -> Result<(), Signal> {
        self.machine.borrow_mut().exec(self.id, addr)
    }
}

impl<K: SimulatedCpu + 'static> Process for InProcProcess<K> {
    fn transport(&mut self) -> &mut dyn Transport {
        self
    }

    fn fork(&mut self, spec: ClientSpec) -> Result<Box<dyn Process>, Errno> {
        let id = self.machine.borrow_mut().fork(self.id, spec)?;
        Ok(Box::new(InProcProcess {
            machine: self.machine.clone(),
            id,
        }))
    }
}

impl<K: SimulatedCpu> Drop for InProcProcess<K> {
    fn drop(&mut self) {
        // The kernel's exit notice; the client is known, so this cannot fail.
        let _ = self.machine.borrow_mut().exit(self.id);
    }
}

impl<K: SimulatedCpu + 'static> Harness for InProc<K> {
    fn name(&self) -> &str {
        "in-process"
    }

    fn facts(&self) -> Facts {
        self.facts.clone()
    }

    fn spawn(&mut self, spec: ClientSpec) -> Result<Box<dyn Process>, Errno> {
        let id = self.machine.borrow_mut().spawn(spec)?;
        Ok(Box::new(InProcProcess {
            machine: self.machine.clone(),
            id,
        }))
    }

    fn stats(&mut self) -> ServerStats {
        self.machine.borrow().server.stats()
    }

    fn check(&mut self) -> Result<(), String> {
        let m = self.machine.borrow();
        m.server.check_invariants()?;
        if m.livelocks != 0 {
            return Err(format!("{} faults resolved without effect", m.livelocks));
        }
        Ok(())
    }

    fn unique_name(&self, base: &str) -> String {
        format!("/inproc-{base}")
    }

    fn file_contents(&mut self, path: &str) -> Option<alloc::vec::Vec<u8>> {
        self.files.lock().contents(path).map(<[u8]>::to_vec)
    }
}
