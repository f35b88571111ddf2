//! Measures the warm round trip of a no-op call through a pool of worker
//! processes: the overhead wasmpool adds to every call.
//!
//! Run with: `cargo run --release --example roundtrip`

use std::time::{Duration, Instant};

use wasmpool::{Job, Pool};

const CALLS: usize = 5_000;

#[tokio::main]
async fn main() -> Result<(), wasmpool::Error> {
    let job = Job::from_file(wasmpool_guests::CPU)?;
    let pool = Pool::builder().workers(1).build()?;

    let start = Instant::now();
    let () = pool.run(&job, "noop", ()).await?;
    println!(
        "first call (compile or load artifact, spawn worker): {:?}",
        start.elapsed()
    );

    let mut times: Vec<Duration> = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let t = Instant::now();
        let () = pool.run(&job, "noop", ()).await?;
        times.push(t.elapsed());
    }
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    println!("warm no-op round trip over {CALLS} calls:");
    println!("roundtrip_p50 {:.1} us", pct(0.50).as_secs_f64() * 1e6);
    println!("roundtrip_p99 {:.1} us", pct(0.99).as_secs_f64() * 1e6);
    println!("{:?}", pool.statistics());
    pool.shutdown().await;
    Ok(())
}
