//! The second wall on Windows: a confined worker is in a Job Object of its
//! own that allows it no other process. Wine 8.0 accepts the job but does
//! not enforce its limit, so `.ci/cross` skips the test that needs it; its
//! control, and what a confined worker still does, run under Wine too.

use std::path::{Path, PathBuf};

use wasmpool::Pool;

use crate::common::{job, temp_dir};

/// Asks a worker of `pool` to try to escape; returns each attempt and how
/// it ended.
async fn attempt(pool: &Pool, outside: &Path) -> Vec<(String, String)> {
    let fib = job(wasmpool_guests::FIB);
    pool.call::<Vec<(String, String)>>(&fib, "fib", (1u64,))
        .attempt_escape(outside, None::<PathBuf>, false)
        .await
        .unwrap()
}

/// How the attempt to start a process ended.
fn spawned(tried: &[(String, String)]) -> &str {
    tried
        .iter()
        .find(|(what, _)| what.starts_with("spawn"))
        .map(|(_, how)| how.as_str())
        .expect("a spawn attempt")
}

fn outside(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secret.txt");
    std::fs::write(&file, "secret").unwrap();
    file
}

// Skipped under Wine (`.ci/cross`): Wine 8.0 does not enforce a job's
// process limit.
#[tokio::test]
async fn a_confined_worker_cannot_start_a_process() {
    let pool = Pool::builder().workers(1).build().unwrap();
    let tried = attempt(&pool, &outside("win-confined")).await;
    assert_ne!(spawned(&tried), "ok", "{tried:?}");
    // The worker is as good as before.
    let n: u64 = pool
        .run(&job(wasmpool_guests::FIB), "fib", (20u64,))
        .await
        .unwrap();
    assert_eq!(n, 6765);
    pool.shutdown().await;
}

#[tokio::test]
async fn a_confined_worker_serves_and_an_unconfined_one_can_start_a_process() {
    // Confined: the job is in place and the worker serves calls.
    let confined = Pool::builder().workers(1).build().unwrap();
    let n: u64 = confined
        .run(&job(wasmpool_guests::FIB), "fib", (20u64,))
        .await
        .unwrap();
    assert_eq!(n, 6765);
    confined.shutdown().await;
    // The control: without the wall, the same attempt works, so it is the
    // wall that stops it where it is enforced.
    let open = Pool::builder().workers(1).confine(false).build().unwrap();
    let tried = attempt(&open, &outside("win-unconfined")).await;
    assert_eq!(spawned(&tried), "ok", "{tried:?}");
    open.shutdown().await;
}
