//! Large payloads through a worker's shared payload region: byte-exact at
//! every size boundary, through cancels, kills and concurrent calls, safe
//! against a worker that scribbles over it, and given back after use.

use std::time::Duration;

use futures_util::future::join_all;
use serde_bytes::ByteBuf;
use wasmpool::{Call, ErrorKind};

use crate::common::{echoes, job, pool, sigkill};

/// The smallest payload that goes through the region (`wire::INLINE_MAX`).
const THRESHOLD: usize = 64 << 10;

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

#[cfg(target_os = "linux")]
/// Bytes of the worker's memory that are its share of memfd pages.
fn rss_shmem(pid: u32) -> u64 {
    rss(pid, "RssShmem:")
}

#[cfg(target_os = "linux")]
/// Bytes of the worker's resident memory of one kind (`RssAnon:`, ...).
fn rss(pid: u32, kind: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(kind))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

#[tokio::test]
async fn bytes_cross_exactly_at_every_size_boundary() {
    let pool = pool(1);
    let echo = job(wasmpool_guests::ECHO);
    // The encoded argument is a few bytes longer than the payload: cover
    // both sides of the threshold for the frame too.
    let sizes = [
        0,
        1,
        THRESHOLD - 8,
        THRESHOLD - 1,
        THRESHOLD,
        THRESHOLD + 1,
        1 << 20,
        (1 << 20) + 3,
        64 << 20,
    ];
    for (i, &len) in sizes.iter().enumerate() {
        let data = pattern(len, i as u32);
        let back: ByteBuf = pool
            .run(&echo, "echo-bytes", (ByteBuf::from(data.clone()),))
            .await
            .unwrap();
        assert!(
            back.as_slice() == data.as_slice(),
            "{len} bytes came back changed"
        );
        let n: u64 = pool
            .run(&echo, "byte-len", (ByteBuf::from(data),))
            .await
            .unwrap();
        assert_eq!(n, len as u64);
    }
}

#[tokio::test]
async fn strings_with_multibyte_characters_across_the_threshold() {
    let pool = pool(1);
    let echo = job(wasmpool_guests::ECHO);
    for len in [
        THRESHOLD - 3,
        THRESHOLD - 1,
        THRESHOLD,
        THRESHOLD + 2,
        3 << 20,
    ] {
        // Four-byte characters, so that one straddles every boundary.
        let mut s = "𝄞".repeat(len / 4 + 1);
        s.insert_str(0, &"ñ".repeat(len % 4));
        let back: String = pool.run(&echo, "echo-string", (&s,)).await.unwrap();
        assert_eq!(back, s, "a string of {} bytes", s.len());
    }
}

#[tokio::test]
async fn nested_lists_of_bytes_cross_intact() {
    let pool = pool(1);
    let echo = job(wasmpool_guests::ECHO);
    let chunks: Vec<ByteBuf> = (0..40)
        .map(|i| ByteBuf::from(pattern(i * 9_000, i as u32)))
        .collect();
    let back: Vec<ByteBuf> = pool.run(&echo, "echo-chunks", (&chunks,)).await.unwrap();
    assert_eq!(back, chunks);
}

#[tokio::test]
async fn a_cancelled_large_call_leaves_the_region_reusable() {
    let pool = pool(1);
    let echo = job(wasmpool_guests::ECHO);
    let big = pattern(8 << 20, 1);
    let e = pool
        .call::<ByteBuf>(&echo, "echo-after", (ByteBuf::from(big.clone()), 60_000u64))
        .timeout(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    let pid = pool.worker_pids()[0];
    for seed in 2..5 {
        let data = pattern(6 << 20, seed);
        echoes(&pool, &echo, &data).await;
    }
    // The same worker: interrupted, not killed.
    assert_eq!(pool.worker_pids(), [pid]);
}

#[tokio::test]
async fn a_worker_killed_mid_transfer_fails_only_its_call() {
    let pool = pool(1);
    let echo = job(wasmpool_guests::ECHO);
    pool.prepare(&echo).await.unwrap();
    pool.warm(1).await.unwrap();
    let pid = pool.worker_pids()[0];
    let big = pattern(16 << 20, 7);
    let call = pool.run::<ByteBuf>(&echo, "echo-after", (ByteBuf::from(big), 60_000u64));
    let killer = async {
        crate::common::eventually("the call to start", || pool.statistics().busy == 1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        sigkill(pid);
    };
    let (r, ()) = tokio::join!(call, killer);
    assert_eq!(r.unwrap_err().kind(), ErrorKind::WorkerCrashed);
    let data = pattern(16 << 20, 8);
    echoes(&pool, &echo, &data).await;
}

#[tokio::test]
async fn concurrent_large_calls_on_two_workers_do_not_mix() {
    let pool = pool(2);
    let echo = job(wasmpool_guests::ECHO);
    let inputs: Vec<Vec<u8>> = (0..16)
        .map(|i| pattern((1 << 20) + i * 4099, i as u32))
        .collect();
    let calls = inputs
        .iter()
        .map(|d| pool.run::<ByteBuf>(&echo, "echo-bytes", (ByteBuf::from(d.clone()),)));
    for (got, want) in join_all(calls).await.into_iter().zip(&inputs) {
        assert!(got.unwrap().as_slice() == want.as_slice());
    }
}

#[tokio::test]
async fn a_scribbling_worker_gets_a_protocol_error_for_its_own_call() {
    let pool = pool(1);
    let echo = job(wasmpool_guests::ECHO);
    let (size, results_at) = Call::<()>::REGION;
    let cases = [
        // Past the end of the region.
        (size - 10, 100),
        (u64::MAX - 5, 10),
        (0, u64::MAX),
        // In the host's half.
        (0, 1 << 20),
        // In its own half, but garbage.
        (results_at, 1 << 20),
        (results_at + 12345, 3),
    ];
    for (offset, len) in cases {
        let e = pool
            .call::<ByteBuf>(&echo, "echo-bytes", (ByteBuf::from(vec![1u8; 10]),))
            .scribble_region(offset, len, 0xc1)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol, "{offset}+{len}: {e}");
        // The next call, on the same pool, is answered right.
        let data = pattern(2 << 20, offset as u32);
        echoes(&pool, &echo, &data).await;
    }
}

// Reads `/proc`, and only Linux has a region to give back.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_region_gives_its_pages_back_after_a_large_call() {
    let pool = pool(1);
    let echo = job(wasmpool_guests::ECHO);
    let data = pattern(64 << 20, 3);
    echoes(&pool, &echo, &data).await;
    let pid = pool.worker_pids()[0];
    // Kept while calls follow one another, given back once idle.
    crate::common::eventually("the region's pages to go back", || {
        rss_shmem(pid) < 16 << 20
    })
    .await;
    // With no call after it: the guest's memory, which wasmtime frees in
    // batches of instances, and what the worker's allocator kept of its own
    // copies, both go back once the worker idles.
    crate::common::eventually("the worker's freed memory to go back", || {
        rss(pid, "RssAnon:") < 48 << 20
    })
    .await;
    // And the worker is as good as before: its jobs load again, and a
    // timeout still interrupts a guest in wasm.
    echoes(&pool, &echo, &data).await;
    interrupts_and_echoes(&pool, &echo, &data).await;
}

/// A guest spinning in wasm is stopped by its timeout, and `data` echoes.
async fn interrupts_and_echoes(pool: &wasmpool::Pool, echo: &wasmpool::Job, data: &[u8]) {
    let faults = job(wasmpool_guests::FAULTS);
    let err = pool
        .call::<()>(&faults, "spin-forever", ())
        .timeout(Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    echoes(pool, echo, data).await;
}

#[tokio::test]
async fn a_thread_worker_idles_after_a_large_call_and_serves_on() {
    // A worker thread gives back what its engine kept of a large call's
    // guest memory once it idles, by making a new engine (the host's own
    // memory cannot be told apart here): its calls still load, run and
    // are interrupted as before.
    let pool = wasmpool::Pool::builder()
        .workers(1)
        .worker_kind(wasmpool::WorkerKind::Thread)
        .build()
        .unwrap();
    let echo = job(wasmpool_guests::ECHO);
    let data = pattern(64 << 20, 5);
    echoes(&pool, &echo, &data).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    interrupts_and_echoes(&pool, &echo, &data).await;
    echoes(&pool, &echo, b"small").await;
}
