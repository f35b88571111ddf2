//! A named queue (joinable or not), and each direction of a job's channel.

use std::collections::VecDeque;

use serde_bytes::ByteBuf;

use super::{Outbox, Owner, Waiter, take_first};
use crate::wire::Answer;

pub(super) struct QueueState {
    /// 0: unbounded.
    capacity: usize,
    joinable: bool,
    items: VecDeque<Vec<u8>>,
    getters: VecDeque<Waiter>,
    putters: VecDeque<(Waiter, Vec<u8>)>,
    joiners: Vec<Waiter>,
    /// Values put and not yet marked done (joinable queues).
    unfinished: u64,
    /// Values taken from a joinable queue and not yet marked done, oldest
    /// first, with their takers: a guest's go back if its call ends (a
    /// host's are only counted, with no copy kept).
    taken: Vec<(Owner, Vec<u8>)>,
    closed: bool,
}

impl QueueState {
    pub(super) fn new(capacity: usize, joinable: bool) -> QueueState {
        QueueState {
            capacity,
            joinable,
            items: VecDeque::new(),
            getters: VecDeque::new(),
            putters: VecDeque::new(),
            joiners: Vec::new(),
            unfinished: 0,
            taken: Vec::new(),
            closed: false,
        }
    }

    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(super) fn joinable(&self) -> bool {
        self.joinable
    }

    /// How many values wait in the queue.
    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    fn has_room(&self) -> bool {
        self.capacity == 0 || self.items.len() < self.capacity
    }

    pub(super) fn put(&mut self, w: Waiter, value: Vec<u8>, out: &mut Outbox) {
        if self.closed {
            let _ = out.give(w, Answer::Closed);
        } else {
            self.putters.push_back((w, value));
            self.pump(out);
        }
    }

    pub(super) fn get(&mut self, w: Waiter, out: &mut Outbox) {
        self.getters.push_back(w);
        self.pump(out);
    }

    /// Lets waiting putters in while there is room.
    fn admit(&mut self, out: &mut Outbox) {
        while self.has_room()
            && let Some((w, value)) = self.putters.pop_front()
        {
            // A host putter that has gone away did not put.
            if out.give(w, Answer::Done).is_ok() {
                self.items.push_back(value);
                if self.joinable {
                    self.unfinished += 1;
                }
            }
        }
    }

    /// Moves values from putters into the queue and from the queue to
    /// getters for as long as it can; answers joiners once all is done.
    fn pump(&mut self, out: &mut Outbox) {
        self.admit(out);
        while !self.items.is_empty()
            && let Some(w) = self.getters.pop_front()
        {
            let value = self.items.pop_front().expect("checked non-empty");
            let owner = w.owner;
            // A guest's value comes back if its call ends before it is
            // marked done; a host's never does, so it keeps no copy.
            let keep = self.joinable.then(|| match owner {
                Owner::Worker(_) => value.clone(),
                Owner::Host(_) => Vec::new(),
            });
            match out.give(w, Answer::Value(ByteBuf::from(value))) {
                Ok(()) => {
                    if let Some(v) = keep {
                        self.taken.push((owner, v));
                    }
                }
                Err(Answer::Value(v)) => self.items.push_front(v.into_vec()),
                Err(_) => {}
            }
            // A get made room: a waiting putter can come in.
            self.admit(out);
        }
        if self.closed && self.items.is_empty() {
            for w in self.getters.drain(..) {
                let _ = out.give(w, Answer::Nothing);
            }
        }
        if self.joinable && self.unfinished == 0 {
            for w in self.joiners.drain(..) {
                let _ = out.give(w, Answer::Done);
            }
        }
    }

    pub(super) fn task_done(&mut self, owner: Owner, out: &mut Outbox) -> Answer {
        if !self.joinable {
            return Answer::Invalid("task-done needs a joinable queue".into());
        }
        if self.unfinished == 0 {
            return Answer::Invalid("task-done called more times than values were put".into());
        }
        self.unfinished -= 1;
        // The caller's oldest value, or else the oldest taken on the
        // caller's side (host or guests), or else anyone's: a value marked
        // done, by whoever, must not come back, and the host marking its
        // own values done must not retire a running guest's.
        let host = |o: &Owner| matches!(o, Owner::Host(_));
        let i = self
            .taken
            .iter()
            .position(|(o, _)| *o == owner)
            .or_else(|| self.taken.iter().position(|(o, _)| host(o) == host(&owner)))
            .or((!self.taken.is_empty()).then_some(0));
        if let Some(i) = i {
            self.taken.remove(i);
        }
        self.pump(out);
        Answer::Done
    }

    pub(super) fn join(&mut self, w: Waiter, out: &mut Outbox) {
        if !self.joinable {
            let _ = out.give(w, Answer::Invalid("join needs a joinable queue".into()));
        } else {
            self.joiners.push(w);
            self.pump(out);
        }
    }

    pub(super) fn close(&mut self, out: &mut Outbox) {
        self.closed = true;
        for (w, _) in self.putters.drain(..) {
            let _ = out.give(w, Answer::Closed);
        }
        self.pump(out);
    }

    /// Puts a value a host getter received and then dropped back at the
    /// front.
    pub(super) fn unget(&mut self, value: Vec<u8>, out: &mut Outbox) {
        self.items.push_front(value);
        self.pump(out);
    }

    pub(super) fn drop_waits(&mut self, owner: Owner) {
        self.getters.retain(|w| w.owner != owner);
        self.putters.retain(|(w, _)| w.owner != owner);
        self.joiners.retain(|w| w.owner != owner);
    }

    /// Releases what `owner` took; its waits are already dropped.
    pub(super) fn release_all(&mut self, owner: Owner, out: &mut Outbox) {
        // A guest's values go back; a host operation's value, if it had
        // one, went back by `unget` when it was dropped.
        let give_back = matches!(owner, Owner::Worker(_));
        let mut back = Vec::new();
        self.taken.retain_mut(|(o, v)| {
            if *o == owner {
                if give_back {
                    back.push(std::mem::take(v));
                }
                false
            } else {
                true
            }
        });
        for v in back.into_iter().rev() {
            self.items.push_front(v);
        }
        self.pump(out);
    }

    pub(super) fn abandon(&mut self, is: &impl Fn(&Waiter) -> bool) -> Option<Waiter> {
        if let Some(w) = take_first(&mut self.getters, is) {
            return Some(w);
        }
        if let Some((w, _)) = take_first(&mut self.putters, |(w, _)| is(w)) {
            return Some(w);
        }
        let i = self.joiners.iter().position(is)?;
        Some(self.joiners.remove(i))
    }
}
