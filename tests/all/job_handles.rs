//! `Pool::spawn` and `JobHandle`: the result, cancel and kill, the pid,
//! and the duplex channel between the handle and a real guest.

use std::time::Duration;

use crate::common::{alive, eventually, job, pool};
use wasmpool::{ErrorKind, Pool, WorkerKind};

fn coop() -> wasmpool::Job {
    job(wasmpool_guests::COOP)
}

#[tokio::test]
async fn values_stream_both_ways_until_end_of_input() {
    let pool = pool(1);
    let job = coop();
    let handle = pool.spawn::<u64>(&job, "double-stream", ());
    // Far more values than either direction buffers: sending and
    // receiving must overlap.
    let send = async {
        for x in 0..1000u64 {
            handle.send(&x).await.unwrap();
        }
        handle.close();
    };
    let recv = async {
        let mut got = Vec::new();
        while let Some(y) = handle.recv::<u64>().await.unwrap() {
            got.push(y);
        }
        got
    };
    let ((), got) = tokio::join!(send, recv);
    assert_eq!(got, (0..1000u64).map(|x| 2 * x).collect::<Vec<_>>());
    eventually("the handle to finish", || handle.is_finished()).await;
    assert_eq!(handle.await.unwrap(), 1000);
}

#[tokio::test]
async fn progress_arrives_while_the_job_runs() {
    let pool = pool(1);
    let job = coop();
    let handle = pool.spawn::<u64>(&job, "progress", (200u64,));
    // The first value arrives before the guest has finished: it blocks
    // once its 64-value buffer is full.
    assert_eq!(handle.recv::<u64>().await.unwrap(), Some(1));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!handle.is_finished(), "the guest waits for room");
    let mut last = 1;
    while let Some(i) = handle.recv::<u64>().await.unwrap() {
        assert_eq!(i, last + 1);
        last = i;
    }
    assert_eq!(last, 200);
    assert_eq!(handle.await.unwrap(), 200);
}

#[tokio::test]
async fn a_job_without_a_handle_has_no_input_and_nowhere_to_emit() {
    let pool = pool(1);
    let job = coop();
    let n: u64 = pool.run(&job, "double-stream", ()).await.unwrap();
    assert_eq!(n, 0);
    let err = pool
        .run::<u64>(&job, "progress", (3u64,))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Trap);
    assert!(
        err.panic_message().unwrap_or_default().contains("closed"),
        "{err:?}"
    );
}

#[tokio::test]
async fn cancel_wakes_a_guest_blocked_in_recv_and_keeps_the_worker() {
    let pool = pool(1);
    let job = coop();
    let handle = pool.spawn::<u64>(&job, "double-stream", ());
    eventually("the job to start", || handle.pid().is_some()).await;
    let pid = handle.pid().unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!handle.is_finished());
    handle.cancel();
    let err = tokio::time::timeout(Duration::from_secs(20), handle)
        .await
        .expect("the cancel wakes the guest")
        .unwrap_err();
    assert!(err.is_cancelled(), "{err:?}");
    assert_eq!(pool.statistics().killed, 0);
    // The same worker serves the next job.
    let next = pool.spawn::<u64>(&job, "progress", (1u64,));
    assert_eq!(next.recv::<u64>().await.unwrap(), Some(1));
    assert_eq!(next.pid(), Some(pid));
    assert_eq!(next.await.unwrap(), 1);
}

#[tokio::test]
async fn kill_ends_the_worker_process() {
    let pool = pool(1);
    let job = coop();
    let handle = pool.spawn::<u64>(&job, "double-stream", ());
    eventually("the job to start", || handle.pid().is_some()).await;
    let pid = handle.pid().unwrap();
    handle.kill();
    let err = handle.await.unwrap_err();
    assert!(err.is_cancelled(), "{err:?}");
    eventually("the worker to die", || !alive(pid)).await;
    assert_eq!(pool.statistics().killed, 1);
    // A new worker takes its place.
    let n: u64 = pool.run(&job, "square", (9u64,)).await.unwrap();
    assert_eq!(n, 81);
}

#[tokio::test]
async fn dropping_the_handle_cancels_the_job() {
    let pool = pool(1);
    let job = coop();
    let handle = pool.spawn::<u64>(&job, "double-stream", ());
    eventually("the job to start", || handle.pid().is_some()).await;
    drop(handle);
    // The only worker is free again.
    let n: u64 = tokio::time::timeout(Duration::from_secs(20), pool.run(&job, "square", (3u64,)))
        .await
        .expect("the worker was freed")
        .unwrap();
    assert_eq!(n, 9);
}

#[tokio::test]
async fn a_trap_fails_the_handle_and_ends_the_stream() {
    let pool = pool(1);
    let job = coop();
    let q = pool.joinable_queue::<u64>("in", 0).unwrap();
    let _log = pool.queue::<u64>("log", 0).unwrap();
    q.put(&5).await.unwrap();
    let handle = pool.spawn::<()>(&job, "take-and-trap", ("in", "log"));
    assert_eq!(handle.recv::<u64>().await.unwrap(), None);
    let err = handle.await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Trap);
}

#[tokio::test]
async fn sending_after_the_job_ended_is_a_closed_error() {
    let pool = pool(1);
    let job = coop();
    let handle = pool.spawn::<u64>(&job, "progress", (0u64,));
    assert_eq!(handle.recv::<u64>().await.unwrap(), None);
    let err = handle.send(&1u64).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed);
    assert_eq!(handle.await.unwrap(), 0);
}

#[tokio::test]
async fn thread_workers_stream_and_cancel_too() {
    let pool = Pool::builder()
        .workers(1)
        .worker_kind(WorkerKind::Thread)
        .build()
        .unwrap();
    let job = coop();
    let handle = pool.spawn::<u64>(&job, "double-stream", ());
    handle.send(&21u64).await.unwrap();
    assert_eq!(handle.recv::<u64>().await.unwrap(), Some(42));
    assert_eq!(handle.pid(), None);
    handle.cancel();
    assert!(handle.await.unwrap_err().is_cancelled());
    let handle = pool.spawn::<u64>(&job, "double-stream", ());
    handle.send(&1u64).await.unwrap();
    handle.close();
    assert_eq!(handle.recv::<u64>().await.unwrap(), Some(2));
    assert_eq!(handle.recv::<u64>().await.unwrap(), None);
    assert_eq!(handle.await.unwrap(), 1);
}

#[tokio::test]
async fn a_value_of_the_wrong_type_is_a_result_mismatch() {
    let pool = pool(1);
    let job = coop();
    let handle = pool.spawn::<u64>(&job, "progress", (1u64,));
    let err = handle.recv::<String>().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ResultMismatch);
    assert_eq!(handle.await.unwrap(), 1);
}

#[tokio::test]
async fn dropping_the_handle_of_a_finishing_job_ends_its_input() {
    let pool = pool(1);
    let job = coop();
    let handle = pool
        .call::<u64>(&job, "double-stream", ())
        .on_cancel(wasmpool::Cancel::Finish)
        .spawn();
    handle.send(&1u64).await.unwrap();
    eventually("the job to start", || handle.pid().is_some()).await;
    // The job runs on to completion: its `recv` must see the end of input
    // rather than wait for ever.
    drop(handle);
    let n: u64 = tokio::time::timeout(Duration::from_secs(20), pool.run(&job, "square", (4u64,)))
        .await
        .expect("the finishing job ended and freed the worker")
        .unwrap();
    assert_eq!(n, 16);
    assert_eq!(pool.statistics().killed, 0);
}
