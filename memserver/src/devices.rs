//! Memory banks (seed 000: named pools of RAM an anonymous mapping can draw from) and
//! device windows (seed 002: physical windows such as a framebuffer): opening them, and
//! what a mapping of a device may be.

use crate::fd::{FdEntry, FdTarget};
use crate::kernel_stub::KernelStub;
use crate::permission;
use crate::region::DeviceId;
use crate::server::Server;
use ipc_proto::{
    CacheMode, ClientId, Errno, Fd, MapFlags, MmapArgs, OFlags, ObjName, PAGE_SIZE, Prot,
};

impl<K: KernelStub> Server<K> {
    /// Opens a memory bank for anonymous mappings from its pool.
    pub(crate) fn open_bank(&mut self, id: ClientId, name: &ObjName) -> Result<Fd, Errno> {
        let b = self
            .mem
            .frames
            .bank_by_name(name.as_str())
            .ok_or(Errno::ENOENT)?;
        let c = self.clients.get(&id).ok_or(Errno::ESRCH)?;
        if !permission::may_use_bank(&c.spec, b.0) {
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

    /// Opens a device window.
    pub(crate) fn open_device(
        &mut self,
        id: ClientId,
        name: &ObjName,
        oflag: OFlags,
    ) -> Result<Fd, Errno> {
        let write = permission::access_mode(oflag)?;
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
        if !permission::may_use_device(&c.spec, d) {
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

    /// The most a mapping of device `dev` may allow and its caching mode, if `mmap` may
    /// map `len` bytes of it as `a` asks through an fd open for writing or not.
    pub(crate) fn device_mapping(
        &self,
        dev: DeviceId,
        a: &MmapArgs,
        shared: bool,
        len: u64,
        writable_fd: bool,
    ) -> Result<(Prot, CacheMode), Errno> {
        let d = self.cfg.devices.get(dev.0 as usize).ok_or(Errno::EBADF)?;
        if d.frames.count == 0 {
            return Err(Errno::ENODEV);
        }
        // DESIGN: device windows are shared only.
        if !shared {
            return Err(Errno::EINVAL);
        }
        // Seed 001: a prot combination the implementation does not support.
        if a.prot.contains(Prot::EXEC) {
            return Err(Errno::ENOTSUP);
        }
        if a.prot.contains(Prot::WRITE) && !writable_fd {
            return Err(Errno::EACCES);
        }
        let size = d.frames.count * PAGE_SIZE;
        if a.offset > size || len > size - a.offset {
            return Err(Errno::ENXIO);
        }
        let cache = if a.flags.contains(MapFlags::WC) {
            CacheMode::WriteCombining
        } else {
            CacheMode::Uncached
        };
        let max_prot = if writable_fd {
            Prot::READ | Prot::WRITE
        } else {
            Prot::READ
        };
        Ok((max_prot, cache))
    }
}
