//! Resources the host provides: a guest imports a resource type, the
//! pool's host functions serve it under its canonical names, and the
//! host's values live exactly as long as the guest's handles.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::job;
use wasmpool::{BoxError, ErrorKind, HostContext, Pool, PoolBuilder, Resource, WorkerKind};

const STORE: &str = "wasmpool:jobs/store";

/// A host store; counts its drops.
struct Kv {
    name: String,
    map: Mutex<HashMap<String, String>>,
    drops: Arc<AtomicUsize>,
}

impl Drop for Kv {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

/// A pool serving `store`, and the count of its values dropped.
fn kv_pool(kind: WorkerKind) -> (Pool, Arc<AtomicUsize>) {
    let drops = Arc::new(AtomicUsize::new(0));
    let pool = serve_kv(Pool::builder(), drops.clone())
        .workers(1)
        .worker_kind(kind)
        .grace(Duration::from_secs(30))
        .build()
        .unwrap();
    (pool, drops)
}

fn serve_kv(b: PoolBuilder, drops: Arc<AtomicUsize>) -> PoolBuilder {
    b.host_fn(
        format!("{STORE}#[constructor]kv"),
        move |cx: HostContext, (name,): (String,)| {
            let drops = drops.clone();
            async move {
                let kv = Kv {
                    name,
                    map: Mutex::default(),
                    drops,
                };
                Ok::<_, BoxError>(cx.new_resource(kv))
            }
        },
    )
    .host_fn(
        format!("{STORE}#[method]kv.get"),
        |cx: HostContext, (this, key): (Resource, String)| async move {
            let kv: Arc<Kv> = cx.resource(&this)?;
            Ok::<_, BoxError>(kv.map.lock().unwrap().get(&key).cloned())
        },
    )
    .host_fn(
        format!("{STORE}#[method]kv.set"),
        |cx: HostContext, (this, key, value): (Resource, String, String)| async move {
            assert_eq!(this.type_name(), "kv");
            let kv: Arc<Kv> = cx.resource(&this)?;
            kv.map.lock().unwrap().insert(key, value);
            Ok::<_, BoxError>(())
        },
    )
    .host_fn(
        format!("{STORE}#[method]kv.name"),
        |cx: HostContext, (this,): (Resource,)| async move {
            Ok::<_, BoxError>(cx.resource::<Kv>(&this)?.name.clone())
        },
    )
    .host_fn(
        format!("{STORE}#default-store"),
        |cx: HostContext, (): ()| async move {
            // Named by the resource the function returns, though it is no
            // member of it.
            let kv = cx.new_resource(Kv {
                name: "default".into(),
                map: Mutex::default(),
                drops: Arc::default(),
            });
            assert_eq!(kv.type_name(), "kv");
            Ok::<_, BoxError>(kv)
        },
    )
    .host_fn(
        format!("{STORE}#size"),
        |cx: HostContext, (k,): (Resource,)| async move {
            let kv: Arc<Kv> = cx.resource(&k)?;
            Ok::<_, BoxError>(kv.map.lock().unwrap().len() as u32)
        },
    )
}

#[tokio::test]
async fn a_plain_calls_host_values_live_as_long_as_the_guests_handles() {
    let job = job(wasmpool_guests::KVPLUGIN);
    for kind in [WorkerKind::Process, WorkerKind::Thread] {
        let (pool, drops) = kv_pool(kind);
        let got: Option<String> = pool.run(&job, "roundtrip", ("s", "k", "v")).await.unwrap();
        assert_eq!(got.as_deref(), Some("v"), "{kind:?}");
        // The guest dropped its store within the call.
        assert_eq!(drops.load(Ordering::SeqCst), 1, "{kind:?}");
        // One it kept is dropped when the call ends.
        let () = pool.run(&job, "keep", ("kept",)).await.unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 2, "{kind:?}");
        // A resource made by a function that is no member of it.
        let n: u32 = pool.run(&job, "set-default", ("k", "v")).await.unwrap();
        assert_eq!(n, 1, "{kind:?}");
    }
}

#[tokio::test]
async fn a_session_keeps_host_values_until_the_guest_drops_them() {
    let job = job(wasmpool_guests::KVPLUGIN);
    let (pool, drops) = kv_pool(WorkerKind::Process);
    let s = pool.session(&job).await.unwrap();
    let () = s.run("keep", ("mine",)).await.unwrap();
    assert_eq!(s.run::<u32>("set-kept", ("a", "1")).await.unwrap(), 1);
    assert_eq!(s.run::<u32>("set-kept", ("b", "2")).await.unwrap(), 2);
    let got: Option<String> = s.run("get-kept", ("a",)).await.unwrap();
    assert_eq!(got.as_deref(), Some("1"));
    assert_eq!(drops.load(Ordering::SeqCst), 0, "kept across calls");
    let () = s.run("release", ()).await.unwrap();
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "dropped with the guest's handle"
    );
    // Values still held go when the session closes...
    let () = s.run("keep", ("again",)).await.unwrap();
    s.close().await.unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    // ...or is lost.
    let t = pool.session(&job).await.unwrap();
    let () = t.run("keep", ("doomed",)).await.unwrap();
    let err = t.run::<()>("fail", ()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Trap, "{err}");
    assert_eq!(drops.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_host_value_returned_to_the_caller_is_a_handle_of_the_session() {
    let job = job(wasmpool_guests::KVPLUGIN);
    let (pool, drops) = kv_pool(WorkerKind::Process);
    let s = pool.session(&job).await.unwrap();
    let kv: Resource = s.run("open-store", ("given",)).await.unwrap();
    assert_eq!(kv.type_name(), "kv");
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    s.drop_resource(kv).await.unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_missing_constructor_or_method_is_a_missing_import() {
    let job = job(wasmpool_guests::KVPLUGIN);
    let pool =
        Pool::builder()
            .workers(1)
            .host_fn(
                format!("{STORE}#[constructor]kv"),
                |cx: HostContext, (_name,): (String,)| async move {
                    Ok::<_, BoxError>(cx.new_resource(()))
                },
            )
            .build()
            .unwrap();
    let err = pool.prepare(&job).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidComponent, "{err}");
    assert!(err.to_string().contains("[method]kv.get"), "{err}");
}

#[tokio::test]
async fn a_handle_of_the_wrong_rust_type_fails_the_host_function() {
    let job = job(wasmpool_guests::KVPLUGIN);
    let drops = Arc::new(AtomicUsize::new(0));
    let pool = serve_kv(Pool::builder(), drops)
        .host_fn(
            format!("{STORE}#[constructor]kv"),
            |cx: HostContext, (_name,): (String,)| async move {
                Ok::<_, BoxError>(cx.new_resource(42u32))
            },
        )
        .workers(1)
        .build()
        .unwrap();
    let err = pool
        .run::<Option<String>>(&job, "roundtrip", ("s", "k", "v"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::HostFunction, "{err}");
    assert!(err.to_string().contains("kv"), "{err}");
}

#[tokio::test]
async fn a_cluster_pool_refuses_host_resources() {
    let job = job(wasmpool_guests::KVPLUGIN);
    // Refused on the host, before any connection to the server.
    let pool = serve_kv(Pool::builder().nats("nats://127.0.0.1:1"), Arc::default())
        .build()
        .unwrap();
    let err = pool
        .run::<Option<String>>(&job, "roundtrip", ("s", "k", "v"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("resource"), "{err}");
}
