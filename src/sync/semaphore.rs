//! A counting semaphore: permits are held by owners, and given back when
//! their owner ends.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroUsize;

use super::{Outbox, Owner, Waiter, take_first};
use crate::wire::Answer;

pub(super) struct SemState {
    /// Permits free now.
    permits: usize,
    max: NonZeroUsize,
    held: HashMap<Owner, usize>,
    waiters: VecDeque<Waiter>,
}

impl SemState {
    pub(super) fn new(permits: NonZeroUsize) -> SemState {
        SemState {
            permits: permits.get(),
            max: permits,
            held: HashMap::new(),
            waiters: VecDeque::new(),
        }
    }

    pub(super) fn max(&self) -> NonZeroUsize {
        self.max
    }

    /// Queues `w` for a permit.
    pub(super) fn acquire(&mut self, w: Waiter, out: &mut Outbox) {
        self.waiters.push_back(w);
        self.pump(out);
    }

    pub(super) fn drop_waits(&mut self, owner: Owner) {
        self.waiters.retain(|w| w.owner != owner);
    }

    pub(super) fn abandon(&mut self, is: &impl Fn(&Waiter) -> bool) -> Option<Waiter> {
        take_first(&mut self.waiters, is)
    }

    fn pump(&mut self, out: &mut Outbox) {
        while self.permits > 0
            && let Some(w) = self.waiters.pop_front()
        {
            let owner = w.owner;
            if out.give(w, Answer::Done).is_ok() {
                self.permits -= 1;
                *self.held.entry(owner).or_default() += 1;
            }
        }
    }

    pub(super) fn release(&mut self, owner: Owner, out: &mut Outbox) -> Answer {
        match self.held.get_mut(&owner) {
            Some(n) if *n > 0 => {
                *n -= 1;
                if *n == 0 {
                    self.held.remove(&owner);
                }
                self.permits += 1;
                self.pump(out);
                Answer::Done
            }
            _ => Answer::Invalid("this caller holds no permit of the semaphore".into()),
        }
    }

    pub(super) fn release_all(&mut self, owner: Owner, out: &mut Outbox) {
        if let Some(n) = self.held.remove(&owner) {
            self.permits += n;
        }
        self.pump(out);
    }
}
