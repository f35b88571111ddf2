//! Fair shares across tenants: a tenant's backlog does not hold up
//! another's calls, weights split the workers, caps bound a tenant, and
//! the statistics count each tenant's calls.
//!
//! The assertions count calls, not milliseconds: under first come first
//! served, a call made behind a backlog waits for the whole backlog, so
//! the number of the backlog's calls that end while it waits tells the
//! schedulers apart on any machine, however slow.

use std::future::IntoFuture as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{eventually, job};
use wasmpool::{ErrorKind, Pool, TenantStatistics};

fn tenant(pool: &Pool, name: &str) -> TenantStatistics {
    pool.statistics()
        .tenants
        .into_iter()
        .find(|t| t.name == name)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_tenant_does_not_hold_up_another() {
    const FLOOD: u64 = 10_000;
    let pool = Pool::builder()
        .workers(2)
        .grace(Duration::from_secs(30))
        .build()
        .unwrap();
    let faults = Arc::new(job(wasmpool_guests::FAULTS));
    pool.prepare(&faults).await.unwrap();
    let a_done = Arc::new(AtomicU64::new(0));
    let mut flood = Vec::new();
    for _ in 0..FLOOD {
        let (pool, faults, a_done) = (pool.clone(), faults.clone(), a_done.clone());
        flood.push(tokio::spawn(async move {
            let () = pool
                .call(&faults, "sleep", (1u64,))
                .tenant("a")
                .await
                .unwrap();
            a_done.fetch_add(1, Ordering::SeqCst);
        }));
    }
    eventually("tenant a's backlog", || tenant(&pool, "a").queued > 5_000).await;
    // Tenant b: one call every 20 ms while a's backlog lasts.
    let mut overtaken = Vec::new();
    let mut waits = Vec::new();
    for _ in 0..40 {
        if tenant(&pool, "a").queued < 1_000 {
            break;
        }
        let before = a_done.load(Ordering::SeqCst);
        let started = Instant::now();
        let () = pool
            .call(&faults, "sleep", (1u64,))
            .tenant("b")
            .await
            .unwrap();
        waits.push(started.elapsed());
        overtaken.push(a_done.load(Ordering::SeqCst) - before);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = tenant(&pool, "a").queued;
    fn p99<T: Copy>(v: &[T]) -> T {
        v[(v.len() * 99).div_ceil(100) - 1]
    }
    assert!(
        overtaken.len() >= 10,
        "b made only {} calls during a's backlog",
        overtaken.len()
    );
    overtaken.sort_unstable();
    waits.sort_unstable();
    eprintln!(
        "b's calls: {} while a had {left}+ queued; a's calls ending during one of b's: median {}, p99 {}; b's latency: median {:?}, p99 {:?}",
        overtaken.len(),
        overtaken[overtaken.len() / 2],
        p99(&overtaken),
        waits[waits.len() / 2],
        p99(&waits),
    );
    // First come first served would make each of b's calls wait for the
    // thousands of a's calls queued before it. Fair shares give it the
    // next free worker: only the calls in flight, and whatever ends while
    // this task is slow to see its result, go first.
    assert!(
        p99(&overtaken) < 200,
        "b's calls waited behind a's backlog: {overtaken:?}"
    );
    for h in flood {
        h.await.unwrap();
    }
    let (a, b) = (tenant(&pool, "a"), tenant(&pool, "b"));
    assert_eq!((a.done, a.queued, a.running), (FLOOD, 0, 0), "{a:?}");
    assert_eq!(b.done, waits.len() as u64, "{b:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_go_to_tenants_in_proportion_to_their_weights() {
    const EACH: usize = 40;
    let pool = Pool::builder()
        .workers(1)
        .tenant_weight("gold", 3)
        .grace(Duration::from_secs(30))
        .build()
        .unwrap();
    let faults = Arc::new(job(wasmpool_guests::FAULTS));
    pool.prepare(&faults).await.unwrap();
    // The one worker is busy while both tenants queue their calls.
    let blocker = {
        let (pool, faults) = (pool.clone(), faults.clone());
        tokio::spawn(async move { pool.call::<()>(&faults, "sleep", (300u64,)).await })
    };
    eventually("the blocker to run", || {
        pool.statistics().tenants[0].running == 1
    })
    .await;
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut calls = Vec::new();
    for name in ["free", "gold"] {
        for _ in 0..EACH {
            let (pool, faults, order) = (pool.clone(), faults.clone(), order.clone());
            calls.push(tokio::spawn(async move {
                let () = pool
                    .call(&faults, "sleep", (5u64,))
                    .tenant(name)
                    .await
                    .unwrap();
                order.lock().unwrap().push(name);
            }));
        }
    }
    eventually("both tenants to queue", || {
        tenant(&pool, "gold").queued == EACH && tenant(&pool, "free").queued == EACH
    })
    .await;
    blocker.await.unwrap().unwrap();
    for c in calls {
        c.await.unwrap();
    }
    let order = order.lock().unwrap().clone();
    // While both had calls waiting (the first 40 or so), gold got three
    // workers for each one of free's: 30 of 40, give or take a result
    // seen late.
    let gold = order[..EACH].iter().filter(|n| **n == "gold").count();
    assert!(
        (26..=34).contains(&gold),
        "gold got {gold} of the first {EACH}: {order:?}"
    );
    let stats = pool.statistics();
    assert_eq!(stats.tenants[0].name, "", "the default tenant comes first");
    let names: Vec<&str> = stats.tenants.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["", "free", "gold"]);
    let weights: Vec<u32> = stats.tenants.iter().map(|t| t.weight).collect();
    assert_eq!(weights, [1, 1, 3]);
    let done: Vec<u64> = stats.tenants.iter().map(|t| t.done).collect();
    assert_eq!(done, [1, EACH as u64, EACH as u64]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_tenant_leaves_the_other_workers_to_others() {
    let pool = Pool::builder()
        .workers(2)
        .tenant_limit("trial", 1)
        .grace(Duration::from_secs(30))
        .build()
        .unwrap();
    let faults = Arc::new(job(wasmpool_guests::FAULTS));
    pool.prepare(&faults).await.unwrap();
    // Both workers started, so that "at once" below does not include a
    // worker's start (half a second under Wine, more than a trial call).
    pool.warm(2).await.unwrap();
    let mut trial = Vec::new();
    for _ in 0..4 {
        let (pool, faults) = (pool.clone(), faults.clone());
        trial.push(tokio::spawn(async move {
            pool.call::<()>(&faults, "sleep", (150u64,))
                .tenant("trial")
                .await
        }));
    }
    eventually("trial's calls to queue", || {
        tenant(&pool, "trial").queued == 3
    })
    .await;
    // The second worker is free for everybody else, at once.
    let () = pool.call(&faults, "sleep", (1u64,)).await.unwrap();
    let t = tenant(&pool, "trial");
    assert!(
        t.queued >= 2,
        "trial's calls did not wait for its cap: {t:?}"
    );
    let mut most = 0;
    while tenant(&pool, "trial").done < 4 {
        most = most.max(tenant(&pool, "trial").running);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(most, 1, "trial held more workers than its cap");
    for c in trial {
        c.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_dropped_while_queued_gives_up_its_place() {
    let pool = Pool::builder()
        .workers(1)
        .grace(Duration::from_secs(30))
        .build()
        .unwrap();
    let faults = Arc::new(job(wasmpool_guests::FAULTS));
    pool.prepare(&faults).await.unwrap();
    let busy = {
        let (pool, faults) = (pool.clone(), faults.clone());
        tokio::spawn(async move {
            pool.call::<()>(&faults, "sleep", (300u64,))
                .tenant("x")
                .await
        })
    };
    eventually("the busy call to run", || tenant(&pool, "x").running == 1).await;
    let queued = pool.call::<()>(&faults, "sleep", (1u64,)).tenant("y");
    let gave_up = tokio::time::timeout(Duration::from_millis(100), queued.into_future()).await;
    assert!(
        gave_up.is_err(),
        "the queued call ran before the busy one ended"
    );
    let y = tenant(&pool, "y");
    assert_eq!((y.queued, y.running, y.done), (0, 0, 0), "{y:?}");
    busy.await.unwrap().unwrap();
    // The place it gave up does not linger: the next call runs.
    let () = pool
        .call(&faults, "sleep", (1u64,))
        .tenant("y")
        .await
        .unwrap();
    assert_eq!(tenant(&pool, "y").done, 1);
}

#[test]
fn weights_and_caps_of_zero_are_refused() {
    for (builder, what) in [
        (Pool::builder().tenant_weight("t", 0), "weight"),
        (Pool::builder().tenant_limit("t", 0), "cap"),
    ] {
        let e = builder.build().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e:?}");
        assert!(e.to_string().contains(what), "{e}");
        assert!(e.to_string().contains("\"t\""), "{e}");
    }
}
