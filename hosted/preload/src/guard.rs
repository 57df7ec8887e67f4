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
    // `then`, not `then_some`: an `Inside` made and dropped when already inside would
    // clear the flag of the call this thread is in.
    INSIDE
        .try_with(|f| (!f.replace(true)).then(|| Inside(())))
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nested_call_goes_to_the_host_and_leaves_the_outer_one_inside() {
        let outer = enter().expect("not inside yet");
        assert!(enter().is_none(), "nested: the host's");
        assert!(enter().is_none(), "still inside after a nested attempt");
        drop(outer);
        assert!(enter().is_some(), "out again");
    }
}
