//! A CPU-bound loop and a no-op.

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
}

export!(Cpu);
