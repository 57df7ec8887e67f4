#![allow(dead_code)]
use kernel_stub::*;

pub type TestStub = Stub<RamPhys<Box<[FrameBytes]>>, CountingTlb, Box<[FrameState]>, 8>;

/// RAM frames 0x100.. (1024 frames); the first `tables` are donated as page tables.
pub const RAM: u64 = 0x100;
pub const RAM_FRAMES: u64 = 1024;
/// Device frames (not backed by simulated RAM: never read or written).
pub const DEV: u64 = 0x8_0000;

pub fn stub(tables: u64) -> TestStub {
    let storage = vec![FrameBytes::ZERO; RAM_FRAMES as usize].into_boxed_slice();
    let cfg = Config {
        user_start: 0x1000,
        ..Config::default()
    };
    let mut s = Stub::new(
        RamPhys::new(RAM, storage),
        CountingTlb::default(),
        vec![0; RAM_FRAMES as usize].into_boxed_slice(),
        cfg,
    );
    s.grant_ram(RAM, RAM_FRAMES).unwrap();
    s.grant_device(DEV, 1024).unwrap();
    for i in 0..tables {
        let cap = s.frame_cap((RAM + i) * PAGE_SIZE).unwrap();
        s.donate_table_frame(cap).unwrap();
    }
    s
}

/// A data frame (after the donated ones).
pub fn data(s: &TestStub, i: u64) -> FrameCap {
    s.frame_cap((RAM + 512 + i) * PAGE_SIZE).unwrap()
}

pub const RW: Attrs = Attrs {
    writable: true,
    executable: false,
    cache: Cache::WriteBack,
};
pub const RX: Attrs = Attrs {
    writable: false,
    executable: true,
    cache: Cache::WriteBack,
};
