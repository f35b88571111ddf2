//! `WorkerKind::Thread`: the same API on in-process worker threads. Traps,
//! cancels, timeouts, limits and the sandbox behave as with processes; a
//! kill becomes an interrupt.

use std::future::IntoFuture;
use std::time::Duration;

use crate::common::{eventually, job};
use wasmpool::{Cancel, ErrorKind, Limit, Pool, Stdio, WorkerKind};

fn threads(workers: usize) -> Pool {
    Pool::builder()
        .workers(workers)
        .worker_kind(WorkerKind::Thread)
        .grace(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test]
async fn thread_workers_run_calls_in_this_process() {
    let pool = threads(2);
    let fib = job(wasmpool_guests::FIB);
    let (a, b) = tokio::join!(
        pool.run::<u64>(&fib, "fib", (25u64,)),
        pool.run::<u64>(&fib, "wasmpool:jobs/math#fib", (20u64,))
    );
    assert_eq!(a.unwrap(), 75_025);
    assert_eq!(b.unwrap(), 6_765);
    assert!(pool.worker_pids().is_empty(), "no worker processes");
    let stats = pool.statistics();
    assert!(stats.spawned >= 1 && stats.spawned <= 2, "{stats:?}");
    assert_eq!(stats.calls, 2);
    pool.shutdown().await;
    assert_eq!(pool.statistics().idle + pool.statistics().busy, 0);
}

#[tokio::test]
async fn a_trap_is_an_error_and_the_thread_serves_on() {
    let pool = threads(1);
    let faults = job(wasmpool_guests::FAULTS);
    let e = pool
        .run::<()>(&faults, "unreachable", ())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Trap, "{e:?}");
    let e = pool
        .run::<String>(&faults, "panic", ("thread boom",))
        .await
        .unwrap_err();
    assert_eq!(e.panic_message(), Some("thread boom"), "{e:?}");
    let q: i32 = pool.run(&faults, "divide", (7, 2)).await.unwrap();
    assert_eq!(q, 3);
    assert_eq!(pool.statistics().spawned, 1, "the same thread served all");
}

#[tokio::test]
async fn dropping_a_call_interrupts_the_guest_and_keeps_the_thread() {
    for mode in [Cancel::Interrupt, Cancel::Kill] {
        let pool = threads(1);
        let faults = job(wasmpool_guests::FAULTS);
        let cpu = job(wasmpool_guests::CPU);
        let call = pool
            .call::<()>(&faults, "spin-forever", ())
            .on_cancel(mode)
            .into_future();
        let r = tokio::time::timeout(Duration::from_millis(100), call).await;
        assert!(r.is_err(), "spin-forever never returns");
        // The next call runs on the same thread once the guest has stopped.
        let () = pool.run(&cpu, "noop", ()).await.unwrap();
        let stats = pool.statistics();
        assert_eq!((stats.spawned, stats.killed), (1, 0), "{mode:?}: {stats:?}");
    }
}

#[tokio::test]
async fn a_cancel_handle_stops_a_guest_asleep_in_wasi() {
    let pool = threads(1);
    let faults: &'static wasmpool::Job = Box::leak(Box::new(job(wasmpool_guests::FAULTS)));
    let call = pool.call::<()>(faults, "sleep", (3_600_000u64,));
    let handle = call.cancel_handle();
    let task = tokio::spawn(async move { call.await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    handle.cancel();
    let e = task.await.unwrap().unwrap_err();
    assert!(e.is_cancelled(), "{e:?}");
    let q: i32 = pool.run(faults, "divide", (9, 3)).await.unwrap();
    assert_eq!(q, 3);
}

#[tokio::test]
async fn timeouts_and_limits_hold_on_threads() {
    let pool = threads(1);
    let faults = job(wasmpool_guests::FAULTS);
    let e = pool
        .call::<()>(&faults, "spin-forever", ())
        .timeout(Duration::from_millis(50))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    let e = pool
        .call::<u64>(&faults, "alloc", (64u64 << 20,))
        .max_memory(16 << 20)
        .await
        .unwrap_err();
    assert_eq!(e.limit(), Some(Limit::Memory), "{e:?}");
    assert_eq!(pool.statistics().spawned, 1);
}

#[tokio::test]
async fn the_sandbox_and_capture_hold_on_threads() {
    let pool = threads(1);
    let sandbox = job(wasmpool_guests::SANDBOX);
    let home: Option<String> = pool.run(&sandbox, "env-var", ("HOME",)).await.unwrap();
    assert_eq!(home, None, "the host's environment is not the guest's");
    let read: Result<String, String> = pool
        .run(&sandbox, "read-file", ("/etc/passwd",))
        .await
        .unwrap();
    assert!(read.is_err(), "{read:?}");
    let set: Option<String> = pool
        .call(&sandbox, "env-var", ("GREETING",))
        .env("GREETING", "hi")
        .await
        .unwrap();
    assert_eq!(set.as_deref(), Some("hi"));

    let hello = job(wasmpool_guests::HELLO);
    let out = pool
        .call::<String>(&hello, "hello", ("thread",))
        .stdout(Stdio::Capture)
        .report()
        .await
        .unwrap();
    let printed = String::from_utf8(out.stdout.unwrap()).unwrap();
    assert!(printed.contains("thread"), "{printed:?}");
}

#[tokio::test]
async fn idle_threads_exit_and_shutdown_waits_for_them() {
    let pool = Pool::builder()
        .workers(2)
        .worker_kind(WorkerKind::Thread)
        .idle_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let cpu = job(wasmpool_guests::CPU);
    pool.warm(2).await.unwrap();
    assert_eq!(pool.statistics().idle, 2);
    eventually("idle threads to exit", || {
        let s = pool.statistics();
        s.idle + s.busy == 0
    })
    .await;
    let () = pool.run(&cpu, "noop", ()).await.unwrap();
    pool.shutdown().await;
    let s = pool.statistics();
    assert_eq!(s.idle + s.busy, 0, "{s:?}");
}
