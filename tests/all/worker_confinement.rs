//! The second wall: what the kernel says of a worker process (no new
//! privileges, a seccomp filter, rlimits), and what the worker can and
//! cannot do natively when it tries, as a guest that broke out of wasmtime
//! would.

use std::path::{Path, PathBuf};

use wasmpool::{DirAccess, Pool};

use crate::common::{eventually, job, pool, temp_dir};

/// The value of `field` in `/proc/<pid>/status`.
fn status_field(pid: u32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// The soft and hard values of the limit whose line starts with `name` in
/// `/proc/<pid>/limits`.
fn limit(pid: u32, name: &str) -> Vec<String> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with(name)).unwrap();
    let words: Vec<String> = line[name.len()..]
        .split_whitespace()
        .map(String::from)
        .collect();
    words[..2].to_vec()
}

/// Asks a worker of `pool` to try to escape; returns each attempt and how
/// it ended.
async fn attempt(
    pool: &Pool,
    outside: &Path,
    readonly: Option<PathBuf>,
    exec: bool,
) -> Vec<(String, String)> {
    let fib = job(wasmpool_guests::FIB);
    pool.call::<Vec<(String, String)>>(&fib, "fib", (1u64,))
        .attempt_escape(outside, readonly, exec)
        .await
        .unwrap()
}

/// A directory with a file in it, and another outside every preopen.
fn dirs(name: &str) -> (PathBuf, PathBuf) {
    let root = temp_dir(name);
    let granted = root.join("granted");
    std::fs::create_dir_all(&granted).unwrap();
    std::fs::write(granted.join("inside.txt"), "inside").unwrap();
    std::fs::create_dir_all(root.join("elsewhere")).unwrap();
    let outside = root.join("elsewhere/secret.txt");
    std::fs::write(&outside, "secret").unwrap();
    (granted, outside)
}

#[tokio::test]
async fn a_worker_has_no_new_privileges_a_seccomp_filter_and_limits() {
    let pool = pool(1);
    let fib = job(wasmpool_guests::FIB);
    let n: u64 = pool.run(&fib, "fib", (10u64,)).await.unwrap();
    assert_eq!(n, 55);
    let pid = pool.worker_pids()[0];

    assert_eq!(status_field(pid, "NoNewPrivs").as_deref(), Some("1"));
    // 2: a seccomp filter (1 is strict mode, 0 none).
    assert_eq!(status_field(pid, "Seccomp").as_deref(), Some("2"));
    assert_eq!(limit(pid, "Max core file size"), ["0", "0"]);
    let files = limit(pid, "Max open files");
    for v in &files {
        assert!(v.parse::<u64>().unwrap() <= 4096, "open files {files:?}");
    }

    // The host itself is left as it was.
    let own = std::process::id();
    assert_eq!(status_field(own, "NoNewPrivs").as_deref(), Some("0"));
    assert_eq!(status_field(own, "Seccomp").as_deref(), Some("0"));
    pool.shutdown().await;
}

#[tokio::test]
async fn a_confined_worker_cannot_escape_natively() {
    let (granted, outside) = dirs("escape");
    let pool = Pool::builder()
        .workers(1)
        .preopen_dir(&granted, "/data", DirAccess::ReadOnly)
        .build()
        .unwrap();
    let tried = attempt(&pool, &outside, Some(granted.clone()), false).await;
    let what: Vec<&str> = tried
        .iter()
        .map(|(w, _)| w.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        what,
        ["open", "open", "create", "socket", "fork"],
        "{tried:?}"
    );
    for (what, how) in &tried {
        assert_ne!(how, "ok", "{what} worked in a confined worker: {tried:?}");
    }
    assert!(!granted.join("escaped").exists());

    // The worker survives its attempts, and a failed exec leaves it be.
    let pid = pool.worker_pids()[0];
    let tried = attempt(&pool, &outside, None, true).await;
    let (what, how) = tried.last().unwrap();
    assert_eq!(what, "execve /bin/sh");
    assert_ne!(how, "ok");
    assert_eq!(pool.worker_pids(), [pid]);

    // What the pool grants still works, natively and for the guest.
    let inside = granted.join("inside.txt");
    let tried = attempt(&pool, &inside, None, false).await;
    assert_eq!(tried[1].1, "ok", "{tried:?}");
    let sandbox = job(wasmpool_guests::SANDBOX);
    let read: Result<String, String> = pool
        .run(&sandbox, "read-file", ("/data/inside.txt",))
        .await
        .unwrap();
    assert_eq!(read, Ok("inside".to_string()));
    assert_eq!(pool.worker_pids(), [pid]);
    pool.shutdown().await;
}

#[tokio::test]
async fn an_unconfined_worker_can_do_what_a_confined_one_cannot() {
    // The control for the test above: the same attempts work without the
    // wall, so it is the wall that stops them.
    let (granted, outside) = dirs("unconfined");
    let pool = Pool::builder()
        .workers(1)
        .confine(false)
        .preopen_dir(&granted, "/data", DirAccess::ReadOnly)
        .build()
        .unwrap();
    let tried = attempt(&pool, &outside, Some(granted.clone()), false).await;
    assert_eq!(tried.len(), 5);
    for (what, how) in &tried {
        assert_eq!(how, "ok", "{what} failed in an unconfined worker");
    }
    let pid = pool.worker_pids()[0];
    assert_eq!(status_field(pid, "Seccomp").as_deref(), Some("0"));
    pool.shutdown().await;
}

#[tokio::test]
async fn a_call_that_preopens_its_own_directory_gets_a_worker_granted_it() {
    let (granted, outside) = dirs("per-call");
    let pool = pool(1);
    let fib = job(wasmpool_guests::FIB);
    let n: u64 = pool.run(&fib, "fib", (10u64,)).await.unwrap();
    assert_eq!(n, 55);
    let plain = pool.worker_pids();

    let sandbox = job(wasmpool_guests::SANDBOX);
    let read = |path: &'static str| {
        pool.call::<Result<String, String>>(&sandbox, "read-file", (path,))
            .preopen_dir(&granted, "/data", DirAccess::ReadOnly)
    };
    assert_eq!(read("/data/inside.txt").await.unwrap(), Ok("inside".into()));
    // A pool of one replaces its idle worker rather than grow.
    eventually("the first worker to go", || pool.worker_pids().len() == 1).await;
    let per_call = pool.worker_pids();
    assert_ne!(per_call, plain, "a worker granted nothing served the call");
    // Kept for the next call with the same directory...
    assert_eq!(read("/data/inside.txt").await.unwrap(), Ok("inside".into()));
    assert_eq!(pool.worker_pids(), per_call);
    // ...which it can reach natively, while it cannot reach others.
    let tried = pool
        .call::<Vec<(String, String)>>(&fib, "fib", (1u64,))
        .preopen_dir(&granted, "/data", DirAccess::ReadOnly)
        .attempt_escape(&outside, None, false)
        .await
        .unwrap();
    assert_ne!(tried[1].1, "ok", "{tried:?}");
    assert_eq!(pool.worker_pids(), per_call);

    // A call without it gets a worker that cannot reach it.
    let tried = attempt(&pool, &granted.join("inside.txt"), None, false).await;
    assert_ne!(tried[1].1, "ok", "{tried:?}");
    eventually("the second worker to go", || pool.worker_pids().len() == 1).await;
    assert_ne!(pool.worker_pids(), per_call);
    assert_eq!(pool.statistics().spawned, 3);
    pool.shutdown().await;
}
