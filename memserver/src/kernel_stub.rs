//! The server's only way to touch hardware: the [`KernelStub`] trait.
//!
//! The memory server decides everything; the stub installs, changes and removes the
//! page-table entries it is told to, and zeroes or copies frames the server owns.
//! [`StubDriver`](crate::StubDriver) implements it with the real `kernel-stub` crate (over
//! simulated RAM in tests, over the direct map in the microkernel); the microkernel's
//! server task implements it with system calls, the hosted runtime with the host
//! kernel's mappings in the client.

use core::fmt::Debug;
pub use ipc_proto::CacheMode;

/// A physical frame the server owns, by frame number (physical address / 4096).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Frame(pub u64);

impl Frame {
    /// The frame's physical address.
    pub const fn addr(self) -> u64 {
        self.0 * ipc_proto::PAGE_SIZE
    }
}

/// What a page-table entry allows. User access and presence are implied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageAttrs {
    /// Writes allowed.
    pub writable: bool,
    /// Instruction fetches allowed (NX clear).
    pub executable: bool,
    /// Caching mode.
    pub cache: CacheMode,
}

impl PageAttrs {
    /// The attributes as three bits (bit 0 writable, bit 1 executable, bits 2-3 the cache
    /// mode), for a kernel that passes them through registers.
    pub const fn bits(self) -> u64 {
        let cache = match self.cache {
            CacheMode::WriteBack => 0,
            CacheMode::WriteCombining => 1,
            CacheMode::Uncached => 2,
        };
        self.writable as u64 | (self.executable as u64) << 1 | cache << 2
    }

    /// The attributes [`bits`](Self::bits) describes (other bits ignored; the unused
    /// cache value 3 reads as uncached, the safe side for a device).
    pub const fn from_bits(v: u64) -> PageAttrs {
        PageAttrs {
            writable: v & 1 != 0,
            executable: v & 2 != 0,
            cache: match (v >> 2) & 3 {
                0 => CacheMode::WriteBack,
                1 => CacheMode::WriteCombining,
                _ => CacheMode::Uncached,
            },
        }
    }
}

/// Why the stub refused an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StubError {
    /// The stub needs another page-table frame: donate one and retry.
    OutOfTableFrames,
    /// The stub has no room for another address space.
    OutOfSpaces,
    /// The stub refused the call (bad capability, address, frame): a server bug if it
    /// ever happens, since the server validates first.
    Refused,
}

/// The mapping-installer the server drives. Every method acts on frames and address
/// spaces the server owns; the stub checks that, the server never relies on it.
pub trait KernelStub {
    /// A handle naming one address space.
    type Space: Copy + Eq + Debug;

    /// Makes an empty address space.
    fn create_space(&mut self) -> Result<Self::Space, StubError>;
    /// Destroys a space and every mapping and table page in it.
    fn destroy_space(&mut self, space: Self::Space);
    /// Installs one 4 KiB page at `vaddr`, which must not be installed already.
    fn map(
        &mut self,
        space: Self::Space,
        vaddr: u64,
        frame: Frame,
        attrs: PageAttrs,
    ) -> Result<(), StubError>;
    /// Removes every installed page in `[vaddr, vaddr + pages * 4096)`.
    fn unmap(&mut self, space: Self::Space, vaddr: u64, pages: u64);
    /// Sets the attributes of every installed page in the range.
    fn protect(&mut self, space: Self::Space, vaddr: u64, pages: u64, attrs: PageAttrs);
    /// What is installed at `vaddr`, if anything.
    fn query(&self, space: Self::Space, vaddr: u64) -> Option<(Frame, PageAttrs)>;
    /// Calls `f(vaddr, frame, attrs)` for every installed page, in address order.
    fn for_each_mapping(&self, space: Self::Space, f: &mut dyn FnMut(u64, Frame, PageAttrs));
    /// Fills a frame with zeroes.
    fn zero_frame(&mut self, frame: Frame);
    /// Copies one frame's contents to another.
    fn copy_frame(&mut self, src: Frame, dst: Frame);
    /// Fills a frame with `data` (at most a page) followed by zeroes: a page read from a
    /// pager, its tail past the end of the file zero-filled.
    fn fill_frame(&mut self, frame: Frame, data: &[u8]);
    /// Copies the first `out.len()` bytes (at most a page) of a frame into `out`, for
    /// writing a dirty page back to its pager.
    fn read_frame(&self, frame: Frame, out: &mut [u8]);
    /// Lends a frame to the stub for page tables.
    fn donate_table_frame(&mut self, frame: Frame) -> Result<(), StubError>;
    /// Takes back a lent frame the stub no longer uses, if any.
    fn reclaim_table_frame(&mut self) -> Option<Frame>;

    /// The last holder of `frame` let go: it is free. A stub that keeps frame contents
    /// somewhere of its own (the hosted runtime's per-object memfds) drops them here, so
    /// no freed byte stays readable. Page-table stubs need nothing.
    fn frame_freed(&mut self, _frame: Frame) {}
    /// Memory object `object` (an [`ObjectId`](crate::object::ObjectId) number) now has
    /// `size` bytes; pages past it are gone.
    fn object_resized(&mut self, _object: u64, _size: u64) {}
    /// Memory object `object` is destroyed: no mapping, fd or name refers to it.
    fn object_destroyed(&mut self, _object: u64) {}
}

#[cfg(test)]
mod tests {
    use super::{CacheMode, PageAttrs};

    #[test]
    fn attribute_bits_round_trip() {
        for cache in [
            CacheMode::WriteBack,
            CacheMode::WriteCombining,
            CacheMode::Uncached,
        ] {
            for bits in 0..4u64 {
                let a = PageAttrs {
                    writable: bits & 1 != 0,
                    executable: bits & 2 != 0,
                    cache,
                };
                assert_eq!(PageAttrs::from_bits(a.bits()), a);
                assert!(a.bits() < 16);
            }
        }
    }
}
