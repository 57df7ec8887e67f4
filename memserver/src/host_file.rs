//! Host files: a hosted server maps its clients' own regular files (`mmap` of an fd of
//! the host), deciding placement, rights and accounting as for every other region,
//! while the bytes stay where the host keeps them.
//!
//! The host's page cache *is* such an object's memory: each client maps its own open
//! file description where the server placed the region, so `read(2)` and `write(2)` see
//! what every mapping sees, as on Linux. The server therefore never fills, copies or
//! writes back a page of it: faults, `MAP_POPULATE`, `mlock` and `MADV_WILLNEED` pass
//! it by, and `msync`/`munmap` have nothing of theirs to write (the client's runtime
//! asks the host). One object stands for one file (by device and inode) across every
//! mapping of every client, so the server can say which files are mapped and by whom;
//! it lives exactly while something maps it.
//!
//! The entry point is [`Server::open_host_file`], for the daemon, not the protocol: it
//! opens an ordinary fd of the server on the file's object with the rights of the host
//! fd's open mode, so the daemon runs the ordinary `Mmap` (every check, placement,
//! accounting) with it and closes it again.

use crate::fd::{FdEntry, FdTarget};
use crate::frame_alloc::BankId;
use crate::kernel_stub::KernelStub;
use crate::object::{MemObject, ObjectId};
use crate::region::{Region, RegionBacking};
use crate::server::Server;
use alloc::vec::Vec;
use ipc_proto::{ClientId, Errno, Fd, Mode};

/// A host file's identity: its device and inode (`st_dev`, `st_ino`). Kept in an index
/// of its own, so it never collides with the pager's keys for the RAM file server's files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostFileKey {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

/// What the host fd's open mode (`F_GETFL`) allows a mapping of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostFileAccess {
    /// Open for reading: every mapping needs it (`EACCES` otherwise, as Linux).
    pub read: bool,
    /// Open for writing, and not append-only: a shared writable mapping needs it.
    pub write: bool,
}

/// One host file the server serves, for stats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostFileInfo {
    /// Its identity.
    pub key: HostFileKey,
    /// Its size when it was last mapped.
    pub size: u64,
    /// Pages of regions mapping it, across all clients.
    pub mapped_pages: u64,
}

impl<K: KernelStub> Server<K> {
    /// Opens an fd of `id` on the object of host file `key` (made on first use, shared by
    /// every mapping of the file), which the host says holds `size` bytes now, with the
    /// rights `access` gives. The caller maps it with an ordinary `Mmap` and closes it;
    /// the object then lives exactly while something maps it. `EACCES` for a file not
    /// open for reading, `ENFILE` when the system's open files are all taken.
    pub fn open_host_file(
        &mut self,
        id: ClientId,
        key: HostFileKey,
        size: u64,
        access: HostFileAccess,
    ) -> Result<Fd, Errno> {
        if !self.clients.contains_key(&id) {
            return Err(Errno::ESRCH);
        }
        // Linux: every file mapping needs a readable fd.
        if !access.read {
            return Err(Errno::EACCES);
        }
        // Only the system-wide count: this fd lives for one request, inside the one the
        // client sent, and never counts against the client's own fd limit.
        self.accounting.room_for(1)?;
        let obj = match self.objects.by_host(&key) {
            Some(obj) => obj,
            None => {
                let mode = Mode::from_raw(0o600).unwrap_or_default();
                let mut o = MemObject::new(None, mode, 0, 0, BankId::DEFAULT);
                o.host = Some(key);
                self.objects.insert(o)
            }
        };
        if let Some(o) = self.objects.get_mut(&obj) {
            o.size = size;
        }
        Ok(self.open_fd(
            id,
            FdEntry {
                target: FdTarget::Shm(obj),
                writable: access.write,
            },
        ))
    }

    /// The host file object `obj` stands for, if it is one.
    pub fn host_file_of(&self, obj: ObjectId) -> Option<HostFileKey> {
        self.objects.get(&obj)?.host
    }

    /// Whether `r` maps a host file (whose pages are the host's, never the server's).
    pub fn is_host_backed(&self, r: &Region) -> bool {
        match r.backing {
            RegionBacking::Object { obj, .. } => self.host_file_of(obj).is_some(),
            _ => false,
        }
    }

    /// Every host file served now, by device and inode.
    pub fn host_files(&self) -> Vec<HostFileInfo> {
        self.objects
            .hosts()
            .filter_map(|(key, obj)| {
                let o = self.objects.get(&obj)?;
                Some(HostFileInfo {
                    key,
                    size: o.size,
                    mapped_pages: o.mapped_pages,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, FrameRange};
    use crate::server::Sender;
    use crate::test_stub::TestStub;
    use ipc_proto::{
        Access, Advice, ClientSpec, MapFlags, MlockallFlags, MmapArgs, MsyncFlags, PAGE_SIZE, Prot,
        Reply, Request, Signal,
    };

    const P: u64 = PAGE_SIZE;
    const KEY: HostFileKey = HostFileKey { dev: 8, ino: 42 };
    const RW: HostFileAccess = HostFileAccess {
        read: true,
        write: true,
    };
    const RO: HostFileAccess = HostFileAccess {
        read: true,
        write: false,
    };

    fn server(clients: u32) -> Server<TestStub> {
        let cfg = Config::with_ram(alloc::vec![FrameRange {
            start: 100,
            count: 64
        }]);
        let mut s = Server::new(cfg, TestStub::default());
        s.set_self_check(true);
        for c in 1..=clients {
            let started = Request::ClientStarted {
                client: ClientId(c),
                spec: ClientSpec::DEFAULT,
            };
            assert_eq!(s.handle(Sender::Kernel, &started), Ok(Reply::Done));
        }
        s
    }

    /// What the daemon does: open, map with the ordinary request, close.
    fn map(
        s: &mut Server<TestStub>,
        c: u32,
        key: HostFileKey,
        access: HostFileAccess,
        (prot, flags): (Prot, MapFlags),
        offset: u64,
        len: u64,
    ) -> Result<u64, Errno> {
        let id = ClientId(c);
        let fd = s.open_host_file(id, key, 3 * P + 100, access)?;
        let args = MmapArgs {
            addr: 0,
            len,
            prot,
            flags,
            fd: Some(fd),
            offset,
        };
        let r = s.handle(Sender::Client(id), &Request::Mmap(args));
        assert_eq!(
            s.handle(Sender::Client(id), &Request::Close { fd }),
            Ok(Reply::Done)
        );
        match r? {
            Reply::Mapped { addr } => Ok(addr),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn rw() -> Prot {
        Prot::READ | Prot::WRITE
    }

    #[test]
    fn one_object_per_file_shared_by_every_client_while_mapped() {
        let mut s = server(2);
        let a = map(&mut s, 1, KEY, RW, (rw(), MapFlags::SHARED), 0, 2 * P).unwrap();
        let b = map(&mut s, 2, KEY, RO, (Prot::READ, MapFlags::PRIVATE), 0, P).unwrap();
        let other = HostFileKey { dev: 8, ino: 43 };
        map(&mut s, 2, other, RO, (Prot::READ, MapFlags::SHARED), P, P).unwrap();
        let files = s.host_files();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].key, KEY);
        assert_eq!(files[0].mapped_pages, 3);
        let obj = |s: &Server<TestStub>, c: u32, at: u64| match s.region_at(ClientId(c), at) {
            Some(Region {
                backing: RegionBacking::Object { obj, .. },
                ..
            }) => obj,
            r => panic!("not an object region: {r:?}"),
        };
        assert_eq!(obj(&s, 1, a), obj(&s, 2, b));
        assert_eq!(s.host_file_of(obj(&s, 1, a)), Some(KEY));
        assert_eq!(s.munmap(ClientId(1), a, 2 * P), Ok(()));
        assert_eq!(s.host_files().len(), 2, "client 2 still maps it");
        assert_eq!(
            s.handle(
                Sender::Kernel,
                &Request::ClientExited {
                    client: ClientId(2)
                }
            ),
            Ok(Reply::Done)
        );
        assert!(s.host_files().is_empty(), "nothing maps them any more");
        assert_eq!(s.check_invariants(), Ok(()));
    }

    #[test]
    fn rights_follow_the_open_mode() {
        let mut s = server(1);
        let wo = HostFileAccess {
            read: false,
            write: true,
        };
        let shared = MapFlags::SHARED;
        assert_eq!(
            map(&mut s, 1, KEY, wo, (Prot::READ, shared), 0, P),
            Err(Errno::EACCES)
        );
        assert_eq!(
            map(&mut s, 1, KEY, RO, (rw(), shared), 0, P),
            Err(Errno::EACCES)
        );
        // A private copy-on-write mapping of a read-only fd may be written.
        let p = map(&mut s, 1, KEY, RO, (rw(), MapFlags::PRIVATE), 0, P).unwrap();
        // A shared read-only mapping of a read-only fd never becomes writable.
        let r = map(&mut s, 1, KEY, RO, (Prot::READ, shared), 0, P).unwrap();
        assert_eq!(s.mprotect(ClientId(1), r, P, rw()), Err(Errno::EACCES));
        assert_eq!(s.mprotect(ClientId(1), p, P, Prot::READ), Ok(()));
        // A failed mapping leaves no object behind.
        assert_eq!(s.host_files().len(), 1);
        assert_eq!(s.check_invariants(), Ok(()));
    }

    #[test]
    fn offsets_past_the_maximum_overflow() {
        let mut s = server(1);
        let off = (i64::MAX as u64) & !(P - 1);
        assert_eq!(
            map(
                &mut s,
                1,
                KEY,
                RO,
                (Prot::READ, MapFlags::SHARED),
                off,
                2 * P
            ),
            Err(Errno::EOVERFLOW)
        );
        assert!(s.host_files().is_empty());
        assert_eq!(s.check_invariants(), Ok(()));
    }

    #[test]
    fn the_server_never_fills_a_page_of_it() {
        let mut s = server(1);
        let free = s.stats().free_frames;
        let flags = MapFlags::PRIVATE | MapFlags::POPULATE;
        let a = map(&mut s, 1, KEY, RW, (rw(), flags), 0, 2 * P).unwrap();
        let b = map(&mut s, 1, KEY, RW, (rw(), MapFlags::SHARED), 0, 2 * P).unwrap();
        let id = ClientId(1);
        assert_eq!(s.mlock(id, b, 2 * P, true), Ok(()));
        assert_eq!(s.madvise(id, a, 2 * P, Advice::WillNeed), Ok(()));
        assert_eq!(s.mlockall(id, MlockallFlags::CURRENT), Ok(()));
        assert_eq!(s.msync(id, b, 2 * P, MsyncFlags::SYNC), Ok(()));
        // A fault that reaches the server anyway is answered, never filled.
        let fault = Request::PageFault {
            client: id,
            addr: b,
            access: Access::Write,
        };
        assert_eq!(
            s.handle(Sender::Kernel, &fault),
            Ok(Reply::Signal(Signal::Bus))
        );
        let space = s.space_of(id).unwrap();
        assert!(s.stub().query(space, a).is_none());
        assert!(s.stub().query(space, b).is_none());
        // Only the page tables the server keeps; no page of the file.
        assert_eq!(s.stats().free_frames + s.stats().table_frames, free);
        assert_eq!(s.munmap(id, a, 2 * P), Ok(()));
        assert_eq!(s.check_invariants(), Ok(()));
    }

    #[test]
    fn a_clone_maps_the_same_file_and_moves_keep_it() {
        let mut s = server(1);
        let a = map(&mut s, 1, KEY, RW, (rw(), MapFlags::SHARED), 0, 2 * P).unwrap();
        map(&mut s, 1, KEY, RW, (rw(), MapFlags::PRIVATE), 0, P).unwrap();
        let cloned = Request::ClientCloned {
            parent: ClientId(1),
            child: ClientId(2),
            spec: ClientSpec::DEFAULT,
        };
        assert_eq!(s.handle(Sender::Kernel, &cloned), Ok(Reply::Done));
        assert_eq!(s.host_files()[0].mapped_pages, 6);
        let moved = s
            .mremap(
                ClientId(2),
                a,
                2 * P,
                4 * P,
                ipc_proto::MremapFlags::MAYMOVE,
                0,
            )
            .unwrap();
        let r = s.region_at(ClientId(2), moved).unwrap();
        assert!(s.is_host_backed(&r) && r.len() == 4 * P);
        assert_eq!(s.host_files()[0].mapped_pages, 8);
        for c in [1, 2] {
            let exited = Request::ClientExited {
                client: ClientId(c),
            };
            assert_eq!(s.handle(Sender::Kernel, &exited), Ok(Reply::Done));
        }
        assert!(s.host_files().is_empty());
        assert_eq!(s.check_invariants(), Ok(()));
    }

    #[test]
    fn host_keys_never_meet_pager_keys_or_names() {
        let mut s = server(1);
        let fd = s.open_host_file(ClientId(1), KEY, P, RO).unwrap();
        let obj = match s.clients[&ClientId(1)].fds.get(fd).map(|e| e.target) {
            Some(FdTarget::Shm(obj)) => obj,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            s.objects.by_file(&ipc_proto::pager::ObjectKey(KEY.ino)),
            None
        );
        assert_eq!(s.objects.by_host(&KEY), Some(obj));
        assert_eq!(s.close(ClientId(1), fd), Ok(()));
        assert_eq!(s.objects.by_host(&KEY), None, "closed and unmapped: gone");
        assert_eq!(s.check_invariants(), Ok(()));
    }
}
