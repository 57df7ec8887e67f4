//! [`Stub`]: the state every operation works on, and its fixed [`Config`].

use crate::addr::UserWindow;
use crate::grant::{Grants, StateStorage};
use crate::phys::PhysMemory;
use crate::pool::Pool;
use crate::space::Slot;
use crate::tlb::Tlb;
use crate::{DEFAULT_SPACES, MAX_FLUSH_THRESHOLD};
use x86_64::structures::paging::PhysFrame;

/// Fixed settings of a stub.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Where user mappings may go.
    pub window: UserWindow,
    /// One operation changing more present entries than this flushes the whole space once
    /// instead of page by page (at most [`MAX_FLUSH_THRESHOLD`]).
    pub flush_threshold: usize,
    /// A root table whose upper half (entries 256..512: the kernel) is copied into every
    /// new space; `None` in host tests. It must not be a granted frame.
    pub kernel_template: Option<PhysFrame>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            window: UserWindow::DEFAULT,
            flush_threshold: 16,
            kernel_template: None,
        }
    }
}

/// The kernel stub over physical memory `P`, TLB hook `T` and per-frame state storage
/// `S`, with `N` address-space slots.
pub struct Stub<P, T, S, const N: usize = DEFAULT_SPACES> {
    pub(crate) phys: P,
    pub(crate) tlb: T,
    pub(crate) cfg: Config,
    pub(crate) grants: Grants<S>,
    pub(crate) pool: Pool,
    pub(crate) slots: [Slot; N],
}

impl<P: PhysMemory, T: Tlb, S: StateStorage, const N: usize> Stub<P, T, S, N> {
    /// A stub with no grants, no spaces and an empty pool. `states` holds the state of
    /// every RAM frame granted later, one entry each.
    pub fn new(phys: P, tlb: T, states: S, cfg: Config) -> Self {
        const { assert!(N <= u32::MAX as usize, "space slots are numbered with u32") };
        Stub {
            phys,
            tlb,
            cfg: Config {
                flush_threshold: cfg.flush_threshold.min(MAX_FLUSH_THRESHOLD),
                ..cfg
            },
            grants: Grants::new(states),
            pool: Pool::default(),
            slots: [Slot::default(); N],
        }
    }

    /// The configuration in force (the flush threshold clamped).
    pub fn config(&self) -> Config {
        self.cfg
    }

    /// The TLB hook (e.g. to read test counters).
    pub fn tlb(&self) -> &T {
        &self.tlb
    }

    /// The TLB hook, mutable (e.g. to tell a hardware hook which space is loaded).
    pub fn tlb_mut(&mut self) -> &mut T {
        &mut self.tlb
    }
}
