//! The host facilities the isolated hosted runtime is being built on, checked on this
//! kernel: one process (the server's part, a resolver thread here) serves the page
//! faults of another's memory through `userfaultfd`, from any number of faulting threads
//! at once, with no signal handler; a region stays one host mapping however its pages
//! are touched; write protection turns a write into a message; a forked child's
//! descriptor reaches the resolver and the child's private pages stay private; a
//! poisoned page ends the access with `SIGBUS`.
//!
//! Each check skips (printing why) where the kernel refuses `userfaultfd` to this user,
//! since then the runtime cannot use it either.

use memserver_hosted::uffd::{self, Event, Uffd};
use rustix::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const P: u64 = 4096;

/// A private anonymous mapping of `pages`, registered with `uffd` for `mode`.
fn region(u: &Uffd, pages: u64, mode: u64) -> u64 {
    // SAFETY: a fresh anonymous mapping the test owns; nothing refers to it yet.
    let a = unsafe {
        rustix::mm::mmap_anonymous(
            std::ptr::null_mut(),
            (pages * P) as usize,
            rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
            rustix::mm::MapFlags::PRIVATE,
        )
    }
    .expect("mmap") as u64;
    u.register(a, pages * P, mode).expect("register");
    a
}

/// Reads the byte at `addr`, inside a region a test registered: a missing page blocks
/// the thread until the resolver places it.
fn peek(addr: u64) -> u8 {
    // SAFETY: every caller passes an address of a live region mapped by `region`.
    unsafe { std::ptr::read_volatile(addr as *const u8) }
}

/// The byte the resolver fills page `addr` with.
fn pattern(addr: u64) -> u8 {
    ((addr / P) % 251) as u8 + 1
}

/// Resolves faults on `u` (and on forked children's descriptors) until `stop`: a
/// missing page gets a copy of its pattern page, a write to a write-protected page gets
/// its protection cleared. Returns the faults resolved and the fork events seen.
///
/// Nothing in its loop allocates before it reads an event: a thread forking this
/// process holds the allocator's locks until the fork event is read (glibc takes them
/// around `fork`), so a resolver in the same process that allocated there would wait
/// for the fork that waits for it. (The server is another process, where this cannot
/// happen; it is why the resolver must never be the client's own thread.)
fn resolver(u: Arc<Uffd>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, u64)> {
    const MOST: usize = 8;
    std::thread::spawn(move || {
        let mut fds: Vec<Arc<Uffd>> = Vec::with_capacity(MOST);
        fds.push(u);
        let mut born: Vec<Arc<Uffd>> = Vec::with_capacity(MOST);
        let (mut faults, mut forks) = (0, 0);
        let mut page = [0u8; P as usize];
        while !stop.load(Ordering::Acquire) {
            let mut polls = [libc::pollfd {
                fd: -1,
                events: libc::POLLIN,
                revents: 0,
            }; MOST];
            for (p, f) in polls.iter_mut().zip(&fds) {
                p.fd = f.fd().as_raw_fd();
            }
            // SAFETY: `polls` is a valid array of pollfd of the given length.
            unsafe { libc::poll(polls.as_mut_ptr(), fds.len() as _, 20) };
            for (i, f) in fds.iter().enumerate() {
                if polls[i].revents & libc::POLLIN == 0 {
                    continue;
                }
                while let Some(ev) = f.read_event() {
                    match ev {
                        Event::Fault { addr, flags, .. } if flags & uffd::FLAG_WP != 0 => {
                            f.write_protect(addr & !(P - 1), P, false)
                                .expect("un-protect");
                            faults += 1;
                        }
                        Event::Fault { addr, .. } => {
                            let at = addr & !(P - 1);
                            page.fill(pattern(at));
                            // Another thread may have raced us to the same page.
                            match f.copy(at, &page, false) {
                                Ok(()) | Err(uffd::Refusal::Exists) => {}
                                Err(e) => panic!("copy at {at:#x}: {e:?}"),
                            }
                            faults += 1;
                        }
                        Event::Fork(child) => {
                            forks += 1;
                            born.push(Arc::new(Uffd::from_fd(child)));
                        }
                        Event::Other => {}
                    }
                }
            }
            fds.append(&mut born);
            fds.truncate(MOST);
        }
        (faults, forks)
    })
}

/// One check at a time: a `fork` in this process waits until every descriptor asking
/// for fork events has its event read, so no check may fork while another's descriptor
/// is open without a reader.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn uffd_or_skip(test: &str) -> Option<Uffd> {
    match Uffd::create_with(uffd::FEATURES | uffd::FEATURE_EVENT_FORK) {
        Ok((u, _)) => Some(u),
        Err(e) => {
            eprintln!("skipped {test}: no userfaultfd for this user ({e})");
            None
        }
    }
}

/// Lines of /proc/self/maps that overlap `[a, a + len)`.
fn host_mappings(a: u64, len: u64) -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .expect("maps")
        .lines()
        .filter(|l| {
            let range = l.split_whitespace().next().unwrap_or("");
            let (lo, hi) = range.split_once('-').unwrap_or(("0", "0"));
            let lo = u64::from_str_radix(lo, 16).unwrap_or(0);
            let hi = u64::from_str_radix(hi, 16).unwrap_or(0);
            lo < a + len && hi > a
        })
        .count()
}

#[test]
fn eight_threads_fault_at_once_and_one_resolver_serves_them_all() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(u) = uffd_or_skip("eight_threads_fault_at_once") else {
        return;
    };
    let u = Arc::new(u);
    let pages = 2048;
    let a = region(&u, pages, uffd::MODE_MISSING);
    let stop = Arc::new(AtomicBool::new(false));
    let server = resolver(Arc::clone(&u), Arc::clone(&stop));
    // Eight threads touch every page, each in its own order (some forward, some back),
    // and check the resolver's bytes.
    let workers: Vec<_> = (0..8u64)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..pages {
                    let i = if t % 2 == 0 { i } else { pages - 1 - i };
                    let at = a + ((i * 7 + t * 13) % pages) * P;
                    // SAFETY: inside the region mapped above; a missing page blocks the
                    // thread until the resolver places it.
                    let v = peek(at);
                    assert_eq!(v, pattern(at), "page {at:#x}");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a faulting thread failed");
    }
    stop.store(true, Ordering::Release);
    let (faults, _) = server.join().expect("resolver");
    assert!(faults >= pages, "{faults} faults for {pages} pages");
    // Touched in every order, the region is still one host mapping.
    assert_eq!(host_mappings(a, pages * P), 1);
}

#[test]
fn a_write_to_a_write_protected_page_reaches_the_resolver_and_then_succeeds() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(u) = uffd_or_skip("write_protect") else {
        return;
    };
    let u = Arc::new(u);
    let a = region(&u, 4, uffd::MODE_MISSING | uffd::MODE_WP);
    // Place the page write-protected, as the server will for a clean shared page or a
    // copy-on-write one.
    let page = [7u8; P as usize];
    u.copy(a, &page, true).expect("copy, write-protected");
    let stop = Arc::new(AtomicBool::new(false));
    let server = resolver(Arc::clone(&u), Arc::clone(&stop));
    // SAFETY: the page was placed above; the write blocks until the resolver lifts the
    // protection.
    unsafe { std::ptr::write_volatile(a as *mut u8, 9) };
    assert_eq!(peek(a), 9);
    stop.store(true, Ordering::Release);
    let (faults, _) = server.join().expect("resolver");
    assert_eq!(faults, 1, "exactly the one write-protect fault");
}

#[test]
fn a_forked_childs_faults_reach_the_resolver_and_its_writes_stay_its_own() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(u) = uffd_or_skip("fork") else {
        return;
    };
    let u = Arc::new(u);
    let a = region(&u, 2, uffd::MODE_MISSING);
    let stop = Arc::new(AtomicBool::new(false));
    let server = resolver(Arc::clone(&u), Arc::clone(&stop));
    // Page 0, placed by the resolver.
    assert_eq!(peek(a), pattern(a));
    // SAFETY: fork; the child only touches memory and calls _exit (async-signal-safe).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        // The child: write its copy of page 0, fault page 1 in through its own
        // descriptor (which the resolver got as a fork event), and report.
        // SAFETY: the child's copy of the region.
        let ok = unsafe {
            std::ptr::write_volatile(a as *mut u8, 0xee);
            std::ptr::read_volatile((a + P) as *const u8) == pattern(a + P)
                && std::ptr::read_volatile(a as *const u8) == 0xee
        };
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waiting for the child just forked.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child: {status:#x}"
    );
    // The child's write is the child's.
    // The parent's page 0 is as the resolver placed it.
    assert_eq!(peek(a), pattern(a));
    stop.store(true, Ordering::Release);
    let (_, forks) = server.join().expect("resolver");
    assert_eq!(forks, 1, "the fork event carried the child's descriptor");
}

#[test]
fn a_poisoned_page_ends_the_access_with_sigbus() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(u) = uffd_or_skip("poison") else {
        return;
    };
    let u = Arc::new(u);
    let a = region(&u, 2, uffd::MODE_MISSING);
    u.poison(a).expect("poison");
    // The fork below waits for its event to be read: the resolver must be in its loop
    // (a thread just started may still be allocating), so it serves page 1 first.
    let stop = Arc::new(AtomicBool::new(false));
    let server = resolver(Arc::clone(&u), Arc::clone(&stop));
    // Page 1, placed by the resolver.
    assert_eq!(peek(a + P), pattern(a + P));
    // SAFETY: fork; the child only touches the poisoned page (and dies of it).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        // SAFETY: the poisoned page: the access raises SIGBUS.
        unsafe {
            std::ptr::read_volatile(a as *const u8);
            libc::_exit(0)
        };
    }
    let mut status = 0;
    // SAFETY: waiting for the child just forked.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGBUS,
        "child: {status:#x}"
    );
    stop.store(true, Ordering::Release);
    let (faults, forks) = server.join().expect("resolver");
    assert_eq!((faults, forks), (1, 1), "a poisoned page asks nobody");
}

#[test]
fn a_memfd_mapping_registers_for_missing_minor_and_write_protect_faults() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(u) = uffd_or_skip("memfd") else {
        return;
    };
    let fd = rustix::fs::memfd_create("t", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd");
    rustix::fs::ftruncate(&fd, 4 * P).expect("size");
    // SAFETY: a fresh shared mapping of the memfd.
    let a = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            (4 * P) as usize,
            rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
            rustix::mm::MapFlags::SHARED,
            &fd,
            0,
        )
    }
    .expect("mmap") as u64;
    for (mode, what) in [
        (uffd::MODE_MISSING, "missing"),
        (uffd::MODE_MINOR, "minor"),
        (uffd::MODE_WP, "wp"),
        (uffd::MODE_MISSING | uffd::MODE_MINOR | uffd::MODE_WP, "all"),
    ] {
        assert_eq!(u.register(a, 4 * P, mode), Ok(()), "{what}");
    }
}
