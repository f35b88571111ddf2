//! `wasi:config/store`: what a guest reads of the pool's config
//! (`PoolBuilder::config`) and its call's (`Call::config`), which wins for
//! the same key.

use std::time::Duration;

use wasmpool::{Pool, Provider, WorkerKind};

use crate::common::job;

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn a_guest_reads_the_pools_config_and_its_calls_over_it() {
    let config = job(wasmpool_guests::CONFIG);
    for (kind, reuse) in [
        (WorkerKind::Process, false),
        (WorkerKind::Thread, false),
        (WorkerKind::Process, true),
    ] {
        let pool = Pool::builder()
            .workers(1)
            .worker_kind(kind)
            .reuse_instances(reuse)
            .grace(Duration::from_secs(30))
            .config("region", "eu-west")
            .config("mode", "fast")
            .build()
            .unwrap();
        let what = format!("{kind:?}, reuse {reuse}");

        // The pool's value.
        let v: Option<String> = pool.run(&config, "get", ("region",)).await.unwrap();
        assert_eq!(v.as_deref(), Some("eu-west"), "{what}");

        // The call's value for the same key wins; a key of its own adds.
        let v: Option<String> = pool
            .call(&config, "get", ("region",))
            .config("region", "us-east")
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some("us-east"), "{what}");
        let all: Vec<(String, String)> = pool
            .call(&config, "get-all", ())
            .config("region", "us-east")
            .config("tenant", "acme")
            .await
            .unwrap();
        assert_eq!(
            all,
            pairs(&[("mode", "fast"), ("region", "us-east"), ("tenant", "acme")]),
            "{what}: the merged map"
        );

        // A missing key is `none`; the last call's values are gone (the
        // instance may be the same, with reuse).
        let v: Option<String> = pool.run(&config, "get", ("tenant",)).await.unwrap();
        assert_eq!(v, None, "{what}");
        let all: Vec<(String, String)> = pool.run(&config, "get-all", ()).await.unwrap();
        assert_eq!(
            all,
            pairs(&[("mode", "fast"), ("region", "eu-west")]),
            "{what}"
        );
        pool.shutdown().await;
    }
}

#[tokio::test]
async fn without_config_a_guest_sees_none() {
    let pool = crate::common::pool(1);
    let config = job(wasmpool_guests::CONFIG);
    let v: Option<String> = pool.run(&config, "get", ("region",)).await.unwrap();
    assert_eq!(v, None);
    let all: Vec<(String, String)> = pool.run(&config, "get-all", ()).await.unwrap();
    assert!(all.is_empty(), "{all:?}");
    // Config only for one call.
    let v: Option<String> = pool
        .call(&config, "get", ("",))
        .config("", "empty keys are keys too")
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("empty keys are keys too"));
    pool.shutdown().await;
}

#[test]
fn wasi_config_imports_say_so() {
    let imports = job(wasmpool_guests::CONFIG).imports().unwrap();
    let get = imports
        .iter()
        .find(|i| i.function.name == "wasi:config/store@0.2.0-rc.1#get")
        .unwrap_or_else(|| panic!("{imports:?}"));
    assert_eq!(get.provided_by, Some(Provider::WasiConfig));
}
