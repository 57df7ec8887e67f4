//! Re-entrancy: a call made on a thread that is already inside one of our calls (the
//! runtime's own `close`, `mmap` or `munmap`, which bind to our exported symbols, or a
//! signal handler interrupting us) goes to the host unchanged.

use std::cell::Cell;

thread_local! {
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Proof that this thread is inside a call; leaving drops it.
pub struct Inside(());

impl Drop for Inside {
    fn drop(&mut self) {
        let _ = INSIDE.try_with(|f| f.set(false));
    }
}

/// Enters a call: `None` when this thread is already inside one (or is being torn down
/// and has no thread-local storage left), so the call must go to the host.
pub fn enter() -> Option<Inside> {
    INSIDE
        .try_with(|f| (!f.replace(true)).then_some(Inside(())))
        .ok()
        .flatten()
}
