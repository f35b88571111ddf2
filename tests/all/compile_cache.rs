//! The persistent compile cache: a later pool (or a later run of the
//! program) loads the artifact instead of compiling again.

use std::os::unix::fs::MetadataExt;

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
    assert_eq!((before.ino(), before.mtime()), (after.ino(), after.mtime()));

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
