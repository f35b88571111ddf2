//! A worker killed from outside mid-call is an error, not a hang, and the
//! pool replaces it.

use crate::common::{self, eventually, job, pool, sigkill};
use wasmpool::ErrorKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_call_is_worker_crashed_and_the_pool_carries_on() {
    let pool = pool(1);
    let faults = job(wasmpool_guests::FAULTS);
    // Started first, so that "busy" below means "running the call", not
    // "starting up".
    pool.warm(1).await.unwrap();
    let call = {
        let (pool, faults) = (pool.clone(), faults.clone());
        tokio::spawn(async move { pool.run::<()>(&faults, "spin-forever", ()).await })
    };
    let pids = pool.worker_pids();
    assert_eq!(pids.len(), 1);
    // Killed while the guest spins: it has taken the call, so the call
    // fails (a worker killed before it took a call would not fail it).
    let idle = common::cpu_ticks(pids[0]);
    eventually("the guest to spin", || {
        common::cpu_ticks(pids[0]) >= idle + 5
    })
    .await;
    sigkill(pids[0]);

    let e = tokio::time::timeout(std::time::Duration::from_secs(60), call)
        .await
        .expect("the call ends")
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WorkerCrashed);
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            e.exit_status().and_then(|s| s.signal()),
            Some(libc::SIGKILL)
        );
        assert!(e.to_string().contains("signal 9"), "{e}");
    }
    #[cfg(windows)]
    {
        assert_eq!(e.exit_status().and_then(|s| s.code()), Some(9));
        assert!(e.to_string().contains("exited with code 9"), "{e}");
    }
    assert!(!common::alive(pids[0]));

    // The pool starts a fresh worker for the next call.
    let n: u64 = pool
        .run(&job(wasmpool_guests::FIB), "fib", (10u64,))
        .await
        .unwrap();
    assert_eq!(n, 55);
    let stats = pool.statistics();
    assert_eq!(stats.spawned, 2, "{stats:?}");
    assert_eq!(stats.crashed, 1, "{stats:?}");
    assert_ne!(pool.worker_pids(), pids);
}

#[tokio::test]
async fn an_idle_worker_killed_from_outside_is_replaced() {
    let pool = pool(1);
    let fib = job(wasmpool_guests::FIB);
    let _: u64 = pool.run(&fib, "fib", (1u64,)).await.unwrap();
    let pids = pool.worker_pids();
    sigkill(pids[0]);
    eventually("the dead worker to be reaped", || {
        pool.worker_pids().is_empty()
    })
    .await;
    let n: u64 = pool.run(&fib, "fib", (10u64,)).await.unwrap();
    assert_eq!(n, 55);
    assert_eq!(pool.statistics().crashed, 1);
}

/// The defect of issue 15: workers killed while idle, and a call made at
/// once, before the pool has noticed. The call never reached a guest, so
/// it must not fail: the pool skips a worker it finds dead, and sends a
/// request that a dead worker never took to a fresh one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_killed_while_idle_never_fail_the_next_call() {
    let pool = pool(2);
    let fib = job(wasmpool_guests::FIB);
    for round in 0..20 {
        pool.warm(2).await.unwrap();
        let pids = pool.worker_pids();
        assert_eq!(pids.len(), 2, "round {round}");
        for pid in &pids {
            sigkill(*pid);
        }
        let n = pool.run::<u64>(&fib, "fib", (10u64,)).await;
        assert_eq!(n.ok(), Some(55), "round {round}");
    }
    assert_eq!(
        pool.statistics().killed,
        0,
        "the pool killed nothing itself"
    );
}
