//! Producer jobs and consumer jobs joined by a queue, with the host
//! awaiting the results: aioprocessing's pipeline, with guests in
//! sandboxed worker processes.
//!
//! Three producer guests put the numbers 1 to 300 on the joinable queue
//! `work`; two consumer guests take them, put their squares on `results`,
//! and mark each one done. A third consumer takes a number and is killed
//! while it holds it: the number goes back to the queue, and nothing is
//! lost. The host reads the results as they come, closes `work` once the
//! producers are done, and joins it.
//!
//! Run with: `cargo run --release --example pipeline`

use std::time::{Duration, Instant};

use wasmpool::{Job, Pool};

#[tokio::main]
async fn main() -> Result<(), wasmpool::Error> {
    let job = Job::from_file(wasmpool_guests::COOP)?;
    let pool = Pool::builder().workers(6).build()?;
    pool.prepare(&job).await?;
    let started = Instant::now();

    // At most 16 numbers wait: producers block while it is full.
    let work = pool.joinable_queue::<u64>("work", 16)?;
    let results = pool.queue::<u64>("results", 0)?;
    let taken = pool.queue::<u64>("taken", 0)?;

    // The host reads results while the guests work.
    let reader = tokio::spawn({
        let results = results.clone();
        async move {
            let (mut count, mut sum) = (0u64, 0u64);
            while let Some(square) = results.get().await? {
                count += 1;
                sum += square;
            }
            Ok::<_, wasmpool::Error>((count, sum))
        }
    });

    let producers: Vec<_> = (0..3u64)
        .map(|p| pool.spawn::<()>(&job, "produce", ("work", p * 100 + 1, 100u64)))
        .collect();
    // A consumer that takes one number and then never finishes.
    let stuck = pool.spawn::<()>(&job, "take-and-spin", ("work", "taken"));
    let consumers: Vec<_> = (0..2)
        .map(|_| pool.spawn::<u64>(&job, "consume", ("work", "results")))
        .collect();

    let held = taken
        .get()
        .await?
        .expect("the stuck consumer took a number");
    tokio::time::sleep(Duration::from_millis(20)).await;
    stuck.kill();
    let err = stuck.await.unwrap_err();
    println!("killed the consumer holding {held}: {err}");

    for producer in producers {
        producer.await?;
    }
    // Consumers see the end once the queue is drained.
    work.close();
    work.join().await?;
    let mut per_consumer = Vec::new();
    for consumer in consumers {
        per_consumer.push(consumer.await?);
    }
    results.close();
    let (count, sum) = reader.await.expect("the reader task")?;

    let expected: u64 = (1..=300u64).map(|x| x * x).sum();
    println!(
        "{count} results from consumers that took {per_consumer:?}; sum of squares {sum} \
         (expected {expected}) in {:.1?}",
        started.elapsed()
    );
    assert_eq!(count, 300, "every number was handled once");
    assert_eq!(sum, expected);
    Ok(())
}
