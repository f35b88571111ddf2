//! The pool's roster of workers: the fair-share limiter, the LIFO idle list, the
//! live workers, the counters, and the `wasmpool-housekeeper` thread that
//! retires idle workers and kills those whose interrupted call overran its
//! grace period.
//!
//! Workers report here through [`Books`]; they hold an `Arc` of the
//! roster (and of the sync registry), never of the pool.

use crate::locks::Locked as _;
use std::collections::HashMap;
use std::num::{NonZeroU64, NonZeroUsize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::Statistics;
use crate::engine::EngineKind;
use crate::error::{Error, ErrorKind};
use crate::idle::{self, GIVE_BACK_AFTER};
use crate::options::WorkerKind;
use crate::shares::{Permit, Shares, TenantSetup};
use crate::sync::Registry;
use crate::worker::{Books, Exit, Grants, Shared, Spec, Worker};

/// What the roster is made with.
pub(super) struct RosterSettings {
    pub(super) workers: NonZeroUsize,
    pub(super) idle_timeout: Duration,
    pub(super) retire_after: Option<NonZeroU64>,
    pub(super) retire_above: Option<u64>,
    pub(super) spec: Spec,
    pub(super) registry: Arc<Registry>,
    /// The tenants with a weight or a cap of their own.
    pub(super) tenants: Vec<(String, TenantSetup)>,
}

pub(crate) struct Roster {
    workers: NonZeroUsize,
    /// The machine's parallelism.
    cores: usize,
    idle_timeout: Duration,
    retire_after: Option<NonZeroU64>,
    /// A process worker holding more of its own memory than this after a
    /// call is retired (see [`idle::holds_more_than`]).
    retire_above: Option<u64>,
    spec: Spec,
    registry: Arc<Registry>,
    /// A permit is the right to hold a worker: FIFO within a tenant, fair
    /// shares across tenants.
    shares: Arc<Shares>,
    /// What the housekeeper looks after.
    house: Mutex<House>,
    /// Wakes the housekeeper (paired with `house`).
    bell: Condvar,
    /// The housekeeper waits with no deadline, so a check-in must wake it.
    /// Read and written under the `house` lock.
    unarmed: AtomicBool,
    /// Every worker that has not ended (a process: not been reaped).
    live: Mutex<HashMap<u64, Arc<Shared>>>,
    exited: Notify,
    /// Told whenever a worker comes back to the idle list or ends: a
    /// session's call waits for its own worker.
    returned: Notify,
    /// Told whenever lanes come free for calls to join.
    lane_freed: Notify,
    closed: AtomicBool,
    next_worker: AtomicU64,
    spawned: AtomicU64,
    crashed: AtomicU64,
    killed: AtomicU64,
    calls: AtomicU64,
}

#[derive(Default)]
struct House {
    /// LIFO: the most recently used worker is at the end. A worker that
    /// runs several calls at once is here whole, its other lanes inside it
    /// ([`Worker::spare`]).
    idle: Vec<Worker>,
    /// The free lanes of busy workers that run several calls at once, for
    /// calls to join.
    lanes: Vec<Worker>,
    /// Workers to kill if their abandoned call has not ended by then.
    grace: Vec<GraceKill>,
}

struct GraceKill {
    at: Instant,
    shared: Arc<Shared>,
    call: u64,
}

impl Roster {
    /// Test only: panics while holding the house lock and the lock of
    /// the live workers, which poisons both.
    #[cfg(feature = "test-hooks")]
    pub(super) fn poison(&self) {
        let _held = (self.house(), self.live.locked());
        panic!("a test poisons the roster's locks on purpose");
    }

    /// A roster with no workers yet, and its housekeeper thread.
    pub(super) fn start(settings: RosterSettings) -> Result<Arc<Roster>, Error> {
        let RosterSettings {
            workers,
            idle_timeout,
            retire_after,
            retire_above,
            spec,
            registry,
            tenants,
        } = settings;
        let roster = Arc::new(Roster {
            workers,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            idle_timeout,
            retire_after,
            retire_above,
            spec,
            registry,
            shares: Shares::new(workers.get(), &tenants),
            house: Mutex::default(),
            bell: Condvar::new(),
            unarmed: AtomicBool::new(false),
            live: Mutex::default(),
            exited: Notify::new(),
            returned: Notify::new(),
            lane_freed: Notify::new(),
            closed: AtomicBool::new(false),
            next_worker: AtomicU64::new(0),
            spawned: AtomicU64::new(0),
            crashed: AtomicU64::new(0),
            killed: AtomicU64::new(0),
            calls: AtomicU64::new(0),
        });
        let house = roster.clone();
        std::thread::Builder::new()
            .name("wasmpool-housekeeper".into())
            .spawn(move || house.housekeeper())
            .map_err(|e| Error::io("starting the housekeeper thread", e))?;
        Ok(roster)
    }

    /// Whether a worker's directories limit which calls it can take (see
    /// [`Spec::confines`]).
    /// Whether calls of `kind` run side by side on a worker's lanes, as
    /// calls that pass streams and futures must.
    pub(super) fn has_lanes(&self, kind: EngineKind) -> bool {
        kind.concurrent && self.spec.kind == WorkerKind::Process && self.spec.async_calls > 1
    }

    pub(super) fn confines(&self) -> bool {
        self.spec.confines()
    }

    /// Whether workers are processes or threads.
    #[cfg_attr(
        not(feature = "test-hooks"),
        expect(dead_code, reason = "only the test hooks, which need processes, ask")
    )]
    pub(super) fn kind(&self) -> WorkerKind {
        self.spec.kind
    }

    /// The most workers at once.
    pub(super) fn size(&self) -> NonZeroUsize {
        self.workers
    }

    fn house(&self) -> MutexGuard<'_, House> {
        self.house.locked()
    }

    /// Waits for the right to hold a worker for a call of `tenant`: first
    /// come first served within the tenant, fair shares across tenants.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future gives up the place in the queue.
    pub(super) async fn permit(&self, tenant: Option<&str>) -> Result<Permit, Error> {
        self.shares.acquire(tenant).await
    }

    /// Waits for the right to hold a worker that serves no call (a worker
    /// being warmed).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future gives up the place in the queue.
    pub(super) async fn warming_permit(&self) -> Result<Permit, Error> {
        self.shares.acquire_uncounted().await
    }

    /// A worker for a plain call, and the right to hold it: a free lane of
    /// a busy worker that runs several calls at once, if one of `kind` can
    /// reach `grants` (joining it takes a share of its permit, and waits
    /// for none), else a [`permit`] of `tenant`'s and a worker from
    /// [`checkout`]. A worker with lanes checked out so puts its other
    /// lanes up for calls to join.
    ///
    /// [`permit`]: Roster::permit
    /// [`checkout`]: Roster::checkout
    ///
    /// # Cancel safety
    ///
    /// Dropping the future gives up the place in the queue.
    pub(super) async fn checkout_call(
        self: &Arc<Self>,
        tenant: Option<&str>,
        grants: &Grants,
        kind: EngineKind,
    ) -> Result<(Worker, Permit), Error> {
        // Only a process worker for async components has lanes; any other
        // call takes its permit as before, with nothing more on its path.
        let lanes =
            kind.concurrent && self.spec.kind == WorkerKind::Process && self.spec.async_calls > 1;
        let permit = loop {
            if !lanes {
                break self.permit(tenant).await?;
            }
            // A lane that comes free while the call waits for a permit is
            // taken instead: a worker being started for another call puts
            // up its lanes only once it is ready.
            let freed = self.lane_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(joined) = self.free_lane(grants, kind) {
                return Ok(joined);
            }
            tokio::select! {
                permit = self.permit(tenant) => break permit?,
                () = freed => {}
            }
        };
        let mut worker = self.checkout(grants, kind).await?;
        if let Some(group) = &worker.group
            && !worker.spare.is_empty()
        {
            *group.permit.locked() = permit.downgrade();
            let spare = std::mem::take(&mut worker.spare);
            self.house().lanes.extend(spare);
            self.lane_freed.notify_waiters();
        }
        Ok((worker, permit))
    }

    /// A free lane of a busy worker of `kind` that can reach `grants`, with
    /// a share of the worker's permit.
    fn free_lane(&self, grants: &Grants, kind: EngineKind) -> Option<(Worker, Permit)> {
        let confines = self.spec.confines();
        // Lanes of workers found dead; ending a worker takes its locks, so
        // they are dropped after this one.
        let mut gone = Vec::new();
        let found = {
            let mut house = self.house();
            gone.extend(Self::reassemble_orphans(&mut house));
            let mut found = None;
            let mut i = house.lanes.len();
            while i > 0 {
                i -= 1;
                let w = &house.lanes[i];
                if w.shared.is_gone() {
                    gone.push(house.lanes.remove(i));
                    continue;
                }
                if (confines && w.grants != *grants) || w.kind != kind {
                    continue;
                }
                let permit = w.group.as_ref().and_then(|g| g.permit.locked().upgrade());
                if let Some(permit) = permit {
                    found = Some((house.lanes.remove(i), permit));
                    break;
                }
            }
            found
        };
        drop(gone);
        found
    }

    /// Takes the most recently used idle worker that can reach exactly the
    /// directories in `grants` (any idle worker, if workers are not
    /// confined), or starts a new one. Call it holding a [`permit`]: a
    /// worker that must be started while the pool is full of idle workers
    /// of other grants takes the place of the least recently used.
    ///
    /// [`permit`]: Roster::permit
    pub(super) async fn checkout(
        self: &Arc<Self>,
        grants: &Grants,
        kind: EngineKind,
    ) -> Result<Worker, Error> {
        let confines = self.spec.confines();
        // Workers found dead; ending a worker takes its locks, so they are
        // dropped after this one.
        let mut gone = Vec::new();
        let evicted = {
            let mut house = self.house();
            gone.extend(Self::reassemble_orphans(&mut house));
            let mut i = house.idle.len();
            let mut found = None;
            // A worker a session's call waits for is taken only if no
            // other will do.
            let mut awaited = None;
            while i > 0 {
                i -= 1;
                let w = &house.idle[i];
                // A worker killed while idle is skipped here, not found
                // dead by a call.
                if w.shared.is_gone() {
                    gone.push(house.idle.remove(i));
                    awaited = awaited.map(|a: usize| if a > i { a - 1 } else { a });
                } else if (!confines || w.grants == *grants) && w.kind == kind {
                    if !w.shared.is_awaited() {
                        found = Some(house.idle.remove(i));
                        break;
                    }
                    awaited.get_or_insert(i);
                }
            }
            if let (None, Some(i)) = (&found, awaited) {
                found = Some(house.idle.remove(i));
            }
            // `house` is released before `gone` drops, on either way out.
            if let Some(w) = found {
                return Ok(w);
            }
            // The permit held counts the worker about to start. A worker
            // that holds sessions is never the one that makes room: if all
            // idle ones do, the pool runs a worker over its size, rather
            // than make this call wait for ever for workers it cannot use
            // (they reach other directories, or are of another kind).
            let full = house.idle.len() + self.in_use() > self.workers.get();
            let unpinned = house.idle.iter().position(|w| w.shared.sessions() == 0);
            unpinned.filter(|_| full).map(|i| house.idle.remove(i))
        };
        drop(gone);
        if let Some(w) = evicted {
            tracing::debug!(
                worker = w.id,
                "retiring an idle worker for one that can reach other directories, or of another kind"
            );
            drop(w);
        }
        self.spawn(grants.clone(), kind).await
    }

    /// Takes the worker of `shared` (a session's) and a permit of
    /// `tenant`'s: waits for the worker to be idle first, then for the
    /// permit, so that a call waiting for a busy worker holds no place
    /// another worker could serve. Fails with `SessionLost` if the worker
    /// has ended.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops only the waiting.
    pub(super) async fn session_worker(
        &self,
        shared: &Arc<Shared>,
        tenant: Option<&str>,
    ) -> Result<(Worker, Permit), Error> {
        let _awaited = shared.await_it();
        let position = |house: &House| {
            house
                .idle
                .iter()
                .position(|w| Arc::ptr_eq(&w.shared, shared))
        };
        loop {
            loop {
                let returned = self.returned.notified();
                tokio::pin!(returned);
                returned.as_mut().enable();
                if position(&self.house()).is_some() {
                    break;
                }
                if self.is_closed() {
                    return Err(Error::closed());
                }
                if shared.is_gone() {
                    return Err(super::session::worker_ended(None));
                }
                returned.await;
            }
            let permit = self.permit(tenant).await?;
            let mut house = self.house();
            if let Some(i) = position(&house) {
                return Ok((house.idle.remove(i), permit));
            }
            // Another call took it meanwhile: wait again, holding nothing.
            drop(house);
            drop(permit);
        }
    }

    /// A worker for a new session: a new one while the pool has room for
    /// one, so that sessions spread over the workers, else the idle one
    /// (that can reach `grants`, of `kind`) holding the fewest
    /// sessions, else as [`checkout`](Roster::checkout). Call it holding a
    /// permit.
    pub(super) async fn checkout_for_session(
        self: &Arc<Self>,
        grants: &Grants,
        kind: EngineKind,
    ) -> Result<Worker, Error> {
        let confines = self.spec.confines();
        let found = {
            let mut house = self.house();
            // The permit held counts the worker about to start.
            let room = self.live.locked().len() < self.workers.get()
                && house.idle.len() + self.in_use() <= self.workers.get();
            if room {
                None
            } else {
                let fewest = house
                    .idle
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| {
                        !w.shared.is_gone() && (!confines || w.grants == *grants) && w.kind == kind
                    })
                    .min_by_key(|(_, w)| w.shared.sessions())
                    .map(|(i, _)| i);
                match fewest {
                    Some(i) => Some(Some(house.idle.remove(i))),
                    None => Some(None),
                }
            }
        };
        match found {
            None => self.spawn(grants.clone(), kind).await,
            Some(Some(w)) => Ok(w),
            Some(None) => self.checkout(grants, kind).await,
        }
    }

    /// Workers held by calls (or being started for them): one per permit
    /// taken.
    fn in_use(&self) -> usize {
        self.shares.in_use(self.workers.get())
    }

    /// Starts a new worker that can reach `grants`, with an engine of
    /// `kind`, whatever is idle.
    pub(super) async fn spawn(
        self: &Arc<Self>,
        grants: Grants,
        kind: EngineKind,
    ) -> Result<Worker, Error> {
        if self.is_closed() {
            return Err(Error::closed());
        }
        let id = self.next_worker.fetch_add(1, Ordering::Relaxed);
        let books: Arc<dyn Books> = self.clone();
        let mut spec = self.spec.clone();
        spec.settings.kind = kind;
        let rx = Worker::spawn(books, self.registry.clone(), id, spec, grants);
        let worker = rx.await.map_err(|_| {
            Error::new(
                ErrorKind::Spawn,
                format!("worker {id}: its host thread ended"),
            )
        })??;
        self.spawned.fetch_add(1, Ordering::Relaxed);
        Ok(worker)
    }

    /// Kills `worker` on purpose (a cancel with `Cancel::Kill`, a timeout
    /// past its grace), and counts it.
    pub(super) fn kill(&self, worker: Worker) {
        self.killed.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            worker = worker.id,
            pid = worker.shared.pid(),
            "killing worker"
        );
        worker.kill();
    }

    /// Counts calls that reached a worker and ended.
    pub(super) fn count_calls(&self, n: u64) {
        self.calls.fetch_add(n, Ordering::Relaxed);
    }

    /// Kills the worker of abandoned call `call` unless the call has ended
    /// within `grace`. The housekeeper keeps the deadline.
    pub(super) fn kill_after(&self, shared: Arc<Shared>, call: u64, grace: Duration) {
        let at = Instant::now() + grace;
        self.house().grace.push(GraceKill { at, shared, call });
        self.bell.notify_one();
    }

    /// A snapshot of the counters.
    pub(super) fn statistics(&self) -> Statistics {
        let idle = self.house().idle.len();
        let live = self.live.locked().len();
        Statistics {
            max_workers: self.workers.get(),
            idle,
            busy: live.saturating_sub(idle),
            spawned: self.spawned.load(Ordering::Relaxed),
            crashed: self.crashed.load(Ordering::Relaxed),
            killed: self.killed.load(Ordering::Relaxed),
            calls: self.calls.load(Ordering::Relaxed),
            tenants: self.shares.statistics(),
        }
    }

    /// The pids of the live worker processes.
    pub(super) fn pids(&self) -> Vec<u32> {
        let live = self.live.locked();
        live.values().filter_map(|s| s.pid()).collect()
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Stops new calls and lets idle workers exit.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.shares.close();
        let (idle, lanes) = {
            let mut house = self.house();
            (
                std::mem::take(&mut house.idle),
                std::mem::take(&mut house.lanes),
            )
        };
        drop((idle, lanes));
        self.bell.notify_one();
    }

    /// The last `Pool` handle is gone: kill every worker. Never blocks; the
    /// workers' threads reap them.
    pub(super) fn terminate(&self) {
        self.close();
        for shared in self.live.locked().values() {
            shared.kill();
        }
    }

    /// Waits until every worker has ended.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops only the waiting.
    pub(super) async fn all_exited(&self) {
        loop {
            let exited = self.exited.notified();
            tokio::pin!(exited);
            exited.as_mut().enable();
            if self.live.locked().is_empty() {
                return;
            }
            exited.await;
        }
    }

    /// The `wasmpool-housekeeper` thread: retires workers idle for longer
    /// than the idle timeout, and kills workers whose abandoned call
    /// overran its grace period; exits when the pool closes.
    fn housekeeper(&self) {
        let mut house = self.house();
        loop {
            if self.is_closed() && house.grace.is_empty() {
                return;
            }
            let now = Instant::now();
            // Payload regions of workers idle a while go back to the
            // kernel; under the house lock, so that no call takes the
            // worker meanwhile.
            for w in &house.idle {
                if now.duration_since(w.last_used) >= GIVE_BACK_AFTER && w.shared.region_is_large()
                {
                    w.shared.release_region();
                }
            }
            // A worker holding sessions never idles out.
            let expired: Vec<Worker> = house
                .idle
                .extract_if(.., |w| {
                    now.duration_since(w.last_used) >= self.idle_timeout && w.shared.sessions() == 0
                })
                .collect();
            // Taken out in one call, so that no panic can lose a deadline
            // still pending.
            let due: Vec<GraceKill> = house.grace.extract_if(.., |g| g.at <= now).collect();
            if !expired.is_empty() || !due.is_empty() {
                // Ending workers takes their locks: not under this one.
                drop(house);
                for w in expired {
                    tracing::debug!(worker = w.id, pid = w.shared.pid(), "retiring idle worker");
                    drop(w);
                }
                for g in due {
                    if g.shared.kill_if_abandoned(g.call) {
                        self.killed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                house = self.house();
                continue;
            }
            // An idle timeout too long to add to an Instant never expires.
            let idle_due = house
                .idle
                .iter()
                .filter(|w| w.shared.sessions() == 0)
                .filter_map(|w| w.last_used.checked_add(self.idle_timeout))
                .min();
            let grace_due = house.grace.iter().map(|g| g.at).min();
            let region_due = house
                .idle
                .iter()
                .filter(|w| w.shared.region_is_large())
                .map(|w| w.last_used + GIVE_BACK_AFTER)
                .min();
            let next = [idle_due, grace_due, region_due]
                .into_iter()
                .flatten()
                .min();
            house = match next {
                Some(at) => {
                    let wait = at.saturating_duration_since(now);
                    crate::locks::unpoisoned(self.bell.wait_timeout(house, wait)).0
                }
                None => {
                    // With workers idle that hold no sessions, this is an
                    // idle timeout that never expires: only `close` or a new
                    // deadline wakes it. With none such, the next one to
                    // come (checked in, or unpinned) must.
                    let unarmed = house.idle.iter().all(|w| w.shared.sessions() > 0);
                    self.unarmed.store(unarmed, Ordering::SeqCst);
                    crate::locks::unpoisoned(self.bell.wait(house))
                }
            };
        }
    }
}

impl Books for Roster {
    fn register(&self, id: u64, shared: Arc<Shared>) {
        self.live.locked().insert(id, shared);
    }

    fn exited(&self, id: u64, how: Exit) {
        self.live.locked().remove(&id);
        if how == Exit::Crashed {
            self.crashed.fetch_add(1, Ordering::Relaxed);
        }
        self.exited.notify_waiters();
        self.returned.notify_waiters();
    }

    /// Returns a worker after a call: to the idle list, or to retirement
    /// (the pool is closing, the worker is dead, or it is past
    /// `retire_after` calls or `retire_above` bytes).
    fn checkin(&self, mut worker: Worker, permit: Permit) {
        worker.calls += 1;
        worker.last_used = Instant::now();
        // A lane of a worker that runs several calls at once: it waits for
        // calls to join until the worker's last call ends, and then the
        // worker comes back whole.
        if let Some(group) = worker.group.clone()
            && worker.spare.is_empty()
        {
            let mut house = self.house();
            if !permit.is_last() {
                house.lanes.push(worker);
                // Under the lock, so that the last call's check-in sees
                // that it is the last.
                drop(permit);
                drop(house);
                self.lane_freed.notify_waiters();
                return;
            }
            let mut lanes = vec![worker];
            let mut i = house.lanes.len();
            while i > 0 {
                i -= 1;
                if house.lanes[i]
                    .group
                    .as_ref()
                    .is_some_and(|g| Arc::ptr_eq(g, &group))
                {
                    lanes.push(house.lanes.remove(i));
                }
            }
            *group.permit.locked() = Default::default();
            drop(house);
            match lanes.iter().position(|w| w.shared.is_primary()) {
                Some(i) => {
                    let mut whole = lanes.swap_remove(i);
                    whole.spare = lanes;
                    return self.shelve(whole, permit);
                }
                // The worker itself was killed with its call: the process
                // is gone, and its lanes go with it.
                None => {
                    drop(lanes);
                    drop(permit);
                    return;
                }
            }
        }
        self.shelve(worker, permit);
    }

    /// Whether at most one call is in flight and a core is left over for a
    /// host thread to poll on.
    fn unpinned(&self) {
        let _house = self.house();
        if self.unarmed.swap(false, Ordering::SeqCst) {
            self.bell.notify_one();
        }
    }

    fn is_quiet(&self) -> bool {
        self.cores > 1 && self.shares.free() + 1 >= self.workers.get()
    }
}

impl Roster {
    /// Puts back whole the workers whose lanes all wait in `house` with no
    /// call holding the worker any more: the last call's share of the
    /// permit went without a check-in (its lane was dropped, its call
    /// lost). Returns the lanes of workers that lost their first lane,
    /// whose process is gone or going, to drop after the lock.
    fn reassemble_orphans(house: &mut House) -> Vec<Worker> {
        let orphaned = |w: &Worker| {
            w.group
                .as_ref()
                .is_some_and(|g| g.permit.locked().upgrade().is_none())
        };
        let mut dropped = Vec::new();
        while let Some(i) = house.lanes.iter().position(orphaned) {
            let group = house.lanes[i].group.clone();
            let mut lanes = Vec::new();
            let mut j = house.lanes.len();
            while j > 0 {
                j -= 1;
                let same = match (&house.lanes[j].group, &group) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    _ => false,
                };
                if same {
                    lanes.push(house.lanes.remove(j));
                }
            }
            match lanes.iter().position(|w| w.shared.is_primary()) {
                Some(p) => {
                    let mut whole = lanes.swap_remove(p);
                    whole.spare = lanes;
                    house.idle.insert(0, whole);
                }
                None => dropped.extend(lanes),
            }
        }
        dropped
    }

    /// [`Books::checkin`] of a worker whole: to the idle list, or to
    /// retirement.
    fn shelve(&self, worker: Worker, permit: Permit) {
        // The memory bound last: it reads `/proc`. A thread has no memory
        // of its own to bound.
        // A worker holding sessions is kept whatever its age or size:
        // retiring it would lose them.
        let pinned = worker.shared.sessions() > 0;
        let retire = self.is_closed()
            || worker.shared.is_dead()
            || !pinned && self.retire_after.is_some_and(|n| worker.calls >= n.get())
            || !pinned
                && self.retire_above.is_some_and(|bytes| {
                    worker
                        .shared
                        .pid()
                        .is_some_and(|pid| idle::holds_more_than(pid, bytes))
                });
        if retire {
            tracing::debug!(
                worker = worker.id,
                pid = worker.shared.pid(),
                calls = worker.calls,
                "retiring worker"
            );
            drop(worker);
        } else {
            let mut house = self.house();
            // A large payload region is due back sooner than any idle
            // timeout: the housekeeper must set its deadline by it.
            let large = worker.shared.region_is_large();
            house.idle.push(worker);
            // Only a housekeeper with no deadline needs waking: one that
            // has a deadline sees this worker when it next looks, and a
            // wake-up per call would cost a context switch per call.
            if (!pinned && self.unarmed.swap(false, Ordering::SeqCst)) || large {
                self.bell.notify_one();
            }
            drop(house);
            self.returned.notify_waiters();
        }
        drop(permit);
    }
}
