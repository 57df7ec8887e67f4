//! The kernel's record of what runs: the kernel stub it owns, the memory server's
//! configuration, the clients and their spaces, the apps and their peers, and which task
//! runs in ring 3 now. Every other module reaches it through [`with`].

use crate::endpoint::Endpoint;
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use ipc_proto::{ClientId, Errno};
use kernel_stub::{DirectMap, FrameState, KernelCapability, LocalTlb};
use memserver::StubDriver;
use memserver::{Config, FrameRange, KernelStub};
use spin::Mutex;

/// The stub: page tables in RAM reached through the direct map, `invlpg` for the TLB.
pub type HwStub = StubDriver<DirectMap, LocalTlb, Box<[FrameState]>, 256>;

pub(crate) type Space = <HwStub as KernelStub>::Space;

/// The kernel's right to grant frames: this type is private to the kernel.
pub struct Kernel;

// SAFETY: `Kernel` is constructed only by the kernel's boot code (this crate has no user
// code), which grants the stub only free RAM from the firmware's map and the device
// window it found, never the kernel's own frames.
unsafe impl KernelCapability for Kernel {}

pub(crate) struct KernelState {
    pub(crate) stub: HwStub,
    pub(crate) cfg: Config,
    pub(crate) next_client: u32,
    pub(crate) livelocks: u32,
    /// The apps the scheduler runs (each a client), and their image (peers run it too).
    pub(crate) apps: alloc::collections::BTreeSet<u32>,
    pub(crate) app_image: &'static [u8],
    /// Clients started for a task (spawned, forked, peers), each with its owner.
    pub(crate) owned: BTreeMap<u32, u32>,
    /// The spaces the server task made, by the handle it names them with.
    pub(crate) spaces: Vec<Option<Space>>,
    /// Each client's space handle.
    pub(crate) clients: BTreeMap<u32, u32>,
    /// The client whose `ClientStarted` or `ClientCloned` is being delivered: the space
    /// the server makes meanwhile is that client's.
    pub(crate) binding: Option<ClientId>,
    /// The memory server task (0) and the apps' peer tasks.
    pub(crate) endpoints: Vec<Endpoint>,
    /// Frames set aside for the server task's own memory, handed out at its loading.
    pub(crate) task_frames: core::ops::Range<u64>,
}

impl KernelState {
    pub(crate) fn space_of(&self, client: ClientId) -> Option<Space> {
        let h = *self.clients.get(&client.0)?;
        self.spaces.get(h as usize).copied().flatten()
    }

    /// Whether `frame` is one of the server's (a bank's or a device's): the only frames
    /// its stub calls may name.
    pub(crate) fn servers_frame(&self, frame: u64) -> bool {
        let inside = |r: &FrameRange| (r.start..r.start + r.count).contains(&frame);
        self.cfg
            .banks
            .iter()
            .flat_map(|b| b.ranges.iter())
            .any(inside)
            || self.cfg.devices.iter().map(|d| &d.frames).any(inside)
    }
}

pub(crate) static STATE: Mutex<Option<KernelState>> = Mutex::new(None);

pub(crate) static CURRENT: AtomicU32 = AtomicU32::new(0);
/// Which endpoint runs in ring 3 now (`NOT_AN_ENDPOINT`: none, an app or a small task).
pub(crate) static RUNNING: AtomicU32 = AtomicU32::new(NOT_AN_ENDPOINT);

pub(crate) const NOT_AN_ENDPOINT: u32 = u32::MAX;

pub(crate) fn with<R>(f: impl FnOnce(&mut KernelState) -> R) -> R {
    let Some(mut m) = STATE.try_lock() else {
        crate::kprintln!(
            "kernel: the machine was re-entered (a fault inside the kernel's own work)"
        );
        crate::serial::exit_qemu(crate::serial::EXIT_FAILURE);
    };
    f(m.as_mut().expect("machine started"))
}

/// The client a handle names for the calling task: 0 is the task itself, others must be
/// clients it started (anything else, a forged handle, is `EBADF`).
pub(crate) fn app_client(handle: u64) -> Result<ClientId, Errno> {
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

/// The calling task's space (an app or a peer: the current client's).
pub(crate) fn caller_space(m: &KernelState) -> Result<Space, Errno> {
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
