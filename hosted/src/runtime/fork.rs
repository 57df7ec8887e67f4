//! `fork`: the child is a new client that adopts the copy-on-write clone the server
//! made of its parent just before.
//!
//! The host's `fork` copies the window's mappings, private pages copy-on-write and
//! shared ones shared, but not their userfaultfd registration (no fork events are asked
//! for, so a `fork` never waits for the server). The child registers what it inherited
//! with a userfaultfd of its own ([`register_inherited`]) and hands it over with the
//! token; the server then write-protects the private pages it shares with the parent, so
//! the first write to each is the server's copy-on-write too.

use super::apply::{ANON_MODE, OBJECT_MODE};
use crate::uffd::Uffd;
use std::io;

/// Registers every mapping of the process's windows (read from `/proc/self/maps`) with
/// `uffd`: memfd mappings for minor faults as well, host files not at all.
pub fn register_inherited(uffd: &Uffd, windows: [(u64, u64); 2]) -> io::Result<()> {
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let Some((s, e)) = f.next().and_then(|r| r.split_once('-')) else {
            continue;
        };
        let (Ok(s), Ok(e)) = (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16)) else {
            continue;
        };
        if !windows.iter().any(|&(lo, hi)| s >= lo && e <= hi) {
            continue;
        }
        let path = f.nth(4).unwrap_or("");
        let mode = if path.starts_with("/memfd:") {
            OBJECT_MODE
        } else if path.is_empty() {
            ANON_MODE
        } else {
            // A host file: the host's page cache serves it (a regular file's mapping
            // cannot be registered anyway).
            continue;
        };
        let _ = uffd.register(s, e - s, mode);
    }
    Ok(())
}
