//! [`ChildGuard`]: a child process that is killed and reaped when its handle goes, on
//! every path out of the code that started it (a `std::process::Child` dropped during a
//! panic keeps running, holding its parent's pipes open).

use std::io;
use std::ops::{Deref, DerefMut};
use std::process::{Child, Command};

/// A started child process, killed and waited for on drop.
pub struct ChildGuard(Child);

impl ChildGuard {
    /// Starts `cmd`.
    pub fn spawn(cmd: &mut Command) -> io::Result<ChildGuard> {
        cmd.spawn().map(ChildGuard)
    }

    /// Kills the child (if it still runs) and reaps it.
    pub fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Deref for ChildGuard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_guard_kills_and_reaps_its_child() {
        let guard = ChildGuard::spawn(Command::new("sleep").arg("600")).expect("sleep");
        let pid = guard.id() as i32;
        drop(guard);
        // Reaped: the pid is no child of ours any more.
        // SAFETY: waitpid with a null status pointer only queries.
        let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        assert_eq!(r, -1, "the child was not reaped");
    }

    #[test]
    fn a_guard_dropped_while_unwinding_still_kills() {
        let pid = std::sync::Mutex::new(0);
        let r = std::panic::catch_unwind(|| {
            let guard = ChildGuard::spawn(Command::new("sleep").arg("600")).expect("sleep");
            *pid.lock().unwrap() = guard.id() as i32;
            panic!("a case panicked");
        });
        assert!(r.is_err());
        let pid = *pid.lock().unwrap();
        // SAFETY: kill with signal 0 only checks for existence.
        assert_eq!(unsafe { libc::kill(pid, 0) }, -1, "the child still runs");
    }
}
