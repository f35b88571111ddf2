//! Async exports (WASIp3): functions the component model calls as tasks,
//! which await `wasi:clocks@0.3` and the host's async imports.

wit_bindgen::generate!({
    path: "../../../wit/jobs",
    world: "asyncs",
    generate_all,
});

use wasi::clocks::monotonic_clock;
use wasmpool::jobs::async_host;

struct Asyncs;

const MS: u64 = 1_000_000;

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
}

export!(Asyncs);
