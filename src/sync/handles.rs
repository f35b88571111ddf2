//! The host's async handles on the pool's named primitives, and the host
//! operation they (and [`JobHandle`](crate::JobHandle)) are made of.
//!
//! Every future here but [`ConditionGuard::wait`] is cancel-safe (each
//! says what a drop gives up), so a timeout is `tokio::time::timeout`
//! around any of them, and [`ConditionGuard::wait_timeout`] for a
//! condition. None needs a Tokio runtime but `wait_timeout`.
//!
//! A value a dropped `get` or `recv` had already received goes back to the
//! front of its queue, and a lock or permit it had already been granted is
//! released.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use super::{Owner, Registry, Sink, Unget};
use crate::error::{Error, ErrorKind};
use crate::wire::{Answer, GuestOp};

/// A host operation: submits `op` and awaits its answer. If dropped before
/// the answer, it undoes what the answer would have given.
pub(crate) struct HostOp<'a> {
    registry: &'a Registry,
    owner: Owner,
    rx: Option<oneshot::Receiver<Answer>>,
    /// Where a received value goes back to if the operation is dropped.
    unget: Option<Unget<'a>>,
}

impl<'a> HostOp<'a> {
    /// Submits `op` for `owner`, on the job channel `channel` if given.
    pub(crate) fn submit(
        registry: &'a Registry,
        owner: Owner,
        op: GuestOp,
        channel: Option<&'a str>,
        unget: Option<Unget<'a>>,
    ) -> HostOp<'a> {
        let (tx, rx) = oneshot::channel();
        registry.submit(owner, 0, op, Sink::Host(tx), channel);
        HostOp {
            registry,
            owner,
            rx: Some(rx),
            unget,
        }
    }

    /// The answer, which operations that never wait have already.
    fn now(mut self) -> Answer {
        match self.rx.take().map(|mut rx| rx.try_recv()) {
            Some(Ok(a)) => a,
            _ => Answer::Invalid("no answer".into()),
        }
    }

    /// Waits for the answer.
    pub(crate) async fn answer(mut self) -> Answer {
        let rx = self.rx.as_mut().expect("not yet answered");
        let answer = rx.await;
        self.rx = None;
        // The registry drops a waiter only when its primitive goes: a
        // job's channel whose handle is gone.
        answer.unwrap_or(Answer::Closed)
    }
}

impl Drop for HostOp<'_> {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else {
            return;
        };
        rx.close();
        // Drops the wait, or gives back a lock or permit granted since.
        self.registry.release_all(self.owner);
        if let (Ok(Answer::Value(v)), Some(to)) = (rx.try_recv(), self.unget) {
            self.registry.unget(to, v.into_vec());
        }
    }
}

/// Runs `op` for a new owner: the answer, or a blocking one's future.
fn host_op(registry: &Registry, op: GuestOp) -> HostOp<'_> {
    HostOp::submit(registry, registry.host_owner(), op, None, None)
}

/// Turns an answer that is an error into an [`Error`].
pub(crate) fn check(answer: Answer, what: &str) -> Result<Answer, Error> {
    match answer {
        Answer::Timeout => Err(Error::new(ErrorKind::Timeout, format!("{what}: timed out"))),
        Answer::NotFound(m) => Err(Error::new(ErrorKind::Sync, format!("{what}: {m}"))),
        Answer::Closed => Err(Error::new(ErrorKind::Closed, format!("{what}: closed"))),
        Answer::Invalid(m) => Err(Error::new(ErrorKind::Sync, format!("{what}: {m}"))),
        a => Ok(a),
    }
}

pub(crate) fn encode<T: Serialize + ?Sized>(
    value: &T,
    what: &str,
) -> Result<serde_bytes::ByteBuf, Error> {
    rmp_serde::to_vec_named(value)
        .map(serde_bytes::ByteBuf::from)
        .map_err(|e| Error::new(ErrorKind::ArgumentMismatch, format!("{what}: {e}")))
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, Error> {
    rmp_serde::from_slice(bytes)
        .map_err(|e| Error::new(ErrorKind::ResultMismatch, format!("{what}: {e}")))
}

/// The pool's queue `name`: FIFO, optionally bounded, shared by the host
/// and every guest of the pool. From [`Pool::queue`](crate::Pool::queue)
/// and [`Pool::joinable_queue`](crate::Pool::joinable_queue).
///
/// A closed queue takes no more values; once empty, `get` returns `None`.
/// In a joinable queue every value put must be marked done
/// ([`task_done`](Self::task_done)); [`join`](Self::join) waits for that.
/// A guest's call that took values from a joinable queue and ends without
/// marking them done (it returned, trapped, was cancelled or killed) gives
/// them back, to the front of the queue: no value is lost.
pub struct Queue<T> {
    registry: Arc<Registry>,
    name: Arc<str>,
    _values: PhantomData<fn(T) -> T>,
}

/// A named primitive's handle: the registry and the name.
macro_rules! handle_common {
    ($ty:ident $(<$t:ident>)?) => {
        impl$(<$t>)? Clone for $ty$(<$t>)? {
            fn clone(&self) -> Self {
                $ty {
                    registry: self.registry.clone(),
                    name: self.name.clone(),
                    $(_values: PhantomData::<fn($t) -> $t>,)?
                }
            }
        }

        impl$(<$t>)? fmt::Debug for $ty$(<$t>)? {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty)).field("name", &self.name).finish()
            }
        }

        impl$(<$t>)? $ty$(<$t>)? {
            pub(crate) fn new(registry: Arc<Registry>, name: &str) -> Self {
                $ty {
                    registry,
                    name: name.into(),
                    $(_values: PhantomData::<fn($t) -> $t>,)?
                }
            }

            /// The name guests open it by.
            pub fn name(&self) -> &str {
                &self.name
            }
        }
    };
}

handle_common!(Queue<T>);

impl<T> Queue<T> {
    fn name_op(&self) -> String {
        self.name.to_string()
    }

    /// Marks one value taken from a joinable queue done.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Sync`] if the queue is not joinable, or more values
    /// were marked done than were put.
    pub fn task_done(&self) -> Result<(), Error> {
        let name = self.name_op();
        check(
            host_op(&self.registry, GuestOp::QueueTaskDone { name }).now(),
            "queue task_done",
        )
        .map(drop)
    }

    /// Waits until every value put in this joinable queue was marked done.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Sync`] if the queue is not joinable.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future only stops the waiting.
    pub async fn join(&self) -> Result<(), Error> {
        let name = self.name_op();
        check(
            host_op(&self.registry, GuestOp::QueueJoin { name })
                .answer()
                .await,
            "queue join",
        )
        .map(drop)
    }

    /// Closes the queue: puts fail with [`ErrorKind::Closed`], and gets
    /// return `None` once it is empty. Puts waiting for room fail at once.
    pub fn close(&self) {
        let name = self.name_op();
        let _ = host_op(&self.registry, GuestOp::QueueClose { name }).now();
    }

    /// How many values wait in the queue.
    pub fn len(&self) -> usize {
        let name = self.name_op();
        match host_op(&self.registry, GuestOp::QueueLen { name }).now() {
            Answer::Count(n) => usize::try_from(n).unwrap_or(usize::MAX),
            _ => 0,
        }
    }

    /// Whether no value waits in the queue.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Puts `value` at the back, waiting while the queue is full.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] if the queue is closed;
    /// [`ErrorKind::ArgumentMismatch`] if `value` cannot be encoded.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a put dropped while it waits for room gives up its
    /// place among the waiting putters and puts nothing; one that room
    /// was made for before the drop has put its value, once. Either way
    /// the queue holds the value once or not at all.
    pub async fn put(&self, value: &T) -> Result<(), Error> {
        let value = encode(value, "queue put")?;
        let name = self.name_op();
        let op = host_op(&self.registry, GuestOp::QueuePut { name, value });
        check(op.answer().await, "queue put").map(drop)
    }

    /// Takes the value at the front, waiting while the queue is empty;
    /// `None` once it is closed and empty.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ResultMismatch`] if the value does not decode as a `T`;
    /// the value is consumed.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a get dropped while it waits gives up its place among
    /// the waiting getters; a value it had already been handed goes back
    /// to the front of the queue, so no value is lost.
    pub async fn get(&self) -> Result<Option<T>, Error> {
        let name = self.name_op();
        let op = HostOp::submit(
            &self.registry,
            self.registry.host_owner(),
            GuestOp::QueueGet { name },
            None,
            Some(Unget::Queue(&self.name)),
        );
        match check(op.answer().await, "queue get")? {
            Answer::Value(v) => decode(&v, "a queue value").map(Some),
            _ => Ok(None),
        }
    }
}

/// The pool's lock (or rlock) `name`, from [`Pool::lock`](crate::Pool::lock)
/// or [`Pool::rlock`](crate::Pool::rlock).
///
/// An rlock can be taken again by the guest call that holds it. On the
/// host each [`LockGuard`] is a holder of its own.
pub struct Lock {
    registry: Arc<Registry>,
    name: Arc<str>,
}

handle_common!(Lock);

/// What a host owner holds (a lock, a permit), released when dropped.
struct Held {
    registry: Arc<Registry>,
    owner: Owner,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.registry.release_all(self.owner);
    }
}

/// Takes what `op` grants (a lock or a permit) for a new owner.
async fn hold(registry: &Arc<Registry>, op: GuestOp, what: &str) -> Result<Held, Error> {
    let owner = registry.host_owner();
    let answer = HostOp::submit(registry, owner, op, None, None)
        .answer()
        .await;
    // The owner holds it from here, even if the answer is an error (then
    // there is nothing to release).
    let held = Held {
        registry: registry.clone(),
        owner,
    };
    check(answer, what).map(|_| held)
}

/// Holds a [`Lock`] (or a [`Condition`]'s lock) until dropped.
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard(Held);

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard").finish_non_exhaustive()
    }
}

/// Acquires lock `name` and returns its guard.
async fn acquire(registry: &Arc<Registry>, name: &str, what: &str) -> Result<LockGuard, Error> {
    let op = GuestOp::LockAcquire { name: name.into() };
    hold(registry, op, what).await.map(LockGuard)
}

impl Lock {
    /// Waits for the lock and holds it until the guard is dropped.
    ///
    /// # Errors
    ///
    /// None in practice; a [`ErrorKind::Sync`] error would mean the lock
    /// was not created on this pool.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future gives up its place in the lock's
    /// FIFO of waiters, and a lock granted before the drop is released at
    /// once.
    pub async fn lock(&self) -> Result<LockGuard, Error> {
        acquire(&self.registry, &self.name, "lock").await
    }
}

/// The pool's bounded semaphore `name`, from
/// [`Pool::semaphore`](crate::Pool::semaphore).
///
/// A permit is given back by its holder only: by dropping a
/// [`SemaphorePermit`] on the host, by `release` in a guest, or when a
/// guest's call ends.
pub struct Semaphore {
    registry: Arc<Registry>,
    name: Arc<str>,
}

handle_common!(Semaphore);

/// One permit of a [`Semaphore`], given back when dropped.
#[must_use = "the permit is given back when dropped"]
pub struct SemaphorePermit(#[expect(dead_code, reason = "held only to be dropped")] Held);

impl fmt::Debug for SemaphorePermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphorePermit").finish_non_exhaustive()
    }
}

impl Semaphore {
    /// Waits for a permit.
    ///
    /// # Errors
    ///
    /// None in practice (see [`Lock::lock`]).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future gives up its place in the
    /// semaphore's FIFO of waiters, and a permit granted before the drop
    /// is given back at once.
    pub async fn acquire(&self) -> Result<SemaphorePermit, Error> {
        let op = GuestOp::SemaphoreAcquire {
            name: self.name.to_string(),
        };
        hold(&self.registry, op, "semaphore acquire")
            .await
            .map(SemaphorePermit)
    }
}

/// The pool's event `name`, from [`Pool::event`](crate::Pool::event): a
/// flag that waiters wait to see set.
pub struct Event {
    registry: Arc<Registry>,
    name: Arc<str>,
}

handle_common!(Event);

impl Event {
    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let _ = host_op(
            &self.registry,
            GuestOp::EventSet {
                name: self.name.to_string(),
            },
        )
        .now();
    }

    /// Clears the flag.
    pub fn clear(&self) {
        let _ = host_op(
            &self.registry,
            GuestOp::EventClear {
                name: self.name.to_string(),
            },
        )
        .now();
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        let op = host_op(
            &self.registry,
            GuestOp::EventIsSet {
                name: self.name.to_string(),
            },
        );
        matches!(op.now(), Answer::Bool(true))
    }

    /// Waits until the flag is set; at once if it is.
    ///
    /// # Errors
    ///
    /// None in practice (see [`Lock::lock`]).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future only stops the waiting.
    pub async fn wait(&self) -> Result<(), Error> {
        let op = host_op(
            &self.registry,
            GuestOp::EventWait {
                name: self.name.to_string(),
            },
        );
        check(op.answer().await, "event wait").map(drop)
    }
}

/// The pool's condition variable `name`, with its own lock, from
/// [`Pool::condition`](crate::Pool::condition).
pub struct Condition {
    registry: Arc<Registry>,
    name: Arc<str>,
}

handle_common!(Condition);

/// Holds a [`Condition`]'s lock; waits and notifies under it.
#[must_use = "the lock is released when the guard is dropped"]
pub struct ConditionGuard {
    guard: LockGuard,
    name: Arc<str>,
}

impl fmt::Debug for ConditionGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConditionGuard")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Condition {
    /// Waits for the condition's lock.
    ///
    /// # Errors
    ///
    /// None in practice (see [`Lock::lock`]).
    ///
    /// # Cancel safety
    ///
    /// As [`Lock::lock`].
    pub async fn lock(&self) -> Result<ConditionGuard, Error> {
        let guard = acquire(&self.registry, &self.name, "condition lock").await?;
        Ok(ConditionGuard {
            guard,
            name: self.name.clone(),
        })
    }
}

impl ConditionGuard {
    /// Releases the lock, waits for a notify, and takes the lock again.
    ///
    /// # Errors
    ///
    /// None in practice (see [`Lock::lock`]).
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: dropping the future before it resolves gives up
    /// the wait (and a notify meant for it) and leaves the lock released,
    /// so the guard no longer holds it: drop the guard too. For a wait
    /// with a time limit, use [`wait_timeout`](Self::wait_timeout), which
    /// holds the lock again whether or not it timed out.
    pub async fn wait(&mut self) -> Result<(), Error> {
        self.wait_until(None).await.map(drop)
    }

    /// As [`wait`](Self::wait), giving up after `timeout`; returns `false`
    /// if it timed out. The lock is held again either way. A notify that
    /// crosses the timeout wins: then the result is `true`.
    ///
    /// # Errors
    ///
    /// None in practice (see [`Lock::lock`]).
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime with its time driver enabled.
    ///
    /// # Cancel safety
    ///
    /// As [`wait`](Self::wait): not cancel-safe.
    pub async fn wait_timeout(&mut self, timeout: Duration) -> Result<bool, Error> {
        self.wait_until(Some(timeout)).await
    }

    async fn wait_until(&mut self, timeout: Option<Duration>) -> Result<bool, Error> {
        let registry = &self.guard.0.registry;
        let owner = self.guard.0.owner;
        let mut op = HostOp::submit(
            registry,
            owner,
            GuestOp::ConditionWait {
                name: self.name.to_string(),
            },
            None,
            None,
        );
        let rx = op.rx.as_mut().expect("not yet answered");
        let answer = match timeout {
            None => rx.await,
            Some(t) => match tokio::time::timeout(t, &mut *rx).await {
                Ok(a) => a,
                Err(_) => {
                    // The registry decides: a notify that crossed the
                    // timeout wins.
                    registry.abandon(owner, 0);
                    rx.await
                }
            },
        };
        op.rx = None;
        match check(answer.unwrap_or(Answer::Closed), "condition wait")? {
            Answer::Bool(b) => Ok(b),
            _ => Ok(true),
        }
    }

    /// Wakes up to `n` waiters; each takes the lock in turn once this
    /// guard is dropped.
    pub fn notify(&self, n: u32) {
        let op = HostOp::submit(
            &self.guard.0.registry,
            self.guard.0.owner,
            GuestOp::ConditionNotify {
                name: self.name.to_string(),
                n,
            },
            None,
            None,
        );
        let _ = op.now();
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.notify(u32::MAX);
    }
}

/// The pool's barrier `name`, from [`Pool::barrier`](crate::Pool::barrier):
/// its waiters go on together once `parties` of them have arrived.
///
/// A guest that leaves the barrier early (cancelled, killed, timed out)
/// gives its place up: the others wait for another party.
pub struct Barrier {
    registry: Arc<Registry>,
    name: Arc<str>,
}

handle_common!(Barrier);

impl Barrier {
    /// Waits for the other parties; returns this waiter's place in arrival
    /// order, from 0.
    ///
    /// # Errors
    ///
    /// None in practice (see [`Lock::lock`]).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a wait dropped before the barrier trips withdraws this
    /// party, so the others wait for another; once it has tripped, the
    /// place it was given is lost with the future.
    pub async fn wait(&self) -> Result<usize, Error> {
        let op = host_op(
            &self.registry,
            GuestOp::BarrierWait {
                name: self.name.to_string(),
            },
        );
        match check(op.answer().await, "barrier wait")? {
            Answer::Count(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            _ => Ok(0),
        }
    }
}
