//! Calling exports by name, argument checks, concurrency and statistics.

use crate::common::{job, pool, temp_dir};
use wasmpool::{ErrorKind, Job, Pool};

#[test]
fn pool_and_job_are_cheap_send_sync_handles() {
    fn assert_traits<T: Clone + Send + Sync + 'static>() {}
    assert_traits::<Pool>();
    assert_traits::<Job>();
    fn assert_error<T: std::error::Error + Send + Sync + 'static>() {}
    assert_error::<wasmpool::Error>();
}

#[tokio::test]
async fn world_interface_and_bare_names() {
    let pool = pool(1);
    let fib = job(wasmpool_guests::FIB);
    let n: u64 = pool.run(&fib, "fib", (20u64,)).await.unwrap();
    assert_eq!(n, 6765);
    let n: u64 = pool
        .run(&fib, "wasmpool:jobs/math@0.1.0#fib", (10u64,))
        .await
        .unwrap();
    assert_eq!(n, 55);
    // Version left out: only one version is exported.
    let n: u64 = pool
        .run(&fib, "wasmpool:jobs/math#fib", (11u64,))
        .await
        .unwrap();
    assert_eq!(n, 89);

    let types = job(wasmpool_guests::TYPES);
    // `echo-string` exists only in the `types` interface: a unique bare name.
    let s: String = pool.run(&types, "echo-string", ("hi",)).await.unwrap();
    assert_eq!(s, "hi");
    // `echo-u8` is both world-level and in `types`: the world-level one wins.
    let b: u8 = pool.run(&types, "echo-u8", (7u8,)).await.unwrap();
    assert_eq!(b, 7);
    let b: u8 = pool
        .run(&types, "wasmpool:jobs/types#echo-u8", (8u8,))
        .await
        .unwrap();
    assert_eq!(b, 8);
}

#[tokio::test]
async fn unknown_names_list_what_exists() {
    let pool = pool(1);
    let fib = job(wasmpool_guests::FIB);
    let e = pool.run::<u64>(&fib, "fob", (1u64,)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoSuchFunction);
    assert!(
        e.to_string().contains("wasmpool:jobs/math@0.1.0#fib"),
        "{e}"
    );
    let e = pool
        .run::<u64>(&fib, "wasmpool:jobs/other#fib", (1u64,))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoSuchFunction);
    // No worker was needed to say so.
    assert_eq!(pool.statistics().spawned, 0);
}

#[tokio::test]
async fn argument_count_and_shape_are_checked_before_sending() {
    let pool = pool(1);
    let fib = job(wasmpool_guests::FIB);
    let e = pool.run::<u64>(&fib, "fib", ()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ArgumentMismatch);
    assert!(e.to_string().contains("takes 1 arguments, got 0"), "{e}");
    let e = pool
        .run::<u64>(&fib, "fib", (1u64, 2u64))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ArgumentMismatch);
    // A bare value instead of a tuple.
    let e = pool.run::<u64>(&fib, "fib", 5u64).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ArgumentMismatch);
    assert!(e.to_string().contains("tuple"), "{e}");
    assert_eq!(pool.statistics().spawned, 0);
}

#[tokio::test]
async fn type_mismatches_name_the_path_and_the_wit_type() {
    let pool = pool(1);
    let fib = job(wasmpool_guests::FIB);
    let e = pool.run::<u64>(&fib, "fib", ("thirty",)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ArgumentMismatch);
    assert_eq!(
        e.to_string(),
        "args[0]: expected u64, got string \"thirty\""
    );
    let e = pool.run::<u64>(&fib, "fib", (-1i64,)).await.unwrap_err();
    assert_eq!(e.to_string(), "args[0]: -1 is out of range for u64");
    let e = pool.run::<String>(&fib, "fib", (3u64,)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ResultMismatch);
    assert!(
        e.to_string()
            .starts_with("result: invalid type: integer `2`"),
        "{e}"
    );
    // The worker served all of that without dying.
    let n: u64 = pool.run(&fib, "fib", (3u64,)).await.unwrap();
    assert_eq!(n, 2);
    assert_eq!(pool.statistics().spawned, 1);
}

#[tokio::test]
async fn resources_are_refused_clearly() {
    let pool = pool(1);
    let types = job(wasmpool_guests::TYPES);
    let e = pool
        .run::<u32>(&types, "make-counter", (1u32,))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(e.to_string().contains("resource"), "{e}");
    let e = pool
        .run::<u32>(&types, "[method]counter.get", ())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_move_into_spawned_tasks_and_run_in_parallel() {
    let pool = pool(2);
    let fib = job(wasmpool_guests::FIB);
    let tasks: Vec<_> = (0..16u64)
        .map(|i| {
            let (pool, fib) = (pool.clone(), fib.clone());
            tokio::spawn(async move { pool.run::<u64>(&fib, "fib", (i,)).await })
        })
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap().unwrap());
    }
    let want: Vec<u64> = (0..16u64)
        .map(|n| {
            let (mut a, mut b) = (0u64, 1u64);
            for _ in 0..n {
                (a, b) = (b, a + b);
            }
            a
        })
        .collect();
    assert_eq!(got, want);
    let stats = pool.statistics();
    assert!(stats.spawned <= 2, "{stats:?}");
    assert_eq!(stats.calls, 16);
    assert_eq!(stats.busy, 0);
}

#[tokio::test]
async fn idle_workers_are_reused_lifo() {
    let pool = pool(2);
    let fib = job(wasmpool_guests::FIB);
    pool.warm(2).await.unwrap();
    let pids = pool.worker_pids();
    assert_eq!(pids.len(), 2);
    for _ in 0..20 {
        let _: u64 = pool.run(&fib, "fib", (5u64,)).await.unwrap();
    }
    let stats = pool.statistics();
    assert_eq!(stats.spawned, 2);
    assert_eq!(stats.idle, 2);
    assert_eq!(pool.worker_pids().len(), 2);
}

#[tokio::test]
async fn the_default_pool_serves_wasmpool_run() {
    let fib = job(wasmpool_guests::FIB);
    let n: u64 = wasmpool::run(&fib, "fib", (12u64,)).await.unwrap();
    assert_eq!(n, 144);
    assert!(wasmpool::default_pool().unwrap().statistics().calls >= 1);
}

#[tokio::test]
async fn bad_pool_settings_are_config_errors() {
    let e = Pool::builder().workers(0).build().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    let e = Pool::builder().retire_after(0).build().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
}

/// A program that starts, and exits at once, and is no wasmpool worker.
const NOT_A_WORKER: &str = if cfg!(windows) {
    "C:\\windows\\system32\\hostname.exe"
} else {
    "/bin/true"
};

#[tokio::test]
async fn a_missing_worker_program_is_a_spawn_error() {
    // Each pool has an empty cache of its own, so that the job's first
    // compile runs in a child started from the broken program: a warm
    // shared cache would skip that child and hide how it is reported.
    let fib = job(wasmpool_guests::FIB);
    for program in ["/nonexistent/worker", NOT_A_WORKER] {
        let pool = Pool::builder()
            .workers(1)
            .worker_program(program)
            .cache_dir(temp_dir("bad-program"))
            .build()
            .unwrap();
        let e = pool.prepare(&fib).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Spawn, "{program}: {e}");
        assert!(e.to_string().contains(program), "{e}");
        let e = pool.run::<u64>(&fib, "fib", (1u64,)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Spawn, "{program}: {e}");
        assert!(e.to_string().contains(program), "{e}");
    }
    // A program that is not a wasmpool worker exits during the handshake,
    // whether it is started to compile or to serve calls (the job is in
    // the cache now).
    let dir = temp_dir("bad-program-warm");
    let good = Pool::builder().workers(1).cache_dir(&dir).build().unwrap();
    good.prepare(&fib).await.unwrap();
    let pool = Pool::builder()
        .workers(1)
        .worker_program(NOT_A_WORKER)
        .cache_dir(&dir)
        .build()
        .unwrap();
    let e = pool.run::<u64>(&fib, "fib", (1u64,)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Spawn);
    assert!(e.to_string().contains("handshake"), "{e}");
}

#[tokio::test]
async fn invalid_components_fail_at_creation() {
    let e = Job::from_bytes(vec![0, 97, 115, 109, 1, 0, 0, 0]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidComponent);
    let e = Job::from_bytes(b"garbage".to_vec()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidComponent);
}

#[tokio::test]
async fn compiled_artifacts_land_in_the_cache_dir() {
    // Not `compile_cache`'s directory: its tests add artifacts this one
    // counts.
    let dir = temp_dir("basics-cache");
    let pool = Pool::builder().workers(1).cache_dir(&dir).build().unwrap();
    let fib = job(wasmpool_guests::FIB);
    pool.prepare(&fib).await.unwrap();
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let n: u64 = pool.run(&fib, "fib", (10u64,)).await.unwrap();
    assert_eq!(n, 55);
    // A second pool loads the same artifact instead of compiling again.
    let pool2 = Pool::builder().workers(1).cache_dir(&dir).build().unwrap();
    let n: u64 = pool2.run(&fib, "fib", (10u64,)).await.unwrap();
    assert_eq!(n, 55);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    pool.shutdown().await;
    pool2.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn calls_after_shutdown_fail_with_pool_closed() {
    let pool = pool(1);
    let fib = job(wasmpool_guests::FIB);
    let _: u64 = pool.run(&fib, "fib", (3u64,)).await.unwrap();
    pool.shutdown().await;
    assert!(pool.is_closed());
    let e = pool.run::<u64>(&fib, "fib", (3u64,)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PoolClosed);
}
