//! A plugin that uses only part of `host-api`: progress, a host-side sleep
//! and a log line, plus loops of `noop` and `add` for the benchmarks.

wit_bindgen::generate!({ path: "../../../wit/jobs", world: "ticker" });

use wasmpool::jobs::host_api as host;

struct Ticker;

impl Guest for Ticker {
    fn tick(n: u32, ms: u64) -> u32 {
        for i in 0..n {
            host::progress(i + 1, n);
            host::sleep_ms(ms);
        }
        host::log(&format!("ticked {n} times"));
        n
    }

    fn noop_many(n: u64) {
        for _ in 0..n {
            host::noop();
        }
    }

    fn add_many(n: u64) -> u64 {
        (0..n).fold(0u64, |sum, i| sum.wrapping_add(host::add(i, 1)))
    }
}

export!(Ticker);
