//! Memory objects: the shared-memory objects of `shm_open` and the hidden objects behind
//! `MAP_SHARED|MAP_ANONYMOUS`. An object holds its pages; every mapping of it sees them.

use crate::frame_alloc::BankId;
use crate::kernel_stub::Frame;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use ipc_proto::Mode;
use ipc_proto::pager::ObjectKey;

/// Identity of a memory object; also reported as its inode number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId(pub u64);

/// A memory object. It lives while it has a name, an open fd or a mapped page.
#[derive(Debug)]
pub struct MemObject {
    /// Its name while linked (`shm_unlink` clears it).
    pub name: Option<String>,
    /// Size in bytes; pages at or beyond it fault with `SIGBUS`.
    pub size: u64,
    /// Permission bits.
    pub mode: Mode,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Resident pages by page index; absent pages read as zero.
    pub pages: BTreeMap<u64, Frame>,
    /// Open fds referring to it, across all clients.
    pub open_fds: u32,
    /// Of those, fds open for writing.
    pub writers: u32,
    /// Pages of regions mapping it, across all clients.
    pub mapped_pages: u64,
    /// Of those, pages mapped with `MAP_DENYWRITE`.
    pub denywrite_pages: u64,
    /// The bank its pages come from.
    pub bank: BankId,
    /// An anonymous shared object (`MAP_SHARED|MAP_ANONYMOUS`) counts as an open file.
    pub anonymous: bool,
    /// Set for a file of the pager: its pages are a cache of the file.
    pub file: Option<FileInfo>,
}

/// What a file object adds: its name at the pager and which cached pages are newer than
/// the file.
#[derive(Debug)]
pub struct FileInfo {
    /// The pager's key for the file.
    pub key: ObjectKey,
    /// Indexes of pages written since they were paged in or last written back.
    pub dirty: BTreeSet<u64>,
}

impl MemObject {
    /// A new empty object.
    pub fn new(name: Option<String>, mode: Mode, uid: u32, gid: u32, bank: BankId) -> MemObject {
        MemObject {
            name,
            size: 0,
            mode,
            uid,
            gid,
            pages: BTreeMap::new(),
            open_fds: 0,
            writers: 0,
            mapped_pages: 0,
            denywrite_pages: 0,
            bank,
            anonymous: false,
            file: None,
        }
    }

    /// Whether nothing refers to it any more.
    pub fn is_orphan(&self) -> bool {
        self.name.is_none() && self.open_fds == 0 && self.mapped_pages == 0
    }

    /// Whether a client `uid`/`gid` has the access `want` (bits of `r=4, w=2`), by the
    /// owner/group/other mode bits; uid 0 always has it.
    pub fn permits(&self, uid: u32, gid: u32, want: u32) -> bool {
        if uid == 0 {
            return true;
        }
        let bits = self.mode.bits();
        let class = if uid == self.uid {
            (bits >> 6) & 7
        } else if gid == self.gid {
            (bits >> 3) & 7
        } else {
            bits & 7
        };
        class & want == want
    }
}

/// Access bits for [`MemObject::permits`].
pub const MAY_READ: u32 = 4;
/// Access bits for [`MemObject::permits`].
pub const MAY_WRITE: u32 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_bits_by_owner_group_other() {
        let o = MemObject::new(
            None,
            Mode::from_raw(0o640).unwrap(),
            10,
            20,
            BankId::DEFAULT,
        );
        assert!(o.permits(10, 99, MAY_READ | MAY_WRITE));
        assert!(o.permits(11, 20, MAY_READ));
        assert!(!o.permits(11, 20, MAY_WRITE));
        assert!(!o.permits(11, 21, MAY_READ));
        assert!(o.permits(0, 0, MAY_READ | MAY_WRITE));
    }

    #[test]
    fn owner_class_wins_even_when_group_would_allow() {
        let o = MemObject::new(
            None,
            Mode::from_raw(0o070).unwrap(),
            10,
            20,
            BankId::DEFAULT,
        );
        assert!(!o.permits(10, 20, MAY_READ));
        assert!(o.permits(11, 20, MAY_READ));
    }
}
