//! The chaos soak: many callers, every kind of failure a guest can cause,
//! and workers killed from outside, all at once. It checks that every call
//! ends, with its right result or its right error, that the host does not
//! grow, and that nothing is left behind.
//!
//! Run with: `cargo run --release --example chaos` (100,000 jobs, about
//! two minutes here), or `-- --jobs 5000` for a short run.
//!
//! 64 callers share a pool of 2 process workers. Of the jobs, about 70%
//! are good calls whose results are checked; the rest are traps, panics,
//! infinite loops and sleeps under a timeout, growth past `max_memory`,
//! stack overflows, wrong argument types, calls dropped while they run and
//! calls dropped with `Cancel::Kill`. Every 250 ms a random worker is
//! killed with SIGKILL from outside, as the OOM killer or an operator
//! would.
//!
//! It exits with an error unless: no call is lost or hangs, no call ends
//! with the wrong error, at most one call per outside kill fails for it,
//! the host's memory grows less than 10% after warm-up, and no worker or
//! zombie is left after `shutdown()`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmpool::{Cancel, ErrorKind, Job, Limit, Pool, Stdio, TrapCode};

const CALLERS: usize = 64;
const WORKERS: usize = 2;
const KILL_EVERY: Duration = Duration::from_millis(250);
/// Longer than any call can take; a call that takes longer has hung.
const HUNG_AFTER: Duration = Duration::from_secs(60);
/// The timeout of the calls that loop or sleep forever.
const TIMEOUT: Duration = Duration::from_millis(10);

/// What a job does, and so how it must end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Good,
    Trap,
    Panic,
    Loop,
    Sleep,
    OutOfMemory,
    StackOverflow,
    WrongArgs,
    Dropped,
    KillDropped,
}

const FAULTS: [Kind; 9] = [
    Kind::Trap,
    Kind::Panic,
    Kind::Loop,
    Kind::Sleep,
    Kind::OutOfMemory,
    Kind::StackOverflow,
    Kind::WrongArgs,
    Kind::Dropped,
    Kind::KillDropped,
];

/// How a job ended, as the soak judges it.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// The right result, or the right error.
    Right,
    /// `WorkerCrashed`: its worker was killed from outside during the call.
    LostToKill,
    Wrong(String),
    Hung,
}

/// How the jobs of a caller ended.
#[derive(Default)]
struct Tally {
    by_kind: std::collections::BTreeMap<Kind, u64>,
    lost_to_kills: u64,
    hung: u64,
    wrong: u64,
    /// The first few wrong endings, to show.
    samples: Vec<(Kind, String)>,
}

impl Tally {
    fn add(&mut self, kind: Kind, verdict: Verdict) {
        *self.by_kind.entry(kind).or_insert(0) += 1;
        match verdict {
            Verdict::Right => {}
            Verdict::LostToKill => self.lost_to_kills += 1,
            Verdict::Hung => self.hung += 1,
            Verdict::Wrong(what) => {
                self.wrong += 1;
                if self.samples.len() < 5 {
                    self.samples.push((kind, what));
                }
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        for (k, n) in other.by_kind {
            *self.by_kind.entry(k).or_insert(0) += n;
        }
        self.lost_to_kills += other.lost_to_kills;
        self.hung += other.hung;
        self.wrong += other.wrong;
        self.samples.extend(other.samples);
        self.samples.truncate(5);
    }
}

/// splitmix64: the job's kind and argument from its number, so that a run
/// can be repeated.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn kind_of(i: u64) -> Kind {
    let r = mix(i);
    if r % 100 < 70 {
        Kind::Good
    } else {
        FAULTS[(r >> 8) as usize % FAULTS.len()]
    }
}

fn fib(n: u64) -> u64 {
    let (mut a, mut b) = (0u64, 1u64);
    for _ in 0..n {
        (a, b) = (b, a.wrapping_add(b));
    }
    a
}

/// Runs job `i` and judges how it ended.
async fn run_one(pool: &Pool, faults: &Job, fibj: &Job, i: u64) -> (Kind, Verdict) {
    let kind = kind_of(i);
    let judged = async {
        let expect = |r: Result<(), wasmpool::Error>, ok: &dyn Fn(&wasmpool::Error) -> bool| match r
        {
            Ok(()) => Verdict::Wrong("succeeded".into()),
            Err(e) if e.kind() == ErrorKind::WorkerCrashed => Verdict::LostToKill,
            Err(e) if ok(&e) => Verdict::Right,
            Err(e) => Verdict::Wrong(format!("{e:?}")),
        };
        match kind {
            Kind::Good => {
                let n = mix(i) >> 40 & 31;
                match pool.run::<u64>(fibj, "fib", (n,)).await {
                    Ok(v) if v == fib(n) => Verdict::Right,
                    Ok(v) => Verdict::Wrong(format!("fib({n}) = {v}")),
                    Err(e) if e.kind() == ErrorKind::WorkerCrashed => Verdict::LostToKill,
                    Err(e) => Verdict::Wrong(format!("{e:?}")),
                }
            }
            Kind::Trap => expect(
                pool.run::<i32>(faults, "divide", (1, 0)).await.map(drop),
                &|e| e.trap_code() == Some(TrapCode::IntegerDivisionByZero),
            ),
            Kind::Panic => expect(pool.run::<()>(faults, "panic", ("chaos",)).await, &|e| {
                e.kind() == ErrorKind::Trap && e.panic_message() == Some("chaos")
            }),
            Kind::Loop => expect(
                pool.call::<()>(faults, "spin-forever", ())
                    .timeout(TIMEOUT)
                    .await,
                &|e| e.kind() == ErrorKind::Timeout,
            ),
            Kind::Sleep => expect(
                pool.call::<()>(faults, "sleep", (3_600_000u64,))
                    .timeout(TIMEOUT)
                    .await,
                &|e| e.kind() == ErrorKind::Timeout,
            ),
            Kind::OutOfMemory => expect(
                pool.call::<u64>(faults, "alloc", (32u64 << 20,))
                    .max_memory(16 << 20)
                    .await
                    .map(drop),
                &|e| e.limit() == Some(Limit::Memory),
            ),
            Kind::StackOverflow => expect(
                pool.run::<u64>(faults, "recurse", (u64::MAX,))
                    .await
                    .map(drop),
                &|e| e.limit() == Some(Limit::Stack),
            ),
            Kind::WrongArgs => expect(
                pool.run::<u64>(fibj, "fib", ("thirty",)).await.map(drop),
                &|e| e.kind() == ErrorKind::ArgumentMismatch,
            ),
            Kind::Dropped | Kind::KillDropped => {
                let mode = if kind == Kind::Dropped {
                    Cancel::Interrupt
                } else {
                    Cancel::Kill
                };
                let handle = pool
                    .call::<()>(faults, "spin-forever", ())
                    .on_cancel(mode)
                    .spawn();
                // Dropped once it runs on a worker, not while it queues.
                while handle.pid().is_none() && !handle.is_finished() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                if handle.is_finished() {
                    return match handle.await {
                        Err(e) if e.kind() == ErrorKind::WorkerCrashed => Verdict::LostToKill,
                        r => Verdict::Wrong(format!("an endless call ended: {r:?}")),
                    };
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
                drop(handle);
                Verdict::Right
            }
        }
    };
    match tokio::time::timeout(HUNG_AFTER, judged).await {
        Ok(v) => (kind, v),
        Err(_) => (kind, Verdict::Hung),
    }
}

/// This process's resident memory, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Processes whose parent is this one, zombies included.
fn children() -> Vec<u32> {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("PPid:"))
                        .map(|p| p.trim() == me)
                })
                .unwrap_or(false)
        })
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let jobs: u64 = match args.iter().position(|a| a == "--jobs") {
        Some(i) => args.get(i + 1).ok_or("--jobs needs a number")?.parse()?,
        None => 100_000,
    };
    let faults = Arc::new(Job::from_file(wasmpool_guests::FAULTS)?);
    let fibj = Arc::new(Job::from_file(wasmpool_guests::FIB)?);
    let pool = Pool::builder()
        .workers(WORKERS)
        .grace(Duration::from_millis(200))
        // The guests' panic messages would drown the report.
        .stderr(Stdio::Discard)
        .build()?;
    pool.prepare(&faults).await?;
    pool.prepare(&fibj).await?;

    let next = Arc::new(AtomicU64::new(0));
    let warm_at = jobs / 10;
    let rss_warm = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));

    // The outside killer.
    let kills = Arc::new(AtomicU64::new(0));
    let killer = {
        let pool = pool.clone();
        let kills = kills.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !done.load(Ordering::Relaxed) {
                tokio::time::sleep(KILL_EVERY).await;
                let pids = pool.worker_pids();
                if pids.is_empty() {
                    continue;
                }
                n += 1;
                let pid = pids[mix(n) as usize % pids.len()];
                if kill_from_outside(pid) {
                    kills.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let started = Instant::now();
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..CALLERS {
        let (pool, faults, fibj) = (pool.clone(), faults.clone(), fibj.clone());
        let (next, rss_warm) = (next.clone(), rss_warm.clone());
        callers.spawn(async move {
            // Counts, not a record of every job: the soak must not be what
            // makes the host grow.
            let mut tally = Tally::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= jobs {
                    return tally;
                }
                if i == warm_at {
                    rss_warm.store(rss_kib(), Ordering::Relaxed);
                }
                if jobs >= 10 && i % (jobs / 10) == 0 {
                    eprintln!("{:>3}% host RSS {} KiB", i * 100 / jobs, rss_kib());
                }
                let (kind, verdict) = run_one(&pool, &faults, &fibj, i).await;
                tally.add(kind, verdict);
            }
        });
    }
    let mut tally = Tally::default();
    while let Some(t) = callers.join_next().await {
        tally.merge(t?);
    }
    let took = started.elapsed();
    done.store(true, Ordering::Relaxed);
    killer.await?;
    let rss_end = rss_kib();
    let stats = pool.statistics();
    pool.shutdown().await;
    let left = pool.worker_pids().len();
    let zombies = children().len();

    let kills = kills.load(Ordering::Relaxed);
    let ended: u64 = tally.by_kind.values().sum();
    let lost = jobs - ended;
    let good = tally.by_kind.get(&Kind::Good).copied().unwrap_or(0);
    let rss_warm = rss_warm.load(Ordering::Relaxed).max(1);
    let growth = (rss_end as f64 / rss_warm as f64 - 1.0) * 100.0;

    println!(
        "jobs {jobs} in {:.1} s: {:.0} jobs/s",
        took.as_secs_f64(),
        jobs as f64 / took.as_secs_f64()
    );
    println!(
        "good calls checked {good} ({:.0}%)",
        good as f64 * 100.0 / jobs as f64
    );
    println!("by kind {:?}", tally.by_kind);
    println!(
        "outside kills {kills}, calls lost to them {}",
        tally.lost_to_kills
    );
    println!(
        "workers spawned {}, crashed {}, killed {}",
        stats.spawned, stats.crashed, stats.killed
    );
    println!(
        "lost {lost}, hung {}, wrong error kind {}",
        tally.hung, tally.wrong
    );
    println!("host RSS {rss_warm} KiB after warm-up, {rss_end} KiB at the end ({growth:+.1}%)");
    println!("after shutdown: workers {left}, child processes or zombies {zombies}");
    for (k, what) in &tally.samples {
        println!("  wrong: {k:?} {what}");
    }

    let mut failed = Vec::new();
    if lost > 0 {
        failed.push("calls were lost");
    }
    if tally.hung > 0 {
        failed.push("calls hung");
    }
    if tally.wrong > 0 {
        failed.push("calls ended with the wrong error");
    }
    if tally.lost_to_kills > kills {
        failed.push("more calls failed than workers were killed");
    }
    if growth >= 10.0 {
        failed.push("the host grew by 10% or more");
    }
    if left > 0 || zombies > 0 {
        failed.push("workers were left behind");
    }
    if failed.is_empty() {
        println!("chaos: ok");
        Ok(())
    } else {
        Err(failed.join(", ").into())
    }
}

/// Kills process `pid` as an outsider would (`kill -9`, `taskkill /F`);
/// whether it was sent.
#[cfg(unix)]
fn kill_from_outside(pid: u32) -> bool {
    // SAFETY: kill has no memory-safety preconditions; the pid is a worker
    // of this pool, not yet reaped.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) == 0 }
}

#[cfg(windows)]
fn kill_from_outside(pid: u32) -> bool {
    std::process::Command::new("taskkill")
        .args(["/F", "/PID", &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
