//! Fair shares: who gets the next free worker.
//!
//! A pool serves several tenants ([`Call::tenant`](crate::Call::tenant));
//! calls with no tenant share the default one. A permit is the right to
//! hold a worker, and [`Shares`] hands permits out:
//!
//! - **Within a tenant**, first come first served.
//! - **Across tenants**, by stride scheduling, a deterministic form of
//!   weighted fair queuing. Each tenant has a *pass*, which grows by
//!   `STRIDE / weight` with each permit it gets; the next free permit goes
//!   to the waiting tenant with the lowest pass. Over any stretch in which
//!   tenants keep calls waiting, each gets permits in proportion to its
//!   weight ([`PoolBuilder::tenant_weight`](crate::PoolBuilder::tenant_weight)).
//! - **A tenant that was idle** starts again from the pass of the last
//!   permit given, not from its old one: idling earns no credit, so a
//!   tenant back from a quiet hour cannot take every worker for an hour.
//!   Nor does it lose its place: its next call goes out within about one
//!   round of the tenants waiting.
//! - **A tenant at its cap** ([`PoolBuilder::tenant_limit`](crate::PoolBuilder::tenant_limit))
//!   waits with calls queued while others use the free workers.
//!
//! So a tenant that floods the pool with ten thousand calls delays
//! another's next call by about one call's duration (the time for a
//! worker to come free), not by its whole backlog.
//!
//! With a permit free and nobody waiting, taking one is a lock, a counter
//! and an unlock: the scheduler costs nothing measurable on a call's
//! round trip (`examples/bench.rs` measures it).
//!
//! The state is one small mutex: each section is a few counter updates and
//! queue operations, with no user code and no other lock inside, so the
//! lock is a leaf, and a [`Permit`] may be dropped under any other lock
//! of the crate.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use crate::error::Error;
use crate::locks::Locked as _;

/// A tenant's pass grows by this divided by its weight with each permit.
/// Large enough that weights up to `u32::MAX` still move it; small enough
/// that 2^64 / 2^32 = 4 billion permits at weight 1 fit before a wrap,
/// and the pass is kept relative (see [`State::rebase`]).
const STRIDE: u64 = 1 << 32;

/// The tenant of calls that name none: index 0.
const DEFAULT: usize = 0;

/// Hands out the permits to hold a worker: FIFO within a tenant, weighted
/// shares across tenants.
pub(crate) struct Shares {
    state: Mutex<State>,
}

/// What a tenant is set up with on the pool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TenantSetup {
    pub(crate) weight: Option<u32>,
    pub(crate) limit: Option<usize>,
}

struct State {
    /// Permits not held.
    free: usize,
    closed: bool,
    tenants: Vec<Tenant>,
    by_name: HashMap<Arc<str>, usize>,
    /// The tenants that have calls waiting and are under their cap, by
    /// pass: the first gets the next permit.
    ready: BTreeSet<(u64, usize)>,
    /// The pass of the last permit given: where a tenant back from idle
    /// starts.
    now: u64,
    next_waiter: u64,
}

struct Tenant {
    name: Arc<str>,
    weight: u32,
    limit: Option<usize>,
    pass: u64,
    waiting: VecDeque<Waiter>,
    running: usize,
    done: u64,
}

struct Waiter {
    id: u64,
    tx: oneshot::Sender<()>,
}

/// One tenant's figures, in [`Statistics::tenants`](crate::Statistics::tenants).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TenantStatistics {
    /// Its key, as given to [`Call::tenant`](crate::Call::tenant); the
    /// default tenant's is the empty string.
    pub name: String,
    /// Its share of the workers, relative to the other tenants'.
    pub weight: u32,
    /// Its calls waiting for a worker.
    pub queued: usize,
    /// Its calls holding a worker.
    pub running: usize,
    /// Its calls that held a worker and ended, whatever the outcome.
    pub done: u64,
}

/// The right to hold one worker, for one tenant. Dropping it gives the
/// worker's place to the next call due.
///
/// The calls a worker runs at once share their worker's permit (see
/// [`Permit::share`]): the place is given back when the last of them ends.
pub(crate) struct Permit(Arc<Held>);

struct Held {
    shares: Arc<Shares>,
    tenant: usize,
    /// Whether its end counts as a call done (not so for warming).
    call: bool,
}

/// A permit that does not keep its worker's place: it gives a share of
/// the permit while any share is held.
pub(crate) struct WeakPermit(std::sync::Weak<Held>);

impl Permit {
    fn new(shares: Arc<Shares>, tenant: usize, call: bool) -> Permit {
        Permit(Arc::new(Held {
            shares,
            tenant,
            call,
        }))
    }

    /// Whether this is the only hold on its place.
    pub(crate) fn is_last(&self) -> bool {
        Arc::strong_count(&self.0) == 1
    }

    pub(crate) fn downgrade(&self) -> WeakPermit {
        WeakPermit(Arc::downgrade(&self.0))
    }
}

impl WeakPermit {
    /// A share of the permit, while one is held.
    pub(crate) fn upgrade(&self) -> Option<Permit> {
        self.0.upgrade().map(Permit)
    }
}

impl Default for WeakPermit {
    fn default() -> WeakPermit {
        WeakPermit(std::sync::Weak::new())
    }
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("tenant", &self.0.tenant)
            .finish_non_exhaustive()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut state = self.shares.state();
        state.release(self.tenant, self.call);
    }
}

impl Shares {
    /// `permits` permits, and the tenants set up with weights or caps.
    pub(crate) fn new(permits: usize, setup: &[(String, TenantSetup)]) -> Arc<Shares> {
        let mut state = State {
            free: permits,
            closed: false,
            tenants: Vec::new(),
            by_name: HashMap::new(),
            ready: BTreeSet::new(),
            now: 0,
            next_waiter: 0,
        };
        state.add("");
        for (name, s) in setup {
            let i = state.index(name);
            let t = &mut state.tenants[i];
            if let Some(w) = s.weight {
                t.weight = w;
            }
            t.limit = s.limit;
        }
        Arc::new(Shares {
            state: Mutex::new(state),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.locked()
    }

    /// Waits for a permit for `tenant` (the default tenant if `None`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::PoolClosed`](crate::ErrorKind::PoolClosed) once the pool is
    /// closed.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future gives up the place in the queue; a permit
    /// given to it meanwhile goes to the next call due.
    pub(crate) async fn acquire(self: &Arc<Self>, tenant: Option<&str>) -> Result<Permit, Error> {
        self.acquire_as(tenant, true).await
    }

    /// [`acquire`](Self::acquire) for the default tenant, for a permit
    /// that is not a call's (warming workers): its end counts no call.
    pub(crate) async fn acquire_uncounted(self: &Arc<Self>) -> Result<Permit, Error> {
        self.acquire_as(None, false).await
    }

    async fn acquire_as(
        self: &Arc<Self>,
        tenant: Option<&str>,
        call: bool,
    ) -> Result<Permit, Error> {
        let (tenant, id, rx) = {
            let mut state = self.state();
            if state.closed {
                return Err(Error::closed());
            }
            let tenant = match tenant {
                Some(name) if !name.is_empty() => state.index(name),
                _ => DEFAULT,
            };
            // A free permit and nobody due before this call: take it. With
            // a permit free, nobody waits but tenants at their cap.
            let t = &state.tenants[tenant];
            if state.free > 0 && t.waiting.is_empty() && t.limit.is_none_or(|l| t.running < l) {
                state.grant(tenant);
                return Ok(Permit::new(self.clone(), tenant, call));
            }
            let (tx, rx) = oneshot::channel();
            let id = state.next_waiter;
            state.next_waiter += 1;
            state.enqueue(tenant, Waiter { id, tx });
            (tenant, id, rx)
        };
        let mut queued = Queued {
            shares: self,
            tenant,
            id,
            rx,
            ended: false,
        };
        let granted = (&mut queued.rx).await;
        queued.ended = true;
        match granted {
            Ok(()) => Ok(Permit::new(self.clone(), tenant, call)),
            // The sender was dropped: the pool closed.
            _ => Err(Error::closed()),
        }
    }

    /// Permits held.
    pub(crate) fn in_use(&self, permits: usize) -> usize {
        permits - self.state().free
    }

    /// Permits not held.
    pub(crate) fn free(&self) -> usize {
        self.state().free
    }

    /// Refuses every later request, and fails those waiting.
    pub(crate) fn close(&self) {
        let waiting: Vec<Waiter> = {
            let mut state = self.state();
            state.closed = true;
            state.ready.clear();
            state
                .tenants
                .iter_mut()
                .flat_map(|t| std::mem::take(&mut t.waiting))
                .collect()
        };
        // Their receivers see the sender dropped: closed.
        drop(waiting);
    }

    /// Each tenant's figures, the default tenant first, the others by
    /// name.
    pub(crate) fn statistics(&self) -> Vec<TenantStatistics> {
        let state = self.state();
        let mut all: Vec<TenantStatistics> = state
            .tenants
            .iter()
            .map(|t| TenantStatistics {
                name: t.name.to_string(),
                weight: t.weight,
                queued: t.waiting.len(),
                running: t.running,
                done: t.done,
            })
            .collect();
        drop(state);
        all[1..].sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}

/// A place in a tenant's queue; dropped before its permit came, it leaves
/// the queue, and dropped after, it gives the permit on.
struct Queued<'a> {
    shares: &'a Shares,
    tenant: usize,
    id: u64,
    rx: oneshot::Receiver<()>,
    /// The wait ended, with a permit or with the pool closed.
    ended: bool,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let mut state = self.shares.state();
        // Granting happens under this lock: either the waiter is still
        // queued, or its permit was sent.
        if !state.leave(self.tenant, self.id) && self.rx.try_recv().is_ok() {
            state.release(self.tenant, true);
        }
    }
}

impl State {
    fn add(&mut self, name: &str) -> usize {
        let name: Arc<str> = name.into();
        let i = self.tenants.len();
        self.tenants.push(Tenant {
            name: name.clone(),
            weight: 1,
            limit: None,
            pass: self.now,
            waiting: VecDeque::new(),
            running: 0,
            done: 0,
        });
        self.by_name.insert(name, i);
        i
    }

    /// The index of tenant `name`, added if new.
    fn index(&mut self, name: &str) -> usize {
        match self.by_name.get(name) {
            Some(&i) => i,
            None => self.add(name),
        }
    }

    fn under_cap(&self, i: usize) -> bool {
        let t = &self.tenants[i];
        t.limit.is_none_or(|l| t.running < l)
    }

    /// Gives tenant `i` a permit: its pass moves on by its stride.
    fn grant(&mut self, i: usize) {
        self.free -= 1;
        let t = &mut self.tenants[i];
        t.running += 1;
        // The virtual clock: the pass of the tenant served, which is the
        // lowest of those waiting (or, with nobody waiting, the clock's
        // own if the tenant was behind it).
        let start = t.pass.max(self.now);
        self.now = start;
        t.pass = start + STRIDE / u64::from(t.weight.max(1));
        self.rebase();
    }

    /// Keeps passes far from wrapping: when the clock passes half the
    /// range, every pass moves down by the same amount (the order, which
    /// is all that counts, is kept).
    fn rebase(&mut self) {
        const HALF: u64 = u64::MAX / 2;
        if self.now < HALF {
            return;
        }
        let by = self.now - STRIDE;
        self.now -= by;
        for t in &mut self.tenants {
            t.pass = t.pass.saturating_sub(by);
        }
        self.ready = self
            .ready
            .iter()
            .map(|&(_, i)| (self.tenants[i].pass, i))
            .collect();
    }

    fn enqueue(&mut self, i: usize, waiter: Waiter) {
        let was_empty = self.tenants[i].waiting.is_empty();
        if was_empty {
            // Back from idle: no credit for the quiet time.
            let t = &mut self.tenants[i];
            t.pass = t.pass.max(self.now);
        }
        self.tenants[i].waiting.push_back(waiter);
        if was_empty && self.under_cap(i) {
            self.ready.insert((self.tenants[i].pass, i));
        }
    }

    /// Takes waiter `id` out of tenant `i`'s queue; whether it was there.
    fn leave(&mut self, i: usize, id: u64) -> bool {
        let t = &mut self.tenants[i];
        let Some(at) = t.waiting.iter().position(|w| w.id == id) else {
            return false;
        };
        t.waiting.remove(at);
        if t.waiting.is_empty() {
            let key = (t.pass, i);
            self.ready.remove(&key);
        }
        true
    }

    /// A permit of tenant `i` is back: it goes to the calls due.
    fn release(&mut self, i: usize, call: bool) {
        let was_capped = !self.under_cap(i);
        let t = &mut self.tenants[i];
        t.running -= 1;
        if call {
            t.done += 1;
        }
        self.free += 1;
        if was_capped && !self.tenants[i].waiting.is_empty() {
            self.ready.insert((self.tenants[i].pass, i));
        }
        self.dispatch();
    }

    /// Gives free permits to the tenants due, lowest pass first.
    fn dispatch(&mut self) {
        while self.free > 0 {
            let Some((pass, i)) = self.ready.pop_first() else {
                return;
            };
            let Some(waiter) = self.tenants[i].waiting.pop_front() else {
                continue;
            };
            debug_assert_eq!(pass, self.tenants[i].pass);
            // A waiter whose future is gone (and whose drop waits for this
            // lock) is skipped; its drop then finds itself out of the
            // queue with nothing received.
            let sent = waiter.tx.send(()).is_ok();
            if sent {
                self.grant(i);
            }
            if !self.tenants[i].waiting.is_empty() && self.under_cap(i) {
                self.ready.insert((self.tenants[i].pass, i));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Queues `calls` (tenant, label) one after the other behind a held
    /// permit, lets it go, and returns the labels in the order their
    /// permits were given: with one permit, each holder logs and drops
    /// its permit before the next is given.
    async fn order(
        shares: &Arc<Shares>,
        calls: &[(&'static str, &'static str)],
    ) -> Vec<&'static str> {
        let held = shares.acquire(None).await.unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for &(tenant, label) in calls {
            let (shares, log) = (shares.clone(), log.clone());
            tasks.push(tokio::spawn(async move {
                let permit = shares.acquire(Some(tenant)).await.unwrap();
                log.lock().unwrap().push(label);
                drop(permit);
            }));
            // Each task takes its place in the queue before the next.
            tokio::task::yield_now().await;
        }
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        Arc::try_unwrap(log).unwrap().into_inner().unwrap()
    }

    #[tokio::test]
    async fn a_free_permit_is_taken_at_once_and_comes_back() {
        let shares = Shares::new(2, &[]);
        let a = shares.acquire(Some("a")).await.unwrap();
        let b = shares.acquire(None).await.unwrap();
        assert_eq!(shares.free(), 0);
        drop((a, b));
        assert_eq!(shares.free(), 2);
        let stats = shares.statistics();
        assert_eq!(stats[0].name, "");
        assert_eq!((stats[0].done, stats[1].done), (1, 1));
    }

    #[tokio::test]
    async fn calls_of_one_tenant_go_first_come_first_served() {
        let shares = Shares::new(1, &[]);
        let got = order(&shares, &[("a", "1"), ("a", "2"), ("a", "3"), ("a", "4")]).await;
        assert_eq!(got, ["1", "2", "3", "4"]);
    }

    #[tokio::test]
    async fn a_backlog_does_not_hold_up_another_tenant() {
        let shares = Shares::new(1, &[]);
        let mut calls = vec![("a", "a"); 20];
        calls.push(("b", "b"));
        let got = order(&shares, &calls).await;
        // b is due as soon as a has had its turn since b came.
        let at = got.iter().position(|l| *l == "b").unwrap();
        assert!(at <= 1, "{got:?}");
    }

    #[tokio::test]
    async fn weights_split_the_permits() {
        let setup = [(
            "gold".to_string(),
            TenantSetup {
                weight: Some(3),
                limit: None,
            },
        )];
        let shares = Shares::new(1, &setup);
        let mut calls = vec![("free", "f"); 12];
        calls.extend(vec![("gold", "g"); 12]);
        let got = order(&shares, &calls).await;
        let gold = got[..12].iter().filter(|l| **l == "g").count();
        assert_eq!(gold, 9, "{got:?}");
    }

    #[tokio::test]
    async fn an_idle_tenant_earns_no_credit() {
        let shares = Shares::new(1, &[]);
        // b is served alone a while; then a, long idle, and b both queue.
        let _ = order(&shares, &[("a", "a"); 3]).await;
        let _ = order(&shares, &[("b", "b"); 30]).await;
        let mut calls = vec![("a", "a"); 6];
        calls.extend(vec![("b", "b"); 6]);
        let got = order(&shares, &calls).await;
        // Taking turns, not a's six first for what b used meanwhile.
        assert!(got[..4].contains(&"b"), "{got:?}");
    }

    #[tokio::test]
    async fn a_capped_tenant_waits_while_others_take_free_permits() {
        let setup = [(
            "t".to_string(),
            TenantSetup {
                weight: None,
                limit: Some(1),
            },
        )];
        let shares = Shares::new(3, &setup);
        let first = shares.acquire(Some("t")).await.unwrap();
        let second = tokio::spawn({
            let shares = shares.clone();
            async move { shares.acquire(Some("t")).await.map(drop) }
        });
        tokio::task::yield_now().await;
        assert!(!second.is_finished());
        assert_eq!(shares.statistics()[1].queued, 1);
        // Others still get the free permits.
        let other = shares.acquire(Some("u")).await.unwrap();
        drop(first);
        second.await.unwrap().unwrap();
        drop(other);
        assert_eq!(shares.free(), 3);
    }

    #[tokio::test]
    async fn a_dropped_wait_leaves_the_queue_and_passes_a_permit_on() {
        let shares = Shares::new(1, &[]);
        let held = shares.acquire(None).await.unwrap();
        // Dropped while queued.
        let waiting = shares.acquire(Some("a"));
        assert!(futures_util::FutureExt::now_or_never(waiting).is_none());
        assert_eq!(shares.statistics()[1].queued, 0);
        // Granted, then dropped before it saw its permit.
        let mut late = Box::pin(shares.acquire(Some("b")));
        assert!(futures_util::FutureExt::now_or_never(late.as_mut()).is_none());
        drop(held);
        assert_eq!(shares.free(), 0, "the permit went to b");
        drop(late);
        assert_eq!(shares.free(), 1, "and came back when b went away");
        let again = shares.acquire(None).await.unwrap();
        drop(again);
    }

    #[tokio::test]
    async fn closing_fails_the_waiting_and_later_calls() {
        let shares = Shares::new(1, &[]);
        let held = shares.acquire(None).await.unwrap();
        let waiting = tokio::spawn({
            let shares = shares.clone();
            async move { shares.acquire(Some("a")).await.map(drop) }
        });
        tokio::task::yield_now().await;
        shares.close();
        let e = waiting.await.unwrap().unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::PoolClosed);
        assert!(shares.acquire(None).await.is_err());
        drop(held);
        assert_eq!(shares.free(), 1);
    }
}
