//! A condition variable with a lock of its own. A waiter lets go of the
//! lock while it sleeps and takes it again before its wait returns, whether
//! it was notified (`true`) or gave up (`false`).

use std::collections::VecDeque;

use super::lock::LockState;
use super::{Outbox, Owner, Waiter, take_first};
use crate::wire::Answer;

pub(super) struct CondState {
    lock: LockState,
    sleepers: VecDeque<Waiter>,
}

impl Default for CondState {
    fn default() -> Self {
        CondState {
            lock: LockState::new(false),
            sleepers: VecDeque::new(),
        }
    }
}

impl CondState {
    /// The condition's lock.
    pub(super) fn lock(&mut self) -> &mut LockState {
        &mut self.lock
    }

    /// `w`, which must hold the lock, lets go of it and sleeps until
    /// notified.
    pub(super) fn wait(&mut self, w: Waiter, out: &mut Outbox) {
        if self.lock.is_held_by(w.owner) {
            let owner = w.owner;
            self.sleepers.push_back(w);
            self.lock.let_go(owner, out);
        } else {
            let _ = out.give(
                w,
                Answer::Invalid("waiting on a condition needs its lock".into()),
            );
        }
    }

    /// Wakes up to `n` sleepers, oldest first: each takes the lock back in
    /// turn. `owner` must hold the lock.
    pub(super) fn notify(&mut self, owner: Owner, n: u32) -> Answer {
        if !self.lock.is_held_by(owner) {
            return Answer::Invalid("notifying a condition needs its lock".into());
        }
        for _ in 0..n {
            let Some(sleeper) = self.sleepers.pop_front() else {
                break;
            };
            // The notifier holds the lock: the sleeper gets it after.
            self.lock.enqueue(sleeper, Answer::Bool(true));
        }
        Answer::Done
    }

    pub(super) fn drop_waits(&mut self, owner: Owner) {
        self.sleepers.retain(|w| w.owner != owner);
        self.lock.drop_waits(owner);
    }

    pub(super) fn release_all(&mut self, owner: Owner, out: &mut Outbox) {
        self.lock.release_all(owner, out);
    }

    /// The waiter `is` picks stops waiting: one still asleep takes the lock
    /// again (and is answered `false` once it has it), one waiting for the
    /// lock to begin with is answered with a timeout. Returns whether it
    /// found one.
    pub(super) fn abandon(&mut self, is: &impl Fn(&Waiter) -> bool, out: &mut Outbox) -> bool {
        if let Some(w) = take_first(&mut self.sleepers, is) {
            self.lock.wait_for(w, Answer::Bool(false), out);
            return true;
        }
        match self.lock.abandon(is) {
            Some(w) => {
                let _ = out.give(w, Answer::Timeout);
                true
            }
            None => false,
        }
    }
}
