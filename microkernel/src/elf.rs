//! Just enough ELF64 to load the tasks the kernel carries: the entry point and the
//! loadable segments, each starting on its own page (the tasks' linker script makes it
//! so). Anything malformed is `None`, never a panic.

use alloc::vec::Vec;
use ipc_proto::Prot;

/// One `PT_LOAD` segment.
pub struct Segment<'a> {
    /// Where it is linked (page-aligned).
    pub vaddr: u64,
    /// Its bytes in the file; the rest of `memsz` is zero.
    pub bytes: &'a [u8],
    /// Its size in memory.
    pub memsz: u64,
    /// Its protection.
    pub prot: Prot,
}

/// The entry point and loadable segments of the x86_64 executable `image`.
pub fn parse(image: &[u8]) -> Option<(u64, Vec<Segment<'_>>)> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(image.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(image.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(image.get(o..o + 8)?.try_into().ok()?));
    // ELF64, little-endian, executable, x86_64.
    if image.get(..6)? != b"\x7fELF\x02\x01" || u16_at(16)? != 2 || u16_at(18)? != 62 {
        return None;
    }
    let (entry, phoff) = (u64_at(24)?, usize::try_from(u64_at(32)?).ok()?);
    let (phentsize, phnum) = (usize::from(u16_at(54)?), usize::from(u16_at(56)?));
    let mut segments = Vec::new();
    for i in 0..phnum {
        let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(ph)? != 1 {
            continue; // not PT_LOAD
        }
        let flags = u32_at(ph + 4)?;
        let offset = usize::try_from(u64_at(ph + 8)?).ok()?;
        let vaddr = u64_at(ph + 16)?;
        let filesz = usize::try_from(u64_at(ph + 32)?).ok()?;
        let memsz = u64_at(ph + 40)?;
        let bytes = image.get(offset..offset.checked_add(filesz)?)?;
        if vaddr % 4096 != 0 || memsz < filesz as u64 || vaddr.checked_add(memsz)? >> 47 != 0 {
            return None;
        }
        let mut prot = Prot::empty();
        for (bit, p) in [(4, Prot::READ), (2, Prot::WRITE), (1, Prot::EXEC)] {
            if flags & bit != 0 {
                prot |= p;
            }
        }
        segments.push(Segment {
            vaddr,
            bytes,
            memsz,
            prot,
        });
    }
    Some((entry, segments))
}
