//! `Pool::map` and `Pool::map_unordered`: ordered and unordered streams of
//! results, errors per item, and cancel on drop.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::{job, pool};
use futures_util::StreamExt;
use wasmpool::{ErrorKind, WorkerKind};

fn fib(n: u64) -> u64 {
    if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
}

#[tokio::test]
async fn map_yields_results_in_item_order() {
    let pool = pool(2);
    let fibj = job(wasmpool_guests::FIB);
    // Larger items first, so that results finish out of order.
    let items: Vec<u64> = (0..24).rev().collect();
    let results: Vec<u64> = pool
        .map::<_, u64, _>(&fibj, "fib", items.iter().map(|&n| (n,)))
        .map(|r| r.unwrap())
        .collect()
        .await;
    let expected: Vec<u64> = items.iter().map(|&n| fib(n)).collect();
    assert_eq!(results, expected);
}

#[tokio::test]
async fn map_unordered_yields_every_item_once() {
    let pool = pool(2);
    let fibj = job(wasmpool_guests::FIB);
    let mut seen = BTreeSet::new();
    let mut results = pool.map_unordered::<_, u64, _>(&fibj, "fib", (0..30u64).map(|n| (n,)));
    while let Some((i, r)) = results.next().await {
        assert_eq!(r.unwrap(), fib(i as u64));
        assert!(seen.insert(i), "item {i} twice");
    }
    assert_eq!(seen.len(), 30);
}

#[tokio::test]
async fn a_failing_item_yields_its_error_and_the_stream_goes_on() {
    let pool = pool(2);
    let faults = job(wasmpool_guests::FAULTS);
    let items = [(8, 2), (1, 0), (9, 3), (5, 0), (6, 6)];
    let results: Vec<_> = pool
        .map::<_, i32, _>(&faults, "divide", items)
        .collect()
        .await;
    assert_eq!(results.len(), 5);
    assert_eq!(*results[0].as_ref().unwrap(), 4);
    assert_eq!(results[1].as_ref().unwrap_err().kind(), ErrorKind::Trap);
    assert_eq!(*results[2].as_ref().unwrap(), 3);
    assert_eq!(results[3].as_ref().unwrap_err().kind(), ErrorKind::Trap);
    assert_eq!(*results[4].as_ref().unwrap(), 1);
}

#[tokio::test]
async fn dropping_the_stream_cancels_what_is_in_flight() {
    for kind in [WorkerKind::Process, WorkerKind::Thread] {
        let pool = wasmpool::Pool::builder()
            .workers(2)
            .worker_kind(kind)
            .grace(Duration::from_secs(30))
            .build()
            .unwrap();
        let faults = job(wasmpool_guests::FAULTS);
        let cpu = job(wasmpool_guests::CPU);
        {
            // An endless stream of calls that never end, polled until both
            // workers run one (starting a worker takes longer under Wine).
            let mut stream = pool.map::<_, (), _>(&faults, "spin-forever", std::iter::repeat(()));
            let started = std::time::Instant::now();
            while pool.statistics().busy < 2 {
                let r = tokio::time::timeout(Duration::from_millis(20), stream.next()).await;
                assert!(r.is_err(), "no item finishes");
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "{kind:?}: both workers took a call"
                );
            }
        }
        // Both workers were interrupted and serve again; none was killed.
        let (a, b) = tokio::join!(
            pool.run::<()>(&cpu, "noop", ()),
            pool.run::<()>(&cpu, "noop", ())
        );
        a.unwrap();
        b.unwrap();
        let s = pool.statistics();
        assert_eq!((s.spawned, s.killed), (2, 0), "{kind:?}: {s:?}");
        assert_eq!(s.calls, 4, "{kind:?}: two cancelled, two served: {s:?}");
    }
}

#[tokio::test]
async fn a_timeout_inside_a_batch_fails_that_item_only() {
    let pool = wasmpool::Pool::builder()
        .workers(2)
        .timeout(Duration::from_millis(200))
        .grace(Duration::from_secs(30))
        .build()
        .unwrap();
    let cpu = job(wasmpool_guests::CPU);
    // Quick items first, so that batches have grown by the time the
    // endless one comes.
    let items: Vec<(u64,)> = (0..400u64)
        .map(|i| if i == 300 { (u64::MAX,) } else { (i,) })
        .collect();
    let results: Vec<_> = pool.map::<_, u64, _>(&cpu, "spin", items).collect().await;
    assert_eq!(results.len(), 400);
    for (i, r) in results.iter().enumerate() {
        match r {
            Err(e) if i == 300 => assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}"),
            Err(e) => panic!("item {i} failed: {e:?}"),
            Ok(_) if i == 300 => panic!("the endless item returned"),
            Ok(_) => {}
        }
    }
    let s = pool.statistics();
    assert_eq!((s.killed, s.calls), (0, 400), "{s:?}");
}
