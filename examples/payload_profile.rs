//! Echoes one payload size many times through one process worker, for a
//! profiler to watch: `perf record -g -- cargo run --release --example
//! payload_profile -- 64`. With `noop` instead of a size, times no-op
//! calls with and without the payload region, taking turns; with `string`,
//! echoes the benchmark's 1 MiB multi-byte `string`.

use std::time::Instant;

use wasmpool::{Job, Pool};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let echo = Job::from_file(wasmpool_guests::ECHO)?;
    let arg = std::env::args().nth(1).unwrap_or_else(|| "64".into());
    if arg == "noop" {
        let pools = [
            Pool::builder().workers(1).build()?,
            Pool::builder().workers(1).payload_region(false).build()?,
        ];
        for p in &pools {
            p.prepare(&echo).await?;
        }
        let mut times = [Vec::new(), Vec::new()];
        // Each goes first in every other round.
        for round in 0..20 {
            for k in 0..2 {
                let i = (k + round) % 2;
                for _ in 0..200 {
                    let s = Instant::now();
                    let () = pools[i].run(&echo, "noop", ()).await?;
                    times[i].push(s.elapsed());
                }
            }
        }
        for (name, t) in ["region", "pipes only"].iter().zip(times.iter_mut()) {
            t.sort();
            println!("no-op p50 with {name}: {:?}", t[t.len() / 2]);
        }
        return Ok(());
    }
    if arg == "string" {
        let rounds: usize = std::env::args().nth(2).map_or(Ok(200), |a| a.parse())?;
        let pool = Pool::builder().workers(1).build()?;
        pool.prepare(&echo).await?;
        let text = "añ€𝄞".repeat((1 << 20) / 10);
        let t = Instant::now();
        for _ in 0..rounds {
            let back: String = pool.run(&echo, "echo-string", (&text,)).await?;
            assert_eq!(back.len(), text.len());
        }
        println!(
            "1 MiB string echo: {:.2?} per call",
            t.elapsed() / rounds as u32
        );
        pool.shutdown().await;
        return Ok(());
    }
    let mib: usize = arg.parse()?;
    let rounds: usize = std::env::args().nth(2).map_or(Ok(20), |a| a.parse())?;
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
