//! Host functions: the `plugin` guest calls its host through the
//! `wasmpool:jobs/host-api` imports, which the pool serves with async
//! closures, on both kinds of worker.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wasmpool::{BoxError, ErrorKind, HostContext, Pool, PoolBuilder, WorkerKind};

use crate::common::{eventually, job};

const KINDS: [WorkerKind; 2] = [WorkerKind::Process, WorkerKind::Thread];

/// The import's name as registered: the interface without its version.
fn api(func: &str) -> String {
    format!("wasmpool:jobs/host-api#{func}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Point {
    x: i32,
    y: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Color {
    Red,
    Green,
    DarkBlue,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    Circle(f64),
    Rectangle((f64, f64)),
    Polygon(Vec<Point>),
    Empty,
}

/// A host function's own error, to find again as the caller's source.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "refused: {}", self.0)
    }
}

impl std::error::Error for Refused {}

/// Per-call data for `data-tag`.
struct Tag(&'static str);

/// Registers an identity host function for each `echo-*` import.
macro_rules! echoes {
    ($b:expr, $($name:literal: $t:ty),* $(,)?) => {
        $b$(.host_fn(api($name), |_: HostContext, (v,): ($t,)| async move { Ok::<$t, BoxError>(v) }))*
    };
}

/// A builder with every `host-api` function the plugin imports.
fn with_api(kind: WorkerKind, workers: usize) -> PoolBuilder {
    let b =
        Pool::builder()
            .workers(workers)
            .worker_kind(kind)
            .grace(Duration::from_secs(30))
            .host_fn(
                api("add"),
                |_: HostContext, (a, b): (u64, u64)| async move {
                    Ok::<u64, BoxError>(a.wrapping_add(b))
                },
            )
            .host_fn(api("noop"), |_: HostContext, (): ()| async {
                Ok::<(), BoxError>(())
            })
            .host_fn(api("log"), |_: HostContext, (_line,): (String,)| async {
                Ok::<(), BoxError>(())
            })
            .host_fn(
                api("lookup"),
                |cx: HostContext, (key,): (String,)| async move {
                    let kv = cx.data::<HashMap<String, String>>();
                    Ok::<Option<String>, BoxError>(kv.and_then(|kv| kv.get(&key).cloned()))
                },
            )
            .host_fn(
                api("progress"),
                |_: HostContext, (_done, _total): (u32, u32)| async { Ok::<(), BoxError>(()) },
            )
            .host_fn(
                api("fail"),
                |_: HostContext, (how,): (String,)| async move {
                    if how == "panic" {
                        panic!("the host function panicked on purpose");
                    }
                    Err::<u32, BoxError>(Box::new(Refused(how)))
                },
            )
            .host_fn(
                api("sleep-ms"),
                |_: HostContext, (ms,): (u64,)| async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok::<u64, BoxError>(ms)
                },
            )
            .host_fn(api("data-tag"), |cx: HostContext, (): ()| async move {
                Ok::<Option<String>, BoxError>(cx.data::<Tag>().map(|t| t.0.to_string()))
            });
    echoes!(b,
        "echo-point": Point,
        "echo-color": Color,
        "echo-permissions": Vec<String>,
        "echo-shape": Shape,
        "echo-option": Option<String>,
        "echo-result": Result<u32, String>,
        "echo-list": Vec<i64>,
        "echo-string": String,
        "echo-bytes": serde_bytes::ByteBuf,
        "echo-tuple": (u8, String, f64),
    )
}

#[tokio::test]
async fn every_shape_crosses_to_the_host_and_back_on_both_kinds() {
    let plugin = job(wasmpool_guests::PLUGIN);
    for kind in KINDS {
        let pool = with_api(kind, 1).build().unwrap();
        let n: u64 = pool.run(&plugin, "add", (40u64, 2u64)).await.unwrap();
        assert_eq!(n, 42, "{kind:?}");
        pool.run::<()>(&plugin, "noop", ()).await.unwrap();

        macro_rules! echo {
            ($f:literal, $v:expr, $t:ty) => {{
                let v: $t = $v;
                let back: $t = pool.run(&plugin, $f, (v.clone(),)).await.unwrap();
                assert_eq!(back, v, "{} on {kind:?}", $f);
            }};
        }
        echo!("echo-point", Point { x: -3, y: 7 }, Point);
        echo!("echo-color", Color::DarkBlue, Color);
        echo!(
            "echo-permissions",
            vec!["read".into(), "exec-ute".into()],
            Vec<String>
        );
        let polygon = Shape::Polygon(vec![Point { x: 1, y: 2 }, Point { x: 3, y: 4 }]);
        echo!("echo-shape", polygon, Shape);
        echo!("echo-shape", Shape::Rectangle((1.5, 2.5)), Shape);
        echo!("echo-shape", Shape::Empty, Shape);
        echo!("echo-option", Some("x".to_string()), Option<String>);
        echo!("echo-option", None, Option<String>);
        echo!("echo-result", Ok(7), Result<u32, String>);
        echo!("echo-result", Err("no".into()), Result<u32, String>);
        echo!("echo-list", vec![i64::MIN, 0, i64::MAX], Vec<i64>);
        echo!("echo-string", "héllo, wörld".to_string(), String);
        let bytes =
            serde_bytes::ByteBuf::from((0..=255u8).cycle().take(100_000).collect::<Vec<_>>());
        echo!("echo-bytes", bytes, serde_bytes::ByteBuf);
        echo!(
            "echo-tuple",
            (9u8, "t".to_string(), 0.25f64),
            (u8, String, f64)
        );
        pool.shutdown().await;
    }
}

#[tokio::test]
async fn a_host_error_traps_the_guest_with_its_source_and_keeps_the_worker() {
    let plugin = job(wasmpool_guests::PLUGIN);
    for kind in KINDS {
        let pool = with_api(kind, 1).build().unwrap();
        let err = pool
            .run::<u32>(&plugin, "fail", ("no way",))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::HostFunction, "{kind:?}: {err}");
        assert!(err.to_string().contains("host-api@0.1.0#fail"), "{err}");
        let source = std::error::Error::source(&err).expect("the host function's error");
        let refused = source.downcast_ref::<Refused>().expect("a Refused");
        assert_eq!(refused.0, "no way");

        // A panic is the same, and the pool and its worker go on.
        let err = pool
            .run::<u32>(&plugin, "fail", ("panic",))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::HostFunction, "{kind:?}: {err}");
        assert!(err.to_string().contains("panicked on purpose"), "{err}");
        assert!(std::error::Error::source(&err).is_some());

        let n: u64 = pool.run(&plugin, "add", (1u64, 2u64)).await.unwrap();
        assert_eq!(n, 3);
        let stats = pool.statistics();
        assert_eq!(
            (stats.spawned, stats.crashed, stats.killed),
            (1, 0, 0),
            "{kind:?}"
        );
        pool.shutdown().await;
    }
}

#[tokio::test]
async fn values_that_do_not_fit_name_their_path() {
    let plugin = job(wasmpool_guests::PLUGIN);
    let pool = with_api(WorkerKind::Thread, 1)
        // Takes a string where the import passes a record.
        .host_fn(
            api("echo-point"),
            |_: HostContext, (v,): (String,)| async move { Ok::<String, BoxError>(v) },
        )
        // Returns a string where the import wants a u64.
        .host_fn(
            api("add"),
            |_: HostContext, (_a, _b): (u64, u64)| async move { Ok::<&str, BoxError>("many") },
        )
        .build()
        .unwrap();
    let err = pool
        .run::<Point>(&plugin, "echo-point", (Point { x: 1, y: 2 },))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HostFunction, "{err}");
    assert!(err.to_string().contains("args[0]"), "{err}");
    let err = pool
        .run::<u64>(&plugin, "add", (1u64, 2u64))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HostFunction, "{err}");
    assert!(err.to_string().contains("result: expected u64"), "{err}");
    assert_eq!(pool.statistics().spawned, 1);
}

/// Sets its flag when dropped: shows that a pending host future was.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A pool whose `sleep-ms` never ends on its own, and reports that it has
/// started and when its future is dropped.
fn stuck_host(kind: WorkerKind) -> (Pool, Arc<AtomicBool>, Arc<AtomicBool>) {
    let started = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicBool::new(false));
    let (s, d) = (started.clone(), dropped.clone());
    let pool = with_api(kind, 1)
        .host_fn(api("sleep-ms"), move |_: HostContext, (ms,): (u64,)| {
            let guard = DropFlag(d.clone());
            s.store(true, Ordering::SeqCst);
            async move {
                let _guard = guard;
                std::future::pending::<()>().await;
                Ok::<u64, BoxError>(ms)
            }
        })
        .build()
        .unwrap();
    (pool, started, dropped)
}

#[tokio::test]
async fn a_cancel_drops_the_pending_host_future_and_keeps_the_worker() {
    let plugin = job(wasmpool_guests::PLUGIN);
    for kind in KINDS {
        let (pool, started, dropped) = stuck_host(kind);
        let call = pool.call::<u64>(&plugin, "sleep", (1u64,));
        let cancel = call.cancel_handle();
        let canceller = async {
            eventually("the host function to start", || {
                started.load(Ordering::SeqCst)
            })
            .await;
            cancel.cancel();
            Instant::now()
        };
        let (result, at) = tokio::join!(std::future::IntoFuture::into_future(call), canceller);
        let resumed = at.elapsed();
        let err = result.unwrap_err();
        assert!(err.is_cancelled(), "{kind:?}: {err}");
        // The caller does not wait for the host future, which never ends,
        // nor for the grace period (30 s here): typically tens of µs.
        assert!(
            resumed < Duration::from_secs(5),
            "{kind:?}: resumed after {resumed:?}"
        );
        eventually("the host future to be dropped", || {
            dropped.load(Ordering::SeqCst)
        })
        .await;
        // The same worker serves the next call.
        let n: u64 = pool.run(&plugin, "add", (2u64, 2u64)).await.unwrap();
        assert_eq!(n, 4);
        let stats = pool.statistics();
        assert_eq!((stats.spawned, stats.killed), (1, 0), "{kind:?}");
        println!("{kind:?}: the caller resumed {resumed:?} after the cancel");
        pool.shutdown().await;
    }
}

#[tokio::test]
async fn a_timeout_drops_the_pending_host_future_and_keeps_the_worker() {
    let plugin = job(wasmpool_guests::PLUGIN);
    for kind in KINDS {
        let (pool, _started, dropped) = stuck_host(kind);
        let err = pool
            .call::<u64>(&plugin, "sleep", (1u64,))
            .timeout(Duration::from_millis(100))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{kind:?}: {err}");
        eventually("the host future to be dropped", || {
            dropped.load(Ordering::SeqCst)
        })
        .await;
        let n: u64 = pool.run(&plugin, "add", (2u64, 3u64)).await.unwrap();
        assert_eq!(n, 5);
        let stats = pool.statistics();
        assert_eq!((stats.spawned, stats.killed), (1, 0), "{kind:?}");
        pool.shutdown().await;
    }
}

#[tokio::test]
async fn missing_imports_are_found_before_anything_runs() {
    let plugin = job(wasmpool_guests::PLUGIN);
    // Only some of what the plugin imports.
    let pool = Pool::builder()
        .workers(1)
        .host_fn(
            api("add"),
            |_: HostContext, (a, b): (u64, u64)| async move { Ok::<u64, BoxError>(a + b) },
        )
        .build()
        .unwrap();
    let err = pool.prepare(&plugin).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidComponent, "{err}");
    let message = err.to_string();
    for missing in [
        "host-api@0.1.0#noop",
        "host-api@0.1.0#sleep-ms",
        "host-api@0.1.0#echo-shape",
    ] {
        assert!(
            message.contains(missing),
            "{missing} not named in: {message}"
        );
    }
    assert!(!message.contains("#add,"), "add is provided: {message}");
    let err = pool
        .run::<u64>(&plugin, "add", (1u64, 2u64))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidComponent);
    assert_eq!(pool.statistics().spawned, 0, "nothing ran");

    // Names a component does not import are fine.
    let fib = job(wasmpool_guests::FIB);
    let n: u64 = with_api(WorkerKind::Process, 1)
        .build()
        .unwrap()
        .run(&fib, "fib", (10u64,))
        .await
        .unwrap();
    assert_eq!(n, 55);
}

#[tokio::test]
async fn eight_guests_share_one_slow_host_function_at_once() {
    let plugin = job(wasmpool_guests::PLUGIN);
    for kind in KINDS {
        // Every call waits until all eight are inside the host function:
        // if calls were served one after another, none would finish.
        let barrier = Arc::new(tokio::sync::Barrier::new(8));
        let inside = Arc::new(AtomicUsize::new(0));
        let (b, i) = (barrier.clone(), inside.clone());
        let pool = with_api(kind, 8)
            .host_fn(api("sleep-ms"), move |_: HostContext, (ms,): (u64,)| {
                let (b, i) = (b.clone(), i.clone());
                async move {
                    i.fetch_add(1, Ordering::SeqCst);
                    b.wait().await;
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok::<u64, BoxError>(ms)
                }
            })
            .build()
            .unwrap();
        let calls = (0..8).map(|_| pool.run::<u64>(&plugin, "sleep", (10u64,)));
        let all = tokio::time::timeout(
            Duration::from_secs(60),
            futures_util::future::join_all(calls),
        )
        .await
        .expect("all eight answered");
        for r in all {
            assert_eq!(r.unwrap(), 10);
        }
        assert_eq!(inside.load(Ordering::SeqCst), 8);
        pool.shutdown().await;
    }
}

#[tokio::test]
async fn call_data_is_seen_by_that_calls_host_functions_only() {
    let plugin = job(wasmpool_guests::PLUGIN);
    for kind in KINDS {
        let pool = with_api(kind, 2).build().unwrap();
        let (a, b, none) = tokio::join!(
            pool.call::<Option<String>>(&plugin, "tag", ())
                .data(Tag("a")),
            pool.call::<Option<String>>(&plugin, "tag", ())
                .data(Tag("b")),
            pool.call::<Option<String>>(&plugin, "tag", ()),
        );
        assert_eq!(a.unwrap().as_deref(), Some("a"), "{kind:?}");
        assert_eq!(b.unwrap().as_deref(), Some("b"), "{kind:?}");
        assert_eq!(none.unwrap(), None, "{kind:?}");

        // Data of another type is not seen as a `Tag`.
        let kv: HashMap<String, String> = [("k".to_string(), "v".to_string())].into();
        let other = pool
            .call::<Option<String>>(&plugin, "tag", ())
            .data(kv)
            .await;
        assert_eq!(other.unwrap(), None);
        pool.shutdown().await;
    }
}

/// What a host function saw of its context: function, export, pid.
type Seen = (String, String, Option<u32>);

#[tokio::test]
async fn the_context_names_the_function_the_export_and_the_worker() {
    let plugin = job(wasmpool_guests::PLUGIN);
    for kind in KINDS {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let s = seen.clone();
        let pool = with_api(kind, 1)
            .host_fn(api("noop"), move |cx: HostContext, (): ()| {
                s.lock()
                    .unwrap()
                    .push((cx.function().into(), cx.export().into(), cx.pid()));
                async { Ok::<(), BoxError>(()) }
            })
            .build()
            .unwrap();
        pool.run::<()>(&plugin, "noop", ()).await.unwrap();
        let pids = pool.worker_pids();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        let (function, export, pid) = &seen[0];
        assert_eq!(function, "wasmpool:jobs/host-api@0.1.0#noop");
        assert_eq!(export, "noop");
        assert_eq!(*pid, pids.first().copied(), "{kind:?}");
        pool.shutdown().await;
    }
}

#[tokio::test]
async fn a_guest_calls_its_host_a_thousand_times_in_one_call() {
    let plugin = job(wasmpool_guests::PLUGIN);
    for kind in KINDS {
        let pool = with_api(kind, 1).build().unwrap();
        let sum: u64 = pool.run(&plugin, "add-many", (1000u64,)).await.unwrap();
        assert_eq!(sum, (1..=1000).sum::<u64>(), "{kind:?}");
        let kv: HashMap<String, String> = [("mode".to_string(), "fast".to_string())].into();
        let n: u32 = pool
            .call(&plugin, "work", ("mode", 5u32))
            .data(kv)
            .await
            .unwrap();
        assert_eq!(n, 5);
        pool.shutdown().await;
    }
}

/// Panics while a lock is held: a host function that panics holding the
/// pool's named lock, and a guest that panics holding it, leave the lock
/// free and the pool working, on both kinds of worker.
#[tokio::test]
async fn panics_while_a_lock_is_held_leave_the_pool_working() {
    let plugin = job(wasmpool_guests::PLUGIN);
    let coop = job(wasmpool_guests::COOP);
    for kind in KINDS {
        // The host function takes a lock of the pool it serves, which is
        // made after it.
        let cell: Arc<std::sync::OnceLock<wasmpool::Lock>> = Arc::default();
        let seen = cell.clone();
        // Registered after `with_api`'s, so this `fail` replaces its own.
        let pool = with_api(kind, 1)
            .host_fn(api("fail"), move |_: HostContext, (how,): (String,)| {
                let cell = seen.clone();
                async move {
                    let lock = cell.get().expect("the lock is set");
                    let _guard = lock.lock().await?;
                    if how == "panic" {
                        panic!("panicked holding the lock");
                    }
                    Ok::<u32, BoxError>(7)
                }
            })
            .build()
            .unwrap();
        assert!(cell.set(pool.lock("shared").unwrap()).is_ok());

        for _ in 0..2 {
            let err = pool
                .run::<u32>(&plugin, "fail", ("panic",))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::HostFunction, "{kind:?}: {err}");
            assert!(err.to_string().contains("holding the lock"), "{err}");
            // The panic let go of the lock.
            let lock = pool.lock("shared").unwrap();
            let guard = tokio::time::timeout(Duration::from_secs(20), lock.lock())
                .await
                .expect("the lock is free")
                .unwrap();
            drop(guard);
        }
        let n: u32 = pool.run(&plugin, "fail", ("no panic",)).await.unwrap();
        assert_eq!(n, 7);

        // A guest that panics holding the lock: its log queue is closed,
        // so its first put after taking the lock fails, and it panics.
        let log = pool.queue::<u64>("closed-log", 0).unwrap();
        log.close();
        let err = pool
            .run::<bool>(
                &coop,
                "with-lock",
                ("shared", "closed-log", 1u64, 0u64, None::<u64>),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Trap, "{kind:?}: {err}");
        let lock = pool.lock("shared").unwrap();
        let guard = tokio::time::timeout(Duration::from_secs(20), lock.lock())
            .await
            .expect("the guest's trap let go of the lock")
            .unwrap();
        drop(guard);

        // And everything else goes on: host functions, primitives, calls.
        let open = pool.queue::<u64>("open-log", 0).unwrap();
        let took: bool = pool
            .run(
                &coop,
                "with-lock",
                ("shared", "open-log", 1u64, 0u64, None::<u64>),
            )
            .await
            .unwrap();
        assert!(took);
        assert_eq!(open.get().await.unwrap(), Some(2));
        let n: u64 = pool.run(&plugin, "add", (1u64, 2u64)).await.unwrap();
        assert_eq!(n, 3);
        pool.shutdown().await;
    }
}
