//! Idle timeout, retirement (after n calls, above a memory bound), cancel
//! on drop, shutdown and drop: every child is reaped.

use std::time::Duration;

use futures_util::StreamExt;

use crate::common::{self, alive, echoes, eventually, job};
use wasmpool::{Cancel, ErrorKind, Pool};

#[tokio::test]
async fn idle_workers_exit_after_the_idle_timeout() {
    let pool = Pool::builder()
        .workers(2)
        .idle_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    pool.warm(2).await.unwrap();
    let pids = pool.worker_pids();
    assert_eq!(pids.len(), 2);
    eventually("idle workers to retire", || pool.worker_pids().is_empty()).await;
    for pid in pids {
        assert!(!alive(pid));
    }
    let stats = pool.statistics();
    assert_eq!((stats.idle, stats.crashed), (0, 0), "{stats:?}");
    // The pool still works: it starts a new worker.
    let n: u64 = pool
        .run(&job(wasmpool_guests::FIB), "fib", (5u64,))
        .await
        .unwrap();
    assert_eq!(n, 5);
}

#[tokio::test]
async fn workers_retire_after_n_calls() {
    let pool = Pool::builder().workers(1).retire_after(3).build().unwrap();
    let fib = job(wasmpool_guests::FIB);
    for _ in 0..7 {
        let _: u64 = pool.run(&fib, "fib", (5u64,)).await.unwrap();
    }
    let stats = pool.statistics();
    assert_eq!(stats.spawned, 3, "{stats:?}");
    assert_eq!(stats.crashed, 0);
}

#[tokio::test]
async fn a_worker_left_above_the_memory_bound_is_retired() {
    // Skipped under Wine (`.ci/cross`): Wine counts no private working set,
    // and a worker's whole working set there is about 280 MiB from the
    // start, so no bound this small can hold.
    // Small calls leave a worker a few MiB of its own; one 64 MiB echo
    // leaves it far above 32 MiB (its guest's grown memory, kept for the
    // next instance, and its allocator's copies) until it idles.
    let pool = Pool::builder()
        .workers(1)
        .retire_above(32 << 20)
        .build()
        .unwrap();
    let echo = job(wasmpool_guests::ECHO);
    for _ in 0..3 {
        echoes(&pool, &echo, b"small").await;
    }
    let small = pool.worker_pids();
    assert_eq!(small.len(), 1);
    assert_eq!(
        pool.statistics().spawned,
        1,
        "small calls keep their worker"
    );
    // The call that passes the bound succeeds; its worker then goes.
    let data: Vec<u8> = (0..64u32 << 20).map(|i| (i % 251) as u8).collect();
    echoes(&pool, &echo, &data).await;
    eventually("the large worker to exit", || !alive(small[0])).await;
    echoes(&pool, &echo, b"small").await;
    let next = pool.worker_pids();
    assert_eq!(next.len(), 1);
    assert_ne!(next, small, "the next call went to a fresh worker");
    let stats = pool.statistics();
    assert_eq!((stats.spawned, stats.crashed), (2, 0), "{stats:?}");
}

#[tokio::test]
async fn the_memory_bound_does_not_apply_to_worker_threads() {
    // A worker thread's memory is the host's: any bound, even 0 bytes,
    // leaves it serving.
    let pool = Pool::builder()
        .workers(1)
        .worker_kind(wasmpool::WorkerKind::Thread)
        .retire_above(0)
        .build()
        .unwrap();
    let echo = job(wasmpool_guests::ECHO);
    for _ in 0..3 {
        echoes(&pool, &echo, b"small").await;
    }
    let stats = pool.statistics();
    assert_eq!((stats.spawned, stats.calls), (1, 3), "{stats:?}");
}

#[tokio::test]
async fn shutdown_reaps_every_child() {
    let pool = common::pool(2);
    pool.warm(2).await.unwrap();
    let pids = pool.worker_pids();
    assert_eq!(pids.len(), 2);
    pool.shutdown().await;
    assert!(pool.worker_pids().is_empty());
    for pid in pids {
        assert!(!alive(pid), "worker {pid} outlived shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_calls_in_flight_finish() {
    let pool = common::pool(1);
    let cpu = job(wasmpool_guests::CPU);
    let call = {
        let (pool, cpu) = (pool.clone(), cpu.clone());
        tokio::spawn(async move { pool.run::<u64>(&cpu, "spin", (3_000_000u64,)).await })
    };
    eventually("the call to start", || pool.statistics().busy == 1).await;
    pool.shutdown().await;
    assert!(call.await.unwrap().is_ok());
    assert!(pool.worker_pids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_pool_kills_and_reaps_busy_workers() {
    let pool = common::pool(2);
    let faults = job(wasmpool_guests::FAULTS);
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let (pool, faults) = (pool.clone(), faults.clone());
            tokio::spawn(async move { pool.run::<()>(&faults, "spin-forever", ()).await })
        })
        .collect();
    eventually("both calls to start", || pool.statistics().busy == 2).await;
    let pids = pool.worker_pids();
    // The tasks hold clones of the pool; aborting them drops the last ones.
    for c in &calls {
        c.abort();
    }
    drop(pool);
    for c in calls {
        assert!(c.await.unwrap_err().is_cancelled());
    }
    for pid in pids {
        eventually("the worker to be reaped", || !alive(pid)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_call_interrupts_it_and_keeps_the_worker() {
    let pool = common::pool(1);
    let faults = job(wasmpool_guests::FAULTS);
    for _ in 0..3 {
        let call = pool.run::<()>(&faults, "spin-forever", ());
        let r = tokio::time::timeout(Duration::from_millis(50), call).await;
        assert!(r.is_err(), "spin-forever cannot finish");
    }
    // And a guest asleep in WASI is dropped as well.
    let call = pool.run::<()>(&faults, "sleep", (60_000u64,));
    assert!(
        tokio::time::timeout(Duration::from_millis(50), call)
            .await
            .is_err()
    );
    let n: u64 = pool
        .run(&job(wasmpool_guests::FIB), "fib", (10u64,))
        .await
        .unwrap();
    assert_eq!(n, 55);
    let stats = pool.statistics();
    assert_eq!(
        stats.spawned, 1,
        "the interrupted worker was reused: {stats:?}"
    );
    assert_eq!(stats.killed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_kill_kills_and_cancel_finish_waits() {
    let pool = common::pool(1);
    let faults = job(wasmpool_guests::FAULTS);
    // Compiled and with its worker up, so that the call below reaches the
    // worker within its 50 ms however slow a cold compile is.
    pool.prepare(&faults).await.unwrap();
    pool.warm(1).await.unwrap();
    let call = pool
        .call::<()>(&faults, "spin-forever", ())
        .on_cancel(Cancel::Kill);
    assert!(
        tokio::time::timeout(Duration::from_millis(50), call.into_future())
            .await
            .is_err()
    );
    eventually("the killed worker to be reaped", || {
        pool.worker_pids().is_empty()
    })
    .await;
    let stats = pool.statistics();
    assert_eq!((stats.killed, stats.crashed), (1, 0), "{stats:?}");

    let cpu = job(wasmpool_guests::CPU);
    let call = pool
        .call::<u64>(&cpu, "spin", (2_000_000u64,))
        .on_cancel(Cancel::Finish);
    assert!(
        tokio::time::timeout(Duration::from_micros(10), call.into_future())
            .await
            .is_err()
    );
    // The next call waits for the finishing one, then reuses its worker.
    let n: u64 = pool.run(&cpu, "spin", (1u64,)).await.unwrap();
    assert_ne!(n, 0);
    assert_eq!(pool.statistics().spawned, 2);
}

#[tokio::test]
async fn the_pool_closed_error_reaches_waiting_calls() {
    let pool = common::pool(1);
    pool.shutdown().await;
    let e = pool.warm(1).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PoolClosed);
}

#[tokio::test]
async fn reuse_is_lifo_so_the_spare_worker_idles_out() {
    // With LIFO reuse, sequential calls always get the most recently used
    // worker; the other one sits idle and its idle timeout retires it. With
    // FIFO reuse the two would take turns and neither would retire.
    let pool = Pool::builder()
        .workers(2)
        .idle_timeout(Duration::from_millis(400))
        .build()
        .unwrap();
    pool.warm(2).await.unwrap();
    let fib = job(wasmpool_guests::FIB);
    let start = std::time::Instant::now();
    while pool.worker_pids().len() == 2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the spare worker never idled out"
        );
        let _: u64 = pool.run(&fib, "fib", (5u64,)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = pool.statistics();
    assert_eq!(stats.spawned, 2, "{stats:?}");
    assert_eq!(pool.worker_pids().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_handle_cancels_from_another_task() {
    let pool = common::pool(1);
    let faults = job(wasmpool_guests::FAULTS);
    pool.warm(1).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = {
        let (pool, faults) = (pool.clone(), faults.clone());
        tokio::spawn(async move {
            let call = pool.call::<()>(&faults, "spin-forever", ());
            tx.send(call.cancel_handle()).unwrap();
            call.await
        })
    };
    let handle = rx.await.unwrap();
    eventually("the call to start", || pool.statistics().busy == 1).await;
    handle.cancel();
    handle.cancel(); // idempotent
    assert!(handle.is_cancelled());
    let e = task.await.unwrap().unwrap_err();
    assert!(e.is_cancelled(), "{e:?}");
    let n: u64 = pool
        .run(&job(wasmpool_guests::FIB), "fib", (10u64,))
        .await
        .unwrap();
    assert_eq!(n, 55);
    let stats = pool.statistics();
    assert_eq!((stats.spawned, stats.killed), (1, 0), "{stats:?}");

    // Cancelled before it is awaited: it never reaches a worker.
    let call = pool.call::<u64>(&faults, "recurse", (1u64,));
    call.cancel_handle().cancel();
    assert!(call.await.unwrap_err().is_cancelled());
    assert_eq!(pool.statistics().calls, stats.calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_that_overtakes_its_call_is_not_lost() {
    // Dropped right after the request is written, the cancel frame can
    // reach the worker before the call frame is read. The worker must still
    // cancel the call, not run it forever until the grace kill.
    let pool = common::pool(1);
    let faults = job(wasmpool_guests::FAULTS);
    pool.warm(1).await.unwrap();
    pool.prepare(&faults).await.unwrap();
    for _ in 0..20 {
        let call = pool.run::<()>(&faults, "spin-forever", ());
        assert!(tokio::time::timeout(Duration::ZERO, call).await.is_err());
    }
    let n: u64 = pool
        .run(&job(wasmpool_guests::FIB), "fib", (10u64,))
        .await
        .unwrap();
    assert_eq!(n, 55);
    let stats = pool.statistics();
    assert_eq!((stats.spawned, stats.killed), (1, 0), "{stats:?}");
    assert!(
        stats.calls > 1,
        "some cancels reached the worker: {stats:?}"
    );
}

#[tokio::test]
async fn a_panic_under_an_internal_lock_leaves_the_pool_working() {
    // Every lock of the pool's own (its registry of primitives, its
    // compiler, its roster's idle list and live workers) is poisoned by a
    // panic while it is held; each recovers its guard, so calls, maps,
    // primitives, counters and shutdown all go on.
    let fib = job(wasmpool_guests::FIB);
    for kind in [wasmpool::WorkerKind::Process, wasmpool::WorkerKind::Thread] {
        let pool = Pool::builder()
            .workers(2)
            .worker_kind(kind)
            .build()
            .unwrap();
        let n: u64 = pool.run(&fib, "fib", (10u64,)).await.unwrap();
        assert_eq!(n, 55);
        let queue = pool.queue::<u64>("before", 0).unwrap();
        pool.poison_internal_locks();

        let n: u64 = pool.run(&fib, "fib", (20u64,)).await.unwrap();
        assert_eq!(n, 6765, "{kind:?}");
        // A job the compiler has not seen yet.
        let echo = job(wasmpool_guests::ECHO);
        echoes(&pool, &echo, b"after the panic").await;
        let fibs: Vec<u64> = pool
            .map::<_, u64, _>(&fib, "fib", (0..10u64).map(|n| (n,)))
            .map(|r| r.unwrap())
            .collect()
            .await;
        assert_eq!(fibs, [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]);
        queue.put(&7).await.unwrap();
        assert_eq!(queue.get().await.unwrap(), Some(7));
        let after = pool.queue::<u64>("after", 0).unwrap();
        after.put(&8).await.unwrap();
        assert_eq!(after.get().await.unwrap(), Some(8));
        let stats = pool.statistics();
        assert_eq!(stats.crashed, 0, "{kind:?}: {stats:?}");
        assert!(stats.calls >= 12, "{kind:?}: {stats:?}");
        pool.shutdown().await;
        assert!(pool.worker_pids().is_empty());
    }
}
