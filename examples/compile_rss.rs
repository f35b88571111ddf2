//! Measures what compiling a component costs the host's memory: its RSS
//! before and after the first compile (into an empty cache), and its peak.
//! Compiles run in a child process, so the host should hold little more
//! than the artifact.
//!
//! Run with: `cargo run --release --example compile_rss -- path/to/component.wasm`
//! (a large one shows it best, such as one built by componentize-py).

use wasmpool::{Job, Pool};

/// A field of `/proc/self/status`, in MiB.
fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: compile_rss <component.wasm>")?;
    let cache = std::env::temp_dir().join(format!("wasmpool-compile-rss-{}", std::process::id()));
    let job = Job::from_file(&path)?;
    let pool = Pool::builder().workers(1).cache_dir(&cache).build()?;
    let before = status_mib("VmRSS");
    let t = std::time::Instant::now();
    pool.prepare(&job).await?;
    let took = t.elapsed();
    let after = status_mib("VmRSS");
    let artifact: u64 = std::fs::read_dir(&cache)?
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "component {:.1} MiB, artifact {:.1} MiB",
        job_len(&path),
        artifact as f64 / (1 << 20) as f64
    );
    println!("compile took {:.1} s", took.as_secs_f64());
    println!("host RSS {before:.1} MiB before, {after:.1} MiB after the compile");
    println!("host peak RSS {:.1} MiB", status_mib("VmHWM"));
    pool.shutdown().await;
    std::fs::remove_dir_all(&cache)?;
    Ok(())
}

fn job_len(path: &str) -> f64 {
    std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / (1 << 20) as f64)
}
