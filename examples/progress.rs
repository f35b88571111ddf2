//! A map over many items with a terminal progress bar.
//!
//! `Pool::map` squares 100,000 numbers in the `coop` guest, in adaptive
//! batches, while an indicatif bar follows the results as they stream in.
//! Then a spawned job reports its own progress through its handle's
//! channel, which drives a second bar.
//!
//! Run with: `cargo run --release --example progress [-- ITEMS]`

use std::time::Instant;

use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use wasmpool::{Job, Pool};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let items: u64 = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 100_000,
    };
    let job = Job::from_file(wasmpool_guests::COOP)?;
    let pool = Pool::new()?;
    pool.prepare(&job).await?;
    let style =
        ProgressStyle::with_template("{msg:>8} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")?
            .progress_chars("=> ");

    let bar = ProgressBar::new(items).with_style(style.clone());
    bar.set_message("map");
    let started = Instant::now();
    let mut results = pool.map::<_, u64, _>(&job, "square", (0..items).map(|x| (x,)));
    let mut sum = 0u64;
    let mut i = 0u64;
    while let Some(square) = results.next().await {
        let square = square?;
        assert_eq!(square, i.wrapping_mul(i));
        sum = sum.wrapping_add(square);
        i += 1;
        bar.inc(1);
    }
    bar.finish();
    let took = started.elapsed();
    println!(
        "{items} items in {took:.2?}: {:.0} items/s (sum of squares {sum})",
        items as f64 / took.as_secs_f64()
    );

    // A job that reports its own progress.
    let steps = 5_000u64;
    let bar = ProgressBar::new(steps).with_style(style);
    bar.set_message("emit");
    let handle = pool.spawn::<u64>(&job, "progress", (steps,));
    while let Some(done) = handle.recv::<u64>().await? {
        bar.set_position(done);
    }
    bar.finish();
    println!("the job reported {} steps", handle.await?);
    Ok(())
}
