//! The persistent compile cache: a later pool (or a later run of the
//! program) loads the artifact instead of compiling again.

use crate::common::{job, temp_dir};
use wasmpool::Pool;

fn artifacts(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn a_second_pool_loads_the_artifact_without_compiling() {
    let dir = temp_dir("cache");
    let fib = job(wasmpool_guests::FIB);
    let first = Pool::builder().workers(1).cache_dir(&dir).build().unwrap();
    assert_eq!(
        first.run::<u64>(&fib, "fib", (20u64,)).await.unwrap(),
        6_765
    );
    first.shutdown().await;
    let files = artifacts(&dir);
    assert_eq!(files.len(), 1, "one artifact: {files:?}");
    let before = std::fs::metadata(&files[0]).unwrap();

    // A new pool knows nothing in memory; only the file can spare it the
    // compile. Storing an artifact replaces the file (a new inode), so an
    // unchanged inode means it was loaded, not compiled again.
    let second = Pool::builder().workers(1).cache_dir(&dir).build().unwrap();
    second.prepare(&fib).await.unwrap();
    assert_eq!(
        second.run::<u64>(&fib, "fib", (21u64,)).await.unwrap(),
        10_946
    );
    second.shutdown().await;
    let after = std::fs::metadata(&files[0]).unwrap();
    assert_eq!(artifacts(&dir), files, "no second artifact");
    // (Its modification time moves: a cache hit marks the file used.)
    // (Windows's file index is not in stable std, and Wine's creation
    // time is the file's last change: there the check above stands alone.)
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(before.ino(), after.ino());
    }
    #[cfg(windows)]
    let _ = (before, after);

    // Other engine settings are another artifact, side by side.
    let fuel = Pool::builder()
        .workers(1)
        .cache_dir(&dir)
        .fuel(u64::MAX)
        .build()
        .unwrap();
    assert_eq!(fuel.run::<u64>(&fib, "fib", (10u64,)).await.unwrap(), 55);
    fuel.shutdown().await;
    assert_eq!(artifacts(&dir).len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_damaged_artifact_is_compiled_again() {
    let dir = temp_dir("damaged");
    let fib = job(wasmpool_guests::FIB);
    let pool = Pool::builder().workers(1).cache_dir(&dir).build().unwrap();
    pool.prepare(&fib).await.unwrap();
    pool.shutdown().await;
    let files = artifacts(&dir);
    std::fs::write(&files[0], b"not an artifact").unwrap();

    let pool = Pool::builder().workers(1).cache_dir(&dir).build().unwrap();
    assert_eq!(pool.run::<u64>(&fib, "fib", (12u64,)).await.unwrap(), 144);
    pool.shutdown().await;
    assert!(
        std::fs::metadata(&files[0]).unwrap().len() > 1000,
        "rewritten"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// Unix only: making a symbolic link on Windows takes a privilege.
#[cfg(unix)]
#[tokio::test]
async fn a_symlink_planted_in_the_cache_redirects_nothing() {
    let dir = temp_dir("cache-symlink");
    let fib = job(wasmpool_guests::FIB);
    let first = Pool::builder().workers(1).cache_dir(&dir).build().unwrap();
    first.prepare(&fib).await.unwrap();
    first.shutdown().await;
    let files = artifacts(&dir);
    assert_eq!(files.len(), 1, "one artifact: {files:?}");

    // Someone replaces the artifact with a link to a file outside the
    // cache. The host neither reads through it nor writes through it: it
    // compiles again and puts a regular file in the link's place.
    let outside = temp_dir("cache-symlink-outside");
    std::fs::create_dir_all(&outside).unwrap();
    let target = outside.join("victim");
    std::fs::write(&target, b"not an artifact").unwrap();
    std::fs::remove_file(&files[0]).unwrap();
    std::os::unix::fs::symlink(&target, &files[0]).unwrap();

    let second = Pool::builder().workers(1).cache_dir(&dir).build().unwrap();
    assert_eq!(
        second.run::<u64>(&fib, "fib", (20u64,)).await.unwrap(),
        6_765
    );
    second.shutdown().await;
    assert_eq!(std::fs::read(&target).unwrap(), b"not an artifact");
    let meta = std::fs::symlink_metadata(&files[0]).unwrap();
    assert!(
        meta.file_type().is_file(),
        "the link was replaced by the artifact"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&outside);
}

/// Each artifact's file name and size, keyed by the job it holds.
fn sizes(dir: &std::path::Path) -> u64 {
    artifacts(dir)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

/// Sets the file's modification time (the cache's record of its last use)
/// to `hours` ago.
fn used_hours_ago(path: &std::path::Path, hours: u64) {
    let when = std::time::SystemTime::now() - std::time::Duration::from_secs(hours * 3600);
    // Windows sets times only through a handle opened for writing.
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

/// The artifact `job` compiles to in a cache of its own, and its size.
async fn artifact_of(job_path: &str) -> (std::path::PathBuf, u64) {
    let dir = temp_dir("cache-one");
    let pool = Pool::builder().workers(1).cache_dir(&dir).build().unwrap();
    pool.prepare(&job(job_path)).await.unwrap();
    pool.shutdown().await;
    let found = artifacts(&dir);
    let name = found[0].file_name().unwrap().into();
    let len = std::fs::metadata(&found[0]).unwrap().len();
    std::fs::remove_dir_all(&dir).unwrap();
    (name, len)
}

#[tokio::test]
async fn the_cache_evicts_least_recently_used_artifacts_past_its_limit() {
    let dir = temp_dir("cache-lru");
    let (fib, cpu, echo) = (
        artifact_of(wasmpool_guests::FIB).await,
        artifact_of(wasmpool_guests::CPU).await,
        artifact_of(wasmpool_guests::ECHO).await,
    );
    let (hello, hello_len) = artifact_of(wasmpool_guests::HELLO).await;
    let first = Pool::builder().workers(1).cache_dir(&dir).build().unwrap();
    for path in [
        wasmpool_guests::FIB,
        wasmpool_guests::CPU,
        wasmpool_guests::ECHO,
    ] {
        first.prepare(&job(path)).await.unwrap();
    }
    first.shutdown().await;
    // Last used: fib 3 hours ago, cpu 2, echo 1.
    used_hours_ago(&dir.join(&fib.0), 3);
    used_hours_ago(&dir.join(&cpu.0), 2);
    used_hours_ago(&dir.join(&echo.0), 1);

    // Room for three: the fourth pushes out the least recently used.
    let limit = cpu.1 + echo.1 + hello_len;
    let second = Pool::builder()
        .workers(1)
        .cache_dir(&dir)
        .cache_limit(limit)
        .build()
        .unwrap();
    second.prepare(&job(wasmpool_guests::HELLO)).await.unwrap();
    assert!(!dir.join(&fib.0).exists(), "the oldest stayed");
    for kept in [&cpu.0, &echo.0, &hello] {
        assert!(dir.join(kept).exists(), "{kept:?} was evicted");
    }
    assert!(sizes(&dir) <= limit);

    // A cache hit counts as a use: cpu is now the newest of the old ones,
    // so the next compile pushes out echo instead.
    second.prepare(&job(wasmpool_guests::CPU)).await.unwrap();
    let limit = cpu.1 + hello_len + fib.1;
    let third = Pool::builder()
        .workers(1)
        .cache_dir(&dir)
        .cache_limit(limit)
        .build()
        .unwrap();
    // Make every artifact but the fresh cpu look old enough to evict.
    used_hours_ago(&dir.join(&echo.0), 1);
    used_hours_ago(&dir.join(&hello), 1);
    third.prepare(&job(wasmpool_guests::FIB)).await.unwrap();
    assert!(!dir.join(&echo.0).exists() || !dir.join(&hello).exists());
    assert!(
        dir.join(&cpu.0).exists(),
        "a recently used artifact was evicted"
    );
    assert!(dir.join(&fib.0).exists(), "the new artifact was evicted");
    second.shutdown().await;
    third.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn artifacts_used_in_the_last_minutes_are_never_evicted() {
    let dir = temp_dir("cache-protect");
    let pool = Pool::builder()
        .workers(1)
        .cache_dir(&dir)
        .cache_limit(1)
        .build()
        .unwrap();
    for path in [wasmpool_guests::FIB, wasmpool_guests::CPU] {
        pool.prepare(&job(path)).await.unwrap();
    }
    // Over the limit, but both are in use.
    assert_eq!(artifacts(&dir).len(), 2);
    assert_eq!(
        pool.run::<u64>(&job(wasmpool_guests::FIB), "fib", (10u64,))
            .await
            .unwrap(),
        55
    );
    pool.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_pool_writes_again_an_artifact_removed_under_it() {
    // Another process evicted it, or someone cleared the cache, while the
    // pool was idle: the next call still finds it, on a fresh worker too.
    let dir = temp_dir("cache-removed");
    let fib = job(wasmpool_guests::FIB);
    let pool = Pool::builder().workers(1).cache_dir(&dir).build().unwrap();
    assert_eq!(pool.run::<u64>(&fib, "fib", (10u64,)).await.unwrap(), 55);
    let files = artifacts(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    for pid in pool.worker_pids() {
        crate::common::sigkill(pid);
    }
    // Past the once-a-second check.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(pool.run::<u64>(&fib, "fib", (20u64,)).await.unwrap(), 6_765);
    assert_eq!(artifacts(&dir), files);
    pool.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
