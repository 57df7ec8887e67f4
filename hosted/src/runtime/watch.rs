//! The watcher: one thread per connection that does nothing while the server lives.
//! When the server dies (its end of the connection closes), the process's own copy of
//! its userfaultfd keeps every waiting and later fault in the window from being
//! silently filled with zeros by the host: the watcher wakes the threads the server left
//! waiting and poisons each page they fault on, so the access ends with `SIGBUS`, and
//! calls fail with `EIO`.

use super::Link;
use crate::uffd::Event;
use rustix::event::{PollFd, PollFlags};
use rustix::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;

const POLL_MS: i32 = 500;

/// Starts the watcher of `link`.
pub fn spawn(link: Arc<Link>) {
    let _ = std::thread::Builder::new()
        .name("memserver-watch".into())
        .spawn(move || watch(&link));
}

fn watch(link: &Link) {
    let timeout = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: i64::from(POLL_MS) * 1_000_000,
    };
    // Wait for the server's end to close, or for the connection to be given up.
    loop {
        if link.closing.load(Ordering::Acquire) {
            return;
        }
        let mut fds = [PollFd::new(&link.sock, PollFlags::RDHUP)];
        if rustix::event::poll(&mut fds, Some(&timeout)).is_ok()
            && fds[0]
                .revents()
                .intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR)
        {
            break;
        }
    }
    if link.closing.load(Ordering::Acquire) {
        return;
    }
    link.dead.store(true, Ordering::Release);
    // Threads whose faults the server read but never answered wait to be woken.
    for (lo, hi) in link.setup.windows() {
        link.uffd.wake(lo, hi - lo);
    }
    loop {
        let uffd = link.uffd.fd();
        let mut fds = [PollFd::new(&uffd, PollFlags::IN)];
        if rustix::event::poll(&mut fds, Some(&timeout)).is_err() {
            continue;
        }
        while let Some(ev) = link.uffd.read_event() {
            if let Event::Fault { addr, .. } = ev {
                let page = addr & !4095;
                if link.uffd.poison(page).is_err() {
                    link.uffd.wake(page, 4096);
                }
            }
        }
        let _ = link.sock.as_fd();
    }
}
