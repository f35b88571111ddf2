//! Timeouts, memory and result-size limits: the call fails with its own
//! error kind and the worker survives to serve the next call.

use std::time::Duration;

use futures_util::StreamExt;
use serde_bytes::ByteBuf;

use crate::common::{job, pool};
use wasmpool::{ErrorKind, Limit, Pool, Stdio, WorkerKind};

#[tokio::test]
async fn a_spinning_guest_times_out_and_its_worker_is_reused() {
    let pool = pool(1);
    let faults = job(wasmpool_guests::FAULTS);
    for _ in 0..3 {
        let e = pool
            .call::<()>(&faults, "spin-forever", ())
            .timeout(Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
        assert!(!e.is_cancelled());
    }
    let stats = pool.statistics();
    assert_eq!((stats.spawned, stats.killed), (1, 0), "{stats:?}");
}

#[tokio::test]
async fn a_sleeping_guest_times_out_too() {
    let pool = pool(1);
    let faults = job(wasmpool_guests::FAULTS);
    let start = std::time::Instant::now();
    let e = pool
        .call::<()>(&faults, "sleep", (60_000u64,))
        .timeout(Duration::from_millis(100))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    // Far less than the minute it asked to sleep.
    assert!(start.elapsed() < Duration::from_secs(30));
    let stats = pool.statistics();
    assert_eq!((stats.spawned, stats.killed), (1, 0), "{stats:?}");
    // A call within its timeout is unaffected.
    let () = pool
        .call(&faults, "sleep", (1u64,))
        .timeout(Duration::from_secs(60))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_pool_timeout_applies_to_every_call() {
    let pool = Pool::builder()
        .workers(1)
        .timeout(Duration::from_millis(50))
        .grace(Duration::from_secs(30))
        .build()
        .unwrap();
    let faults = job(wasmpool_guests::FAULTS);
    let e = pool
        .run::<()>(&faults, "spin-forever", ())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    let n: u64 = pool
        .run(&job(wasmpool_guests::FIB), "fib", (10u64,))
        .await
        .unwrap();
    assert_eq!(n, 55);
}

#[tokio::test]
async fn growing_past_max_memory_is_a_resource_limit() {
    let pool = pool(1);
    let faults = job(wasmpool_guests::FAULTS);
    let e = pool
        .call::<u64>(&faults, "alloc", (64u64 << 20,))
        .max_memory(16 << 20)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ResourceLimit, "{e:?}");
    assert_eq!(e.limit(), Some(Limit::Memory));
    assert!(
        e.panic_message().unwrap().contains("memory allocation of"),
        "{e:?}"
    );
    // Within the limit it works, on the same worker.
    let sum: u64 = pool
        .call(&faults, "alloc", (1u64 << 20,))
        .max_memory(16 << 20)
        .await
        .unwrap();
    assert_eq!(sum, 256);
    assert_eq!(pool.statistics().spawned, 1);
}

#[tokio::test]
async fn the_pool_memory_limit_applies_to_every_call() {
    let pool = Pool::builder()
        .workers(1)
        .max_memory(8 << 20)
        .build()
        .unwrap();
    let faults = job(wasmpool_guests::FAULTS);
    let e = pool
        .run::<u64>(&faults, "alloc", (32u64 << 20,))
        .await
        .unwrap_err();
    assert_eq!(e.limit(), Some(Limit::Memory), "{e:?}");
}

#[tokio::test]
async fn fuel_is_a_deterministic_budget() {
    let pool = Pool::builder()
        .workers(1)
        .fuel(u64::MAX)
        .grace(Duration::from_secs(30))
        .build()
        .unwrap();
    let cpu = job(wasmpool_guests::CPU);
    let a = pool
        .call::<u64>(&cpu, "spin", (10_000u64,))
        .report()
        .await
        .unwrap();
    let b = pool
        .call::<u64>(&cpu, "spin", (10_000u64,))
        .report()
        .await
        .unwrap();
    let used = a.fuel_consumed.unwrap();
    assert!(used > 10_000, "{used}");
    assert_eq!(
        b.fuel_consumed,
        Some(used),
        "the same call burns the same fuel"
    );
    assert_eq!(a.value, b.value);

    let e = pool
        .call::<u64>(&cpu, "spin", (10_000_000u64,))
        .fuel(used)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ResourceLimit, "{e:?}");
    assert_eq!(e.limit(), Some(Limit::Fuel));
    let c = pool
        .call::<u64>(&cpu, "spin", (10_000u64,))
        .fuel(used)
        .report()
        .await
        .unwrap();
    assert_eq!(c.fuel_consumed, Some(used), "exactly enough fuel is enough");
    assert_eq!(pool.statistics().spawned, 1);
}

#[tokio::test]
async fn a_fuel_budget_needs_a_metering_pool() {
    let pool = pool(1);
    let e = pool
        .call::<u64>(&job(wasmpool_guests::CPU), "spin", (1u64,))
        .fuel(100)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    let out = pool
        .call::<u64>(&job(wasmpool_guests::CPU), "spin", (1u64,))
        .report()
        .await
        .unwrap();
    assert_eq!(out.fuel_consumed, None);
}

#[tokio::test]
async fn a_zero_grace_still_times_out_cleanly() {
    // With no grace, the host's watchdog races the worker's own interrupt:
    // either way the call is a Timeout and the pool keeps working.
    let pool = Pool::builder()
        .workers(1)
        .timeout(Duration::from_millis(20))
        .grace(Duration::ZERO)
        .build()
        .unwrap();
    let faults = job(wasmpool_guests::FAULTS);
    for _ in 0..5 {
        let e = pool
            .run::<()>(&faults, "spin-forever", ())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    }
    let n: u64 = pool
        .run(&job(wasmpool_guests::FIB), "fib", (10u64,))
        .await
        .unwrap();
    assert_eq!(n, 55);
    let stats = pool.statistics();
    assert_eq!(stats.crashed, 0, "{stats:?}");
}

#[tokio::test]
async fn a_worker_deaf_to_its_timeout_is_killed_after_the_grace() {
    // A worker stuck outside wasm (here, told to sleep natively for a
    // minute) does not see the epoch interrupt: the host's watchdog kills
    // it once the timeout and the grace are over, and the caller resumes.
    let pool = Pool::builder()
        .workers(1)
        .grace(Duration::from_millis(100))
        .build()
        .unwrap();
    let fib = job(wasmpool_guests::FIB);
    let n: u64 = pool.run(&fib, "fib", (10u64,)).await.unwrap();
    assert_eq!(n, 55);
    let pid = pool.worker_pids()[0];
    let started = std::time::Instant::now();
    let e = pool
        .call::<()>(&fib, "fib", (1u64,))
        .stall_natively(Duration::from_secs(600))
        .timeout(Duration::from_millis(50))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    // Far below the stall: only the kill can have ended the call.
    assert!(started.elapsed() < Duration::from_secs(300));
    crate::common::eventually("the stuck worker to die", || !crate::common::alive(pid)).await;
    // Counted just after the kill.
    crate::common::eventually("the kill to be counted", || pool.statistics().killed == 1).await;
    let n: u64 = pool.run(&fib, "fib", (10u64,)).await.unwrap();
    assert_eq!(n, 55);
    assert_ne!(pool.worker_pids(), [pid]);
}

#[tokio::test]
async fn a_worker_deaf_to_a_cancel_is_killed_after_the_grace() {
    let pool = Pool::builder()
        .workers(1)
        .grace(Duration::from_millis(100))
        .build()
        .unwrap();
    let fib = job(wasmpool_guests::FIB);
    let n: u64 = pool.run(&fib, "fib", (10u64,)).await.unwrap();
    assert_eq!(n, 55);
    let pid = pool.worker_pids()[0];
    let stalled = pool
        .call::<()>(&fib, "fib", (1u64,))
        .stall_natively(Duration::from_secs(600));
    // Dropped (Cancel::Interrupt) once it has surely reached the worker.
    let dropped = tokio::time::timeout(Duration::from_millis(200), stalled).await;
    assert!(dropped.is_err(), "a stalled call returned: {dropped:?}");
    crate::common::eventually("the stuck worker to die", || !crate::common::alive(pid)).await;
    // Counted just after the kill.
    crate::common::eventually("the kill to be counted", || pool.statistics().killed == 1).await;
    // The next call waited for the place, not for the stall.
    let n: u64 = pool.run(&fib, "fib", (10u64,)).await.unwrap();
    assert_eq!(n, 55);
}

#[tokio::test]
async fn a_result_over_its_limit_fails_in_the_worker_which_is_kept() {
    let echo = job(wasmpool_guests::ECHO);
    let bytes = |n: usize| ByteBuf::from(vec![7u8; n]);
    for kind in [WorkerKind::Process, WorkerKind::Thread] {
        // 100 KiB: past the size that goes through the payload region.
        let limit = 100 << 10;
        let pool = Pool::builder()
            .workers(1)
            .worker_kind(kind)
            .max_result_bytes(limit)
            .build()
            .unwrap();
        let small: ByteBuf = pool.run(&echo, "echo-bytes", (bytes(1000),)).await.unwrap();
        assert_eq!(small.len(), 1000);
        let pids = pool.worker_pids();
        // Inline (a pipe frame) and through the region, with the pool's
        // limit.
        for n in [limit as usize + 1, 1 << 20] {
            let e = pool
                .run::<ByteBuf>(&echo, "echo-bytes", (bytes(n),))
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ResourceLimit, "{kind:?} {n}: {e}");
            assert_eq!(e.limit(), Some(Limit::Result));
            assert!(e.to_string().contains("max_result_bytes"), "{e}");
        }
        // A call's own limit, above the pool's, lets it through.
        let big: ByteBuf = pool
            .call(&echo, "echo-bytes", (bytes(1 << 20),))
            .max_result_bytes(2 << 20)
            .await
            .unwrap();
        assert_eq!(big.len(), 1 << 20);
        // And one below it stops a result the pool's would let through.
        let e = pool
            .call::<ByteBuf>(&echo, "echo-bytes", (bytes(1000),))
            .max_result_bytes(100)
            .await
            .unwrap_err();
        assert_eq!(e.limit(), Some(Limit::Result), "{e}");
        // In a map, each item's result.
        let sizes = [10usize, 200 << 10, 10];
        let results: Vec<_> = pool
            .map::<_, ByteBuf, _>(&echo, "echo-bytes", sizes.iter().map(|&n| (bytes(n),)))
            .collect()
            .await;
        assert_eq!(results[0].as_ref().unwrap().len(), 10);
        let e = results[1].as_ref().unwrap_err();
        assert_eq!(e.limit(), Some(Limit::Result), "{e}");
        assert_eq!(results[2].as_ref().unwrap().len(), 10);
        // The worker served all of it.
        let stats = pool.statistics();
        assert_eq!(
            (stats.spawned, stats.crashed, stats.killed),
            (1, 0, 0),
            "{kind:?}"
        );
        assert_eq!(pool.worker_pids(), pids);
        pool.shutdown().await;
    }
}

#[tokio::test]
async fn output_past_its_limit_fails_the_call_and_the_worker_is_kept() {
    let faults = job(wasmpool_guests::FAULTS);
    for kind in [WorkerKind::Process, WorkerKind::Thread] {
        let pool = Pool::builder()
            .workers(1)
            .worker_kind(kind)
            .build()
            .unwrap();
        // Captured: within the limit, all of it comes back.
        let out = pool
            .call::<u64>(&faults, "flood", (5000u64,))
            .stdout(Stdio::Capture)
            .max_output_bytes(10_000)
            .report()
            .await
            .unwrap();
        assert_eq!(out.value, 5000);
        assert_eq!(out.stdout.map(|s| s.len()), Some(5000));
        // Past it, captured or inherited, the guest's write fails, and its
        // panic is the limit's error.
        for mode in [Stdio::Capture, Stdio::Inherit] {
            let e = pool
                .call::<u64>(&faults, "flood", (1u64 << 20,))
                .stdout(mode)
                .max_output_bytes(1000)
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ResourceLimit, "{kind:?} {mode:?}: {e}");
            assert_eq!(e.limit(), Some(Limit::Output));
            assert!(e.to_string().contains("output limit of 1000 bytes"), "{e}");
        }
        // A discarded stream is never limited.
        let n: u64 = pool
            .call(&faults, "flood", (1u64 << 20,))
            .stdout(Stdio::Discard)
            .max_output_bytes(1000)
            .await
            .unwrap();
        assert_eq!(n, 1 << 20);
        let stats = pool.statistics();
        assert_eq!(
            (stats.spawned, stats.crashed, stats.killed),
            (1, 0, 0),
            "{kind:?}"
        );
        pool.shutdown().await;
    }
}
