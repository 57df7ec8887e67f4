//! [`ObjectMemory`]: the bytes of the server's memory objects, one memfd each (every
//! shm object, shared anonymous mapping and file cache), plus one per device window.
//!
//! A client that may map an object receives that object's memfd (reopened read-only
//! where its access is read-only) and nothing else: isolation is the host kernel's.
//! When the server frees a page its hole is punched, so every client's mapping of it
//! loses the page at once and no freed byte stays readable; a destroyed object's memfd
//! is truncated to nothing before it is closed, so a client that kept a copy of the
//! descriptor keeps no bytes.

use memserver::object::ObjectId;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{FallocateFlags, MemfdFlags, Mode, OFlags};
use std::collections::BTreeMap;
use std::io;

const P: u64 = 4096;

/// Memfds of objects and devices.
#[derive(Default)]
pub struct ObjectMemory {
    objects: BTreeMap<ObjectId, OwnedFd>,
    devices: BTreeMap<u8, OwnedFd>,
}

fn memfd(name: &str, size: u64) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC)?;
    // Readable by the server's user only: a client of another uid holding a read-only
    // handout cannot reopen it writable through /proc (a memfd is created 0777).
    rustix::fs::fchmod(&fd, Mode::RUSR)?;
    rustix::fs::ftruncate(&fd, size)?;
    Ok(fd)
}

impl ObjectMemory {
    /// The memfd of `obj`, made with `size` bytes if it has none yet.
    pub fn object(&mut self, obj: ObjectId, size: u64) -> io::Result<BorrowedFd<'_>> {
        let fd: &OwnedFd = match self.objects.entry(obj) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(memfd(&format!("memserver-object-{}", obj.0), size)?)
            }
        };
        Ok(fd.as_fd())
    }

    /// The memfd of device window `dev`, made with `size` bytes if it has none yet.
    pub fn device(&mut self, dev: u8, size: u64) -> io::Result<BorrowedFd<'_>> {
        let fd: &OwnedFd = match self.devices.entry(dev) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(memfd(&format!("memserver-device-{dev}"), size)?)
            }
        };
        Ok(fd.as_fd())
    }

    /// The memfd of `obj`, if it has one.
    pub fn existing(&self, obj: ObjectId) -> Option<BorrowedFd<'_>> {
        self.objects.get(&obj).map(|f| f.as_fd())
    }

    /// A descriptor of `fd` for a client: the same open file where the client may
    /// write, a read-only one (a new open of the same memfd) where it may only read, so
    /// the host refuses what the server refused even to a client that maps by hand.
    pub fn handout(fd: BorrowedFd<'_>, writable: bool) -> io::Result<OwnedFd> {
        if writable {
            return Ok(rustix::io::fcntl_dupfd_cloexec(fd, 0)?);
        }
        let path = format!("/proc/self/fd/{}", rustix::fd::AsRawFd::as_raw_fd(&fd));
        Ok(rustix::fs::open(
            path.as_str(),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?)
    }

    /// Writes page `idx` of `obj` (which must have a memfd): `data` then zeros.
    pub fn write_page(&self, obj: ObjectId, idx: u64, data: &[u8]) -> io::Result<()> {
        let fd = self.existing(obj).ok_or(io::ErrorKind::NotFound)?;
        let mut page = [0u8; P as usize];
        let n = data.len().min(page.len());
        page[..n].copy_from_slice(&data[..n]);
        write_all_at(fd, &page, idx * P)
    }

    /// Makes sure page `idx` of `obj` (which must have a memfd) exists, keeping its
    /// bytes: zeros where it was a hole.
    pub fn touch_page(&self, obj: ObjectId, idx: u64) -> io::Result<()> {
        let fd = self.existing(obj).ok_or(io::ErrorKind::NotFound)?;
        touch(fd, idx)
    }

    /// Writes page `idx` of device `dev` (which must have a memfd).
    pub fn write_device_page(&self, dev: u8, idx: u64, data: &[u8]) -> io::Result<()> {
        let fd = self.devices.get(&dev).ok_or(io::ErrorKind::NotFound)?;
        let mut page = [0u8; P as usize];
        let n = data.len().min(page.len());
        page[..n].copy_from_slice(&data[..n]);
        write_all_at(fd.as_fd(), &page, idx * P)
    }

    /// Makes sure page `idx` of device `dev` exists in its memfd (zero if new, its
    /// bytes kept otherwise): a device's frames are never zeroed.
    pub fn touch_device_page(&self, dev: u8, idx: u64) -> io::Result<()> {
        let fd = self.devices.get(&dev).ok_or(io::ErrorKind::NotFound)?;
        touch(fd.as_fd(), idx)
    }

    /// Reads page `idx` of `obj` into `out` (zeros where it has none).
    pub fn read_page(&self, obj: ObjectId, idx: u64, out: &mut [u8]) {
        out.fill(0);
        if let Some(fd) = self.existing(obj) {
            let _ = rustix::io::pread(fd, out, idx * P);
        }
    }

    /// Reads page `idx` of device `dev` into `out` (zeros where it has none).
    pub fn read_device_page(&self, dev: u8, idx: u64, out: &mut [u8]) {
        out.fill(0);
        if let Some(fd) = self.devices.get(&dev) {
            let _ = rustix::io::pread(fd, out, idx * P);
        }
    }

    /// Frees page `idx` of `obj`: the hole reads zero and leaves every mapping of it.
    pub fn punch(&self, obj: ObjectId, idx: u64) {
        if let Some(fd) = self.existing(obj) {
            let _ = rustix::fs::fallocate(
                fd,
                FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
                idx * P,
                P,
            );
        }
    }

    /// `obj` now has `size` bytes: pages past it leave every mapping (a later access
    /// there is `SIGBUS`, as the server decides).
    pub fn resize(&self, obj: ObjectId, size: u64) {
        if let Some(fd) = self.existing(obj) {
            let _ = rustix::fs::ftruncate(fd, size);
        }
    }

    /// `obj` is gone: its bytes go before its descriptor does.
    pub fn destroy(&mut self, obj: ObjectId) {
        if let Some(fd) = self.objects.remove(&obj) {
            let _ = rustix::fs::ftruncate(&fd, 0);
        }
    }
}

/// Page `idx` of `fd` exists, zero if it was a hole, its bytes kept otherwise.
fn touch(fd: BorrowedFd<'_>, idx: u64) -> io::Result<()> {
    rustix::fs::fallocate(fd, FallocateFlags::KEEP_SIZE, idx * P, P)?;
    Ok(())
}

fn write_all_at(fd: BorrowedFd<'_>, mut buf: &[u8], mut at: u64) -> io::Result<()> {
    while !buf.is_empty() {
        let n = rustix::io::pwrite(fd, buf, at)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
        at += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_punched_page_reads_zero_and_a_destroyed_object_keeps_no_bytes() {
        let mut m = ObjectMemory::default();
        let obj = ObjectId(7);
        let kept = ObjectMemory::handout(m.object(obj, 2 * P).expect("memfd"), true).expect("fd");
        m.write_page(obj, 0, b"secret").expect("write");
        m.write_page(obj, 1, b"other").expect("write");
        let mut page = [0u8; P as usize];
        m.read_page(obj, 0, &mut page);
        assert_eq!(&page[..6], b"secret");
        m.punch(obj, 0);
        m.read_page(obj, 0, &mut page);
        assert!(
            page.iter().all(|&b| b == 0),
            "a freed byte is still readable"
        );
        m.destroy(obj);
        // A client that kept its descriptor finds nothing.
        let st = rustix::fs::fstat(&kept).expect("fstat");
        assert_eq!(st.st_size, 0);
    }

    #[test]
    fn a_memfd_is_readable_by_its_owner_only() {
        let mut m = ObjectMemory::default();
        let fd = m.object(ObjectId(2), P).expect("memfd");
        let st = rustix::fs::fstat(fd).expect("fstat");
        assert_eq!(st.st_mode & 0o777, 0o400);
    }

    #[test]
    fn a_read_only_handout_cannot_be_mapped_shared_and_writable() {
        let mut m = ObjectMemory::default();
        let fd = m.object(ObjectId(1), P).expect("memfd");
        let ro = ObjectMemory::handout(fd, false).expect("ro");
        // SAFETY: a fresh mapping request the kernel refuses; nothing is mapped.
        let r = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                P as usize,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::SHARED,
                &ro,
                0,
            )
        };
        assert_eq!(r.err(), Some(rustix::io::Errno::ACCESS));
    }
}
