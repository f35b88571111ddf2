//! A CPU-bound loop and a no-op.

use std::sync::atomic::{AtomicU64, Ordering};

wit_bindgen::generate!({ path: "../../../wit/jobs", world: "cpu" });

struct Cpu;

impl Guest for Cpu {
    fn spin(iterations: u64) -> u64 {
        // xorshift-multiply mixing: cheap, branch-free and not foldable.
        let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..iterations {
            h ^= i;
            h ^= h >> 33;
            h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
            h ^= h >> 29;
        }
        h
    }

    fn noop() {}

    fn count() -> u64 {
        CALLS.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Calls of `count` on this instance.
static CALLS: AtomicU64 = AtomicU64::new(0);

export!(Cpu);
