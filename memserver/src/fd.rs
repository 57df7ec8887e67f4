//! Per-client fd tables (the server's own descriptors for shm objects, files, banks and
//! devices) and the calls on any fd: `close`, `fstat`.

use crate::frame_alloc::BankId;
use crate::kernel_stub::KernelStub;
use crate::object::ObjectId;
use crate::region::DeviceId;
use crate::server::Server;
use alloc::collections::BTreeMap;
use ipc_proto::{ClientId, Errno, Fd, Mode, ObjectKind, PAGE_SIZE, Stat};

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

impl<K: KernelStub> Server<K> {
    /// `close` of one of the server's fds.
    pub(crate) fn close(&mut self, id: ClientId, fd: Fd) -> Result<(), Errno> {
        let c = self.clients.get_mut(&id).ok_or(Errno::ESRCH)?;
        let e = c.fds.remove(fd).ok_or(Errno::EBADF)?;
        self.drop_fd_entry(e.target, e.writable);
        Ok(())
    }

    /// `fstat` of one of the server's fds.
    pub(crate) fn fstat(&self, id: ClientId, fd: Fd) -> Result<Stat, Errno> {
        let e = self
            .clients
            .get(&id)
            .ok_or(Errno::ESRCH)?
            .fds
            .get(fd)
            .ok_or(Errno::EBADF)?;
        let rw = Mode::from_raw(0o600).unwrap_or_default();
        Ok(match e.target {
            FdTarget::Shm(obj) => {
                let o = self.objects.get(&obj).ok_or(Errno::EBADF)?;
                Stat {
                    kind: if o.file.is_some() {
                        ObjectKind::File
                    } else {
                        ObjectKind::Shm
                    },
                    size: o.size,
                    mode: o.mode,
                    uid: o.uid,
                    gid: o.gid,
                    ino: obj.0,
                }
            }
            FdTarget::Bank(b) => Stat {
                kind: ObjectKind::Bank,
                size: self.mem.frames.bank_total(b) * PAGE_SIZE,
                mode: rw,
                uid: 0,
                gid: 0,
                ino: u64::from(b.0),
            },
            FdTarget::Device(d) => Stat {
                kind: ObjectKind::Device,
                size: self
                    .cfg
                    .devices
                    .get(d.0 as usize)
                    .map_or(0, |d| d.frames.count * PAGE_SIZE),
                mode: rw,
                uid: 0,
                gid: 0,
                ino: u64::from(d.0),
            },
        })
    }

    /// `EMFILE` at the client's fd limit, `ENFILE` at the system's.
    pub(crate) fn check_fd_room(&self, id: ClientId) -> Result<(), Errno> {
        let c = self.clients.get(&id).ok_or(Errno::ESRCH)?;
        if c.fds.len() >= c.spec.limits.max_fds as usize {
            return Err(Errno::EMFILE);
        }
        self.accounting.room_for(1)
    }

    /// Opens `entry` in `id`'s table (room checked first), counting the object's
    /// references.
    pub(crate) fn open_fd(&mut self, id: ClientId, entry: FdEntry) -> Fd {
        if let FdTarget::Shm(obj) = entry.target
            && let Some(o) = self.objects.get_mut(&obj)
        {
            o.open_fds += 1;
            if entry.writable {
                o.writers += 1;
            }
        }
        self.accounting.opened(1);
        match self.clients.get_mut(&id) {
            Some(c) => c.fds.insert(entry),
            None => Fd(u32::MAX),
        }
    }

    /// Forgets one open fd's references.
    pub(crate) fn drop_fd_entry(&mut self, target: FdTarget, writable: bool) {
        self.accounting.closed();
        if let FdTarget::Shm(obj) = target {
            if let Some(o) = self.objects.get_mut(&obj) {
                o.open_fds -= 1;
                if writable {
                    o.writers -= 1;
                }
            }
            self.destroy_if_orphan(obj);
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
