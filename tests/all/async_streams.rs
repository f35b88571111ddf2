//! Streams and futures as Rust values: a `stream<T>` or `future<T>` in a
//! result is a [`StreamReader`] or [`FutureReader`] that reads what the
//! guest writes, as it writes it; one made on the host feeds the guest.
//! Credit bounds what waits on either side, and a stream outlives its
//! call's return, holding its lane until it ends or is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use wasmpool::{
    BoxError, ErrorKind, FutureReader, HostContext, Pool, STREAM_WINDOW, StreamReader, WorkerKind,
};

use crate::async_exports::python_asyncs;
use crate::common::job;

const NAP: &str = "wasmpool:jobs/async-host@0.1.0#nap";

fn asyncs() -> wasmpool::Job {
    job(wasmpool_guests::ASYNCS)
}

/// A pool of `workers` process workers for async components, `lanes`
/// calls each.
fn pool(workers: usize, lanes: usize) -> Pool {
    pool_of(WorkerKind::Process, workers, lanes)
}

fn pool_of(kind: WorkerKind, workers: usize, lanes: usize) -> Pool {
    Pool::builder()
        .workers(workers)
        .worker_kind(kind)
        .async_calls(lanes)
        .grace(Duration::from_secs(30))
        .host_fn(NAP, |_cx: HostContext, (ms,): (u32,)| async move {
            tokio::time::sleep(Duration::from_millis(ms.into())).await;
            Ok::<_, BoxError>(ms)
        })
        .build()
        .unwrap()
}

/// Reads `s` to its end.
async fn all<T: serde::de::DeserializeOwned + Send + 'static>(
    mut s: StreamReader<T>,
) -> Result<Vec<T>, wasmpool::Error> {
    let mut out = Vec::new();
    while let Some(item) = s.next().await {
        out.push(item?);
    }
    Ok(out)
}

/// Byte `i` of the guest's `bytes` and of what the tests send.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn a_result_stream_comes_as_the_guest_writes_it() {
    let pool = pool(1, 8);
    let job = asyncs();
    let start = Instant::now();
    let mut s: StreamReader<u32> = pool.run(&job, "count-up", (5u32, 100u32)).await.unwrap();
    let mut items = Vec::new();
    let mut first_at = None;
    while let Some(x) = s.next().await {
        items.push(x.unwrap());
        first_at.get_or_insert_with(|| start.elapsed());
    }
    let last_at = start.elapsed();
    assert_eq!(items, [1, 2, 3, 4, 5]);
    // The guest waits 100 ms before each item: the first came four waits
    // before the last, not with it.
    let first_at = first_at.unwrap();
    assert!(
        last_at - first_at >= Duration::from_millis(300),
        "the first item came at {first_at:?}, the stream ended at {last_at:?}"
    );
    // Ended: it stays ended.
    assert!(s.next().await.is_none());
    let stats = pool.statistics();
    assert_eq!((stats.spawned, stats.killed, stats.crashed), (1, 0, 0));
}

#[tokio::test]
async fn a_stream_argument_feeds_the_guest() {
    let pool = pool(1, 8);
    let job = asyncs();
    let items = StreamReader::from_stream(futures_util::stream::iter(1..=1000u32));
    let total: u64 = pool.run(&job, "sum", (items,)).await.unwrap();
    assert_eq!(total, 500_500);
    // Items that come slowly, from an async source.
    let slow = futures_util::stream::iter(1..=5u32).then(|x| async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        x
    });
    let total: u64 = pool
        .run(&job, "sum", (StreamReader::from_stream(slow),))
        .await
        .unwrap();
    assert_eq!(total, 15);
    // An empty stream.
    let none = StreamReader::from_stream(futures_util::stream::empty::<u32>());
    let total: u64 = pool.run(&job, "sum", (none,)).await.unwrap();
    assert_eq!(total, 0);
    // A result stream passed on to another call: its items, as they come.
    let counted: StreamReader<u32> = pool.run(&job, "count-up", (100u32, 0u32)).await.unwrap();
    let total: u64 = pool.run(&job, "sum", (counted,)).await.unwrap();
    assert_eq!(total, 5050);
}

#[tokio::test]
async fn futures_resolve_both_ways() {
    let pool = pool(1, 8);
    let job = asyncs();
    let f: FutureReader<u32> = pool.run(&job, "eventually", (7u32, 50u32)).await.unwrap();
    assert_eq!(f.await.unwrap(), 7);
    let x = FutureReader::from_future(async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        40u32
    });
    let sum: u32 = pool.run(&job, "add-later", (x, 2u32)).await.unwrap();
    assert_eq!(sum, 42);
}

#[tokio::test]
async fn bytes_cross_a_stream_of_u8_whole() {
    let pool = pool(1, 8);
    let job = asyncs();
    let n = 3 << 20;
    let mut s: StreamReader<u8> = pool.run(&job, "bytes", (n as u64,)).await.unwrap();
    let mut got = Vec::with_capacity(n);
    while let Some(batch) = s.next_batch().await {
        got.extend(batch.unwrap());
    }
    assert!(
        got == pattern(n),
        "{} bytes came, not the pattern",
        got.len()
    );
    // Host to guest, and back.
    let sent = pattern(2 << 20);
    let chunks: Vec<u8> = sent.clone();
    let data = StreamReader::from_stream(futures_util::stream::iter(chunks));
    let counted: u64 = pool.run(&job, "count-bytes", (data,)).await.unwrap();
    assert_eq!(counted, sent.len() as u64);
    let data = StreamReader::from_stream(futures_util::stream::iter(sent.clone()));
    let echoed: StreamReader<u8> = pool.run(&job, "echo-bytes", (data,)).await.unwrap();
    let echoed = all(echoed).await.unwrap();
    assert!(echoed == sent, "{} bytes came back", echoed.len());
}

#[tokio::test]
async fn a_slow_reader_holds_the_guest_back() {
    let pool = pool(1, 8);
    let job = asyncs();
    // The guest writes as fast as it can, forever; the host reads one
    // item and waits.
    let mut s: StreamReader<u32> = pool.run(&job, "endless", ()).await.unwrap();
    assert_eq!(s.next().await.unwrap().unwrap(), 0);
    let mut buffered = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        buffered = buffered.max(s.buffered_bytes());
    }
    // What waits is bounded by the window, and the window was used.
    assert!(buffered > 0, "nothing came while the reader waited");
    assert!(
        buffered <= STREAM_WINDOW + (64 << 10),
        "{buffered} bytes wait, more than the window of {STREAM_WINDOW}"
    );
    // The items go on in order after the wait.
    for expect in 1..=100_000u32 {
        assert_eq!(s.next().await.unwrap().unwrap(), expect);
    }
    // An endless source fed to a guest that reads it all: the call's
    // timeout cuts it, after the source was read.
    let pulled = Arc::new(AtomicU64::new(0));
    let counter = pulled.clone();
    let endless = futures_util::stream::iter(0u32..).inspect(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let e = pool
        .call::<u64>(&job, "sum", (StreamReader::from_stream(endless),))
        .timeout(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    assert!(pulled.load(Ordering::SeqCst) > 0);
}

#[tokio::test]
async fn dropping_a_result_stream_ends_its_call_and_frees_its_lane() {
    // Two lanes: two endless streams hold both, and the worker's place.
    let pool = pool(1, 2);
    let job = asyncs();
    let mut a: StreamReader<u32> = pool.run(&job, "endless", ()).await.unwrap();
    let mut b: StreamReader<u32> = pool.run(&job, "endless", ()).await.unwrap();
    assert_eq!(a.next().await.unwrap().unwrap(), 0);
    assert_eq!(b.next().await.unwrap().unwrap(), 0);
    // The calls have returned, and still hold their lanes.
    assert_eq!(pool.statistics().busy, 1, "{:?}", pool.statistics());
    let (p, j) = (pool.clone(), job.clone());
    let third = tokio::spawn(async move { p.run::<u32>(&j, "double", (4u32,)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!third.is_finished(), "a third call ran beside two streams");
    drop(a);
    assert_eq!(third.await.unwrap().unwrap(), 8);
    drop(b);
    // Dropped half way: the guest's next write fails, its call ends, and
    // the worker is free again.
    let n: u32 = pool.run(&job, "double", (5u32,)).await.unwrap();
    assert_eq!(n, 10);
    crate::common::eventually("the worker idle", || pool.statistics().busy == 0).await;
    let stats = pool.statistics();
    assert_eq!((stats.spawned, stats.killed, stats.crashed), (1, 0, 0));
}

#[tokio::test]
async fn a_result_stream_nobody_reads_is_dropped() {
    let pool = pool(1, 2);
    let job = asyncs();
    // Two endless streams read into nothing: both are dropped as the
    // results are read, so their calls end and free both lanes.
    for _ in 0..2 {
        let _: serde::de::IgnoredAny = pool.run(&job, "endless", ()).await.unwrap();
    }
    let n: u32 = pool.run(&job, "double", (3u32,)).await.unwrap();
    assert_eq!(n, 6);
    crate::common::eventually("the worker idle", || pool.statistics().busy == 0).await;
}

#[tokio::test]
async fn a_stream_that_never_ends_meets_its_calls_timeout() {
    let pool = pool(1, 8);
    let job = asyncs();
    let mut s: StreamReader<u32> = pool
        .call(&job, "stall", ())
        .timeout(Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(s.next().await.unwrap().unwrap(), 1);
    assert_eq!(s.next().await.unwrap().unwrap(), 2);
    let e = s.next().await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    assert!(s.next().await.is_none());
    // The worker was neither killed nor interrupted.
    let n: u32 = pool.run(&job, "double", (6u32,)).await.unwrap();
    assert_eq!(n, 12);
    let stats = pool.statistics();
    assert_eq!((stats.spawned, stats.killed, stats.crashed), (1, 0, 0));
}

#[tokio::test]
async fn items_of_the_wrong_type_fail_cleanly() {
    let pool = pool(1, 8);
    let job = asyncs();
    // Read as strings: the first item does not fit, and the stream ends.
    let mut s: StreamReader<String> = pool.run(&job, "count-up", (3u32, 0u32)).await.unwrap();
    let e = s.next().await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ResultMismatch, "{e:?}");
    assert!(s.next().await.is_none());
    drop(s);
    // Strings where the guest reads numbers: the call fails, and names it.
    let words = StreamReader::from_stream(futures_util::stream::iter(["a".to_string()]));
    let e = pool.run::<u64>(&job, "sum", (words,)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ArgumentMismatch, "{e:?}");
    assert!(e.to_string().contains("stream"), "{e}");
    // A number where a stream goes, a stream where a number goes.
    let e = pool.run::<u64>(&job, "sum", (5u32,)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ArgumentMismatch, "{e:?}");
    let items = StreamReader::from_stream(futures_util::stream::iter([1u32]));
    let e = pool.run::<u32>(&job, "double", (items,)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ArgumentMismatch, "{e:?}");
    // A stream where a future goes.
    let items = StreamReader::from_stream(futures_util::stream::iter([1u32]));
    let e = pool
        .run::<u32>(&job, "add-later", (items, 1u32))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ArgumentMismatch, "{e:?}");
    // Read as a future, a stream is refused.
    let e = pool
        .run::<FutureReader<u32>>(&job, "count-up", (1u32, 0u32))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ResultMismatch, "{e:?}");
    // None of it cost the worker.
    let n: u32 = pool.run(&job, "double", (7u32,)).await.unwrap();
    assert_eq!(n, 14);
    let stats = pool.statistics();
    assert_eq!((stats.spawned, stats.killed, stats.crashed), (1, 0, 0));
}

#[tokio::test]
async fn streams_cross_only_where_calls_run_side_by_side() {
    let job = asyncs();
    let unsupported = |e: wasmpool::Error| {
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e:?}");
    };
    // One lane, or thread workers: refused, before anything runs.
    for pool in [pool(1, 1), pool_of(WorkerKind::Thread, 1, 8)] {
        unsupported(
            pool.run::<StreamReader<u32>>(&job, "count-up", (1u32, 0u32))
                .await
                .unwrap_err(),
        );
        let items = StreamReader::from_stream(futures_util::stream::iter([1u32]));
        unsupported(pool.run::<u64>(&job, "sum", (items,)).await.unwrap_err());
    }
    let pool = pool(1, 8);
    // A session's call.
    let session = pool.session(&job).await.unwrap();
    unsupported(
        session
            .run::<StreamReader<u32>>("count-up", (1u32, 0u32))
            .await
            .unwrap_err(),
    );
    let items = StreamReader::from_stream(futures_util::stream::iter([1u32]));
    unsupported(session.run::<u64>("sum", (items,)).await.unwrap_err());
    session.close().await.unwrap();
    // A batch.
    let results = pool.map::<_, StreamReader<u32>, _>(&job, "count-up", [(1u32, 0u32)]);
    let results: Vec<_> = results.collect().await;
    unsupported(results.into_iter().next().unwrap().unwrap_err());
    // A dynamic call.
    let args = wasmpool::DynArgs::json(serde_json::json!([1, 0]));
    unsupported(pool.call_dynamic(&job, "count-up", args).await.unwrap_err());
    // Encoded outside a call.
    let items = StreamReader::from_stream(futures_util::stream::iter([1u32]));
    assert!(serde_json::to_string(&items).is_err());
}

#[tokio::test]
async fn a_python_guest_streams_too() {
    let pool = pool(1, 8);
    let job = python_asyncs();
    let s: StreamReader<u32> = pool.run(&job, "count-up", (4u32, 10u32)).await.unwrap();
    assert_eq!(all(s).await.unwrap(), [1, 2, 3, 4]);
    let items = StreamReader::from_stream(futures_util::stream::iter(1..=100u32));
    let total: u64 = pool.run(&job, "sum", (items,)).await.unwrap();
    assert_eq!(total, 5050);
    let f: FutureReader<u32> = pool.run(&job, "eventually", (9u32, 10u32)).await.unwrap();
    assert_eq!(f.await.unwrap(), 9);
    let x = FutureReader::from_future(async { 1u32 });
    let sum: u32 = pool.run(&job, "add-later", (x, 2u32)).await.unwrap();
    assert_eq!(sum, 3);
    let sent = pattern(300_000);
    let data = StreamReader::from_stream(futures_util::stream::iter(sent.clone()));
    let echoed: StreamReader<u8> = pool.run(&job, "echo-bytes", (data,)).await.unwrap();
    assert!(all(echoed).await.unwrap() == sent);
}
