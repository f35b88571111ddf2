//! `wasmpool bench`: many calls of one function, with latency percentiles
//! and throughput.

use std::future::IntoFuture as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use wasmpool::{DynArgs, Stdio};

use crate::exit::Failure;
use crate::options::{CallOptions, call_args, load};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Each call is a dynamic call, as `run` makes: its arguments are typed from
their text each time, which costs a few microseconds on the host. The
component is compiled and the workers are started before the clock starts.

Examples:
  wasmpool bench fib.wasm fib 20 --calls 10000
  wasmpool bench --workers 2 --concurrency 16 cpu.wasm noop
  wasmpool bench --json fib.wasm 'fib(25)' --calls 200")]
pub struct Args {
    /// The component.
    component: PathBuf,
    /// The function, or a whole call such as `fib(20)`.
    func: String,
    /// The arguments: WAVE, or JSON with `--json`.
    args: Vec<String>,
    /// How many calls to time.
    #[arg(long, default_value_t = 1000)]
    calls: u64,
    /// How many calls in flight at once (default: one per worker).
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
    /// Untimed calls first, to warm the workers up.
    #[arg(long, default_value_t = 10, value_name = "N")]
    warmup: u64,
    /// Arguments are JSON, and the report is printed as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    options: CallOptions,
}

pub async fn main(args: Args) -> Result<u8, Failure> {
    if args.calls == 0 {
        return Err(Failure::usage("--calls must be at least 1"));
    }
    let job = load(&args.component)?;
    args.options.check()?;
    let (func, dyn_args) = call_args(&args.func, &args.args, args.json)?;
    let pool = args.options.pool()?;
    let workers = pool.statistics().max_workers;
    let concurrency = args.concurrency.unwrap_or(workers).max(1);
    pool.prepare(&job).await?;
    pool.warm(workers).await?;
    let call = |a: DynArgs| {
        let c = args.options.apply(pool.call_dynamic(&job, &func, a));
        async move {
            let start = Instant::now();
            c.stdout(Stdio::Discard).into_future().await?;
            Ok::<_, wasmpool::Error>(start.elapsed())
        }
    };
    let run = async {
        // The first call checks the function and arguments once, and its
        // error is the command's.
        for _ in 0..args.warmup.max(1) {
            call(dyn_args.clone()).await?;
        }
        let start = Instant::now();
        let mut times: Vec<Duration> = futures_util::stream::iter(0..args.calls)
            .map(|_| call(dyn_args.clone()))
            .buffer_unordered(concurrency)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        let wall = start.elapsed();
        times.sort_unstable();
        Ok::<_, wasmpool::Error>((times, wall))
    };
    let outcome = tokio::select! {
        r = run => r,
        () = crate::interrupted() => {
            pool.shutdown().await;
            return Err(crate::interrupt());
        }
    };
    pool.shutdown().await;
    let (times, wall) = outcome?;
    let pct = |p: f64| times[((times.len() as f64 - 1.0) * p).round() as usize];
    let per_sec = times.len() as f64 / wall.as_secs_f64();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "calls": times.len(),
                "workers": workers,
                "concurrency": concurrency,
                "seconds": wall.as_secs_f64(),
                "calls_per_second": per_sec,
                "latency_us": {
                    "min": us(times[0]),
                    "p50": us(pct(0.50)),
                    "p90": us(pct(0.90)),
                    "p99": us(pct(0.99)),
                    "max": us(times[times.len() - 1]),
                },
            })
        );
    } else {
        println!(
            "{} calls of {func} in {:.2?} ({workers} workers, {concurrency} in flight)",
            times.len(),
            wall
        );
        println!("  throughput  {per_sec:.0} calls/s");
        println!(
            "  latency     min {:.2?}  p50 {:.2?}  p90 {:.2?}  p99 {:.2?}  max {:.2?}",
            times[0],
            pct(0.50),
            pct(0.90),
            pct(0.99),
            times[times.len() - 1]
        );
    }
    Ok(0)
}
