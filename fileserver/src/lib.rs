//! A small file server for the memory server's file mappings: a RAM file system of
//! writable files, plus read-only files loaded from a tar (ustar) image, answering the
//! pager protocol ([`ipc_proto::pager`]) that the memory server speaks to page files in
//! and write dirty pages back.
//!
//! It is a plain library (`no_std` + `alloc`): the in-process runtime calls
//! [`RamFs::handle`] directly, a kernel or a hosted process puts it behind a transport
//! with [`RamFs::handle_message`], the same encoded bytes everywhere. Bad input (a
//! malformed message, an unknown object, a corrupt archive) is an errno, never a panic.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod fixture;
mod tar;

pub use tar::{Entry as TarEntry, write as write_tar};

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use ipc_proto::pager::{
    FilePath, ObjectKey, PAGER_PROTOCOL_MAJOR, PAGER_PROTOCOL_MINOR, PageData, PagerReply,
    PagerRequest, PagerResponse,
};
use ipc_proto::{Errno, PAGE_SIZE};

/// One file.
struct Inode {
    data: Vec<u8>,
    mode: u32,
    uid: u32,
    gid: u32,
    /// From the boot image: never written.
    read_only: bool,
}

/// The file system: files by path, and by the object key the pager protocol names them
/// with (their inode number).
pub struct RamFs {
    paths: BTreeMap<FilePath, ObjectKey>,
    inodes: BTreeMap<ObjectKey, Inode>,
    next: u64,
    max_file_size: u64,
}

impl RamFs {
    /// An empty file system whose files may grow to `max_file_size` bytes (`EFBIG`
    /// beyond).
    pub fn new(max_file_size: u64) -> RamFs {
        RamFs {
            paths: BTreeMap::new(),
            inodes: BTreeMap::new(),
            next: 1,
            max_file_size,
        }
    }

    /// Creates a writable file at `path` with `data`, permission bits `mode` (the low
    /// nine bits) and owner `uid`/`gid`. An invalid path is `EINVAL` (`ENAMETOOLONG`),
    /// an existing one `EEXIST`, too much data `EFBIG`.
    pub fn create(
        &mut self,
        path: &str,
        mode: u32,
        uid: u32,
        gid: u32,
        data: &[u8],
    ) -> Result<ObjectKey, Errno> {
        self.insert(path, mode, uid, gid, data, false)
    }

    /// Adds every regular file of the ustar archive `image` as a read-only file (with
    /// the archive's modes and owners); directories and other entries are skipped. A
    /// corrupt or truncated archive is `EINVAL`, a path already present (or named twice)
    /// `EEXIST`, a file too big `EFBIG`, and each adds nothing. The number of files added.
    pub fn load_tar(&mut self, image: &[u8]) -> Result<usize, Errno> {
        let files = tar::files(image)?;
        // Everything is checked before anything is added.
        let mut seen = alloc::collections::BTreeSet::new();
        for f in &files {
            if self.paths.contains_key(&f.path) || !seen.insert(&f.path) {
                return Err(Errno::EEXIST);
            }
            if f.data.len() as u64 > self.max_file_size {
                return Err(Errno::EFBIG);
            }
        }
        for f in &files {
            self.insert(f.path.as_str(), f.mode, f.uid, f.gid, f.data, true)?;
        }
        Ok(files.len())
    }

    fn insert(
        &mut self,
        path: &str,
        mode: u32,
        uid: u32,
        gid: u32,
        data: &[u8],
        read_only: bool,
    ) -> Result<ObjectKey, Errno> {
        let path = FilePath::new(path)?;
        if data.len() as u64 > self.max_file_size {
            return Err(Errno::EFBIG);
        }
        if self.paths.contains_key(&path) {
            return Err(Errno::EEXIST);
        }
        let key = ObjectKey(self.next);
        self.next += 1;
        self.paths.insert(path, key);
        self.inodes.insert(
            key,
            Inode {
                data: data.to_vec(),
                mode: mode & 0o777,
                uid,
                gid,
                read_only,
            },
        );
        Ok(key)
    }

    /// A file's contents, for tests and tools.
    pub fn contents(&self, path: &str) -> Option<&[u8]> {
        let key = self.paths.get(&FilePath::new(path).ok()?)?;
        Some(&self.inodes.get(key)?.data)
    }

    /// The number of files.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Whether there is no file.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Answers one pager request.
    pub fn handle(&mut self, req: &PagerRequest<'_>) -> PagerResponse<'_> {
        match req {
            PagerRequest::Hello { major, .. } => {
                if *major != PAGER_PROTOCOL_MAJOR {
                    return Err(Errno::ENOTSUP);
                }
                Ok(PagerReply::Hello {
                    major: PAGER_PROTOCOL_MAJOR,
                    minor: PAGER_PROTOCOL_MINOR,
                })
            }
            PagerRequest::Lookup {
                path,
                write,
                uid,
                gid,
            } => {
                let key = *self.paths.get(path).ok_or(Errno::ENOENT)?;
                let f = self.inode(key)?;
                if !allowed(f, *uid, *gid, *write) || (*write && f.read_only) {
                    return Err(Errno::EACCES);
                }
                Ok(PagerReply::Object {
                    object: key,
                    size: f.data.len() as u64,
                    mode: f.mode,
                    uid: f.uid,
                    gid: f.gid,
                })
            }
            PagerRequest::PageIn { object, offset } => {
                let f = self.inode(*object)?;
                let start = page_offset(*offset)?;
                if start >= f.data.len() {
                    return Err(Errno::ENXIO);
                }
                let end = f.data.len().min(start + PAGE_SIZE as usize);
                Ok(PagerReply::Data(PageData::new(&f.data[start..end])?))
            }
            PagerRequest::PageOut {
                object,
                offset,
                data,
            } => {
                let start = page_offset(*offset)?;
                let f = self.writable(*object)?;
                // Write-back never grows a file: only its size request does.
                if start < f.data.len() {
                    let end = f.data.len().min(start + data.as_slice().len());
                    f.data[start..end].copy_from_slice(&data.as_slice()[..end - start]);
                }
                Ok(PagerReply::Done)
            }
            PagerRequest::SetSize { object, size } => {
                if *size > self.max_file_size {
                    return Err(Errno::EFBIG);
                }
                let f = self.writable(*object)?;
                f.data.resize(*size as usize, 0);
                Ok(PagerReply::Done)
            }
            PagerRequest::Release { object } => {
                // A RAM file keeps nothing per user beyond the file itself.
                self.inode(*object)?;
                Ok(PagerReply::Done)
            }
        }
    }

    /// The file system as a pager transport for a memory server in the same address
    /// space: a closure taking an encoded request and writing the encoded response (the
    /// shape of `memserver::Pager`).
    pub fn into_pager(mut self) -> impl FnMut(&[u8], &mut [u8]) -> Result<usize, Errno> + Send {
        move |req, out| Ok(self.handle_message(req, out))
    }

    /// Answers one encoded pager request with an encoded response written to `out`
    /// (which should hold [`ipc_proto::MAX_PAGER_RESPONSE_LEN`] bytes); its length.
    /// Undecodable bytes get the decoder's errno as the response.
    pub fn handle_message(&mut self, bytes: &[u8], out: &mut [u8]) -> usize {
        let resp = ipc_proto::decode_pager_request(bytes).and_then(|req| self.handle(&req));
        ipc_proto::encode_pager_response(&resp, out)
            .or_else(|e| ipc_proto::encode_pager_response(&Err(e), out))
            .unwrap_or(0)
    }

    fn inode(&self, key: ObjectKey) -> Result<&Inode, Errno> {
        self.inodes.get(&key).ok_or(Errno::EBADF)
    }

    fn writable(&mut self, key: ObjectKey) -> Result<&mut Inode, Errno> {
        let f = self.inodes.get_mut(&key).ok_or(Errno::EBADF)?;
        if f.read_only {
            return Err(Errno::EACCES);
        }
        Ok(f)
    }
}

/// A page-aligned offset as an index; anything else is `EINVAL` (and an offset no
/// file can reach is past every end: `ENXIO`).
fn page_offset(offset: u64) -> Result<usize, Errno> {
    if !offset.is_multiple_of(PAGE_SIZE) {
        return Err(Errno::EINVAL);
    }
    usize::try_from(offset).map_err(|_| Errno::ENXIO)
}

/// The mode bits' verdict for a user (root passes).
fn allowed(f: &Inode, uid: u32, gid: u32, write: bool) -> bool {
    if uid == 0 {
        return true;
    }
    let bits = if uid == f.uid {
        f.mode >> 6
    } else if gid == f.gid {
        f.mode >> 3
    } else {
        f.mode
    } & 7;
    bits & 4 != 0 && (!write || bits & 2 != 0)
}

/// A file of an archive, before it joins the file system.
struct TarFile<'a> {
    path: FilePath,
    mode: u32,
    uid: u32,
    gid: u32,
    data: &'a [u8],
}

#[cfg(test)]
mod tests;
