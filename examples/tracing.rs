//! What wasmpool tells a `tracing` subscriber: a span per call (job, function,
//! call id, worker id, pid, time waiting for a worker, time running) and
//! events for workers starting, exiting, crashing and being killed, the
//! compile cache, and a timeout escalating to a kill.
//!
//! The host's events go to the subscriber this example installs, an fmt
//! layer filtered by `RUST_LOG` (default `wasmpool=debug`). Worker
//! processes start before `main`, so they cannot use it: with `RUST_LOG`
//! set, each worker writes its own events to its stderr, which is the
//! host's.
//!
//! Run with: `cargo run --release --example tracing`
//! (or `RUST_LOG=wasmpool=trace cargo run --release --example tracing` to
//! see every `wasmpool:sync` answer too).

use std::time::Duration;

use tracing_subscriber::EnvFilter;
use wasmpool::{Cancel, ErrorKind, Job, Pool};

#[tokio::main]
async fn main() -> Result<(), wasmpool::Error> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "wasmpool=debug".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .init();

    let fib = Job::from_file(wasmpool_guests::FIB)?;
    let cpu = Job::from_file(wasmpool_guests::CPU)?;
    let pool = Pool::builder().workers(2).build()?;

    // A compile (or a cache hit), a worker start, and one call span.
    let n: u64 = pool.run(&fib, "fib", (20u64,)).await?;
    println!("fib(20) = {n}");

    // A call that runs too long: interrupted at its timeout.
    let err = pool
        .call::<u64>(&cpu, "spin", (u64::MAX,))
        .timeout(Duration::from_millis(50))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    println!("spin: {err}");

    // A call dropped with Cancel::Kill: its worker is killed and replaced.
    let call = pool
        .call::<u64>(&cpu, "spin", (u64::MAX,))
        .on_cancel(Cancel::Kill);
    let dropped = tokio::time::timeout(Duration::from_millis(50), call).await;
    assert!(dropped.is_err(), "the call was cut short");
    let n: u64 = pool.run(&fib, "fib", (10u64,)).await?;
    println!("fib(10) = {n} on a fresh worker");

    println!("{:?}", pool.statistics());
    pool.shutdown().await;
    Ok(())
}
