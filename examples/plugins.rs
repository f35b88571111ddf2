//! A plugin host: two plugin components, each a guest that calls back into
//! this program through host functions (`log`, a key-value `lookup`, a
//! `progress` callback and a host-side `sleep-ms`), run side by side. The
//! slow one is cancelled midway; its pending host call is dropped and its
//! worker goes on serving.
//!
//! Run with: `cargo run --release --example plugins`

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmpool::{BoxError, HostContext, Job, Pool};

/// What this host keeps for its plugins: a user directory.
struct Directory(HashMap<String, String>);

/// Which plugin a call is for, to label its log lines.
struct Label(&'static str);

fn label(cx: &HostContext) -> &'static str {
    cx.data::<(Label, Arc<Directory>)>()
        .map_or("?", |(l, _)| l.0)
}

#[tokio::main]
async fn main() -> Result<(), wasmpool::Error> {
    let started = Instant::now();
    let pool =
        Pool::builder()
            .workers(2)
            .host_fn(
                "wasmpool:jobs/host-api#log",
                move |cx: HostContext, (line,): (String,)| async move {
                    println!(
                        "[{:>4} ms] {} says: {line}",
                        started.elapsed().as_millis(),
                        label(&cx)
                    );
                    Ok::<(), BoxError>(())
                },
            )
            .host_fn(
                "wasmpool:jobs/host-api#lookup",
                |cx: HostContext, (key,): (String,)| async move {
                    let directory = cx.data::<(Label, Arc<Directory>)>().map(|(_, d)| d.clone());
                    Ok::<Option<String>, BoxError>(directory.and_then(|d| d.0.get(&key).cloned()))
                },
            )
            .host_fn(
                "wasmpool:jobs/host-api#progress",
                move |cx: HostContext, (done, total): (u32, u32)| async move {
                    println!(
                        "[{:>4} ms] {}: {done}/{total}",
                        started.elapsed().as_millis(),
                        label(&cx)
                    );
                    Ok::<(), BoxError>(())
                },
            )
            .host_fn(
                "wasmpool:jobs/host-api#sleep-ms",
                |_cx: HostContext, (ms,): (u64,)| async move {
                    // A host-side wait: this future is what a cancel drops.
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok::<u64, BoxError>(ms)
                },
            )
            // The ticker also imports these two, for the benchmarks.
            .host_fn(
                "wasmpool:jobs/host-api#noop",
                |_cx: HostContext, (): ()| async { Ok::<(), BoxError>(()) },
            )
            .host_fn(
                "wasmpool:jobs/host-api#add",
                |_cx: HostContext, (a, b): (u64, u64)| async move {
                    Ok::<u64, BoxError>(a.wrapping_add(b))
                },
            )
            .build()?;

    let greeter = Job::from_file(wasmpool_guests::GREETER)?;
    let ticker = Job::from_file(wasmpool_guests::TICKER)?;
    // Each plugin is checked against the host functions before it runs.
    pool.prepare(&greeter).await?;
    pool.prepare(&ticker).await?;

    let directory = Arc::new(Directory(
        [("ada", "Ada Lovelace"), ("alan", "Alan Turing")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into(),
    ));
    let users = vec!["ada".to_string(), "alan".to_string(), "grace".to_string()];
    let greet = pool
        .call::<Vec<String>>(&greeter, "greet", (users,))
        .data((Label("greeter"), directory.clone()));
    // Ten ticks of 100 ms each, cancelled after 350 ms.
    let tick = pool
        .call::<u32>(&ticker, "tick", (10u32, 100u64))
        .data((Label("ticker"), directory.clone()));
    let cancel = tick.cancel_handle();
    let canceller = async {
        tokio::time::sleep(Duration::from_millis(350)).await;
        println!(
            "[{:>4} ms] cancelling the ticker",
            started.elapsed().as_millis()
        );
        cancel.cancel();
    };
    let (greetings, ticked, ()) = tokio::join!(
        std::future::IntoFuture::into_future(greet),
        std::future::IntoFuture::into_future(tick),
        canceller
    );
    for line in greetings? {
        println!("greeter returned: {line}");
    }
    match ticked {
        Err(e) if e.is_cancelled() => println!("ticker: {e}"),
        other => println!("ticker: {other:?}"),
    }

    // The cancelled plugin's worker serves the next call.
    let n: u64 = pool.run(&ticker, "add-many", (1000u64,)).await?;
    println!("ticker's add-many(1000) = {n}");
    println!("{:?}", pool.statistics());
    pool.shutdown().await;
    Ok(())
}
