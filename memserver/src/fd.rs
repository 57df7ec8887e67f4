//! Per-client fd tables: the server's own descriptors for shm objects, banks and devices.

use crate::frame_alloc::BankId;
use crate::object::ObjectId;
use crate::region::DeviceId;
use alloc::collections::BTreeMap;
use ipc_proto::Fd;

/// What an fd refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdTarget {
    /// A shared-memory object.
    Shm(ObjectId),
    /// A memory bank.
    Bank(BankId),
    /// A device window.
    Device(DeviceId),
}

/// One open fd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdEntry {
    /// Its object.
    pub target: FdTarget,
    /// Opened for writing (`O_RDWR`).
    pub writable: bool,
}

/// A client's open fds; new fds take the lowest free number, as POSIX requires.
pub struct FdTable {
    map: BTreeMap<u32, FdEntry>,
    first: u32,
}

impl FdTable {
    /// An empty table whose numbers start at `first`.
    pub fn new(first: u32) -> FdTable {
        FdTable {
            map: BTreeMap::new(),
            first,
        }
    }

    /// Number of open fds.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no fd is open.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The entry of `fd`.
    pub fn get(&self, fd: Fd) -> Option<FdEntry> {
        self.map.get(&fd.0).copied()
    }

    /// Opens `entry` at the lowest free number.
    pub fn insert(&mut self, entry: FdEntry) -> Fd {
        let mut n = self.first;
        for &k in self.map.range(self.first..).map(|(k, _)| k) {
            if k != n {
                break;
            }
            n += 1;
        }
        self.map.insert(n, entry);
        Fd(n)
    }

    /// Opens `entry` at exactly `fd` (a clone keeps its parent's numbers); `false` if
    /// the number is taken.
    pub fn insert_at(&mut self, fd: Fd, entry: FdEntry) -> bool {
        if self.map.contains_key(&fd.0) {
            return false;
        }
        self.map.insert(fd.0, entry);
        true
    }

    /// Closes `fd`, returning what it referred to.
    pub fn remove(&mut self, fd: Fd) -> Option<FdEntry> {
        self.map.remove(&fd.0)
    }

    /// Every open fd.
    pub fn iter(&self) -> impl Iterator<Item = (Fd, FdEntry)> + '_ {
        self.map.iter().map(|(&k, &v)| (Fd(k), v))
    }

    /// Closes everything, handing each entry to `f`.
    pub fn drain(&mut self, mut f: impl FnMut(FdEntry)) {
        for (_, e) in core::mem::take(&mut self.map) {
            f(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bank() -> FdEntry {
        FdEntry {
            target: FdTarget::Bank(BankId(0)),
            writable: true,
        }
    }

    #[test]
    fn lowest_free_number_is_reused() {
        let mut t = FdTable::new(3);
        assert_eq!(t.insert(bank()), Fd(3));
        assert_eq!(t.insert(bank()), Fd(4));
        assert_eq!(t.insert(bank()), Fd(5));
        assert!(t.remove(Fd(4)).is_some());
        assert_eq!(t.insert(bank()), Fd(4));
        assert_eq!(t.insert(bank()), Fd(6));
        assert!(t.remove(Fd(4)).is_some());
        assert!(t.remove(Fd(4)).is_none());
        assert_eq!(t.get(Fd(2)), None);
    }
}
