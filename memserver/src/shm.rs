//! The fd calls: `shm_open`, `shm_unlink`, `ftruncate`, `close`, `fstat`, and opening
//! banks and devices.

use crate::fd::{FdEntry, FdTarget};
use crate::frame_alloc::BankId;
use crate::kernel_stub::KernelStub;
use crate::object::{MAY_WRITE, ObjectId};
use crate::region::{DeviceId, RegionBacking};
use crate::server::Server;
use crate::vm::may_for;
use alloc::string::String;
use alloc::vec::Vec;
use ipc_proto::{ClientId, Errno, Fd, Mode, OFlags, ObjName, ObjectKind, PAGE_SIZE, ShmName, Stat};

impl<K: KernelStub> Server<K> {
    /// `shm_open`.
    pub(crate) fn shm_open(
        &mut self,
        id: ClientId,
        name: &ShmName,
        oflag: OFlags,
        mode: Mode,
    ) -> Result<Fd, Errno> {
        let write = access_mode(oflag)?;
        let c = self.clients.get(&id).ok_or(Errno::ESRCH)?;
        let (uid, gid) = (c.spec.uid, c.spec.gid);
        self.check_fd_room(id)?;
        let obj = match self.names.get(name.component()).copied() {
            Some(obj) => {
                if oflag.contains(OFlags::CREAT | OFlags::EXCL) {
                    return Err(Errno::EEXIST);
                }
                let o = self.objects.get(&obj).ok_or(Errno::ENOENT)?;
                let mut want = may_for(write);
                if oflag.contains(OFlags::TRUNC) {
                    want |= MAY_WRITE;
                }
                if !o.permits(uid, gid, want) {
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
                if self.names.len() >= self.cfg.max_shm_objects as usize {
                    return Err(Errno::ENOSPC);
                }
                let name = Some(String::from(name.component()));
                self.new_object(name, mode, uid, gid, BankId::DEFAULT)
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
        let uid = self.clients.get(&id).ok_or(Errno::ESRCH)?.spec.uid;
        let obj = *self.names.get(name.component()).ok_or(Errno::ENOENT)?;
        let o = self.objects.get_mut(&obj).ok_or(Errno::ENOENT)?;
        // /dev/shm is a sticky directory: only the owner (or root) may unlink.
        if uid != 0 && uid != o.uid {
            return Err(Errno::EACCES);
        }
        o.name = None;
        self.names.remove(name.component());
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
                    self.mem.frames.decref(f);
                }
            }
        }
        for f in gone {
            self.mem.release(f);
        }
    }

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

    /// Opens a memory bank (seed 000) for anonymous mappings from its pool.
    pub(crate) fn open_bank(&mut self, id: ClientId, name: &ObjName) -> Result<Fd, Errno> {
        let b = self
            .mem
            .frames
            .bank_by_name(name.as_str())
            .ok_or(Errno::ENOENT)?;
        let c = self.clients.get(&id).ok_or(Errno::ESRCH)?;
        if c.spec.banks & (1u32 << (b.0 % 32)) == 0 || b.0 >= 32 {
            return Err(Errno::EACCES);
        }
        self.check_fd_room(id)?;
        Ok(self.open_fd(
            id,
            FdEntry {
                target: FdTarget::Bank(b),
                writable: true,
            },
        ))
    }

    /// Opens a device window (seed 002).
    pub(crate) fn open_device(
        &mut self,
        id: ClientId,
        name: &ObjName,
        oflag: OFlags,
    ) -> Result<Fd, Errno> {
        let write = access_mode(oflag)?;
        if !(oflag - OFlags::ACCMODE - OFlags::CLOEXEC).is_empty() {
            return Err(Errno::EINVAL);
        }
        let d = self
            .cfg
            .devices
            .iter()
            .position(|d| d.name == name.as_str())
            .ok_or(Errno::ENOENT)?;
        let c = self.clients.get(&id).ok_or(Errno::ESRCH)?;
        if d >= 32 || c.spec.devices & (1u32 << d) == 0 {
            return Err(Errno::EACCES);
        }
        self.check_fd_room(id)?;
        let target = FdTarget::Device(DeviceId(d as u8));
        Ok(self.open_fd(
            id,
            FdEntry {
                target,
                writable: write,
            },
        ))
    }

    /// `EMFILE` at the client's fd limit, `ENFILE` at the system's.
    pub(crate) fn check_fd_room(&self, id: ClientId) -> Result<(), Errno> {
        let c = self.clients.get(&id).ok_or(Errno::ESRCH)?;
        if c.fds.len() >= c.spec.limits.max_fds as usize {
            return Err(Errno::EMFILE);
        }
        if self.open_files >= self.cfg.max_open_files {
            return Err(Errno::ENFILE);
        }
        Ok(())
    }

    pub(crate) fn open_fd(&mut self, id: ClientId, entry: FdEntry) -> Fd {
        if let FdTarget::Shm(obj) = entry.target
            && let Some(o) = self.objects.get_mut(&obj)
        {
            o.open_fds += 1;
            if entry.writable {
                o.writers += 1;
            }
        }
        self.open_files += 1;
        match self.clients.get_mut(&id) {
            Some(c) => c.fds.insert(entry),
            None => Fd(u32::MAX),
        }
    }
}

/// `O_RDONLY` (false) or `O_RDWR` (true); `O_WRONLY` and the invalid `3` are `EINVAL`
/// (POSIX leaves shm_open with them unspecified).
pub(crate) fn access_mode(oflag: OFlags) -> Result<bool, Errno> {
    match oflag & OFlags::ACCMODE {
        m if m == OFlags::RDONLY => Ok(false),
        m if m == OFlags::RDWR => Ok(true),
        _ => Err(Errno::EINVAL),
    }
}
