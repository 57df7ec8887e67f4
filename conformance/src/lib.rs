//! Placeholder; filled by its issue.
#![no_std]
