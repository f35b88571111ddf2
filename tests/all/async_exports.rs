//! Async components (the component model's `async func`, WASIp3): their
//! exports are called like sync ones, they await `wasi:clocks@0.3` and the
//! host's async imports, and traps and timeouts end only their call.

use std::time::{Duration, Instant};

use crate::common::job;
use wasmpool::{BoxError, ErrorKind, HostContext, Pool, WorkerKind};

/// The `async-host` interface the guest imports.
const NAP: &str = "wasmpool:jobs/async-host@0.1.0#nap";

/// A one-worker pool serving `nap`: sleeps `ms` on the host, returns `ms`.
fn async_pool(kind: WorkerKind) -> Pool {
    Pool::builder()
        .workers(1)
        .worker_kind(kind)
        .grace(Duration::from_secs(30))
        .host_fn(NAP, |_cx: HostContext, (ms,): (u32,)| async move {
            tokio::time::sleep(Duration::from_millis(ms.into())).await;
            Ok::<_, BoxError>(ms)
        })
        .build()
        .unwrap()
}

fn asyncs() -> wasmpool::Job {
    job(wasmpool_guests::ASYNCS)
}

#[tokio::test]
async fn async_exports_are_called_like_sync_ones() {
    let job = asyncs();
    for kind in [WorkerKind::Process, WorkerKind::Thread] {
        let pool = async_pool(kind);
        let n: u32 = pool.run(&job, "double", (21u32,)).await.unwrap();
        assert_eq!(n, 42, "{kind:?}");
        let n: u32 = pool
            .call(&job, "double", (50u32,))
            .timeout(Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(n, 100, "{kind:?}");
        // The component's sync export, beside the async ones.
        let f: u64 = pool.run(&job, "fib", (20u32,)).await.unwrap();
        assert_eq!(f, 6765, "{kind:?}");
        // Bad arguments are refused as for a sync export.
        let e = pool.run::<u32>(&job, "double", ("x",)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ArgumentMismatch, "{kind:?}: {e:?}");
        // On a session too.
        let session = pool.session(&job).await.unwrap();
        let n: u32 = session.run("double", (4u32,)).await.unwrap();
        assert_eq!(n, 8, "{kind:?}");
        session.close().await.unwrap();
        let stats = pool.statistics();
        assert_eq!((stats.spawned, stats.killed), (1, 0), "{kind:?}: {stats:?}");
    }
}

#[tokio::test]
async fn the_exports_say_which_are_async() {
    let job = asyncs();
    let exports = job.exports().unwrap();
    let sig = |name: &str| {
        exports
            .iter()
            .find(|f| f.func == name)
            .map(|f| f.signature())
            .unwrap_or_else(|| panic!("no export {name} in {exports:?}"))
    };
    assert_eq!(sig("double"), "async func(x: u32) -> u32");
    assert_eq!(sig("fib"), "func(n: u32) -> u64");
}

#[tokio::test]
async fn wait_for_of_wasi_p3_sleeps() {
    let pool = async_pool(WorkerKind::Process);
    let start = Instant::now();
    let slept: u64 = pool.run(&asyncs(), "sleep", (50u32,)).await.unwrap();
    assert!(slept >= 50, "the guest's own clock saw {slept} ms");
    assert!(start.elapsed() >= Duration::from_millis(50));
}

#[tokio::test]
async fn a_host_function_serves_an_async_import() {
    let job = asyncs();
    for kind in [WorkerKind::Process, WorkerKind::Thread] {
        let pool = async_pool(kind);
        let start = Instant::now();
        let sum: u32 = pool.run(&job, "naps", (3u32, 20u32)).await.unwrap();
        assert_eq!(sum, 60, "{kind:?}");
        assert!(start.elapsed() >= Duration::from_millis(20), "{kind:?}");
    }
    // A host function that fails fails the call, as for a sync import.
    let pool = Pool::builder()
        .workers(1)
        .host_fn(NAP, |_cx: HostContext, (_ms,): (u32,)| async move {
            Err::<u32, BoxError>("no naps today".into())
        })
        .build()
        .unwrap();
    let e = pool
        .run::<u32>(&job, "naps", (1u32, 5u32))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::HostFunction, "{e:?}");
    assert!(e.to_string().contains("no naps today"), "{e}");
    // And a missing one is a missing import.
    let bare = Pool::builder().workers(1).build().unwrap();
    let e = bare.run::<u32>(&job, "double", (1u32,)).await.unwrap_err();
    assert!(e.to_string().contains("async-host"), "{e}");
}

/// While the guest awaits one async import, its other tasks run: the
/// host's `nap`s wait for each other at a barrier, which only calls in
/// flight together can pass.
#[tokio::test]
async fn a_guest_awaits_several_async_imports_at_once() {
    let job = asyncs();
    for kind in [WorkerKind::Process, WorkerKind::Thread] {
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(4));
        let pool = Pool::builder()
            .workers(1)
            .worker_kind(kind)
            .host_fn(NAP, move |_cx: HostContext, (ms,): (u32,)| {
                let barrier = barrier.clone();
                async move {
                    tokio::time::timeout(Duration::from_secs(60), barrier.wait())
                        .await
                        .map_err(|_| "the other naps never came")?;
                    Ok::<_, BoxError>(ms)
                }
            })
            .build()
            .unwrap();
        let sum: u32 = pool.run(&job, "naps", (4u32, 1u32)).await.unwrap();
        assert_eq!(sum, 4, "{kind:?}");
        // Again, on the same worker: nothing was left behind.
        let sum: u32 = pool.run(&job, "naps", (4u32, 2u32)).await.unwrap();
        assert_eq!(sum, 8, "{kind:?}");
        assert_eq!(pool.statistics().spawned, 1, "{kind:?}");
    }
}

#[tokio::test]
async fn a_trap_in_an_async_export_fails_only_its_call() {
    let job = asyncs();
    for kind in [WorkerKind::Process, WorkerKind::Thread] {
        let pool = async_pool(kind);
        let e = pool.run::<u32>(&job, "fail", (5u32,)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Trap, "{kind:?}: {e:?}");
        let n: u32 = pool.run(&job, "double", (3u32,)).await.unwrap();
        assert_eq!(n, 6, "{kind:?}");
        let stats = pool.statistics();
        assert_eq!((stats.spawned, stats.killed), (1, 0), "{kind:?}: {stats:?}");
    }
}

#[tokio::test]
async fn a_timeout_ends_an_async_export_that_waits_or_spins() {
    let job = asyncs();
    let pool = async_pool(WorkerKind::Process);
    let start = Instant::now();
    // Waiting in `wait-for`, where no epoch check runs.
    let e = pool
        .call::<u64>(&job, "sleep", (60_000u32,))
        .timeout(Duration::from_millis(100))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    // Waiting for the host's async function.
    let e = pool
        .call::<u32>(&job, "naps", (2u32, 60_000u32))
        .timeout(Duration::from_millis(100))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    // Running wasm.
    let e = pool
        .call::<u32>(&job, "spin", ())
        .timeout(Duration::from_millis(100))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    assert!(start.elapsed() < Duration::from_secs(30));
    // The worker survived all three.
    let n: u32 = pool.run(&job, "double", (7u32,)).await.unwrap();
    assert_eq!(n, 14);
    let stats = pool.statistics();
    assert_eq!((stats.spawned, stats.killed), (1, 0), "{stats:?}");
}

/// The `asyncs` world in Python (`guest/python/asyncs`), built once per
/// test run with componentize-py.
pub(crate) fn python_asyncs() -> wasmpool::Job {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    job(BUILT
        .get_or_init(|| crate::common::componentize_py("asyncs", "asyncs"))
        .to_str()
        .unwrap())
}

#[tokio::test]
async fn a_python_async_guest_behaves_alike() {
    let job = python_asyncs();
    let pool = async_pool(WorkerKind::Process);
    let n: u32 = pool.run(&job, "double", (21u32,)).await.unwrap();
    assert_eq!(n, 42);
    let f: u64 = pool.run(&job, "fib", (20u32,)).await.unwrap();
    assert_eq!(f, 6765);
    let slept: u64 = pool.run(&job, "sleep", (30u32,)).await.unwrap();
    assert!(slept >= 30, "the guest's own clock saw {slept} ms");
    let sum: u32 = pool.run(&job, "naps", (3u32, 10u32)).await.unwrap();
    assert_eq!(sum, 30);
    // A raised exception traps the call, and only the call.
    let e = pool.run::<u32>(&job, "fail", (1u32,)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Trap, "{e:?}");
    let e = pool
        .call::<u32>(&job, "spin", ())
        .timeout(Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    let n: u32 = pool.run(&job, "double", (5u32,)).await.unwrap();
    assert_eq!(n, 10);
    let stats = pool.statistics();
    assert_eq!((stats.spawned, stats.killed), (1, 0), "{stats:?}");
}

/// Async components run on workers of their own engine kind, beside the
/// workers of sync ones; a pool with room for one worker trades it.
#[tokio::test]
async fn sync_and_async_components_share_a_pool() {
    let asyncs = asyncs();
    let fib = job(wasmpool_guests::FIB);
    let pool = async_pool(WorkerKind::Process);
    for n in 0..3u32 {
        let d: u32 = pool.run(&asyncs, "double", (n,)).await.unwrap();
        assert_eq!(d, 2 * n);
        let f: u64 = pool.run(&fib, "fib", (10u64,)).await.unwrap();
        assert_eq!(f, 55);
    }
    let stats = pool.statistics();
    assert_eq!((stats.crashed, stats.killed), (0, 0), "{stats:?}");
    // One worker at a time, of the kind the next call needs.
    assert_eq!(stats.spawned, 6, "{stats:?}");

    let two = Pool::builder()
        .workers(2)
        .host_fn(NAP, |_cx: HostContext, (ms,): (u32,)| async move {
            Ok::<_, BoxError>(ms)
        })
        .build()
        .unwrap();
    for n in 0..3u32 {
        let sum: u32 = two.run(&asyncs, "naps", (2u32, n)).await.unwrap();
        assert_eq!(sum, 2 * n);
        let f: u64 = two.run(&fib, "fib", (10u64,)).await.unwrap();
        assert_eq!(f, 55);
    }
    // One worker of each kind, each kept.
    let stats = two.statistics();
    assert_eq!((stats.spawned, stats.killed), (2, 0), "{stats:?}");
    assert_eq!(two.worker_pids().len(), 2);
}

/// A WASI 0.3 command (`wasi:cli/run@0.3.0`, an `async func`, its stdout
/// a `stream<u8>`) runs through `Pool::command` as a 0.2 one does.
#[tokio::test]
async fn a_wasi_p3_command_runs_like_a_p2_one() {
    let cmd = job(wasmpool_guests::CMD3);
    for kind in [WorkerKind::Process, WorkerKind::Thread] {
        let pool = async_pool(kind);
        let out = pool
            .command(&cmd)
            .args(["greet", "big", "world"])
            .env("GREETING", "hey")
            .output()
            .await
            .unwrap();
        assert_eq!(out.status, 0, "{kind:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hey, big world\n");
        let out = pool.command(&cmd).output().await.unwrap();
        assert_eq!(out.status, 0, "{kind:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "usage: cmd3.wasm greet|fail|exit|trap\n",
            "{kind:?}"
        );
        // `run` returning an error, and `exit(err)`: status 1.
        for how in ["fail", "exit"] {
            let out = pool.command(&cmd).arg(how).output().await.unwrap();
            assert_eq!(out.status, 1, "{kind:?} {how}");
        }
        let e = pool.command(&cmd).arg("trap").output().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Trap, "{kind:?}: {e:?}");
        let stats = pool.statistics();
        assert_eq!((stats.spawned, stats.killed), (1, 0), "{kind:?}: {stats:?}");
    }
}
