//! Copy-on-write memory images, chosen per job: a guest with a large
//! initial memory runs on workers that map it, a small one on workers that
//! copy it, without the pool being told; and as told when it is.

use wasmpool::Pool;

use crate::common::{job, pool};

/// The sum of the `heavy` guest's whole table: 4 MiB of sevens.
const TABLE_SUM: u64 = 7 * (4 << 20);

#[tokio::test]
async fn a_guest_with_a_large_initial_memory_gets_its_own_kind_of_worker() {
    let pool = pool(1);
    let fib = job(wasmpool_guests::FIB);
    let heavy = job(wasmpool_guests::HEAVY);
    assert_eq!(pool.run::<u64>(&fib, "fib", (10u64,)).await.unwrap(), 55);
    let small = pool.worker_pids();
    let sum: u64 = pool
        .run(&heavy, "sum-table", (0u32, u32::MAX))
        .await
        .unwrap();
    assert_eq!(sum, TABLE_SUM);
    // The copying worker made way for one that maps memory images.
    let large = pool.worker_pids();
    assert_eq!(large.len(), 1);
    assert_ne!(large, small);
    assert_eq!(pool.statistics().spawned, 2);
    // Each kind keeps serving its jobs.
    for _ in 0..3 {
        let sum: u64 = pool.run(&heavy, "sum-table", (8u32, 8u32)).await.unwrap();
        assert_eq!(sum, 56);
    }
    assert_eq!(pool.worker_pids(), large);
    assert_eq!(pool.statistics().spawned, 2);
}

#[tokio::test]
async fn a_pool_told_the_kind_runs_every_job_on_it() {
    for cow in [false, true] {
        let pool = Pool::builder()
            .workers(1)
            .copy_on_write_memory(cow)
            .build()
            .unwrap();
        let fib = job(wasmpool_guests::FIB);
        let heavy = job(wasmpool_guests::HEAVY);
        for _ in 0..2 {
            assert_eq!(pool.run::<u64>(&fib, "fib", (12u64,)).await.unwrap(), 144);
            let sum: u64 = pool
                .run(&heavy, "sum-table", (0u32, u32::MAX))
                .await
                .unwrap();
            assert_eq!(sum, TABLE_SUM);
        }
        assert_eq!(pool.statistics().spawned, 1, "copy_on_write_memory({cow})");
    }
}
