//! Workers die with their host, even when the host is killed with SIGKILL
//! and has no chance to clean up.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const CHILD_ENV: &str = "WASMPOOL_TEST_HOST_EXIT_CHILD";

#[test]
fn workers_exit_when_the_host_is_killed() {
    if std::env::var_os(CHILD_ENV).is_some() {
        // The child host: start two busy workers, report their pids, wait.
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let pool = common::pool(2);
            let faults = common::job(wasmpool_guests::FAULTS);
            for _ in 0..2 {
                let (pool, faults) = (pool.clone(), faults.clone());
                tokio::spawn(async move { pool.run::<()>(&faults, "spin-forever", ()).await });
            }
            common::eventually("both workers busy", || pool.statistics().busy == 2).await;
            let pids: Vec<String> = pool.worker_pids().iter().map(u32::to_string).collect();
            println!("pids {}", pids.join(" "));
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        return;
    }
    let mut host = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "workers_exit_when_the_host_is_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(host.stdout.take().unwrap());
    while !line.starts_with("pids ") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the child host ended early"
        );
    }
    let pids: Vec<u32> = line["pids ".len()..]
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|&p| common::alive(p)));

    common::sigkill(host.id());
    host.wait().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(common::eventually("orphaned workers to exit", || {
        pids.iter().all(|&p| !common::alive(p))
    }));
}
