//! Memory objects: the shared-memory objects of `shm_open`, the hidden objects behind
//! `MAP_SHARED|MAP_ANONYMOUS`, and files' page caches. An object holds its pages; every
//! mapping of it sees them. The server's object table holds every object with its two indexes,
//! shm names and pager keys.

use crate::frame_alloc::BankId;
use crate::host_file::HostFileKey;
use crate::kernel_stub::{Frame, KernelStub};
use crate::permission::Owner;
use crate::server::Server;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use core::ops::RangeBounds;
use ipc_proto::Mode;
use ipc_proto::pager::ObjectKey;

/// Identity of a memory object; also reported as its inode number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
    /// Set for a file of the host (`host_file.rs`): its pages are the host's page
    /// cache, so the object never holds a page of its own.
    pub host: Option<HostFileKey>,
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
            host: None,
        }
    }

    /// Whether nothing refers to it any more.
    pub fn is_orphan(&self) -> bool {
        self.name.is_none() && self.open_fds == 0 && self.mapped_pages == 0
    }

    /// Its owner and mode bits, for the permission rules.
    pub(crate) fn owner(&self) -> Owner {
        Owner {
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
        }
    }
}

/// Every memory object, by id, with the indexes that find one by shm name, by the key
/// its pager gave the file, or by a host file's device and inode. The indexes change
/// only with the table, so they always agree with the objects' own `name`, `file` and
/// `host`. The last two are apart: a pager key and a host inode can be equal numbers.
pub(crate) struct ObjectTable {
    objects: BTreeMap<ObjectId, MemObject>,
    names: BTreeMap<String, ObjectId>,
    files: BTreeMap<ObjectKey, ObjectId>,
    hosts: BTreeMap<HostFileKey, ObjectId>,
    next: u64,
}

impl ObjectTable {
    /// An empty table; ids start at 1.
    pub fn new() -> ObjectTable {
        ObjectTable {
            objects: BTreeMap::new(),
            names: BTreeMap::new(),
            files: BTreeMap::new(),
            hosts: BTreeMap::new(),
            next: 1,
        }
    }

    /// Adds `o`, indexing its name and file key; returns its new id.
    pub fn insert(&mut self, o: MemObject) -> ObjectId {
        let id = ObjectId(self.next);
        self.next += 1;
        if let Some(n) = &o.name {
            self.names.insert(n.clone(), id);
        }
        if let Some(f) = &o.file {
            self.files.insert(f.key, id);
        }
        if let Some(h) = o.host {
            self.hosts.insert(h, id);
        }
        self.objects.insert(id, o);
        id
    }

    /// Removes object `id` and its index entries.
    pub fn remove(&mut self, id: &ObjectId) -> Option<MemObject> {
        let o = self.objects.remove(id)?;
        if let Some(n) = &o.name {
            self.names.remove(n);
        }
        if let Some(f) = &o.file {
            self.files.remove(&f.key);
        }
        if let Some(h) = &o.host {
            self.hosts.remove(h);
        }
        Some(o)
    }

    /// Object `id`.
    pub fn get(&self, id: &ObjectId) -> Option<&MemObject> {
        self.objects.get(id)
    }

    /// Object `id`, mutably. Its name and file key are the table's: change them only
    /// through [`unlink`](Self::unlink).
    pub fn get_mut(&mut self, id: &ObjectId) -> Option<&mut MemObject> {
        self.objects.get_mut(id)
    }

    /// Whether object `id` exists.
    pub fn contains(&self, id: &ObjectId) -> bool {
        self.objects.contains_key(id)
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Every object, by id.
    pub fn iter(&self) -> impl Iterator<Item = (ObjectId, &MemObject)> + '_ {
        self.objects.iter().map(|(&id, o)| (id, o))
    }

    /// The objects with ids in `range`, in order.
    pub fn range(
        &self,
        range: impl RangeBounds<ObjectId>,
    ) -> impl Iterator<Item = (ObjectId, &MemObject)> + '_ {
        self.objects.range(range).map(|(&id, o)| (id, o))
    }

    /// The object named `name`.
    pub fn by_name(&self, name: &str) -> Option<ObjectId> {
        self.names.get(name).copied()
    }

    /// How many objects have a name.
    pub fn named(&self) -> usize {
        self.names.len()
    }

    /// Removes `name` (`shm_unlink`); the object, if any, lives on unnamed.
    pub fn unlink(&mut self, name: &str) -> Option<ObjectId> {
        let id = self.names.remove(name)?;
        if let Some(o) = self.objects.get_mut(&id) {
            o.name = None;
        }
        Some(id)
    }

    /// The object caching the file the pager calls `key`.
    pub fn by_file(&self, key: &ObjectKey) -> Option<ObjectId> {
        self.files.get(key).copied()
    }

    /// Whether any file object exists.
    pub fn has_files(&self) -> bool {
        !self.files.is_empty()
    }

    /// The object of the host file `key`.
    pub fn by_host(&self, key: &HostFileKey) -> Option<ObjectId> {
        self.hosts.get(key).copied()
    }

    /// Every host file's object, by device and inode.
    pub fn hosts(&self) -> impl Iterator<Item = (HostFileKey, ObjectId)> + '_ {
        self.hosts.iter().map(|(&k, &id)| (k, id))
    }

    /// Checks that the indexes agree with the objects.
    pub fn check_indexes(&self) -> Result<(), String> {
        for (&id, o) in &self.objects {
            if let Some(n) = &o.name
                && self.names.get(n) != Some(&id)
            {
                return Err(format!("object {id:?}: name table disagrees"));
            }
            if let Some(f) = &o.file
                && (self.files.get(&f.key) != Some(&id) || o.name.is_some())
            {
                return Err(format!("file object {id:?}: file table disagrees"));
            }
            if let Some(h) = &o.host
                && (self.hosts.get(h) != Some(&id) || o.name.is_some() || o.file.is_some())
            {
                return Err(format!("host file object {id:?}: host table disagrees"));
            }
        }
        if self.names.len() != self.objects.values().filter(|o| o.name.is_some()).count() {
            return Err(String::from("name table has stale entries"));
        }
        if self.files.len() != self.objects.values().filter(|o| o.file.is_some()).count() {
            return Err(String::from("file table has stale entries"));
        }
        if self.hosts.len() != self.objects.values().filter(|o| o.host.is_some()).count() {
            return Err(String::from("host file table has stale entries"));
        }
        Ok(())
    }
}

impl<K: KernelStub> Server<K> {
    /// Frees an object nobody refers to any more: a file's dirty pages go back to its
    /// pager first.
    pub(crate) fn destroy_if_orphan(&mut self, obj: ObjectId) {
        if !self.objects.get(&obj).is_some_and(MemObject::is_orphan) {
            return;
        }
        let Some(o) = self.objects.remove(&obj) else {
            return;
        };
        if o.anonymous {
            self.accounting.closed();
        }
        self.release_file(&o);
        for (_, f) in o.pages {
            self.mem.release(f);
        }
        self.mem.stub.object_destroyed(obj.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> MemObject {
        MemObject::new(
            Some(String::from(name)),
            Mode::default(),
            0,
            0,
            BankId::DEFAULT,
        )
    }

    #[test]
    fn indexes_follow_insert_unlink_and_remove() {
        let mut t = ObjectTable::new();
        let a = t.insert(named("a"));
        let b = t.insert(named("b"));
        assert_ne!(a, b);
        assert_eq!(t.by_name("a"), Some(a));
        assert_eq!(t.unlink("a"), Some(a));
        assert_eq!(t.by_name("a"), None);
        assert!(t.get(&a).is_some_and(|o| o.name.is_none()));
        assert_eq!(t.named(), 1);
        assert!(t.remove(&b).is_some());
        assert_eq!(t.by_name("b"), None);
        assert_eq!(t.check_indexes(), Ok(()));
    }
}
