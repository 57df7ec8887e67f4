//! Server configuration: memory banks, device windows, address-space window, limits.
//! Serializable, so a kernel can hand it to a server task in another address space.

use alloc::string::String;
use alloc::vec::Vec;

/// A contiguous run of physical frames, by frame number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FrameRange {
    /// First frame number.
    pub start: u64,
    /// Number of frames.
    pub count: u64,
}

/// A named pool of RAM frames (seed 000's `/kfs/mem/bank*`), e.g. `normal` or `dma`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct BankConfig {
    /// The name clients open it by.
    pub name: String,
    /// The frames it owns.
    pub ranges: Vec<FrameRange>,
}

/// A physical window clients may map shared (seed 002), e.g. a framebuffer.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct DeviceConfig {
    /// The name clients open it by.
    pub name: String,
    /// Its frames; `count == 0` describes a device with nothing to map (`ENODEV`).
    pub frames: FrameRange,
}

/// Everything the server is told at start.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Config {
    /// Memory banks; the first is the default for anonymous memory and page tables.
    pub banks: Vec<BankConfig>,
    /// Device windows.
    pub devices: Vec<DeviceConfig>,
    /// Lowest address a mapping may use (`EPERM` below, like `mmap_min_addr`).
    pub mmap_min: u64,
    /// One past the highest address a mapping may use.
    pub mmap_max: u64,
    /// A second range, below 2 GiB, that only `MAP_32BIT` places into (and `MAP_FIXED`
    /// may name), for a kernel whose main range lies above it (the hosted runtime's).
    /// `None`: `MAP_32BIT` places in the main range, below 2 GiB.
    pub low_window: Option<(u64, u64)>,
    /// Most named shm objects at once (`ENOSPC` beyond).
    pub max_shm_objects: u32,
    /// Most open files in the system: fds of every client plus shared anonymous objects
    /// (`ENFILE` beyond).
    pub max_open_files: u32,
    /// Largest shm object size (`EFBIG` beyond).
    pub max_object_size: u64,
    /// Lowest fd number handed out (3, as if stdin/out/err were open).
    pub first_fd: u32,
    /// How far below a `MAP_GROWSDOWN` region a fault may grow it, in bytes.
    pub stack_grow_limit: u64,
    /// Check every invariant after every request and count violations (slow; for tests).
    pub self_check: bool,
}

/// Where the memory of the [standard](Config::standard) configuration lies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StandardLayout {
    /// The `normal` bank: the default for anonymous memory, objects and page tables.
    pub normal: Vec<FrameRange>,
    /// The small `dma` bank (seed 000's second bank: DMA-capable memory).
    pub dma: FrameRange,
    /// The `fb0` device window (seed 002's framebuffer).
    pub fb0: FrameRange,
}

impl StandardLayout {
    /// `dma` frames from frame `base`, then `normal`, then `fb0`, with no gaps: one span
    /// of physical memory, which a simulation can hold whole.
    pub fn contiguous(base: u64, dma: u64, normal: u64, fb0: u64) -> StandardLayout {
        StandardLayout {
            dma: FrameRange {
                start: base,
                count: dma,
            },
            normal: alloc::vec![FrameRange {
                start: base + dma,
                count: normal,
            }],
            fb0: FrameRange {
                start: base + dma + normal,
                count: fb0,
            },
        }
    }
}

impl Config {
    /// Whether a mapping may lie at `[start, end)`: inside the main range or inside
    /// the low window.
    pub fn usable(&self, start: u64, end: u64) -> bool {
        let inside = |(lo, hi): (u64, u64)| start >= lo && end <= hi && start <= end;
        inside((self.mmap_min, self.mmap_max)) || self.low_window.is_some_and(inside)
    }

    /// The lowest address of the range holding `addr` (a stack grows no lower).
    pub fn floor_of(&self, addr: u64) -> u64 {
        match self.low_window {
            Some((lo, hi)) if addr < hi && addr < self.mmap_min => lo,
            _ => self.mmap_min,
        }
    }

    /// The configuration every runtime here serves (the microkernel, `memserverd`, the
    /// conformance suite, the tests): banks `normal` (the default) and `dma`, the device
    /// window `fb0`, and `uart0`, a device with nothing to map (`ENODEV`), with the
    /// defaults of [`with_ram`](Self::with_ram).
    pub fn standard(layout: StandardLayout) -> Config {
        let mut cfg = Config::with_ram(layout.normal);
        cfg.banks.push(BankConfig {
            name: String::from("dma"),
            ranges: alloc::vec![layout.dma],
        });
        cfg.devices.push(DeviceConfig {
            name: String::from("fb0"),
            frames: layout.fb0,
        });
        cfg.devices.push(DeviceConfig {
            name: String::from("uart0"),
            frames: FrameRange { start: 0, count: 0 },
        });
        cfg
    }

    /// A configuration with one bank `normal` holding `ranges`, Linux-like defaults, and
    /// no devices.
    pub fn with_ram(ranges: Vec<FrameRange>) -> Config {
        let total: u64 = ranges.iter().map(|r| r.count).sum();
        Config {
            banks: alloc::vec![BankConfig {
                name: String::from("normal"),
                ranges
            }],
            devices: Vec::new(),
            mmap_min: 0x1_0000,
            mmap_max: 0x7fff_ffff_f000,
            low_window: None,
            max_shm_objects: 1024,
            max_open_files: 8192,
            max_object_size: total * ipc_proto::PAGE_SIZE,
            first_fd: 3,
            stack_grow_limit: 8 << 20,
            self_check: false,
        }
    }
}
