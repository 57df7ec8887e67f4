//! `fork`: libc's, made with the thread marked inside a call. The runtime's
//! `pthread_atfork` handlers hold the connection's lock from before the fork until the
//! child has adopted its clone, and the child's part reads `/proc/self/maps` and
//! closes descriptors: through our `close` that would wait for the very lock its own
//! thread holds. Inside a call, those go straight to the host. The program's own
//! `pthread_atfork` handlers run inside it too, so their memory calls are the host's.

use crate::guard::enter;
use crate::mem::set_errno;
use libc::pid_t;
use std::sync::atomic::{AtomicUsize, Ordering};

type ForkFn = unsafe extern "C" fn() -> pid_t;

/// libc's `fork`, found once with `dlsym(RTLD_NEXT)`.
fn libc_fork() -> Option<ForkFn> {
    static FOUND: AtomicUsize = AtomicUsize::new(0);
    let mut p = FOUND.load(Ordering::Acquire);
    if p == 0 {
        // SAFETY: dlsym with a NUL-terminated name; RTLD_NEXT finds the next definition
        // after this library's, libc's.
        p = unsafe { libc::dlsym(libc::RTLD_NEXT, c"fork".as_ptr()) } as usize;
        FOUND.store(p, Ordering::Release);
    }
    // SAFETY: a non-null address dlsym gave for `fork`, whose C type is
    // `pid_t fork(void)`.
    (p != 0).then(|| unsafe { std::mem::transmute::<usize, ForkFn>(p) })
}

/// `fork(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn fork() -> pid_t {
    let Some(real) = libc_fork() else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    // Already inside (a fork from a signal handler during a call): it stays so.
    let _inside = enter();
    // SAFETY: libc's fork, called as C calls it.
    unsafe { real() }
}
