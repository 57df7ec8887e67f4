//! The C ABI: `ms_mmap`, `ms_munmap`, ... with POSIX conventions (`MAP_FAILED`, `-1` and
//! `errno`), over one process-wide connection made on first use to the server named by
//! the environment variable `MEMSERVER_SOCKET`. `include/memserver/sys/mman.h` declares
//! them, and with `MEMSERVER_STANDARD_NAMES` maps the standard names onto them.
//!
//! `ms_shm_open` returns a real descriptor of the process: one of the object's bytes
//! (read-only unless opened `O_RDWR`), so `read(2)`, `write(2)`, `lseek`, `dup`,
//! `select` and `fork` treat it as Linux does. The runtime knows it by the file it
//! names (device, inode and access mode), whichever number it goes by, and maps and
//! sizes it through the server's own fd for the object. Files of the server's RAM file
//! server (`ms_open_file`) are numbered from [`FD_OFFSET`] instead: their bytes are a
//! cache of the file that only the server may write back. `ms_close`, `ms_ftruncate`
//! and `ms_fstat` pass any other fd to the system call.

use crate::runtime::HostedClient;
use client_lib::{Client, c_args};
use ipc_proto::{Errno, Fd, ObjectKind};
use libc::{c_char, c_int, c_void, mode_t, off_t, size_t};
use std::ffi::CStr;
use std::sync::Mutex;

/// Where the server's fds start in the C program's numbering.
pub const FD_OFFSET: c_int = 1 << 29;

static CLIENT: Mutex<Option<Client<HostedClient>>> = Mutex::new(None);

/// The process's descriptors of shm objects, by the file they name and their access:
/// which server fd maps and sizes that object with those rights. Touched only under the
/// [`CLIENT`] lock, so a `fork` (whose prepare handler holds that lock) copies it whole;
/// the child's clone has the same server fds.
static OPEN_OBJECTS: Mutex<Vec<(FileId, Fd)>> = Mutex::new(Vec::new());

/// A descriptor's file (device, inode) and whether it is open for writing.
type FileId = (u64, u64, bool);

/// What `fd` names, if it is open.
fn file_id(fd: c_int) -> Option<FileId> {
    // SAFETY: a descriptor number the caller passed; fcntl and fstat only read it.
    let fd = unsafe { rustix::fd::BorrowedFd::borrow_raw(fd) };
    let mode = rustix::fs::fcntl_getfl(fd).ok()?;
    let st = rustix::fs::fstat(fd).ok()?;
    let writable = mode & rustix::fs::OFlags::RWMODE != rustix::fs::OFlags::RDONLY;
    Some((st.st_dev, st.st_ino, writable))
}

/// The server fd behind the process's descriptor `fd`: one of a shm object's bytes, or
/// a number from [`FD_OFFSET`].
fn server_fd(fd: c_int) -> Option<Fd> {
    if fd >= FD_OFFSET {
        return Some(Fd((fd - FD_OFFSET) as u32));
    }
    shm_object(fd).map(|(_, f)| f)
}

/// What the process's descriptor `fd` names, and the server fd behind it, if it is a
/// descriptor of a shm object's bytes.
fn shm_object(fd: c_int) -> Option<(FileId, Fd)> {
    // The connection's lock first, as everywhere (see OPEN_OBJECTS).
    let _client = CLIENT.lock().unwrap_or_else(|e| e.into_inner());
    let objects = OPEN_OBJECTS.lock().unwrap_or_else(|e| e.into_inner());
    if fd < 0 || objects.is_empty() {
        return None;
    }
    let id = file_id(fd)?;
    objects.iter().find(|(i, _)| *i == id).copied()
}

/// Whether a descriptor of the process names `id`.
fn still_open(id: FileId) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return true;
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<c_int>().ok())
        .any(|n| file_id(n) == Some(id))
}

type Guard = std::sync::MutexGuard<'static, Option<Client<HostedClient>>>;

thread_local! {
    /// The connection's lock, held by the forking thread from `prepare` to `parent` or
    /// `child`, so no call is in flight across a `fork`.
    static FORKING: std::cell::RefCell<Option<(Guard, Option<u64>)>> =
        const { std::cell::RefCell::new(None) };
}

/// `pthread_atfork` prepare: the server clones this client for the child.
extern "C" fn fork_prepare() {
    let mut guard = CLIENT.lock().unwrap_or_else(|e| e.into_inner());
    let token = guard
        .as_mut()
        .and_then(|c| c.transport().fork_token(None).ok());
    FORKING.with(|f| *f.borrow_mut() = Some((guard, token)));
}

/// `pthread_atfork` parent: the lock goes back (the clone waits for the child).
extern "C" fn fork_parent() {
    FORKING.with(|f| drop(f.borrow_mut().take()));
}

/// `pthread_atfork` child: a connection of its own, adopting the clone; the parent's
/// connection is left to the parent.
extern "C" fn fork_child() {
    FORKING.with(|f| {
        let Some((mut guard, token)) = f.borrow_mut().take() else {
            return;
        };
        let Some(old) = guard.take() else {
            return;
        };
        let old = old.into_transport();
        let setup = old.setup();
        old.forsake();
        let adopted =
            token.and_then(|t| HostedClient::adopt(&socket_path(), t, setup.windows()).ok());
        // Without the clone the child's inherited window is not served: its next call
        // connects afresh, as a new client.
        *guard = adopted.map(Client::new);
    });
}

fn socket_path() -> String {
    std::env::var("MEMSERVER_SOCKET").unwrap_or_else(|_| "/tmp/memserver.sock".into())
}

/// Sets the calling thread's `errno`.
pub fn set_errno(e: i32) {
    // SAFETY: the calling thread's errno slot, which libc keeps valid.
    unsafe { *libc::__errno_location() = e };
}

/// Runs `f` on the connection, making it first if needed; an error sets `errno`.
fn with<T>(f: impl FnOnce(&mut Client<HostedClient>) -> Result<T, Errno>) -> Option<T> {
    let mut guard = CLIENT.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_none() {
        static ATFORK: std::sync::Once = std::sync::Once::new();
        // SAFETY: registers three `extern "C"` handlers with no arguments, which live for
        // the program's life.
        ATFORK.call_once(|| unsafe {
            libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child));
        });
        match HostedClient::connect(&socket_path()) {
            Ok(c) => *guard = Some(Client::new(c)),
            Err(e) => {
                set_errno(e.raw_os_error().unwrap_or(libc::ECONNREFUSED));
                return None;
            }
        }
    }
    let client = guard.as_mut()?;
    match f(client) {
        Ok(v) => Some(v),
        Err(e) => {
            set_errno(e as i32);
            None
        }
    }
}

/// The server's windows for this process (`[lo, hi)` each: the main one and the
/// `MAP_32BIT` one), connecting first if needed; `Err(errno)` when the server cannot be
/// reached. For an interposer that must tell the server's memory from the host's.
pub fn windows() -> Result<[(u64, u64); 2], c_int> {
    with(|c| Ok(c.transport().setup()))
        .map(|s| s.windows())
        // SAFETY: the calling thread's errno slot, which `with` just set.
        .ok_or_else(|| unsafe { *libc::__errno_location() })
}

/// Whether `[addr, addr + len)` lies in one of the server's windows (connecting first
/// if needed; `false` when the server cannot be reached).
pub fn owns(addr: u64, len: u64) -> bool {
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    windows().is_ok_and(|ws| ws.iter().any(|&(lo, hi)| addr >= lo && end <= hi))
}

/// Tells the server that this process's resource limits (`pid == None`) or process
/// `pid`'s changed, so it reads them again; nothing when this process has no connection
/// yet (they are read when it connects). `Err(errno)` when the server refused.
pub fn limits_changed(pid: Option<i32>) -> Result<(), c_int> {
    let mut guard = CLIENT.lock().unwrap_or_else(|e| e.into_inner());
    match guard.as_mut() {
        Some(c) => c.transport().limits_changed(pid).map_err(|e| e as c_int),
        None => Ok(()),
    }
}

fn status(r: Option<()>) -> c_int {
    if r.is_some() { 0 } else { -1 }
}

/// `mmap(2)`. `fd` is `-1`, an fd from [`ms_shm_open`], or the process's own fd of a
/// regular file (sent to the server, which places the mapping; the host's page cache
/// holds its pages); any other open fd is `ENODEV`, a closed one `EBADF`.
#[unsafe(no_mangle)]
pub extern "C" fn ms_mmap(
    addr: *mut c_void,
    len: size_t,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: off_t,
) -> *mut c_void {
    let fd = match fd {
        -1 => -1,
        _ if flags & libc::MAP_ANONYMOUS != 0 => -1,
        fd if let Some(f) = server_fd(fd) => f.0 as c_int,
        fd => {
            // SAFETY: F_GETFD only asks whether `fd` is open.
            if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
                set_errno(libc::EBADF);
                return libc::MAP_FAILED;
            }
            // SAFETY: `fd` is open (just checked) and the caller keeps it open for the
            // length of the call, as for any system call taking an fd.
            let file = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            return with(|c| {
                let args = c_args::mmap(addr as u64, len as u64, prot, flags, -1, off)?;
                c.transport().mmap_file(&args, file)
            })
            .map_or(libc::MAP_FAILED, |a| a as *mut c_void);
        }
    };
    with(|c| c.mmap_c(addr as u64, len as u64, prot, flags, fd, off))
        .map_or(libc::MAP_FAILED, |a| a as *mut c_void)
}

/// `munmap(2)`.
#[unsafe(no_mangle)]
pub extern "C" fn ms_munmap(addr: *mut c_void, len: size_t) -> c_int {
    status(with(|c| c.munmap(addr as u64, len as u64)))
}

/// `mremap(2)`: `new_addr` is read only with `MREMAP_FIXED` (C passes it as the fifth,
/// variadic argument; a fixed fifth parameter is ABI-compatible on x86-64).
#[unsafe(no_mangle)]
pub extern "C" fn ms_mremap(
    old_addr: *mut c_void,
    old_len: size_t,
    new_len: size_t,
    flags: c_int,
    new_addr: *mut c_void,
) -> *mut c_void {
    let fixed = flags & libc::MREMAP_FIXED != 0;
    let new_addr = if fixed { new_addr as u64 } else { 0 };
    with(|c| {
        c.mremap_c(
            old_addr as u64,
            old_len as u64,
            new_len as u64,
            flags,
            new_addr,
        )
    })
    .map_or(libc::MAP_FAILED, |a| a as *mut c_void)
}

/// `madvise(2)`.
#[unsafe(no_mangle)]
pub extern "C" fn ms_madvise(addr: *mut c_void, len: size_t, advice: c_int) -> c_int {
    status(with(|c| c.madvise_c(addr as u64, len as u64, advice)))
}

/// `mprotect(2)`.
#[unsafe(no_mangle)]
pub extern "C" fn ms_mprotect(addr: *mut c_void, len: size_t, prot: c_int) -> c_int {
    status(with(|c| {
        c.mprotect(addr as u64, len as u64, c_args::prot(prot)?)
    }))
}

/// `msync(2)`: the server checks and writes back what it holds; then the host syncs
/// the range too, which is what writes a host file's pages (its page cache is theirs).
#[unsafe(no_mangle)]
pub extern "C" fn ms_msync(addr: *mut c_void, len: size_t, flags: c_int) -> c_int {
    status(with(|c| {
        c.msync(addr as u64, len as u64, c_args::msync_flags(flags)?)?;
        // An address, never dereferenced here: the host looks up its mappings.
        let start = addr as usize as *mut c_void;
        // SAFETY: msync only reads the mappings of a range the server just found mapped
        // (and so the host too: its mappings mirror the server's regions).
        if unsafe { libc::msync(start, len, flags) } != 0 {
            let e = std::io::Error::last_os_error().raw_os_error();
            let raw = e.and_then(|e| u16::try_from(e).ok());
            return Err(raw.and_then(Errno::from_raw).unwrap_or(Errno::EIO));
        }
        Ok(())
    }))
}

/// `mlock(2)`.
#[unsafe(no_mangle)]
pub extern "C" fn ms_mlock(addr: *const c_void, len: size_t) -> c_int {
    status(with(|c| c.mlock(addr as u64, len as u64)))
}

/// `munlock(2)`.
#[unsafe(no_mangle)]
pub extern "C" fn ms_munlock(addr: *const c_void, len: size_t) -> c_int {
    status(with(|c| c.munlock(addr as u64, len as u64)))
}

/// `mlockall(2)`.
#[unsafe(no_mangle)]
pub extern "C" fn ms_mlockall(flags: c_int) -> c_int {
    status(with(|c| c.mlockall(c_args::mlockall_flags(flags)?)))
}

/// `munlockall(2)`.
#[unsafe(no_mangle)]
pub extern "C" fn ms_munlockall() -> c_int {
    status(with(|c| c.munlockall()))
}

fn name_arg(name: *const c_char) -> Result<&'static str, Errno> {
    if name.is_null() {
        return Err(Errno::EFAULT);
    }
    // SAFETY: the caller passes a NUL-terminated string, as shm_open's contract says; it
    // is only read during this call (the 'static is not kept beyond it).
    let s = unsafe { CStr::from_ptr(name) };
    s.to_str().map_err(|_| Errno::EINVAL)
}

/// `shm_open(3)`: returns a descriptor of the object's bytes (close-on-exec, as
/// glibc's).
#[unsafe(no_mangle)]
pub extern "C" fn ms_shm_open(name: *const c_char, oflag: c_int, mode: mode_t) -> c_int {
    with(|c| {
        let fd = c.shm_open(
            name_arg(name)?,
            c_args::oflags(oflag)?,
            c_args::mode(mode).bits(),
        )?;
        let mine = c.transport().take_descriptor(fd);
        let Some((mine, id)) = mine.and_then(|d| {
            let id = file_id(rustix::fd::AsRawFd::as_raw_fd(&d))?;
            Some((d, id))
        }) else {
            let _ = c.close(fd);
            return Err(Errno::EIO);
        };
        // One server fd serves every descriptor of the object with the same access.
        let mut objects = OPEN_OBJECTS.lock().unwrap_or_else(|e| e.into_inner());
        if objects.iter().any(|(i, _)| *i == id) {
            let _ = c.close(fd);
        } else {
            objects.push((id, fd));
        }
        Ok(rustix::fd::IntoRawFd::into_raw_fd(mine))
    })
    .unwrap_or(-1)
}

/// Opens a file of the server's file server for mapping (`O_RDONLY` or `O_RDWR`,
/// optionally `O_TRUNC`): an fd from [`FD_OFFSET`] up, which takes `ms_mmap`,
/// `ms_ftruncate`, `ms_fstat` and `ms_close`.
#[unsafe(no_mangle)]
pub extern "C" fn ms_open_file(path: *const c_char, oflag: c_int) -> c_int {
    with(|c| {
        let fd = c.open_file(name_arg(path)?, c_args::oflags(oflag)?)?;
        Ok(FD_OFFSET + fd.0 as c_int)
    })
    .unwrap_or(-1)
}

/// `shm_unlink(3)`.
#[unsafe(no_mangle)]
pub extern "C" fn ms_shm_unlink(name: *const c_char) -> c_int {
    status(with(|c| c.shm_unlink(name_arg(name)?)))
}

/// `ftruncate(2)`: a server fd goes to the server, any other to libc.
#[unsafe(no_mangle)]
pub extern "C" fn ms_ftruncate(fd: c_int, len: off_t) -> c_int {
    match server_fd(fd) {
        Some(f) => status(with(|c| c.ftruncate(f, len))),
        // SAFETY: the system call with the caller's arguments (not libc's `ftruncate`,
        // which an interposing library may be: it would call this again).
        None => unsafe { libc::syscall(libc::SYS_ftruncate, fd, len) as c_int },
    }
}

/// `close(2)`: a number from [`FD_OFFSET`] goes to the server; any other descriptor
/// is closed by libc, and when it was the process's last of a shm object with its
/// access, the server fd behind it is closed too.
#[unsafe(no_mangle)]
pub extern "C" fn ms_close(fd: c_int) -> c_int {
    if fd >= FD_OFFSET {
        return status(with(|c| c.close(Fd((fd - FD_OFFSET) as u32))));
    }
    let object = shm_object(fd);
    // SAFETY: the system call with the caller's argument (see ms_ftruncate).
    let r = unsafe { libc::syscall(libc::SYS_close, fd) as c_int };
    if let Some((id, f)) = object {
        let mut guard = CLIENT.lock().unwrap_or_else(|e| e.into_inner());
        let mut objects = OPEN_OBJECTS.lock().unwrap_or_else(|e| e.into_inner());
        if !still_open(id) && objects.iter().any(|&(i, g)| i == id && g == f) {
            objects.retain(|(i, _)| *i != id);
            if let Some(c) = guard.as_mut() {
                let _ = c.close(f);
            }
        }
    }
    r
}

/// `fstat(2)`: a server fd is described by the server, any other by libc.
///
/// # Safety
/// `st` must point to writable memory for a `struct stat`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ms_fstat(fd: c_int, st: *mut libc::stat) -> c_int {
    let Some(f) = server_fd(fd) else {
        // SAFETY: the caller's contract passes through.
        return unsafe { libc::syscall(libc::SYS_fstat, fd, st) as c_int };
    };
    if st.is_null() {
        set_errno(libc::EFAULT);
        return -1;
    }
    let Some(s) = with(|c| c.fstat(f)) else {
        return -1;
    };
    // SAFETY: `st` is valid for writes (the caller's contract); zeroed is a valid stat.
    unsafe {
        let mut out: libc::stat = std::mem::zeroed();
        out.st_size = s.size as off_t;
        out.st_mode = s.mode.bits()
            | match s.kind {
                ObjectKind::Shm | ObjectKind::File => libc::S_IFREG,
                ObjectKind::Bank | ObjectKind::Device => libc::S_IFCHR,
            };
        out.st_uid = s.uid;
        out.st_gid = s.gid;
        out.st_ino = s.ino;
        out.st_nlink = 1;
        out.st_blksize = 4096;
        st.write(out);
    }
    0
}
