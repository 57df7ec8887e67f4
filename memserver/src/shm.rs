//! Shared-memory objects: `shm_open`, `shm_unlink`, and `ftruncate`, which sets the size
//! of any object (a file's goes to its pager first).

use crate::fd::{FdEntry, FdTarget};
use crate::frame_alloc::BankId;
use crate::kernel_stub::KernelStub;
use crate::object::{MemObject, ObjectId};
use crate::permission::{self, Want};
use crate::region::RegionBacking;
use crate::server::Server;
use alloc::string::String;
use alloc::vec::Vec;
use ipc_proto::{ClientId, Errno, Fd, Mode, OFlags, PAGE_SIZE, ShmName};

impl<K: KernelStub> Server<K> {
    /// `shm_open`.
    pub(crate) fn shm_open(
        &mut self,
        id: ClientId,
        name: &ShmName,
        oflag: OFlags,
        mode: Mode,
    ) -> Result<Fd, Errno> {
        let write = permission::access_mode(oflag)?;
        let c = self.clients.get(&id).ok_or(Errno::ESRCH)?;
        let (uid, gid) = (c.spec.uid, c.spec.gid);
        self.check_fd_room(id)?;
        let c = self.clients.get(&id).ok_or(Errno::ESRCH)?;
        let obj = match self.objects.by_name(name.component()) {
            Some(obj) => {
                if oflag.contains(OFlags::CREAT | OFlags::EXCL) {
                    return Err(Errno::EEXIST);
                }
                let o = self.objects.get(&obj).ok_or(Errno::ENOENT)?;
                if !permission::permits(o.owner(), &c.spec, Want::for_open(write, oflag)) {
                    return Err(Errno::EACCES);
                }
                // open(2) for writing while mapped MAP_DENYWRITE (seed 004).
                if write && o.denywrite_pages > 0 {
                    return Err(Errno::ETXTBSY);
                }
                if oflag.contains(OFlags::TRUNC) {
                    self.truncate_object(obj, 0);
                }
                obj
            }
            None => {
                if !oflag.contains(OFlags::CREAT) {
                    return Err(Errno::ENOENT);
                }
                if self.objects.named() >= self.cfg.max_shm_objects as usize {
                    return Err(Errno::ENOSPC);
                }
                let name = Some(String::from(name.component()));
                self.objects
                    .insert(MemObject::new(name, mode, uid, gid, BankId::DEFAULT))
            }
        };
        Ok(self.open_fd(
            id,
            FdEntry {
                target: FdTarget::Shm(obj),
                writable: write,
            },
        ))
    }

    /// `shm_unlink`: the name goes now, the object when its last fd and mapping go.
    pub(crate) fn shm_unlink(&mut self, id: ClientId, name: &ShmName) -> Result<(), Errno> {
        let spec = self.clients.get(&id).ok_or(Errno::ESRCH)?.spec;
        let obj = self
            .objects
            .by_name(name.component())
            .ok_or(Errno::ENOENT)?;
        let o = self.objects.get(&obj).ok_or(Errno::ENOENT)?;
        if !permission::may_unlink(&spec, o.uid) {
            return Err(Errno::EACCES);
        }
        self.objects.unlink(name.component());
        self.destroy_if_orphan(obj);
        Ok(())
    }

    /// `ftruncate` of a shm fd.
    pub(crate) fn ftruncate(&mut self, id: ClientId, fd: Fd, len: u64) -> Result<(), Errno> {
        let e = self
            .clients
            .get(&id)
            .ok_or(Errno::ESRCH)?
            .fds
            .get(fd)
            .ok_or(Errno::EBADF)?;
        let FdTarget::Shm(obj) = e.target else {
            return Err(Errno::EINVAL);
        };
        // Linux: not open for writing is EINVAL.
        if !e.writable {
            return Err(Errno::EINVAL);
        }
        if len > self.cfg.max_object_size {
            return Err(Errno::EFBIG);
        }
        if self.file_key(obj).is_some() {
            return self.file_set_size(obj, len);
        }
        self.truncate_object(obj, len);
        Ok(())
    }

    /// Sets an object's size; shrinking frees the pages past the end and removes them
    /// from every mapping (private copies too, as Linux does), so later access there is
    /// `SIGBUS`, and zeroes the rest of a now partial last page, so growing again reads
    /// zeroes there.
    pub(crate) fn truncate_object(&mut self, obj: ObjectId, len: u64) {
        let Some(o) = self.objects.get_mut(&obj) else {
            return;
        };
        let old = o.size;
        o.size = len;
        self.mem.stub.object_resized(obj.0, len);
        if len >= old {
            return;
        }
        let first_gone = len.div_ceil(PAGE_SIZE);
        let gone: Vec<_> = o.pages.split_off(&first_gone).into_values().collect();
        if let Some(file) = o.file.as_mut() {
            file.dirty.split_off(&first_gone);
        }
        let keep = (len % PAGE_SIZE) as usize;
        if keep != 0
            && let Some(&f) = o.pages.get(&(len / PAGE_SIZE))
        {
            let mut head = alloc::vec![0u8; keep];
            self.mem.stub.read_frame(f, &mut head);
            self.mem.stub.fill_frame(f, &head);
        }
        for (_, c) in self.clients.iter_mut() {
            let spans: Vec<(u64, u64)> = c
                .regions
                .iter()
                .filter_map(|r| match r.backing {
                    RegionBacking::Object { obj: o2, offset } if o2 == obj => {
                        let cut = first_gone * PAGE_SIZE;
                        let region_end_off = offset + r.len();
                        (region_end_off > cut).then(|| {
                            let from = r.start + cut.saturating_sub(offset);
                            (from, r.end)
                        })
                    }
                    _ => None,
                })
                .collect();
            for (s, e) in spans {
                self.mem.stub.unmap(c.space, s, (e - s) / PAGE_SIZE);
                while let Some((&va, &f)) = c.anon.range(s..e).next() {
                    c.anon.remove(&va);
                    self.mem.release(f);
                }
            }
        }
        for f in gone {
            self.mem.release(f);
        }
    }

    /// The shm object `fd` of client `id` names, and whether the fd may write: for a
    /// kernel that gives the client a descriptor of the object's bytes of its own (the
    /// hosted runtime's real descriptors). Files, banks and devices are `None`.
    pub fn shm_of_fd(&self, id: ClientId, fd: Fd) -> Option<(ObjectId, bool)> {
        let e = self.clients.get(&id)?.fds.get(fd)?;
        match e.target {
            FdTarget::Shm(obj) if self.file_key(obj).is_none() => Some((obj, e.writable)),
            _ => None,
        }
    }

    /// Shm object `obj` grew to `len` bytes outside the server (a `write(2)` past its
    /// end through a descriptor of its bytes, which the hosted kernel allows): its size
    /// follows. It never shrinks this way, nor passes the largest object size, and a
    /// file's size is its pager's alone.
    pub fn object_grown(&mut self, obj: ObjectId, len: u64) {
        let grows = self
            .objects
            .get(&obj)
            .is_some_and(|o| o.file.is_none() && len > o.size);
        if grows && len <= self.cfg.max_object_size {
            self.truncate_object(obj, len);
        }
    }
}
