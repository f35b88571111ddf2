//! Fresh instances by default; opt-in reuse keeps a job's instance between
//! calls, but never after a failure or across different sandbox options.

use std::time::Duration;

use crate::common::job;
use wasmpool::{Pool, WorkerKind};

fn pool(kind: WorkerKind, reuse: bool) -> Pool {
    Pool::builder()
        .workers(1)
        .worker_kind(kind)
        .reuse_instances(reuse)
        .grace(Duration::from_secs(30))
        .build()
        .unwrap()
}

const KINDS: [WorkerKind; 2] = [WorkerKind::Process, WorkerKind::Thread];

#[tokio::test]
async fn every_call_gets_a_fresh_instance_by_default() {
    let cpu = job(wasmpool_guests::CPU);
    for kind in KINDS {
        let pool = pool(kind, false);
        for _ in 0..5 {
            let n: u64 = pool.run(&cpu, "count", ()).await.unwrap();
            assert_eq!(n, 1, "{kind:?}: no state survives a call");
        }
    }
}

#[tokio::test]
async fn reuse_keeps_the_instance_between_calls() {
    let cpu = job(wasmpool_guests::CPU);
    for kind in KINDS {
        let pool = pool(kind, true);
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(pool.run::<u64>(&cpu, "count", ()).await.unwrap());
        }
        assert_eq!(seen, [1, 2, 3, 4], "{kind:?}");
        // Another function of the same job shares the instance.
        let () = pool.run(&cpu, "noop", ()).await.unwrap();
        assert_eq!(pool.run::<u64>(&cpu, "count", ()).await.unwrap(), 5);
    }
}

#[tokio::test]
async fn a_failed_call_discards_the_reused_instance() {
    let cpu = job(wasmpool_guests::CPU);
    for kind in KINDS {
        let pool = pool(kind, true);
        assert_eq!(pool.run::<u64>(&cpu, "count", ()).await.unwrap(), 1);
        assert_eq!(pool.run::<u64>(&cpu, "count", ()).await.unwrap(), 2);
        let e = pool
            .call::<u64>(&cpu, "spin", (u64::MAX,))
            .timeout(Duration::from_millis(30))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), wasmpool::ErrorKind::Timeout, "{e:?}");
        assert_eq!(
            pool.run::<u64>(&cpu, "count", ()).await.unwrap(),
            1,
            "{kind:?}: the interrupted instance is gone"
        );
    }
}

#[tokio::test]
async fn different_sandbox_options_get_their_own_instance() {
    let cpu = job(wasmpool_guests::CPU);
    let pool = pool(WorkerKind::Process, true);
    assert_eq!(pool.run::<u64>(&cpu, "count", ()).await.unwrap(), 1);
    assert_eq!(pool.run::<u64>(&cpu, "count", ()).await.unwrap(), 2);
    let with_env: u64 = pool
        .call(&cpu, "count", ())
        .env("MODE", "other")
        .await
        .unwrap();
    assert_eq!(with_env, 1, "an instance is never shared across options");
}

#[tokio::test]
async fn memory_images_mapped_or_copied_give_the_same_fresh_instances() {
    let cpu = job(wasmpool_guests::CPU);
    let types = job(wasmpool_guests::TYPES);
    for kind in KINDS {
        for cow in [true, false] {
            let pool = Pool::builder()
                .workers(1)
                .worker_kind(kind)
                .copy_on_write_memory(cow)
                .build()
                .unwrap();
            for _ in 0..3 {
                let n: u64 = pool.run(&cpu, "count", ()).await.unwrap();
                assert_eq!(n, 1, "{kind:?}, cow {cow}: memory is reset between calls");
            }
            let s: String = pool.run(&types, "echo-string", ("data",)).await.unwrap();
            assert_eq!(s, "data");
        }
    }
}
