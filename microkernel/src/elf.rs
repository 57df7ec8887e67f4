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
    let bytes = |o: usize, n: usize| image.get(o..o.checked_add(n)?);
    let u16_at = |o: usize| Some(u16::from_le_bytes(bytes(o, 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(bytes(o, 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(bytes(o, 8)?.try_into().ok()?));
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
        let field = |at: usize| ph.checked_add(at);
        let flags = u32_at(field(4)?)?;
        let offset = usize::try_from(u64_at(field(8)?)?).ok()?;
        let vaddr = u64_at(field(16)?)?;
        let filesz = usize::try_from(u64_at(field(32)?)?).ok()?;
        let memsz = u64_at(field(40)?)?;
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

#[cfg(test)]
mod tests {
    use super::parse;

    /// A minimal executable: header, one program header, then `code` at file offset
    /// 0x1000 loaded at 0x400000 (read-execute), `memsz` bytes in memory.
    fn image(code: &[u8], memsz: u64) -> Vec<u8> {
        let mut f = vec![0u8; 0x1000];
        f[..6].copy_from_slice(b"\x7fELF\x02\x01");
        f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        f[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        f[24..32].copy_from_slice(&0x40_0010u64.to_le_bytes()); // entry
        f[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
        f[54..56].copy_from_slice(&56u16.to_le_bytes()); // phentsize
        f[56..58].copy_from_slice(&1u16.to_le_bytes()); // phnum
        let ph = 64;
        f[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        f[ph + 4..ph + 8].copy_from_slice(&5u32.to_le_bytes()); // R + X
        f[ph + 8..ph + 16].copy_from_slice(&0x1000u64.to_le_bytes());
        f[ph + 16..ph + 24].copy_from_slice(&0x40_0000u64.to_le_bytes());
        f[ph + 32..ph + 40].copy_from_slice(&(code.len() as u64).to_le_bytes());
        f[ph + 40..ph + 48].copy_from_slice(&memsz.to_le_bytes());
        f.extend_from_slice(code);
        f
    }

    #[test]
    fn reads_the_entry_and_a_loadable_segment() {
        let file = image(&[0xc3; 10], 0x2000);
        let (entry, segs) = parse(&file).expect("valid");
        assert_eq!(entry, 0x40_0010);
        assert_eq!(segs.len(), 1);
        assert_eq!((segs[0].vaddr, segs[0].memsz), (0x40_0000, 0x2000));
        assert_eq!(segs[0].bytes, &[0xc3; 10]);
        assert_eq!(segs[0].prot, ipc_proto::Prot::READ | ipc_proto::Prot::EXEC);
    }

    #[test]
    fn refuses_what_it_cannot_load() {
        let good = image(&[0xc3; 10], 0x2000);
        let mut bad = good.clone();
        bad[18] = 3; // not x86_64
        assert!(parse(&bad).is_none());
        // A segment smaller in memory than in the file, or reaching the kernel half.
        assert!(parse(&image(&[0xc3; 10], 4)).is_none());
        assert!(parse(&image(&[0xc3; 10], 1 << 47)).is_none());
        // The file's bytes past its end.
        let mut short = good.clone();
        short.truncate(0x1004);
        assert!(parse(&short).is_none());
        // A program header table pointing past the file, or overflowing.
        let mut far = good.clone();
        far[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(parse(&far).is_none());
        assert!(parse(b"").is_none());
        assert!(parse(b"\x7fELF").is_none());
    }

    #[test]
    fn every_truncation_and_corruption_is_an_answer_not_a_panic() {
        let good = image(&[0x90; 64], 0x1000);
        for n in 0..good.len() {
            let _ = parse(&good[..n]);
        }
        // Pseudo-random single-byte corruptions of the headers.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut f = good.clone();
            let at = (x % 128) as usize;
            f[at] = (x >> 32) as u8;
            let _ = parse(&f);
        }
    }
}
