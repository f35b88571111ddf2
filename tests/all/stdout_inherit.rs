//! "Print just works": a guest's stdout reaches the host's stdout.
//!
//! The test runs this test binary again as a child with its stdout piped,
//! since the test harness does not capture what worker processes write.

use std::process::Command;

use crate::common;

const CHILD_ENV: &str = "WASMPOOL_TEST_PRINT_CHILD";

#[test]
fn guest_println_reaches_the_host_stdout() {
    if std::env::var_os(CHILD_ENV).is_some() {
        // The child: call the guest; its output goes to our stdout.
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let pool = common::pool(1);
            let hello = common::job(wasmpool_guests::HELLO);
            let s: String = pool.run(&hello, "hello", ("stdout test",)).await.unwrap();
            assert_eq!(s, "greeted stdout test");
            pool.shutdown().await;
        });
        return;
    }
    let name = common::test_name(module_path!(), "guest_println_reaches_the_host_stdout");
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name.as_str(), "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed: {stdout}\n{stderr}");
    assert!(
        stdout.contains("hello from wasm, stdout test!"),
        "stdout was: {stdout}"
    );
    assert!(
        stderr.contains("a note on stderr for stdout test"),
        "stderr was: {stderr}"
    );
    assert!(
        !stdout.contains("a note on stderr"),
        "stderr leaked into stdout: {stdout}"
    );
}
