//! `fib`, exported both at world level and from the `math` interface.

wit_bindgen::generate!({ path: "../../../wit/jobs", world: "fib" });

struct Fib;

fn fib(n: u64) -> u64 {
    if n < 2 { n } else { fib(n - 1).wrapping_add(fib(n - 2)) }
}

impl Guest for Fib {
    fn fib(n: u64) -> u64 {
        fib(n)
    }
}

impl exports::wasmpool::jobs::math::Guest for Fib {
    fn fib(n: u64) -> u64 {
        fib(n)
    }
}

export!(Fib);
