//! Paths of the example guest components in `guest/programs`, built from
//! source for `wasm32-wasip2` by this crate's build script.
//!
//! Tests, examples and benchmarks of wasmpool use these constants; nothing
//! built is ever committed.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));
