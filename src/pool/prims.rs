//! The pool's spawned jobs and named primitives (`wasmpool:sync`).

use std::num::NonZeroUsize;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Pool;
use super::job_handle::JobHandle;
use crate::error::{Error, ErrorKind};
use crate::job::Job;
use crate::sync::{Barrier, Condition, Event, Lock, Queue, Semaphore, Spec as SyncSpec};

/// Spawned jobs and the pool's named primitives (`wasmpool:sync`).
///
/// Primitives are created on the pool by name, and typed on the host.
/// Guests open them by the same name through the `wasmpool:sync` imports
/// (the `wasmpool-guest` SDK: `Queue::open(name)`, `Lock::open(name)`,
/// ...), and block on them; a guest's blocking call takes a timeout, and
/// wakes at once when its call is cancelled or times out. When a guest's
/// call ends, however it ends, everything it held is released: see
/// [`Queue`], [`Lock`](crate::Lock), [`Semaphore`](crate::Semaphore) and
/// [`Barrier`](crate::Barrier).
///
/// Creating a primitive whose name exists returns a handle to the same one
/// if the kind and settings match, and an [`ErrorKind::Sync`] error if not.
/// Primitives live as long as the pool.
impl Pool {
    /// Starts `func` as a job with a handle: see [`JobHandle`]. The same as
    /// `pool.call(job, func, args).spawn()`, which also takes call options.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(pool: wasmpool::Pool, job: wasmpool::Job) -> Result<(), wasmpool::Error> {
    /// // A guest that emits its progress as it goes.
    /// let handle = pool.spawn::<u64>(&job, "progress", (100u64,));
    /// while let Some(done) = handle.recv::<u64>().await? {
    ///     println!("{done}/100");
    /// }
    /// assert_eq!(handle.await?, 100);
    /// # Ok(()) }
    /// ```
    ///
    /// The handle resolves to an [`ErrorKind::Config`] error when called
    /// outside a Tokio runtime.
    pub fn spawn<R: DeserializeOwned + Send + 'static>(
        &self,
        job: &Job,
        func: &str,
        args: impl Serialize,
    ) -> JobHandle<R> {
        self.call(job, func, args).spawn()
    }

    /// The queue `name` of values of type `T`, holding at most `capacity`
    /// values (0: no bound).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(pool: wasmpool::Pool) -> Result<(), wasmpool::Error> {
    /// let work = pool.queue::<u64>("work", 100)?;
    /// work.put(&7).await?;
    /// work.close();
    /// assert_eq!(work.get().await?, Some(7));
    /// assert_eq!(work.get().await?, None);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Sync`] if the name is taken by another kind or another
    /// capacity.
    pub fn queue<T>(&self, name: &str, capacity: usize) -> Result<Queue<T>, Error> {
        self.create(
            name,
            SyncSpec::Queue {
                capacity,
                joinable: false,
            },
        )?;
        Ok(Queue::new(self.handle.inner.sync.clone(), name))
    }

    /// A queue whose values are marked done as they are handled
    /// ([`Queue::task_done`]), so that [`Queue::join`] can wait for all of
    /// them. A guest that ends without marking a value it took done gives
    /// it back to the queue.
    ///
    /// # Errors
    ///
    /// As [`queue`](Self::queue).
    pub fn joinable_queue<T>(&self, name: &str, capacity: usize) -> Result<Queue<T>, Error> {
        self.create(
            name,
            SyncSpec::Queue {
                capacity,
                joinable: true,
            },
        )?;
        Ok(Queue::new(self.handle.inner.sync.clone(), name))
    }

    /// The lock `name`.
    ///
    /// ```no_run
    /// # async fn demo(pool: wasmpool::Pool) -> Result<(), wasmpool::Error> {
    /// let lock = pool.lock("ledger")?;
    /// let guard = lock.lock().await?;
    /// // ... no guest holds "ledger" here ...
    /// drop(guard);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Sync`] if the name is taken by another kind.
    pub fn lock(&self, name: &str) -> Result<Lock, Error> {
        self.create(name, SyncSpec::Lock)?;
        Ok(Lock::new(self.handle.inner.sync.clone(), name))
    }

    /// The reentrant lock `name`: a guest's call that holds it may take it
    /// again, and releases it as often.
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock).
    pub fn rlock(&self, name: &str) -> Result<Lock, Error> {
        self.create(name, SyncSpec::RLock)?;
        Ok(Lock::new(self.handle.inner.sync.clone(), name))
    }

    /// The semaphore `name`, with `permits` permits.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] for 0 permits; [`ErrorKind::Sync`] if the name
    /// is taken by another kind or another count.
    pub fn semaphore(&self, name: &str, permits: usize) -> Result<Semaphore, Error> {
        let permits = NonZeroUsize::new(permits).ok_or_else(|| {
            Error::new(ErrorKind::Config, "a semaphore needs at least one permit")
        })?;
        self.create(name, SyncSpec::Semaphore { permits })?;
        Ok(Semaphore::new(self.handle.inner.sync.clone(), name))
    }

    /// The event `name`, initially clear.
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock).
    pub fn event(&self, name: &str) -> Result<Event, Error> {
        self.create(name, SyncSpec::Event)?;
        Ok(Event::new(self.handle.inner.sync.clone(), name))
    }

    /// The condition variable `name`, with a lock of its own.
    ///
    /// # Errors
    ///
    /// As [`lock`](Self::lock).
    pub fn condition(&self, name: &str) -> Result<Condition, Error> {
        self.create(name, SyncSpec::Condition)?;
        Ok(Condition::new(self.handle.inner.sync.clone(), name))
    }

    /// The barrier `name`, for `parties` waiters.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] for 0 parties; [`ErrorKind::Sync`] if the name
    /// is taken by another kind or another count.
    pub fn barrier(&self, name: &str, parties: usize) -> Result<Barrier, Error> {
        let parties = NonZeroUsize::new(parties)
            .ok_or_else(|| Error::new(ErrorKind::Config, "a barrier needs at least one party"))?;
        self.create(name, SyncSpec::Barrier { parties })?;
        Ok(Barrier::new(self.handle.inner.sync.clone(), name))
    }

    fn create(&self, name: &str, spec: SyncSpec) -> Result<(), Error> {
        if self.is_cluster() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "named primitives ({name:?}) live in one pool's host; a cluster pool has \
                     none, and wasmpool offers no distributed lock or queue"
                ),
            ));
        }
        if name.is_empty() || name.starts_with('\0') {
            return Err(Error::new(
                ErrorKind::Config,
                format!("{name:?} is not a primitive's name"),
            ));
        }
        self.handle
            .inner
            .sync
            .create(name, spec)
            .map_err(|m| Error::new(ErrorKind::Sync, m))
    }
}
