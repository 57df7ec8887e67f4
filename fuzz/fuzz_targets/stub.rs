//! (c) The kernel stub fed arbitrary map/unmap/protect calls with forged capabilities:
//! it must refuse bad input with a typed error, never panic, and never leak a table page
//! (after every space is destroyed, every donated frame is back in the pool).
#![no_main]

use kernel_stub::x86_64::structures::paging::{Page, PhysFrame};
use kernel_stub::x86_64::{PhysAddr, VirtAddr};
use kernel_stub::*;
use libfuzzer_sys::fuzz_target;

/// The fuzz target plays the kernel that grants frames.
struct Kernel;

// SAFETY: `Kernel` is private to this target, which grants only the simulated frames.
unsafe impl KernelCapability for Kernel {}

fn frames(
    start: u64,
    count: u64,
) -> kernel_stub::x86_64::structures::paging::frame::PhysFrameRange {
    let f = |n: u64| PhysFrame::containing_address(PhysAddr::new(n * PAGE_SIZE));
    PhysFrame::range(f(start), f(start + count))
}

/// A page from raw fuzz bits: a non-canonical or unaligned address is refused by
/// `page_at` (tested too), so only a valid page reaches the page-typed calls.
fn page(va: u64) -> Option<Page> {
    page_at(va).ok()
}

const RAM: u64 = 0x100;
const FRAMES: u64 = 256;
const DEV: u64 = 0x240;
const DEV_FRAMES: u64 = 64;

fn attrs(b: u8) -> Attrs {
    Attrs {
        writable: b & 1 != 0,
        executable: b & 2 != 0,
        cache: [Cache::WriteBack, Cache::WriteCombining, Cache::Uncached][usize::from(b >> 2) % 3],
    }
}

fuzz_target!(|data: &[u8]| {
    let storage = vec![FrameBytes::ZERO; (DEV + DEV_FRAMES - RAM) as usize].into_boxed_slice();
    let mut s: Stub<_, _, _, 8> = Stub::new(
        RamPhys::new(
            PhysFrame::containing_address(PhysAddr::new(RAM * PAGE_SIZE)),
            storage,
        ),
        CountingTlb::default(),
        vec![FrameState::UNUSED; FRAMES as usize].into_boxed_slice(),
        Config::default(),
    );
    s.grant_ram(&Kernel, frames(RAM, FRAMES)).unwrap();
    s.grant_device(&Kernel, frames(DEV, DEV_FRAMES)).unwrap();
    let mut donated = 0u64;
    let mut spaces: Vec<SpaceCap> = Vec::new();
    let mut it = data.chunks_exact(10);
    for c in &mut it {
        let word = u64::from_le_bytes([c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9]]);
        let space = match c[1] % 4 {
            0 => SpaceCap::from_raw(word),
            _ => spaces
                .get(usize::from(c[1]) % spaces.len().max(1))
                .copied()
                .unwrap_or(SpaceCap::from_raw(word)),
        };
        let va = if c[1] & 0x80 != 0 {
            word
        } else {
            0x4000_0000 + (word % 1100) * PAGE_SIZE
        };
        let frame_addr = if c[1] & 0x40 != 0 {
            word
        } else {
            (RAM + word % (DEV + DEV_FRAMES - RAM)) * PAGE_SIZE
        };
        let cap = PhysAddr::try_new(frame_addr)
            .map_err(|_| Error::NotGranted)
            .and_then(|a| s.frame_cap(a));
        let p = page(va);
        match c[0] % 12 {
            0 => {
                if let (Ok(cap), Some(p)) = (cap, p) {
                    let _ = s.map(space, p, cap, attrs(c[1]));
                }
            }
            1 => {
                if let Some(p) = p {
                    let _ = s.unmap(space, p);
                }
            }
            2 => {
                if let Some(p) = p {
                    let _ = s.protect(space, p, attrs(c[1]));
                }
            }
            3 => {
                if let Some(p) = p {
                    let _ = s.unmap_range(space, p, word >> 50, |_, _, _| {});
                }
            }
            4 => {
                if let Some(p) = p {
                    let _ = s.protect_range(space, p, word >> 54, attrs(c[1]));
                }
            }
            5 => {
                if let (Ok(cap), Ok(hp)) = (cap, huge_page_at(va & !(HUGE_PAGE_SIZE - 1))) {
                    let _ = s.map_huge(space, hp, cap, attrs(c[1]));
                }
            }
            6 => {
                if let Ok(cap) = cap
                    && s.donate_table_frame(cap).is_ok()
                {
                    donated += 1;
                }
            }
            7 => {
                if s.reclaim_table_frame().is_some() {
                    donated -= 1;
                }
            }
            8 => {
                if let Ok(sp) = s.create_space() {
                    spaces.push(sp);
                }
            }
            9 => {
                if s.destroy_space(space).is_ok() {
                    spaces.retain(|&x| x != space);
                }
            }
            10 => {
                if let Ok(v) = VirtAddr::try_new(word) {
                    let _ = s.translate(space, v, Access::Write, c[1] & 1 != 0);
                }
                if let Some(p) = p {
                    let _ = s.query(space, p);
                }
            }
            _ => {
                if let Ok(cap) = cap {
                    let mut b = [0u8; 16];
                    let _ = s.write_frame(cap, usize::from(c[1]) * 17, &[1, 2, 3]);
                    let _ = s.read_frame(cap, word as usize, &mut b);
                    let _ = s.zero_frame(cap);
                }
            }
        }
        assert_eq!(
            s.pool_free() + s.tables_in_use(),
            donated,
            "table frames leaked"
        );
    }
    for sp in spaces {
        s.destroy_space(sp).unwrap();
    }
    assert_eq!(s.tables_in_use(), 0);
    assert_eq!(s.pool_free(), donated);
    for f in RAM..RAM + FRAMES {
        let cap = s.frame_cap(PhysAddr::new(f * PAGE_SIZE)).unwrap();
        let u = s.frame_use(cap).unwrap();
        assert!(
            matches!(u, FrameUse::Data { mappings: 0 } | FrameUse::Pooled),
            "frame {f:#x} left {u:?}"
        );
    }
});
