//! System-wide counts the limits are checked against. Per-client counts (mapped and
//! locked bytes, fds) live with each client, commit charges with the frame allocator.

use ipc_proto::Errno;

/// Open files of the whole system: every client's fds plus the hidden objects of shared
/// anonymous mappings, as Linux counts a `MAP_SHARED|MAP_ANONYMOUS` mapping's shmem file.
#[derive(Debug)]
pub(crate) struct Accounting {
    open_files: u32,
    max_open_files: u32,
}

impl Accounting {
    /// Nothing open, at most `max_open_files` at once.
    pub fn new(max_open_files: u32) -> Accounting {
        Accounting {
            open_files: 0,
            max_open_files,
        }
    }

    /// `ENFILE` unless `n` more files may be opened.
    pub fn room_for(&self, n: u32) -> Result<(), Errno> {
        match self.open_files.checked_add(n) {
            Some(total) if total <= self.max_open_files => Ok(()),
            _ => Err(Errno::ENFILE),
        }
    }

    /// Counts `n` files opened (checked with [`room_for`](Self::room_for) first).
    pub fn opened(&mut self, n: u32) {
        self.open_files = self.open_files.saturating_add(n);
    }

    /// Counts one file closed.
    pub fn closed(&mut self) {
        self.open_files = self.open_files.saturating_sub(1);
    }

    /// Files open now.
    pub fn open_files(&self) -> u32 {
        self.open_files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_inclusive_and_overflow_is_enfile() {
        let mut a = Accounting::new(2);
        assert_eq!(a.room_for(2), Ok(()));
        a.opened(2);
        assert_eq!(a.room_for(1), Err(Errno::ENFILE));
        assert_eq!(a.room_for(u32::MAX), Err(Errno::ENFILE));
        a.closed();
        assert_eq!(a.room_for(1), Ok(()));
        assert_eq!(a.open_files(), 1);
    }
}
