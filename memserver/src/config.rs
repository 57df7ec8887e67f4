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

impl Config {
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
            max_shm_objects: 1024,
            max_open_files: 8192,
            max_object_size: total * ipc_proto::PAGE_SIZE,
            first_fd: 3,
            stack_grow_limit: 8 << 20,
            self_check: false,
        }
    }
}
