//! A barrier: waiters are held until `parties` of them have arrived, then
//! all go on, each with its place in the order of arrival.

use std::num::NonZeroUsize;

use super::{Outbox, Owner, Sink, Waiter};
use crate::wire::Answer;

pub(super) struct BarrierState {
    parties: NonZeroUsize,
    arrived: Vec<Waiter>,
}

impl BarrierState {
    pub(super) fn new(parties: NonZeroUsize) -> BarrierState {
        BarrierState {
            parties,
            arrived: Vec::new(),
        }
    }

    pub(super) fn parties(&self) -> NonZeroUsize {
        self.parties
    }

    /// `w` arrives; once all parties have, all go on.
    pub(super) fn wait(&mut self, w: Waiter, out: &mut Outbox) {
        self.arrived.push(w);
        // A host waiter that has gone away is no party.
        self.arrived
            .retain(|w| !matches!(&w.sink, Sink::Host(tx) if tx.is_closed()));
        if self.arrived.len() >= self.parties.get() {
            for (i, waiter) in self.arrived.drain(..).enumerate() {
                let _ = out.give(waiter, Answer::Count(i as u64));
            }
        }
    }

    pub(super) fn drop_waits(&mut self, owner: Owner) {
        self.arrived.retain(|w| w.owner != owner);
    }

    pub(super) fn abandon(&mut self, is: &impl Fn(&Waiter) -> bool) -> Option<Waiter> {
        let i = self.arrived.iter().position(is)?;
        Some(self.arrived.remove(i))
    }
}
