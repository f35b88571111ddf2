//! Async exports (WASIp3): functions the component model calls as tasks,
//! which await `wasi:clocks@0.3` and the host's async imports, and pass
//! streams and futures both ways. The exports that return a stream or a
//! future write it from a task spawned with `wit_bindgen::spawn_local`,
//! which goes on after the function has returned.

wit_bindgen::generate!({
    path: "../../../wit/jobs",
    world: "asyncs",
    generate_all,
});

use wasi::clocks::monotonic_clock;
use wasmpool::jobs::async_host;
use wit_bindgen::{FutureReader, StreamReader, StreamResult, spawn_local};

struct Asyncs;

const MS: u64 = 1_000_000;
/// The most items `endless` writes at a time.
const BATCH: usize = 1024;
/// The most bytes the byte-stream exports read or write at a time.
const CHUNK: usize = 64 * 1024;
/// The pattern of `bytes` repeats every `PERIOD` bytes.
const PERIOD: usize = 251;

impl Guest for Asyncs {
    async fn double(x: u32) -> u32 {
        x * 2
    }

    fn fib(n: u32) -> u64 {
        if n < 2 {
            n.into()
        } else {
            Self::fib(n - 1) + Self::fib(n - 2)
        }
    }

    async fn sleep(ms: u32) -> u64 {
        let start = monotonic_clock::now();
        monotonic_clock::wait_for(u64::from(ms) * MS).await;
        (monotonic_clock::now() - start) / MS
    }

    async fn naps(n: u32, ms: u32) -> u32 {
        let naps = (0..n).map(|_| async_host::nap(ms));
        futures::future::join_all(naps).await.into_iter().sum()
    }

    async fn fail(after_ms: u32) -> u32 {
        monotonic_clock::wait_for(u64::from(after_ms) * MS).await;
        std::process::abort()
    }

    async fn spin() -> u32 {
        let mut n: u32 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }

    async fn count_up(n: u32, delay_ms: u32) -> StreamReader<u32> {
        let (mut tx, rx) = wit_stream::new();
        spawn_local(async move {
            for i in 1..=n {
                if delay_ms > 0 {
                    monotonic_clock::wait_for(u64::from(delay_ms) * MS).await;
                }
                if tx.write_one(i).await.is_some() {
                    return; // The reader dropped the stream.
                }
            }
        });
        rx
    }

    async fn endless() -> StreamReader<u32> {
        let (mut tx, rx) = wit_stream::new();
        spawn_local(async move {
            let mut next: u32 = 0;
            loop {
                let batch = (0..BATCH as u32).map(|k| next.wrapping_add(k)).collect();
                if !tx.write_all(batch).await.is_empty() {
                    return;
                }
                next = next.wrapping_add(BATCH as u32);
            }
        });
        rx
    }

    async fn sum(mut items: StreamReader<u32>) -> u64 {
        let mut total = 0;
        let mut buf = Vec::with_capacity(BATCH);
        loop {
            let (result, got) = items.read(buf).await;
            total += got.iter().copied().map(u64::from).sum::<u64>();
            if !matches!(result, StreamResult::Complete(_)) {
                return total;
            }
            buf = got;
            buf.clear();
        }
    }

    async fn eventually(value: u32, delay_ms: u32) -> FutureReader<u32> {
        // The default is only sent if the writer were dropped unwritten.
        let (tx, rx) = wit_future::new(|| 0);
        spawn_local(async move {
            monotonic_clock::wait_for(u64::from(delay_ms) * MS).await;
            // An error means the reader dropped the future: nothing to do.
            let _ = tx.write(value).await;
        });
        rx
    }

    async fn add_later(x: FutureReader<u32>, y: u32) -> u32 {
        x.await.wrapping_add(y)
    }

    async fn bytes(n: u64) -> StreamReader<u8> {
        let (mut tx, rx) = wit_stream::new();
        spawn_local(async move {
            // Byte `i` is `i % PERIOD`: a chunk from offset `i` is a slice of
            // the pattern starting at `i % PERIOD`.
            let pattern: Vec<u8> = (0..CHUNK + PERIOD).map(|i| (i % PERIOD) as u8).collect();
            let mut sent: u64 = 0;
            while sent < n {
                let start = (sent % PERIOD as u64) as usize;
                let len = (n - sent).min(CHUNK as u64) as usize;
                let chunk = pattern[start..start + len].to_vec();
                if !tx.write_all(chunk).await.is_empty() {
                    return;
                }
                sent += len as u64;
            }
        });
        rx
    }

    async fn count_bytes(mut data: StreamReader<u8>) -> u64 {
        let mut total = 0;
        let mut buf = Vec::with_capacity(CHUNK);
        loop {
            let (result, got) = data.read(buf).await;
            total += got.len() as u64;
            if !matches!(result, StreamResult::Complete(_)) {
                return total;
            }
            buf = got;
            buf.clear();
        }
    }

    async fn echo_bytes(mut data: StreamReader<u8>) -> StreamReader<u8> {
        let (mut tx, rx) = wit_stream::new();
        spawn_local(async move {
            let mut buf = Vec::with_capacity(CHUNK);
            loop {
                let (result, got) = data.read(buf).await;
                buf = got;
                if !buf.is_empty() {
                    buf = tx.write_all(buf).await;
                    if !buf.is_empty() {
                        return; // The reader of the echo dropped it.
                    }
                }
                if !matches!(result, StreamResult::Complete(_)) {
                    return; // `data` ended: dropping `tx` ends the echo.
                }
                buf.reserve(CHUNK);
            }
        });
        rx
    }

    fn echo_list(data: Vec<u8>) -> Vec<u8> {
        data
    }

    async fn stall() -> StreamReader<u32> {
        let (mut tx, rx) = wit_stream::new();
        spawn_local(async move {
            tx.write_all(vec![1, 2]).await;
            // Never ends the stream: `tx` lives as long as this loop.
            loop {
                monotonic_clock::wait_for(3600 * 1000 * MS).await;
            }
        });
        rx
    }
}

export!(Asyncs);
