//! Many calls per worker: a worker for async components runs several plain
//! calls at once, each with its own store; cancelling one drops only its
//! task (and the host future it awaits), and a trap fails only its call.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;

use crate::common::{eventually, job};
use wasmpool::{BoxError, ErrorKind, HostContext, Pool, WorkerKind};

const NAP: &str = "wasmpool:jobs/async-host@0.1.0#nap";

fn asyncs() -> wasmpool::Job {
    job(wasmpool_guests::ASYNCS)
}

/// How many host `nap`s are in flight, and the most there were at once.
#[derive(Default)]
struct Naps {
    now: AtomicUsize,
    most: AtomicUsize,
    dropped: AtomicUsize,
}

impl Naps {
    /// Counts one nap while the guard lives; a guard dropped before the
    /// nap ended counts as dropped.
    fn enter(self: &Arc<Self>) -> NapGuard {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        NapGuard {
            naps: self.clone(),
            done: false,
        }
    }
}

struct NapGuard {
    naps: Arc<Naps>,
    done: bool,
}

impl Drop for NapGuard {
    fn drop(&mut self) {
        self.naps.now.fetch_sub(1, Ordering::SeqCst);
        if !self.done {
            self.naps.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A one-worker pool of `kind` whose `nap` sleeps `ms` on the host,
/// counted by `naps`.
fn napping_pool(kind: WorkerKind, async_calls: usize, naps: &Arc<Naps>) -> Pool {
    let naps = naps.clone();
    Pool::builder()
        .workers(1)
        .worker_kind(kind)
        .async_calls(async_calls)
        .grace(Duration::from_secs(30))
        .host_fn(NAP, move |_cx: HostContext, (ms,): (u32,)| {
            let guard = naps.enter();
            async move {
                // The guard whole, not just its field: it counts the nap
                // until the future ends or is dropped.
                let mut guard = guard;
                tokio::time::sleep(Duration::from_millis(ms.into())).await;
                guard.done = true;
                Ok::<_, BoxError>(ms)
            }
        })
        .build()
        .unwrap()
}

/// The pool started one worker, and neither killed it nor saw it crash.
fn one_worker_nothing_killed(pool: &Pool) {
    let stats = pool.statistics();
    assert_eq!(
        (stats.spawned, stats.killed, stats.crashed),
        (1, 0, 0),
        "{stats:?}"
    );
}

/// Eight calls, each awaiting one host function, meet at a barrier that
/// only eight calls in flight at once can pass: on one worker.
#[tokio::test]
async fn one_worker_runs_eight_calls_at_once() {
    let job = asyncs();
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let pool = Pool::builder()
        .workers(1)
        .host_fn(NAP, move |_cx: HostContext, (ms,): (u32,)| {
            let barrier = barrier.clone();
            async move {
                tokio::time::timeout(Duration::from_secs(60), barrier.wait())
                    .await
                    .map_err(|_| "the other calls never came")?;
                Ok::<_, BoxError>(ms)
            }
        })
        .build()
        .unwrap();
    let calls = (0..8u32).map(|i| pool.run::<u32>(&job, "naps", (1u32, i)));
    let sums = futures_util::future::join_all(calls).await;
    for (i, sum) in sums.into_iter().enumerate() {
        assert_eq!(sum.unwrap(), i as u32);
    }
    let stats = pool.statistics();
    assert_eq!(
        (stats.spawned, stats.killed, stats.crashed, stats.calls),
        (1, 0, 0, 8),
        "{stats:?}"
    );
    // The worker came back whole.
    assert_eq!((stats.idle, stats.busy), (1, 0), "{stats:?}");
    // And again, on the same worker: every lane was given back.
    let calls = (0..8u32).map(|i| pool.run::<u32>(&job, "naps", (1u32, i)));
    for sum in futures_util::future::join_all(calls).await {
        sum.unwrap();
    }
    assert_eq!(pool.statistics().spawned, 1);
}

/// Sixteen calls that each await the host for 300 ms, on one worker of
/// eight lanes: two rounds, not sixteen. (The figure is the bench's; the
/// test only checks that they overlap, with a bound no slow machine
/// reaches: 16 calls one after the other would take 4.8 s at least.)
#[tokio::test]
async fn sixteen_waiting_calls_overlap_on_one_worker() {
    let job = asyncs();
    let naps = Arc::new(Naps::default());
    let pool = napping_pool(WorkerKind::Process, 8, &naps);
    // Started and ready, so that the worker's start is not timed.
    pool.run::<u32>(&job, "double", (1u32,)).await.unwrap();
    let start = Instant::now();
    let calls = (0..16).map(|_| pool.run::<u32>(&job, "naps", (1u32, 300u32)));
    for sum in futures_util::future::join_all(calls).await {
        assert_eq!(sum.unwrap(), 300);
    }
    let took = start.elapsed();
    assert_eq!(
        naps.most.load(Ordering::SeqCst),
        8,
        "eight lanes, eight at once"
    );
    assert!(took < Duration::from_millis(4800), "took {took:?}");
    let stats = pool.statistics();
    assert_eq!((stats.spawned, stats.calls), (1, 17), "{stats:?}");
}

/// With one lane, or on a worker thread, calls run one at a time.
#[tokio::test]
async fn one_lane_or_a_thread_runs_one_call_at_a_time() {
    let job = asyncs();
    for (kind, lanes) in [(WorkerKind::Process, 1), (WorkerKind::Thread, 8)] {
        let naps = Arc::new(Naps::default());
        let pool = napping_pool(kind, lanes, &naps);
        let calls = (0..4).map(|_| pool.run::<u32>(&job, "naps", (1u32, 20u32)));
        for sum in futures_util::future::join_all(calls).await {
            assert_eq!(sum.unwrap(), 20);
        }
        assert_eq!(naps.most.load(Ordering::SeqCst), 1, "{kind:?}");
    }
}

/// A call's timeout drops its task and the host future it awaits, within
/// moments; the other calls on the worker go on, and nothing is killed.
#[tokio::test]
async fn a_timeout_cancels_one_call_and_not_the_others() {
    let job = asyncs();
    let naps = Arc::new(Naps::default());
    let pool = napping_pool(WorkerKind::Process, 8, &naps);
    let long = pool
        .call::<u32>(&job, "naps", (1u32, 60_000u32))
        .timeout(Duration::from_millis(200));
    let others = (0..3).map(|_| pool.run::<u32>(&job, "naps", (2u32, 600u32)));
    let (long, others) = tokio::join!(long, futures_util::future::join_all(others));
    let e = long.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    for sum in others {
        assert_eq!(sum.unwrap(), 1200);
    }
    // The cancelled call's host future is dropped (its task aborted), not
    // left to run out its minute.
    eventually("the host future to be dropped", || {
        naps.dropped.load(Ordering::SeqCst) > 0
    })
    .await;
    assert_eq!(naps.dropped.load(Ordering::SeqCst), 1);
    assert_eq!(naps.now.load(Ordering::SeqCst), 0);
    one_worker_nothing_killed(&pool);
}

/// Dropping a call's future cancels it the same way.
#[tokio::test]
async fn dropping_a_call_cancels_only_its_task() {
    let job = asyncs();
    let naps = Arc::new(Naps::default());
    let pool = napping_pool(WorkerKind::Process, 8, &naps);
    // Compiled and started first, so that the naps below begin at once.
    pool.run::<u32>(&job, "double", (1u32,)).await.unwrap();
    let other = tokio::spawn({
        let pool = pool.clone();
        let job = job.clone();
        async move { pool.run::<u32>(&job, "naps", (1u32, 800u32)).await }
    });
    let dropped = tokio::spawn({
        let pool = pool.clone();
        let job = job.clone();
        async move { pool.run::<u32>(&job, "naps", (1u32, 60_000u32)).await }
    });
    // Both naps under way.
    eventually("both naps to begin", || {
        naps.now.load(Ordering::SeqCst) == 2
    })
    .await;
    dropped.abort();
    let _ = dropped.await;
    eventually("the host future to be dropped", || {
        naps.dropped.load(Ordering::SeqCst) > 0
    })
    .await;
    assert_eq!(other.await.unwrap().unwrap(), 800);
    // The worker is whole and serves again.
    let n: u32 = pool.run(&job, "double", (5u32,)).await.unwrap();
    assert_eq!(n, 10);
    one_worker_nothing_killed(&pool);
}

/// A trap, and a guest that spins past its timeout, fail their own calls
/// only, while other calls on the worker are in flight.
#[tokio::test]
async fn a_trap_or_a_spinning_guest_fails_only_its_call() {
    let job = asyncs();
    let naps = Arc::new(Naps::default());
    let pool = napping_pool(WorkerKind::Process, 8, &naps);
    let trap = pool.run::<u32>(&job, "fail", (50u32,));
    let spin = pool
        .call::<u32>(&job, "spin", ())
        .timeout(Duration::from_millis(200));
    let waits = (0..2).map(|_| pool.run::<u32>(&job, "naps", (1u32, 500u32)));
    let sleep = pool.run::<u64>(&job, "sleep", (300u32,));
    let (trap, spin, waits, slept) =
        tokio::join!(trap, spin, futures_util::future::join_all(waits), sleep);
    let e = trap.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Trap, "{e:?}");
    let e = spin.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    for sum in waits {
        assert_eq!(sum.unwrap(), 500);
    }
    assert!(slept.unwrap() >= 300);
    one_worker_nothing_killed(&pool);
}

/// Sessions and batches on an async component take the worker whole, and
/// plain calls go on around them.
#[tokio::test]
async fn sessions_and_batches_run_beside_calls_side_by_side() {
    let job = asyncs();
    let naps = Arc::new(Naps::default());
    let pool = napping_pool(WorkerKind::Process, 8, &naps);
    let session = pool.session(&job).await.unwrap();
    let plain = (0..4).map(|_| pool.run::<u32>(&job, "naps", (1u32, 100u32)));
    // Items that call the host: batched after the first ones, they run
    // alone on whichever lane the batch took, and their host calls are
    // theirs.
    let naps_batch = pool
        .map::<_, u32, _>(&job, "naps", (0..200u32).map(|_| (1u32, 0u32)))
        .collect::<Vec<_>>();
    let batch = pool
        .map::<_, u32, _>(&job, "double", (0..10u32).map(|i| (i,)))
        .collect::<Vec<_>>();
    let in_session = session.run::<u32>("double", (21u32,));
    let (plain, batch, naps_batch, in_session) = tokio::join!(
        futures_util::future::join_all(plain),
        batch,
        naps_batch,
        in_session
    );
    assert_eq!(naps_batch.len(), 200);
    for nap in naps_batch {
        assert_eq!(nap.unwrap(), 0);
    }
    for sum in plain {
        assert_eq!(sum.unwrap(), 100);
    }
    let doubled: Vec<u32> = batch.into_iter().map(Result::unwrap).collect();
    assert_eq!(doubled, (0..10u32).map(|i| 2 * i).collect::<Vec<_>>());
    assert_eq!(in_session.unwrap(), 42);
    session.close().await.unwrap();
    let stats = pool.statistics();
    assert_eq!((stats.killed, stats.crashed), (0, 0), "{stats:?}");
}

#[tokio::test]
async fn async_calls_out_of_range_is_a_config_error() {
    for n in [0, 1025] {
        let e = Pool::builder().async_calls(n).build().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{n}: {e:?}");
        assert!(e.to_string().contains("async_calls"), "{e}");
    }
}

/// A Python guest (componentize-py) runs side by side too: a call stuck in
/// its host function takes one of the worker's 8 lanes until its timeout
/// drops it; the eighth of the calls that meet at the barrier gets that
/// lane, and all eight pass on one worker.
#[tokio::test]
async fn python_calls_run_side_by_side_too() {
    let job = crate::async_exports::python_asyncs();
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let pool = Pool::builder()
        .workers(1)
        .host_fn(NAP, move |_cx: HostContext, (ms,): (u32,)| {
            let barrier = barrier.clone();
            async move {
                if ms == 0 {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                } else {
                    tokio::time::timeout(Duration::from_secs(60), barrier.wait())
                        .await
                        .map_err(|_| "the other calls never came")?;
                }
                Ok::<_, BoxError>(ms)
            }
        })
        .build()
        .unwrap();
    let stuck = pool
        .call::<u32>(&job, "naps", (1u32, 0u32))
        .timeout(Duration::from_millis(300));
    let calls = (1..=8u32).map(|i| pool.run::<u32>(&job, "naps", (1u32, i)));
    let (stuck, sums) = tokio::join!(stuck, futures_util::future::join_all(calls));
    assert_eq!(stuck.unwrap_err().kind(), ErrorKind::Timeout);
    for (i, sum) in sums.into_iter().enumerate() {
        assert_eq!(sum.unwrap(), i as u32 + 1);
    }
    one_worker_nothing_killed(&pool);
}

/// While eight calls run on one worker, the pool counts one busy worker
/// and one tenant's hold on it; once they end, one idle worker and eight
/// calls.
#[tokio::test]
async fn statistics_count_the_worker_once_and_every_call() {
    let job = asyncs();
    let naps = Arc::new(Naps::default());
    let pool = napping_pool(WorkerKind::Process, 8, &naps);
    pool.run::<u32>(&job, "double", (1u32,)).await.unwrap();
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let (pool, job) = (pool.clone(), job.clone());
            tokio::spawn(async move { pool.run::<u32>(&job, "naps", (1u32, 500u32)).await })
        })
        .collect();
    eventually("eight naps at once", || {
        naps.now.load(Ordering::SeqCst) == 8
    })
    .await;
    let stats = pool.statistics();
    assert_eq!(
        (stats.idle, stats.busy, stats.max_workers),
        (0, 1, 1),
        "{stats:?}"
    );
    let running: usize = stats.tenants.iter().map(|t| t.running).sum();
    assert_eq!(running, 1, "the calls share the worker's place: {stats:?}");
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), 500);
    }
    let stats = pool.statistics();
    assert_eq!(
        (stats.idle, stats.busy, stats.calls),
        (1, 0, 9),
        "{stats:?}"
    );
    one_worker_nothing_killed(&pool);
}
