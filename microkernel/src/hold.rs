//! The memory server's hold: which preempted app keeps the server to itself until it
//! yields. Plain code, tested on the host.
//!
//! The conformance apps' leak checks compare the server's counters before and after a
//! case, so nothing another app does may land between the two: an app preempted in the
//! middle of a piece of work with the server (it used it since its last yield) holds it,
//! and the other apps' requests wait (see `scheduler::may_use_server`).

/// What the scheduler knows of an app it has just preempted.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Preempted {
    /// It used the memory server since its last yield: it is in the middle of a piece
    /// of work with it.
    pub(crate) used_server: bool,
    /// Its preemptions in a row that found it making no request of the server.
    pub(crate) idle: u32,
    /// It runs only as long as the others (the spinner), and none of them waits for it.
    pub(crate) background: bool,
}

impl Preempted {
    /// Whether it holds the server now (keeps the hold, or takes it if nobody has it).
    ///
    /// A piece of work holds it until the app yields: how many preemptions found it idle
    /// says nothing about a foreground app, whose runs can end before it has run at all
    /// (under KVM, QEMU's PIT replays the ticks lost while the kernel ran with
    /// interrupts off back to back, so one run after another is preempted at once), and
    /// letting its hold lapse let another app's requests into the middle of a
    /// conformance case. Only a background app's hold lapses, after `idle_release`
    /// idle preemptions: one that used the server once and then computes forever (the
    /// spinner maps its heap first) cannot hold it up for good.
    pub(crate) fn holds(&self, idle_release: u32) -> bool {
        self.used_server && (!self.background || self.idle < idle_release)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE_RELEASE: u32 = 100;

    fn app(used_server: bool, idle: u32, background: bool) -> Preempted {
        Preempted {
            used_server,
            idle,
            background,
        }
    }

    #[test]
    fn an_app_in_the_middle_of_a_piece_holds_the_server() {
        assert!(app(true, 0, false).holds(IDLE_RELEASE));
        assert!(app(true, 0, true).holds(IDLE_RELEASE));
    }

    #[test]
    fn an_app_between_pieces_does_not() {
        assert!(!app(false, 0, false).holds(IDLE_RELEASE));
        assert!(!app(false, 0, true).holds(IDLE_RELEASE));
    }

    #[test]
    fn a_foreground_piece_keeps_the_hold_however_many_idle_preemptions() {
        // Runs preempted before they ran (replayed ticks) must not end the piece early:
        // the KVM run's `clients 5 before, 6 after` was another app's fork let in.
        for idle in [IDLE_RELEASE - 1, IDLE_RELEASE, 10 * IDLE_RELEASE, u32::MAX] {
            assert!(app(true, idle, false).holds(IDLE_RELEASE), "idle {idle}");
        }
    }

    #[test]
    fn a_background_apps_hold_lapses_once_it_idles() {
        assert!(app(true, IDLE_RELEASE - 1, true).holds(IDLE_RELEASE));
        assert!(!app(true, IDLE_RELEASE, true).holds(IDLE_RELEASE));
        assert!(!app(true, u32::MAX, true).holds(IDLE_RELEASE));
    }
}
