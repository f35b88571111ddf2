//! Measures cancel-to-resume: how long after a running call is cancelled
//! the next call on the same one-worker pool returns, for each cancel mode,
//! for a guest spinning in wasm and for one asleep in WASI. A no-op call
//! alone is measured beside it as the baseline.
//!
//! Run with: `cargo run --release --example cancel`

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use wasmpool::{Cancel, Job, Pool};

const ROUNDS: usize = 50;

#[tokio::main]
async fn main() -> Result<(), wasmpool::Error> {
    let faults = Job::from_file(wasmpool_guests::FAULTS)?;
    let cpu = Job::from_file(wasmpool_guests::CPU)?;
    let cases = [
        (Cancel::Interrupt, "spin-forever"),
        (Cancel::Interrupt, "sleep"),
        (Cancel::Kill, "spin-forever"),
        (Cancel::Kill, "sleep"),
    ];
    for (mode, guest) in cases {
        let pool = Pool::builder().workers(1).on_cancel(mode).build()?;
        let () = pool.run(&cpu, "noop", ()).await?;
        let mut resume = Vec::with_capacity(ROUNDS);
        let mut noop = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let t = Instant::now();
            let () = pool.run(&cpu, "noop", ()).await?;
            noop.push(t.elapsed());

            // Guests spin forever, or sleep for an hour.
            let call = if guest == "sleep" {
                pool.call::<()>(&faults, "sleep", (3_600_000u64,))
            } else {
                pool.call::<()>(&faults, "spin-forever", ())
            };
            let _ = tokio::time::timeout(Duration::from_millis(2), call.into_future()).await;
            // The spinning call's future is dropped: cancelled now.
            let t = Instant::now();
            let () = pool.run(&cpu, "noop", ()).await?;
            resume.push(t.elapsed());
        }
        resume.sort();
        noop.sort();
        let name = format!("{mode:?}_{guest}").to_lowercase().replace('-', "_");
        println!(
            "cancel_to_resume_{name}_p50 {:.1} us  (noop alone p50 {:.1} us)",
            resume[ROUNDS / 2].as_secs_f64() * 1e6,
            noop[ROUNDS / 2].as_secs_f64() * 1e6
        );
        println!("  {:?}", pool.statistics());
        pool.shutdown().await;
    }
    Ok(())
}
