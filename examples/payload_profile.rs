//! Echoes one payload size many times through one process worker, for a
//! profiler to watch: `perf record -g --call-graph dwarf -- cargo run
//! --release --example payload_profile -- 64`.

use std::time::Instant;

use wasmpool::{Job, Pool};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mib: usize = std::env::args().nth(1).map_or(Ok(64), |a| a.parse())?;
    let rounds: usize = std::env::args().nth(2).map_or(Ok(20), |a| a.parse())?;
    let echo = Job::from_file(wasmpool_guests::ECHO)?;
    let pool = Pool::builder().workers(1).build()?;
    pool.prepare(&echo).await?;
    let data = serde_bytes::ByteBuf::from(vec![7u8; mib << 20]);
    let t = Instant::now();
    for _ in 0..rounds {
        let back: serde_bytes::ByteBuf = pool.run(&echo, "echo-bytes", (&data,)).await?;
        assert_eq!(back.len(), data.len());
    }
    println!(
        "{mib} MiB echo: {:.2?} per call",
        t.elapsed() / rounds as u32
    );
    pool.shutdown().await;
    Ok(())
}
