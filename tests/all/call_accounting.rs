//! What a call cost ([`wasmpool::Usage`]): wall and CPU time, peak
//! memory, bytes in and out, and fuel, measured by real workers on real
//! guests. The bounds are loose on purpose: a slow or busy machine must
//! not fail them.

use std::time::Duration;

use wasmpool::{Pool, WorkerKind};

use crate::common::job;

/// Slack for comparing CPU time with wall time: the clocks are read one
/// after the other, and Windows adds CPU time a clock tick (up to
/// 15.6 ms) at a time.
const SLACK: Duration = Duration::from_millis(if cfg!(windows) { 20 } else { 1 });

/// A `fib` argument whose call takes a few milliseconds of CPU; on Windows
/// several clock ticks, so that its CPU time cannot read 0.
const CPU_BOUND: u64 = if cfg!(windows) { 32 } else { 27 };

fn fib(n: u64) -> u64 {
    (0..n).fold((0, 1), |(a, b), _| (b, a + b)).0
}

fn one_worker(kind: WorkerKind) -> Pool {
    Pool::builder()
        .workers(1)
        .worker_kind(kind)
        .grace(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_cpu_bound_call_reports_its_cpu_time_within_its_wall_time() {
    let fib_job = job(wasmpool_guests::FIB);
    for kind in [WorkerKind::Process, WorkerKind::Thread] {
        let pool = one_worker(kind);
        let out = pool
            .call::<u64>(&fib_job, "fib", (CPU_BOUND,))
            .report()
            .await
            .unwrap();
        assert_eq!(out.value, fib(CPU_BOUND));
        let usage = out.usage;
        let cpu = usage
            .cpu
            .expect("Linux and Windows count a thread's CPU time");
        assert!(cpu.total() > Duration::ZERO, "{kind:?}: {usage:?}");
        assert!(usage.wall > Duration::ZERO, "{kind:?}: {usage:?}");
        assert!(
            cpu.total() <= usage.wall + SLACK,
            "{kind:?}: more CPU than wall time: {usage:?}"
        );
        pool.shutdown().await;
    }
}

#[tokio::test]
async fn a_blocked_guest_spends_wall_time_but_little_cpu() {
    let pool = one_worker(WorkerKind::Process);
    let echo = job(wasmpool_guests::ECHO);
    let out = pool
        .call::<serde_bytes::ByteBuf>(&echo, "echo-after", (serde_bytes::Bytes::new(b"x"), 200u64))
        .report()
        .await
        .unwrap();
    let usage = out.usage;
    assert!(usage.wall >= Duration::from_millis(200), "{usage:?}");
    let cpu = usage.cpu.unwrap();
    assert!(
        cpu.total() < usage.wall / 2,
        "a sleep is not CPU time: {usage:?}"
    );
    pool.shutdown().await;
}

#[tokio::test]
async fn peak_memory_covers_what_the_guest_grew_to() {
    const GREW: u64 = 16 << 20;
    let faults = job(wasmpool_guests::FAULTS);
    for (kind, reuse) in [
        (WorkerKind::Process, false),
        (WorkerKind::Thread, false),
        (WorkerKind::Process, true),
    ] {
        let pool = Pool::builder()
            .workers(1)
            .worker_kind(kind)
            .reuse_instances(reuse)
            .build()
            .unwrap();
        // A small call first: its instance's initial memory, no more.
        let small = pool
            .call::<i32>(&faults, "divide", (6i32, 3i32))
            .report()
            .await
            .unwrap();
        let initial = small.usage.peak_memory;
        assert!(initial > 0, "{kind:?}: an instance has memory: {small:?}");
        assert!(initial < GREW, "{kind:?}: {small:?}");
        let big = pool
            .call::<u64>(&faults, "alloc", (GREW,))
            .report()
            .await
            .unwrap();
        assert_eq!(big.value, GREW / 4096);
        assert!(
            big.usage.peak_memory >= GREW,
            "{kind:?} reuse {reuse}: {:?}",
            big.usage
        );
        // Generous: the allocator may double, and there is the initial
        // memory; never gigabytes.
        assert!(big.usage.peak_memory < 4 * GREW, "{:?}", big.usage);
        let after = pool
            .call::<i32>(&faults, "divide", (6i32, 3i32))
            .report()
            .await
            .unwrap();
        if reuse {
            // The kept instance starts where it had grown to.
            assert!(after.usage.peak_memory >= GREW, "{:?}", after.usage);
        } else {
            assert_eq!(
                after.usage.peak_memory, initial,
                "a fresh instance each call"
            );
        }
        pool.shutdown().await;
    }
}

#[tokio::test]
async fn bytes_in_and_out_are_the_encoded_arguments_and_result() {
    const MIB: usize = 1 << 20;
    let echo = job(wasmpool_guests::ECHO);
    let data = serde_bytes::ByteBuf::from(vec![7u8; MIB]);
    // A process worker takes a 1 MiB payload through its shared region, a
    // thread in memory: both count it.
    for kind in [WorkerKind::Process, WorkerKind::Thread] {
        let pool = one_worker(kind);
        let out = pool
            .call::<serde_bytes::ByteBuf>(&echo, "echo-bytes", (&data,))
            .report()
            .await
            .unwrap();
        assert_eq!(out.value.len(), MIB);
        let usage = out.usage;
        // A one-element array, a bin32 header and the bytes.
        assert_eq!(usage.bytes_in, MIB as u64 + 6, "{kind:?}: {usage:?}");
        assert_eq!(usage.bytes_out, MIB as u64 + 5, "{kind:?}: {usage:?}");

        let out = pool
            .call::<u64>(&echo, "byte-len", (&data,))
            .report()
            .await
            .unwrap();
        assert_eq!(out.value, MIB as u64);
        assert!(out.usage.bytes_in >= MIB as u64, "{:?}", out.usage);
        assert_eq!(
            out.usage.bytes_out, 5,
            "a u32-sized integer: {:?}",
            out.usage
        );

        let out = pool.call::<()>(&echo, "noop", ()).report().await.unwrap();
        assert_eq!(
            (out.usage.bytes_in, out.usage.bytes_out),
            (1, 1),
            "an empty array in, nil out"
        );
        pool.shutdown().await;
    }
}

#[tokio::test]
async fn a_metered_call_reports_fuel_beside_its_usage() {
    let pool = Pool::builder().workers(1).fuel(u64::MAX).build().unwrap();
    let fib_job = job(wasmpool_guests::FIB);
    let out = pool
        .call::<u64>(&fib_job, "fib", (CPU_BOUND,))
        .report()
        .await
        .unwrap();
    assert_eq!(out.value, fib(CPU_BOUND));
    assert!(out.fuel_consumed.unwrap() > 10_000, "{out:?}");
    assert!(out.usage.cpu.unwrap().total() > Duration::ZERO, "{out:?}");
    assert!(out.usage.peak_memory > 0, "{out:?}");
    pool.shutdown().await;
}
