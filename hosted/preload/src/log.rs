//! What the library says on stderr: with `MEMSERVER_LOG=debug`, one line per call
//! saying where it went; always, one line the first time the server cannot be reached.
//! Lines are formatted on the stack and written with one `write(2)`: nothing here
//! allocates, so a program's own allocator (which may call `mmap`) is never re-entered.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// 0: not read yet; 1: quiet; 2: debug.
static LEVEL: AtomicU8 = AtomicU8::new(0);
static UNREACHABLE_SAID: AtomicBool = AtomicBool::new(false);

/// A line of at most 256 bytes (longer ones are cut).
struct Line {
    buf: [u8; 256],
    len: usize,
}

impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - 1 - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

fn emit(args: fmt::Arguments<'_>) {
    let mut line = Line {
        buf: [0; 256],
        len: 0,
    };
    let _ = line.write_str("memserver-preload: ");
    let _ = line.write_fmt(args);
    line.buf[line.len] = b'\n';
    // SAFETY: writes `len + 1` initialized bytes of our own buffer to stderr; the
    // caller's errno (the answer being logged) is put back after, whatever write did.
    unsafe {
        let saved = *libc::__errno_location();
        libc::write(2, line.buf.as_ptr().cast(), line.len + 1);
        *libc::__errno_location() = saved;
    }
}

/// Whether `MEMSERVER_LOG=debug` (read once).
pub fn debug_on() -> bool {
    let mut level = LEVEL.load(Ordering::Relaxed);
    if level == 0 {
        // getenv: libc's, which neither allocates nor calls anything we interpose.
        // SAFETY: a NUL-terminated name; the answer is read at once, before anything
        // could change the environment on this thread.
        let on = unsafe {
            let v = libc::getenv(c"MEMSERVER_LOG".as_ptr());
            !v.is_null() && std::ffi::CStr::from_ptr(v).to_bytes() == b"debug"
        };
        level = if on { 2 } else { 1 };
        LEVEL.store(level, Ordering::Relaxed);
    }
    level == 2
}

/// A debug line (only with `MEMSERVER_LOG=debug`).
pub fn debug(args: fmt::Arguments<'_>) {
    if debug_on() {
        emit(args);
    }
}

/// The one line said the first time the server cannot be reached.
pub fn unreachable(errno: i32) {
    if UNREACHABLE_SAID.swap(true, Ordering::Relaxed) {
        return;
    }
    // SAFETY: as in `debug_on`; strerror's answer is copied before anything else runs.
    let (path, why) = unsafe {
        let p = libc::getenv(c"MEMSERVER_SOCKET".as_ptr());
        let path = if p.is_null() {
            "/tmp/memserver.sock (MEMSERVER_SOCKET unset)"
        } else {
            std::ffi::CStr::from_ptr(p).to_str().unwrap_or("?")
        };
        let w = libc::strerror(errno);
        let why = if w.is_null() {
            "?"
        } else {
            std::ffi::CStr::from_ptr(w).to_str().unwrap_or("?")
        };
        (path, why)
    };
    emit(format_args!(
        "cannot reach memserverd at {path}: {why} (errno {errno}); new mappings and shm \
         objects fail with it, calls on the program's own memory go to the host"
    ));
}
