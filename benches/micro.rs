//! Micro-benchmarks of the in-process pieces of a call: frame encoding,
//! value transcoding and instantiation (a worker's executor).
//!
//! Run with: `cargo bench --bench micro --features unstable-bench`

use std::path::PathBuf;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_bytes::ByteBuf;
use wasmpool::bench_support::{Runner, Transcoder, call_frame_roundtrip, reply_frame_roundtrip};

fn cache_dir() -> PathBuf {
    std::env::temp_dir().join(format!("wasmpool-micro-{}", std::process::id()))
}

fn frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_roundtrip");
    for size in [0usize, 1 << 10, 1 << 20] {
        let args = rmp_serde::to_vec(&(ByteBuf::from(vec![7u8; size]),)).unwrap();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("call", size), &args, |b, args| {
            b.iter(|| call_frame_roundtrip(args))
        });
        g.bench_with_input(BenchmarkId::new("reply", size), &args, |b, args| {
            b.iter(|| reply_frame_roundtrip(args))
        });
    }
    g.finish();
}

fn transcoding(c: &mut Criterion) {
    let cache = cache_dir();
    let mut g = c.benchmark_group("transcode_args");
    let scalar = Transcoder::new(wasmpool_guests::FIB.as_ref(), &cache, "fib").unwrap();
    let args = rmp_serde::to_vec(&(30u64,)).unwrap();
    g.bench_function("u64", |b| b.iter(|| scalar.roundtrip(&args)));

    let types = Transcoder::new(wasmpool_guests::TYPES.as_ref(), &cache, "echo-strings").unwrap();
    let strings: Vec<String> = (0..100).map(|i| format!("item number {i}")).collect();
    let args = rmp_serde::to_vec(&(strings,)).unwrap();
    g.bench_function("list_of_100_strings", |b| b.iter(|| types.roundtrip(&args)));

    let bytes = Transcoder::new(wasmpool_guests::TYPES.as_ref(), &cache, "echo-bytes").unwrap();
    let args = rmp_serde::to_vec(&(ByteBuf::from(vec![1u8; 64 << 10]),)).unwrap();
    g.throughput(Throughput::Bytes(64 << 10));
    g.bench_function("64KiB_as_dynamic_values", |b| {
        b.iter(|| bytes.roundtrip(&args))
    });
    g.finish();
}

fn instantiate(c: &mut Criterion) {
    let cache = cache_dir();
    let mut g = c.benchmark_group("executor_noop");
    let noop = rmp_serde::to_vec(&()).unwrap();
    for (name, reuse) in [("fresh_instance", false), ("reused_instance", true)] {
        let mut runner = Runner::new(wasmpool_guests::CPU.as_ref(), &cache, reuse).unwrap();
        g.bench_function(name, |b| b.iter(|| runner.call("noop", &noop).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, frames, transcoding, instantiate);
criterion_main!(benches);
