//! The destination's free space as the lanes share it. All lanes write at
//! once until the first `ENOSPC`/`EDQUOT`; eight lanes each holding part of
//! a file can fill a nearly full destination without any file finishing.
//! From that moment on a new file starts only once no other is in flight,
//! so each file has the space alone: the lanes already writing finish (or
//! hit the limit too and give their file back, its temporary removed), then
//! the files go one at a time. A file that does not fit while alone ends
//! the run (exit 4): nothing more of that size fits.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use tracing::warn;

/// How often a lane waiting for its turn looks at the stop flags.
const WAKE: Duration = Duration::from_millis(50);

#[derive(Debug, Default)]
struct State {
    /// Set at the first out-of-space error: one file at a time from now.
    narrow: bool,
    /// Files being written (created, not yet renamed or removed).
    in_flight: usize,
}

/// Shared by every lane of the stage (see [`super::LaneCtx`]).
#[derive(Debug)]
pub struct Space {
    state: Mutex<State>,
    turn: Condvar,
    /// One lane only: every file has the space alone from the start.
    one_lane: bool,
}

/// A file's place among those in flight; given back when dropped (after
/// the rename, or once its temporary is removed).
pub struct Slot<'a> {
    space: &'a Space,
    alone: bool,
}

impl Slot<'_> {
    /// Whether no other file was in flight for this file's whole life, so
    /// an out-of-space error means it does not fit.
    pub fn alone(&self) -> bool {
        self.alone
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut st = self.space.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
        drop(st);
        self.space.turn.notify_all();
    }
}

impl Space {
    pub fn new(lanes: usize) -> Self {
        Self {
            state: Mutex::default(),
            turn: Condvar::new(),
            one_lane: lanes <= 1,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Before a file's first byte: its slot, at once while the lanes share
    /// the space, else once no other file is in flight. `None` when `stop`
    /// or `halt` is set while waiting.
    pub fn enter(&self, stop: &AtomicBool, halt: &AtomicBool) -> Option<Slot<'_>> {
        let mut st = self.lock();
        loop {
            if !st.narrow || st.in_flight == 0 {
                st.in_flight += 1;
                return Some(Slot {
                    space: self,
                    alone: st.narrow || self.one_lane,
                });
            }
            if stop.load(Relaxed) || halt.load(Relaxed) {
                return None;
            }
            st = self
                .turn
                .wait_timeout(st, WAKE)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The first out-of-space error of a file that was not alone: one file
    /// at a time from now on (said once).
    pub fn narrow(&self) {
        let mut st = self.lock();
        if !st.narrow {
            st.narrow = true;
            warn!(
                in_flight = st.in_flight,
                "destination full: the files in flight finish first, then one file at a time"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_until_narrowed_then_one_at_a_time() {
        let (stop, halt) = (AtomicBool::new(false), AtomicBool::new(false));
        let space = Space::new(8);
        let a = space.enter(&stop, &halt).unwrap();
        let b = space.enter(&stop, &halt).unwrap();
        assert!(!a.alone() && !b.alone());
        space.narrow();
        // Two in flight: a third waits, and gives up on a stop.
        stop.store(true, Relaxed);
        assert!(space.enter(&stop, &halt).is_none());
        stop.store(false, Relaxed);
        drop(a);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| space.enter(&stop, &halt).map(|slot| slot.alone()));
            std::thread::sleep(Duration::from_millis(120));
            assert!(!waiter.is_finished(), "b is still in flight");
            drop(b);
            assert_eq!(waiter.join().unwrap(), Some(true));
        });
        assert!(Space::new(1).enter(&stop, &halt).unwrap().alone());
    }
}
