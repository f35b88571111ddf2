//! Guest-side SDK for wasmpool jobs.
//!
//! A job built with this crate imports `wasmpool:sync@0.1.0` (see
//! `wit/sync/sync.wit`): its own duplex channel to the host's `JobHandle`
//! ([`emit`], [`recv`], [`cancelled`]) and the pool's named synchronisation
//! primitives ([`Queue`], [`Lock`], [`RLock`], [`Semaphore`], [`Event`],
//! [`Condition`], [`Barrier`]). The host creates the primitives
//! (`Pool::queue`, `Pool::lock`, ...); a job opens them by name.
//!
//! Values travel as MessagePack, encoded with `rmp_serde::to_vec_named` and
//! decoded with `rmp_serde::from_slice`, as the host does.
//!
//! Guests that import none of this need no SDK.
//!
//! # Blocking and timeouts
//!
//! Each blocking call comes in two shapes: a plain one that waits as long as
//! it takes (`lock()`), and a `_timeout` one that gives up with
//! [`Error::Timeout`] after a [`Duration`] (`lock_timeout(d)`), rounded up to
//! whole milliseconds. A blocking call ends at once when the job is
//! cancelled or times out: the guest is then stopped and never sees the call
//! return.
//!
//! When the job's call ends, whichever way, the host releases everything it
//! still holds, so a trap cannot leave a lock taken.
//!
//! # Example
//!
//! The guest's own world lists only its exports; this crate's bindings add
//! the `wasmpool:sync` imports when the component is linked.
//!
//! ```ignore
//! wit_bindgen::generate!({ path: "wit", world: "job" });
//!
//! use wasmpool_guest::{Error, Lock, Queue};
//!
//! struct Job;
//!
//! impl Guest for Job {
//!     fn square_all(queue: String, results: String) -> u64 {
//!         let run = || -> Result<u64, Error> {
//!             let input = Queue::<u64>::open(&queue)?;
//!             let output = Queue::<u64>::open(&results)?;
//!             let log = Lock::open("log")?;
//!             let mut taken = 0;
//!             while let Some(x) = input.get()? {
//!                 let _guard = log.lock()?; // released when dropped
//!                 output.put(&(x * x))?;
//!                 input.task_done()?;
//!                 taken += 1;
//!             }
//!             Ok(taken)
//!         };
//!         run().unwrap()
//!     }
//! }
//!
//! export!(Job);
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The generated `wasmpool:sync` import bindings.
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/sync",
        world: "imports",
    });
}

use bindings::wasmpool::sync::{channel, primitives, types};

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The timeout passed first.
    Timeout,
    /// The pool has no primitive of this name and kind.
    NotFound(String),
    /// The queue or channel is closed.
    Closed,
    /// The call does not fit the state, such as releasing a lock not held.
    Invalid(String),
    /// A value could not be encoded as MessagePack.
    Encode(String),
    /// A received value could not be decoded as the type asked for.
    Decode(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Timeout => f.write_str("timed out"),
            Error::NotFound(what) => write!(f, "not found: {what}"),
            Error::Closed => f.write_str("closed"),
            Error::Invalid(why) => write!(f, "invalid: {why}"),
            Error::Encode(why) => write!(f, "cannot encode value: {why}"),
            Error::Decode(why) => write!(f, "cannot decode value: {why}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<types::Error> for Error {
    fn from(e: types::Error) -> Self {
        match e {
            types::Error::Timeout => Error::Timeout,
            types::Error::NotFound(what) => Error::NotFound(what),
            types::Error::Closed => Error::Closed,
            types::Error::Invalid(why) => Error::Invalid(why),
        }
    }
}

/// A timeout in whole milliseconds, rounded up and saturated.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    rmp_serde::to_vec_named(value).map_err(|e| Error::Encode(e.to_string()))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    rmp_serde::from_slice(bytes).map_err(|e| Error::Decode(e.to_string()))
}

fn decode_opt<T: DeserializeOwned>(bytes: Option<Vec<u8>>) -> Result<Option<T>, Error> {
    bytes.as_deref().map(decode).transpose()
}

fn open(name: &str, kind: types::Kind) -> Result<String, Error> {
    primitives::open(name, kind)?;
    Ok(name.to_owned())
}

// ---------------------------------------------------------------------------
// Channel

/// Sends a value to the job's handle; blocks while its buffer is full.
pub fn emit<T: Serialize + ?Sized>(value: &T) -> Result<(), Error> {
    Ok(channel::emit(&encode(value)?, None)?)
}

/// [`emit`], giving up after `timeout`.
pub fn emit_timeout<T: Serialize + ?Sized>(value: &T, timeout: Duration) -> Result<(), Error> {
    Ok(channel::emit(&encode(value)?, Some(millis(timeout)))?)
}

/// The next value the handle sent, or `None` at end of input.
pub fn recv<T: DeserializeOwned>() -> Result<Option<T>, Error> {
    decode_opt(channel::recv(None)?)
}

/// [`recv`], giving up after `timeout`.
pub fn recv_timeout<T: DeserializeOwned>(timeout: Duration) -> Result<Option<T>, Error> {
    decode_opt(channel::recv(Some(millis(timeout)))?)
}

/// Whether the job was asked to stop.
pub fn cancelled() -> bool {
    channel::cancelled()
}

// ---------------------------------------------------------------------------
// Queue

/// A named queue of values of type `T`.
#[derive(Debug)]
pub struct Queue<T> {
    name: String,
    _values: PhantomData<fn(T) -> T>,
}

impl<T> Queue<T> {
    /// Opens the pool's queue `name`.
    pub fn open(name: &str) -> Result<Self, Error> {
        Ok(Self {
            name: open(name, types::Kind::Queue)?,
            _values: PhantomData,
        })
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Marks one value taken from this joinable queue done.
    pub fn task_done(&self) -> Result<(), Error> {
        Ok(primitives::queue_task_done(&self.name)?)
    }

    /// Blocks until every value put in this joinable queue is marked done.
    pub fn join(&self) -> Result<(), Error> {
        Ok(primitives::queue_join(&self.name, None)?)
    }

    /// [`join`](Self::join), giving up after `timeout`.
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), Error> {
        Ok(primitives::queue_join(&self.name, Some(millis(timeout)))?)
    }

    /// Closes the queue: no more puts, and gets return `None` once it is
    /// empty.
    pub fn close(&self) -> Result<(), Error> {
        Ok(primitives::queue_close(&self.name)?)
    }

    /// How many values wait in the queue.
    pub fn len(&self) -> Result<u64, Error> {
        Ok(primitives::queue_len(&self.name)?)
    }

    /// Whether no value waits in the queue.
    pub fn is_empty(&self) -> Result<bool, Error> {
        Ok(self.len()? == 0)
    }
}

impl<T: Serialize> Queue<T> {
    /// Puts a value at the back; blocks while the queue is full.
    pub fn put(&self, value: &T) -> Result<(), Error> {
        Ok(primitives::queue_put(&self.name, &encode(value)?, None)?)
    }

    /// [`put`](Self::put), giving up after `timeout`.
    pub fn put_timeout(&self, value: &T, timeout: Duration) -> Result<(), Error> {
        let bytes = encode(value)?;
        Ok(primitives::queue_put(
            &self.name,
            &bytes,
            Some(millis(timeout)),
        )?)
    }
}

impl<T: DeserializeOwned> Queue<T> {
    /// Takes the value at the front; blocks while the queue is empty.
    /// `None` once the queue is closed and empty.
    pub fn get(&self) -> Result<Option<T>, Error> {
        decode_opt(primitives::queue_get(&self.name, None)?)
    }

    /// [`get`](Self::get), giving up after `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<Option<T>, Error> {
        decode_opt(primitives::queue_get(&self.name, Some(millis(timeout)))?)
    }
}

// ---------------------------------------------------------------------------
// Locks

/// A named lock.
#[derive(Debug)]
pub struct Lock {
    name: String,
}

/// A named reentrant lock: the call that holds it may take it again, and
/// releases it as often.
#[derive(Debug)]
pub struct RLock {
    name: String,
}

/// A held [`Lock`] or [`RLock`]; dropping it releases the lock.
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    name: &'a str,
}

fn acquire(name: &str, timeout: Option<Duration>) -> Result<LockGuard<'_>, Error> {
    primitives::lock_acquire(name, timeout.map(millis))?;
    Ok(LockGuard { name })
}

impl Lock {
    /// Opens the pool's lock `name`.
    pub fn open(name: &str) -> Result<Self, Error> {
        Ok(Self {
            name: open(name, types::Kind::Lock)?,
        })
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Takes the lock; blocks while another call holds it.
    pub fn lock(&self) -> Result<LockGuard<'_>, Error> {
        acquire(&self.name, None)
    }

    /// [`lock`](Self::lock), giving up after `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<LockGuard<'_>, Error> {
        acquire(&self.name, Some(timeout))
    }
}

impl RLock {
    /// Opens the pool's rlock `name`.
    pub fn open(name: &str) -> Result<Self, Error> {
        Ok(Self {
            name: open(name, types::Kind::Rlock)?,
        })
    }

    /// The rlock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Takes the rlock (once more if this call holds it already); blocks
    /// while another call holds it.
    pub fn lock(&self) -> Result<LockGuard<'_>, Error> {
        acquire(&self.name, None)
    }

    /// [`lock`](Self::lock), giving up after `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<LockGuard<'_>, Error> {
        acquire(&self.name, Some(timeout))
    }
}

impl LockGuard<'_> {
    /// Releases the lock (once, for an rlock), reporting any error.
    pub fn unlock(self) -> Result<(), Error> {
        let name = self.name;
        std::mem::forget(self);
        Ok(primitives::lock_release(name)?)
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let _ = primitives::lock_release(self.name);
    }
}

// ---------------------------------------------------------------------------
// Semaphore

/// A named bounded semaphore.
#[derive(Debug)]
pub struct Semaphore {
    name: String,
}

/// A permit of a [`Semaphore`]; dropping it gives the permit back.
#[derive(Debug)]
#[must_use = "the permit is given back as soon as it is dropped"]
pub struct Permit<'a> {
    name: &'a str,
}

impl Semaphore {
    /// Opens the pool's semaphore `name`.
    pub fn open(name: &str) -> Result<Self, Error> {
        Ok(Self {
            name: open(name, types::Kind::Semaphore)?,
        })
    }

    /// The semaphore's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Takes one permit; blocks while there is none.
    pub fn acquire(&self) -> Result<Permit<'_>, Error> {
        primitives::semaphore_acquire(&self.name, None)?;
        Ok(Permit { name: &self.name })
    }

    /// [`acquire`](Self::acquire), giving up after `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Permit<'_>, Error> {
        primitives::semaphore_acquire(&self.name, Some(millis(timeout)))?;
        Ok(Permit { name: &self.name })
    }
}

impl Permit<'_> {
    /// Gives the permit back, reporting any error.
    pub fn release(self) -> Result<(), Error> {
        let name = self.name;
        std::mem::forget(self);
        Ok(primitives::semaphore_release(name)?)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let _ = primitives::semaphore_release(self.name);
    }
}

// ---------------------------------------------------------------------------
// Event

/// A named event: a flag that calls can wait for.
#[derive(Debug)]
pub struct Event {
    name: String,
}

impl Event {
    /// Opens the pool's event `name`.
    pub fn open(name: &str) -> Result<Self, Error> {
        Ok(Self {
            name: open(name, types::Kind::Event)?,
        })
    }

    /// The event's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the flag, waking every waiter.
    pub fn set(&self) -> Result<(), Error> {
        Ok(primitives::event_set(&self.name)?)
    }

    /// Clears the flag.
    pub fn clear(&self) -> Result<(), Error> {
        Ok(primitives::event_clear(&self.name)?)
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> Result<bool, Error> {
        Ok(primitives::event_is_set(&self.name)?)
    }

    /// Blocks until the flag is set.
    pub fn wait(&self) -> Result<(), Error> {
        Ok(primitives::event_wait(&self.name, None)?)
    }

    /// [`wait`](Self::wait), giving up with [`Error::Timeout`] after
    /// `timeout`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), Error> {
        Ok(primitives::event_wait(&self.name, Some(millis(timeout)))?)
    }
}

// ---------------------------------------------------------------------------
// Condition

/// A named condition variable with its own lock.
#[derive(Debug)]
pub struct Condition {
    name: String,
}

/// A held [`Condition`] lock, through which the condition is waited on and
/// notified; dropping it releases the lock.
#[derive(Debug)]
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ConditionGuard<'a> {
    name: &'a str,
}

impl Condition {
    /// Opens the pool's condition `name`.
    pub fn open(name: &str) -> Result<Self, Error> {
        Ok(Self {
            name: open(name, types::Kind::Condition)?,
        })
    }

    /// The condition's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Takes the condition's lock; blocks while another call holds it.
    pub fn lock(&self) -> Result<ConditionGuard<'_>, Error> {
        primitives::lock_acquire(&self.name, None)?;
        Ok(ConditionGuard { name: &self.name })
    }

    /// [`lock`](Self::lock), giving up after `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<ConditionGuard<'_>, Error> {
        primitives::lock_acquire(&self.name, Some(millis(timeout)))?;
        Ok(ConditionGuard { name: &self.name })
    }
}

impl ConditionGuard<'_> {
    /// Releases the lock, waits for a notify, and takes the lock again.
    pub fn wait(&self) -> Result<(), Error> {
        primitives::condition_wait(self.name, None)?;
        Ok(())
    }

    /// [`wait`](Self::wait) for at most `timeout`: `false` if it passed
    /// first. The lock is held again either way.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, Error> {
        Ok(primitives::condition_wait(
            self.name,
            Some(millis(timeout)),
        )?)
    }

    /// Wakes up to `n` waiters.
    pub fn notify(&self, n: u32) -> Result<(), Error> {
        Ok(primitives::condition_notify(self.name, n)?)
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) -> Result<(), Error> {
        self.notify(u32::MAX)
    }

    /// Releases the lock, reporting any error.
    pub fn unlock(self) -> Result<(), Error> {
        let name = self.name;
        std::mem::forget(self);
        Ok(primitives::lock_release(name)?)
    }
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        let _ = primitives::lock_release(self.name);
    }
}

// ---------------------------------------------------------------------------
// Barrier

/// A named barrier for a fixed number of parties.
#[derive(Debug)]
pub struct Barrier {
    name: String,
}

impl Barrier {
    /// Opens the pool's barrier `name`.
    pub fn open(name: &str) -> Result<Self, Error> {
        Ok(Self {
            name: open(name, types::Kind::Barrier)?,
        })
    }

    /// The barrier's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits until every party has arrived; returns this call's place in
    /// arrival order, from 0.
    pub fn wait(&self) -> Result<u32, Error> {
        Ok(primitives::barrier_wait(&self.name, None)?)
    }

    /// [`wait`](Self::wait), giving up after `timeout`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32, Error> {
        Ok(primitives::barrier_wait(&self.name, Some(millis(timeout)))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_rounds_up_and_saturates() {
        assert_eq!(millis(Duration::ZERO), 0);
        assert_eq!(millis(Duration::from_nanos(1)), 1);
        assert_eq!(millis(Duration::from_millis(5)), 5);
        assert_eq!(millis(Duration::from_micros(5_001)), 6);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }

    #[test]
    fn values_round_trip() {
        let bytes = encode(&(7u64, "x")).unwrap();
        assert_eq!(decode::<(u64, String)>(&bytes).unwrap(), (7, "x".into()));
        assert!(matches!(decode::<u64>(b"\xc1"), Err(Error::Decode(_))));
    }
}
