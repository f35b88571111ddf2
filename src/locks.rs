//! The crate's policy on poisoned locks: recover the guard.
//!
//! A `std::sync::Mutex` is poisoned when a thread panics while it holds
//! the guard, and every later `lock()` then fails. With `.expect(..)` on
//! each lock, one panic would fail every later call on the pool, from
//! every task, for the pool's whole life.
//!
//! wasmpool's locks hold its own bookkeeping only: no lock is held while
//! code of the crate's user runs (a [host function](crate::PoolBuilder::host_fn),
//! the `Serialize` or `Deserialize` of a caller's type, a guest), and each
//! critical section leaves its data consistent at every point where it can
//! panic (an allocation failure, a bug): it mutates with single calls on
//! std collections (`insert`, `remove`, `push`, `take`) rather than in
//! steps that another section could see half done. So a poisoned lock's
//! data is as consistent as after any other section, and [`Locked::locked`]
//! takes the guard whether or not the lock is poisoned. The panic itself
//! still reaches whoever awaited the work that panicked, as an error or a
//! panic, as it would have without the lock.
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
