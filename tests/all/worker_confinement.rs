//! What the kernel says of a worker process: it can gain no privileges
//! and dumps no core.

use crate::common::{job, pool};

#[tokio::test]
async fn a_worker_has_no_new_privileges_and_no_core_dumps() {
    let pool = pool(1);
    let fib = job(wasmpool_guests::FIB);
    let n: u64 = pool.run(&fib, "fib", (10u64,)).await.unwrap();
    assert_eq!(n, 55);
    let pid = pool.worker_pids()[0];

    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let no_new_privs = status
        .lines()
        .find_map(|l| l.strip_prefix("NoNewPrivs:"))
        .map(str::trim);
    assert_eq!(no_new_privs, Some("1"), "{status}");

    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    // "Max core file size  <soft>  <hard>  bytes"
    assert_eq!(core.get(4..6), Some(&["0", "0"][..]), "{limits}");

    // The host itself is left as it was.
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    assert!(
        own.contains("NoNewPrivs:\t0"),
        "the test process was confined"
    );
    pool.shutdown().await;
}
