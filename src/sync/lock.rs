//! A lock, reentrant or not. A condition holds one too.

use std::collections::VecDeque;

use super::{Outbox, Owner, Waiter, take_first};
use crate::wire::Answer;

pub(super) struct LockState {
    reentrant: bool,
    /// The holder and how many times it acquired.
    holder: Option<(Owner, u32)>,
    /// With the answer each gets when it has the lock: `Done` for an
    /// acquire, `Bool` for a condition wait taking it back.
    waiters: VecDeque<(Waiter, Answer)>,
}

impl LockState {
    pub(super) fn new(reentrant: bool) -> LockState {
        LockState {
            reentrant,
            holder: None,
            waiters: VecDeque::new(),
        }
    }

    pub(super) fn reentrant(&self) -> bool {
        self.reentrant
    }

    /// Whether `owner` holds the lock.
    pub(super) fn is_held_by(&self, owner: Owner) -> bool {
        matches!(self.holder, Some((o, _)) if o == owner)
    }

    /// `owner` lets go of the lock entirely (a condition wait does this).
    pub(super) fn let_go(&mut self, owner: Owner, out: &mut Outbox) {
        if self.is_held_by(owner) {
            self.holder = None;
            self.pump(out);
        }
    }

    /// Queues `w` to take the lock, and `answer` once it has it.
    pub(super) fn wait_for(&mut self, w: Waiter, answer: Answer, out: &mut Outbox) {
        self.enqueue(w, answer);
        self.pump(out);
    }

    /// Queues `w` behind the holder, without trying to grant.
    pub(super) fn enqueue(&mut self, w: Waiter, answer: Answer) {
        self.waiters.push_back((w, answer));
    }

    pub(super) fn drop_waits(&mut self, owner: Owner) {
        self.waiters.retain(|(w, _)| w.owner != owner);
    }

    /// Takes the waiter `is` picks out of the queue, if it waits to begin
    /// with (`Done`); one taking the lock back after a condition wait
    /// cannot give up, and neither can a plain acquire given another
    /// answer.
    pub(super) fn abandon(&mut self, is: &impl Fn(&Waiter) -> bool) -> Option<Waiter> {
        take_first(&mut self.waiters, |(w, a)| is(w) && *a == Answer::Done).map(|(w, _)| w)
    }

    pub(super) fn acquire(&mut self, w: Waiter, out: &mut Outbox) {
        match self.holder {
            Some((owner, ref mut n)) if owner == w.owner => {
                let answer = if self.reentrant {
                    *n += 1;
                    Answer::Done
                } else {
                    Answer::Invalid("the lock is already held by this caller".into())
                };
                let _ = out.give(w, answer);
            }
            _ => {
                self.waiters.push_back((w, Answer::Done));
                self.pump(out);
            }
        }
    }

    pub(super) fn release(&mut self, owner: Owner, out: &mut Outbox) -> Answer {
        match &mut self.holder {
            Some((o, n)) if *o == owner => {
                *n -= 1;
                if *n == 0 {
                    self.holder = None;
                    self.pump(out);
                }
                Answer::Done
            }
            _ => Answer::Invalid("the lock is not held by this caller".into()),
        }
    }

    fn pump(&mut self, out: &mut Outbox) {
        while self.holder.is_none()
            && let Some((w, answer)) = self.waiters.pop_front()
        {
            let owner = w.owner;
            if out.give(w, answer).is_ok() {
                self.holder = Some((owner, 1));
            }
        }
    }

    pub(super) fn release_all(&mut self, owner: Owner, out: &mut Outbox) {
        if self.is_held_by(owner) {
            self.holder = None;
        }
        self.pump(out);
    }
}
