//! The crate's policy on poisoned locks: recover the guard.
//!
//! A `std::sync::Mutex` is poisoned when a thread panics while it holds
//! the guard, and every later `lock()` then fails. With `.expect(..)` on
//! each lock, one panic would fail every later call on the pool, from
//! every task, for the pool's whole life.
//!
//! wasmpool's locks hold its own bookkeeping only, and no lock is held
//! while code of the crate's user runs: a [host
//! function](crate::PoolBuilder::host_fn) and the `Deserialize` of its
//! arguments run when its future is polled, outside every lock; a call's
//! [`data`](crate::Call::data), whose `Drop` is the user's, is dropped
//! after the worker's locks; the registry of primitives traces its
//! answers after its lock. So a panic under one of these locks is a bug of
//! wasmpool's (or an allocation failure), in code that mutates the data
//! with single calls on std collections (`insert`, `remove`, `push`,
//! `take`, `extract_if`) where it can: a poisoned lock's data is then as
//! consistent as after any other section, and [`Locked::locked`] takes the
//! guard whether or not the lock is poisoned. Where a section takes
//! several steps (the registry's hand-offs of a primitive between owners),
//! a panic in the middle can leave that one primitive inconsistent, never
//! the pool's other primitives, workers or calls: recovering keeps the
//! rest of the pool serving, where `.expect(..)` would fail every later
//! call on it. The panic itself still reaches whoever awaited the work
//! that panicked, as an error or a panic.
//!
//! The tests poison a pool's central locks (its registry of primitives,
//! its compiler, its roster) on purpose and check that it goes on serving
//! (`tests/all/pool_lifecycle.rs`).
//!
//! The `Condvar` waits take the same policy through [`unpoisoned`].

use std::sync::{LockResult, Mutex, MutexGuard, PoisonError};

/// [`Mutex::lock`] that recovers the guard of a poisoned lock (see the
/// module docs for why that is sound here).
pub(crate) trait Locked<T: ?Sized> {
    /// Locks, waiting for the lock; never fails.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> Locked<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The guard (or whatever else) of a lock operation, poisoned or not: for
/// `Condvar::wait` and `wait_timeout`.
pub(crate) fn unpoisoned<G>(result: LockResult<G>) -> G {
    result.unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_poisoned_lock_still_locks() {
        let m = Arc::new(Mutex::new(vec![1]));
        let m2 = m.clone();
        let panicked = std::thread::spawn(move || {
            let mut v = m2.locked();
            v.push(2);
            panic!("while holding the lock");
        })
        .join();
        assert!(panicked.is_err());
        assert!(m.is_poisoned());
        assert_eq!(*m.locked(), vec![1, 2]);
        m.locked().push(3);
        assert_eq!(*m.locked(), vec![1, 2, 3]);
    }
}
