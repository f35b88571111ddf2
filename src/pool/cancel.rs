//! [`CancelHandle`]: cancels a call from anywhere, without dropping it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// Cancels one call from anywhere: another task, a thread, a signal
/// handler's task. From [`Call::cancel_handle`](crate::Call::cancel_handle).
///
/// Cancelling is the same as dropping the call's future: the call's
/// [`Cancel`](crate::Cancel) mode decides what happens to the guest, and the awaiting
/// future resolves with [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled). [`cancel`](Self::cancel)
/// is cheap, never blocks, and can be called any number of times; cancelling
/// a call that has already finished does nothing.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(pool: wasmpool::Pool, job: wasmpool::Job) {
/// let call = pool.call::<u64>(&job, "spin", (u64::MAX,));
/// let handle = call.cancel_handle();
/// tokio::spawn(async move {
///     tokio::time::sleep(std::time::Duration::from_secs(1)).await;
///     handle.cancel();
/// });
/// assert!(call.await.unwrap_err().is_cancelled());
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct CancelHandle {
    flag: Arc<CancelFlag>,
}

#[derive(Debug, Default)]
pub(super) struct CancelFlag {
    pub(super) cancelled: AtomicBool,
    notify: Notify,
}

impl CancelHandle {
    pub(super) fn new(flag: Arc<CancelFlag>) -> CancelHandle {
        CancelHandle { flag }
    }

    /// Cancels the call. Cheap, never blocks, idempotent.
    pub fn cancel(&self) {
        if !self.flag.cancelled.swap(true, Ordering::SeqCst) {
            self.flag.notify.notify_one();
        }
    }

    /// Whether [`cancel`](Self::cancel) has been called.
    pub fn is_cancelled(&self) -> bool {
        self.flag.cancelled.load(Ordering::SeqCst)
    }
}

impl CancelFlag {
    pub(super) async fn wait(&self) {
        // `notify_one` leaves a permit if nobody waits yet, so a cancel
        // between the check and the await is not lost.
        while !self.cancelled.load(Ordering::SeqCst) {
            self.notify.notified().await;
        }
    }
}
