//! An event: a flag that waiters wait to see set.

use super::{Outbox, Owner, Waiter};
use crate::wire::Answer;

#[derive(Default)]
pub(super) struct EventState {
    set: bool,
    waiters: Vec<Waiter>,
}

impl EventState {
    /// Sets the flag and wakes every waiter.
    pub(super) fn set(&mut self, out: &mut Outbox) {
        self.set = true;
        for waiter in self.waiters.drain(..) {
            let _ = out.give(waiter, Answer::Done);
        }
    }

    pub(super) fn clear(&mut self) {
        self.set = false;
    }

    pub(super) fn is_set(&self) -> bool {
        self.set
    }

    /// Answers `w` once the flag is set: now, if it is.
    pub(super) fn wait(&mut self, w: Waiter, out: &mut Outbox) {
        if self.set {
            let _ = out.give(w, Answer::Done);
        } else {
            self.waiters.push(w);
        }
    }

    pub(super) fn drop_waits(&mut self, owner: Owner) {
        self.waiters.retain(|w| w.owner != owner);
    }

    pub(super) fn abandon(&mut self, is: &impl Fn(&Waiter) -> bool) -> Option<Waiter> {
        let i = self.waiters.iter().position(is)?;
        Some(self.waiters.remove(i))
    }
}
