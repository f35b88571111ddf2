//! [`Pool::map`] and [`Pool::map_unordered`]: many calls of one function,
//! sent in batches whose size adapts to how long items take.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Pool;
use super::call::{Output, decode_result, encode_args};
use super::policy::Policy;
use crate::error::Error;
use crate::job::Job;

impl Pool {
    /// Calls `func` once per item of `args`, and yields the results in the
    /// order of the items, like an ordered parallel map.
    ///
    /// Items are taken from `args` as calls finish, so it may be a long or
    /// endless iterator. At most as many requests are in flight as the pool
    /// has workers. Tiny items are sent in batches: a worker runs a batch
    /// item after item (each on its own instance, as always) and answers it
    /// in one message, which saves a round trip per item. The batch size
    /// adapts to how long items take, aiming at a couple of milliseconds of work per
    /// batch; items that take longer go one at a time.
    ///
    /// A failing item yields its error and the stream goes on. The pool's
    /// call options (timeout, limits, sandbox) apply to each item.
    ///
    /// ```no_run
    /// # async fn demo(pool: wasmpool::Pool, job: wasmpool::Job) -> Result<(), wasmpool::Error> {
    /// use futures_util::StreamExt;
    /// let fibs: Vec<u64> = pool
    ///     .map(&job, "fib", (0..20u64).map(|n| (n,)))
    ///     .collect::<Vec<_>>()
    ///     .await
    ///     .into_iter()
    ///     .collect::<Result<_, _>>()?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Panics
    ///
    /// When polled outside a Tokio runtime.
    ///
    /// # Cancel safety
    ///
    /// Dropping the stream cancels the calls in flight (as
    /// [`PoolBuilder::on_cancel`](crate::PoolBuilder::on_cancel) says) and
    /// takes no more items; results of calls that had finished but were
    /// not yet yielded are dropped.
    pub fn map<'a, A, R, I>(
        &self,
        job: &'a Job,
        func: &'a str,
        args: I,
    ) -> impl Stream<Item = Result<R, Error>> + Send + 'a
    where
        A: Serialize,
        R: DeserializeOwned + Send + 'a,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        let limit = self.parallelism();
        self.batches(job, func, args.into_iter())
            .buffered(limit)
            .flat_map(futures_util::stream::iter)
            .map(|(_, r)| r)
    }

    /// Like [`map`](Pool::map), but yields each result as soon as its
    /// batch is done, whatever the order of the items. Each result comes
    /// with its item's index.
    ///
    /// ```no_run
    /// # async fn demo(pool: wasmpool::Pool, job: wasmpool::Job) {
    /// use futures_util::StreamExt;
    /// let mut results = pool.map_unordered::<_, u64, _>(&job, "fib", [(30u64,), (5,), (20,)]);
    /// while let Some((index, result)) = results.next().await {
    ///     println!("item {index}: {result:?}");
    /// }
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// As [`map`](Pool::map).
    ///
    /// # Cancel safety
    ///
    /// As [`map`](Pool::map).
    pub fn map_unordered<'a, A, R, I>(
        &self,
        job: &'a Job,
        func: &'a str,
        args: I,
    ) -> impl Stream<Item = (usize, Result<R, Error>)> + Send + 'a
    where
        A: Serialize,
        R: DeserializeOwned + Send + 'a,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        let limit = self.parallelism();
        self.batches(job, func, args.into_iter())
            .buffer_unordered(limit)
            .flat_map(futures_util::stream::iter)
    }

    /// The items of `args` as a stream of batch futures, each resolving to
    /// its items' indices and results. Sizes adapt (see [`Pool::map`]).
    fn batches<'a, A, R, I>(
        &self,
        job: &'a Job,
        func: &'a str,
        args: I,
    ) -> impl Stream<Item = impl Future<Output = Vec<(usize, Result<R, Error>)>> + Send + 'a> + Send + 'a
    where
        A: Serialize,
        R: DeserializeOwned + Send + 'a,
        I: Iterator<Item = A> + Send + 'a,
    {
        let inner = self.handle.inner.clone();
        let sizer = Arc::new(BatchSizer::default());
        let mut next_index = 0;
        futures_util::stream::iter(std::iter::from_fn({
            let sizer = sizer.clone();
            let mut args = args;
            move || {
                let size = sizer.next_size();
                let items: Vec<Result<Vec<u8>, Error>> =
                    args.by_ref().take(size).map(|a| encode_args(&a)).collect();
                (!items.is_empty()).then_some(items)
            }
        }))
        .map(move |items| {
            let first = next_index;
            next_index += items.len();
            let inner = inner.clone();
            let sizer = sizer.clone();
            let options = inner.options.clone();
            let policy = Policy {
                on_cancel: inner.on_cancel,
                grace: inner.grace,
                job: None,
                data: None,
                tenant: None,
            };
            async move {
                let count = items.len();
                let started = Instant::now();
                let results = inner.call_many(job, func, items, options, policy).await;
                sizer.record(started.elapsed(), count);
                let results: Vec<Result<R, Error>> = match results {
                    Ok(results) => results
                        .into_iter()
                        .map(|r| r.and_then(|(bytes, report)| decode_result(bytes, report)))
                        .map(|r| r.map(|out: Output<R>| out.value))
                        .collect(),
                    Err(e) => (0..count).map(|_| Err(e.duplicate())).collect(),
                };
                (first..).zip(results).collect::<Vec<_>>()
            }
        })
    }
}

/// Sizes [`Pool::map`]'s batches from how long the last one took per item.
#[derive(Debug, Default)]
struct BatchSizer {
    /// Nanoseconds per item of the last batch; 0 before the first.
    per_item: AtomicU64,
}

impl BatchSizer {
    /// About this much work per batch.
    const TARGET: Duration = Duration::from_millis(2);
    const MAX: usize = 64;

    fn next_size(&self) -> usize {
        match self.per_item.load(Ordering::Relaxed) {
            0 => 1,
            per_item => {
                let n = Self::TARGET.as_nanos() / u128::from(per_item);
                usize::try_from(n).unwrap_or(Self::MAX).clamp(1, Self::MAX)
            }
        }
    }

    fn record(&self, took: Duration, items: usize) {
        let per_item = took.as_nanos() / items.max(1) as u128;
        let per_item = u64::try_from(per_item).unwrap_or(u64::MAX).max(1);
        self.per_item.store(per_item, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_batch_is_one_item() {
        assert_eq!(BatchSizer::default().next_size(), 1);
    }

    #[test]
    fn batches_aim_at_the_target_and_stay_in_bounds() {
        let sizer = BatchSizer::default();
        // 100 µs an item: 20 items make 2 ms.
        sizer.record(Duration::from_millis(1), 10);
        assert_eq!(sizer.next_size(), 20);
        // Items far faster than the target: capped.
        sizer.record(Duration::from_nanos(100), 100);
        assert_eq!(sizer.next_size(), BatchSizer::MAX);
        // Items slower than the target: one at a time.
        sizer.record(Duration::from_secs(1), 2);
        assert_eq!(sizer.next_size(), 1);
    }
}
