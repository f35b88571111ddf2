//! Workers die with their host, even when the host is killed with SIGKILL
//! and has no chance to clean up.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common;

const CHILD_ENV: &str = "WASMPOOL_TEST_HOST_EXIT_CHILD";

#[test]
fn workers_exit_when_the_host_is_killed() {
    if let Some(report) = std::env::var_os(CHILD_ENV) {
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
            let tmp = std::path::PathBuf::from(&report).with_extension("tmp");
            std::fs::write(&tmp, pids.join(" ")).unwrap();
            std::fs::rename(&tmp, &report).unwrap();
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        return;
    }
    let report = std::env::temp_dir().join(format!("wasmpool-host-exit-{}", std::process::id()));
    let _ = std::fs::remove_file(&report);
    let name = common::test_name(module_path!(), "workers_exit_when_the_host_is_killed");
    let mut host = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name.as_str(), "--test-threads=1"])
        .env(CHILD_ENV, &report)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(common::eventually("the child host to report", || {
        report.exists()
    }));
    let pids: Vec<u32> = std::fs::read_to_string(&report)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    std::fs::remove_file(&report).unwrap();
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|&p| common::alive(p)));

    common::sigkill(host.id());
    host.wait().unwrap();
    rt.block_on(common::eventually("orphaned workers to exit", || {
        pids.iter().all(|&p| !common::alive(p))
    }));
}
