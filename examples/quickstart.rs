//! wasmpool's quickstart, after trio-parallel's README example: twelve
//! CPU-bound jobs of mixed sizes run in a pool of worker processes while the
//! tokio loop stays responsive, which a ticker task proves by printing its
//! scheduling latency. Then a job that would run far too long is cancelled
//! after 2 s while a sensible one beside it finishes: only the cancelled
//! job stops, and its worker is interrupted, not killed.
//!
//! Run with: `cargo run --release --example quickstart`

use std::time::{Duration, Instant};

use wasmpool::{Job, Pool};

#[tokio::main]
async fn main() -> Result<(), wasmpool::Error> {
    let job = Job::from_file(wasmpool_guests::CPU)?;
    let pool = Pool::new()?;
    println!(
        "pool of {} workers; compiling the job once...",
        pool.statistics().max_workers
    );
    pool.prepare(&job).await?;

    // A ticker on the event loop: how late does it wake while jobs run?
    let ticker = tokio::spawn(async {
        let mut worst = Duration::ZERO;
        let mut ticks = 0u32;
        loop {
            let asked = Instant::now();
            tokio::time::sleep(Duration::from_millis(50)).await;
            let late = asked.elapsed().saturating_sub(Duration::from_millis(50));
            worst = worst.max(late);
            ticks += 1;
            if ticks.is_multiple_of(10) {
                println!("  event loop: {ticks} ticks, worst scheduling latency {worst:?}");
            }
        }
    });

    let start = Instant::now();
    let sizes: Vec<u64> = (0..12).map(|i| 20_000_000 + (i % 4) * 30_000_000).collect();
    let tasks: Vec<_> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let (pool, job) = (pool.clone(), job.clone());
            tokio::spawn(async move {
                let t = Instant::now();
                let hash: u64 = pool.run(&job, "spin", (n,)).await?;
                println!(
                    "  job {i:2}: {n:>9} rounds -> {hash:016x} in {:?}",
                    t.elapsed()
                );
                Ok::<_, wasmpool::Error>(hash)
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("job task panicked")?;
    }
    println!("all 12 jobs done in {:?}", start.elapsed());

    // A job that would take far too long, cancelled after 2 s by dropping
    // its future, beside one that finishes.
    let start = Instant::now();
    let sensible = pool.run::<u64>(&job, "spin", (100_000_000u64,));
    let too_long = tokio::time::timeout(
        Duration::from_secs(2),
        pool.run::<u64>(&job, "spin", (u64::MAX,)),
    );
    let (sensible, too_long) = tokio::join!(sensible, too_long);
    println!("sensible job finished: {:016x}", sensible?);
    match too_long {
        Err(_) => println!("the too-long job was cancelled after {:?}", start.elapsed()),
        Ok(r) => println!("the too-long job ended by itself?! {r:?}"),
    }
    ticker.abort();
    pool.shutdown().await;
    // killed: 0 — the cancelled job's worker was interrupted, not killed.
    println!("{:?}", pool.statistics());
    Ok(())
}
