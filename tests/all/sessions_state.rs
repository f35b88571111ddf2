//! Sessions: one instance kept across calls, on the worker that holds it;
//! how one is lost (trap, timeout, interrupt, kill, close), and that
//! nothing else is.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{eventually, job, pool};
use wasmpool::{Cancel, ErrorKind, Pool, Session, WorkerKind};

fn session_job() -> wasmpool::Job {
    job(wasmpool_guests::SESSION)
}

const KINDS: [WorkerKind; 2] = [WorkerKind::Process, WorkerKind::Thread];

fn pool_of(kind: WorkerKind, workers: usize) -> Pool {
    Pool::builder()
        .workers(workers)
        .worker_kind(kind)
        .grace(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test]
async fn state_survives_across_a_sessions_calls() {
    let job = session_job();
    for kind in KINDS {
        let pool = pool_of(kind, 1);
        let a = pool.session(&job).await.unwrap();
        let b = pool.session(&job).await.unwrap();
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(a.run::<u64>("bump", ()).await.unwrap());
        }
        assert_eq!(seen, [1, 2, 3], "{kind:?}");
        // Each session has its own instance, and plain calls a fresh one.
        assert_eq!(b.run::<u64>("bump", ()).await.unwrap(), 1, "{kind:?}");
        assert_eq!(pool.run::<u64>(&job, "bump", ()).await.unwrap(), 1);
        assert_eq!(pool.run::<u64>(&job, "bump", ()).await.unwrap(), 1);
        assert_eq!(a.run::<u64>("bump", ()).await.unwrap(), 4, "{kind:?}");
        // Memory the guest grew is still there for the next call.
        assert_eq!(a.run::<u64>("grow", (1000u32,)).await.unwrap(), 1000);
        assert_eq!(a.run::<u64>("grow", (24u32,)).await.unwrap(), 1024);
        match kind {
            WorkerKind::Process => assert!(a.pid().is_some()),
            _ => assert_eq!(a.pid(), None),
        }
        assert!(!a.is_lost());
        a.close().await.unwrap();
        b.close().await.unwrap();
    }
}

#[tokio::test]
async fn a_sessions_calls_run_one_at_a_time_in_the_order_made() {
    let job = session_job();
    let pool = pool(2);
    let session = Arc::new(pool.session(&job).await.unwrap());
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let s = session.clone();
            tokio::spawn(async move { s.run::<u64>("bump", ()).await.unwrap() })
        })
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap());
    }
    assert_eq!(got, (1..=20).collect::<Vec<u64>>());
}

#[tokio::test]
async fn a_trap_loses_the_session_and_only_it() {
    let job = session_job();
    for kind in KINDS {
        let pool = pool_of(kind, 1);
        let doomed = pool.session(&job).await.unwrap();
        let other = pool.session(&job).await.unwrap();
        assert_eq!(other.run::<u64>("bump", ()).await.unwrap(), 1);
        assert_eq!(doomed.run::<u64>("bump", ()).await.unwrap(), 1);
        let err = doomed.run::<()>("fail", ()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Trap, "{kind:?}: {err}");
        assert!(doomed.is_lost(), "{kind:?}");
        let err = doomed.run::<u64>("bump", ()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::SessionLost, "{kind:?}: {err}");
        assert!(err.to_string().contains("fail"), "says why: {err}");
        // The worker, its other session and the pool go on.
        assert_eq!(other.run::<u64>("bump", ()).await.unwrap(), 2);
        assert_eq!(pool.run::<u64>(&job, "bump", ()).await.unwrap(), 1);
        assert_eq!(pool.statistics().crashed, 0);
        // A lost session closes quietly.
        doomed.close().await.unwrap();
    }
}

#[tokio::test]
async fn a_timeout_loses_the_session_but_not_its_worker() {
    let job = session_job();
    for kind in KINDS {
        let pool = pool_of(kind, 1);
        let session = pool.session(&job).await.unwrap();
        let other = pool.session(&job).await.unwrap();
        let err = session
            .call::<()>("spin", ())
            .timeout(Duration::from_millis(100))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{kind:?}: {err}");
        let err = session.run::<u64>("bump", ()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::SessionLost, "{kind:?}: {err}");
        assert_eq!(other.run::<u64>("bump", ()).await.unwrap(), 1);
        assert_eq!(other.pid(), session.pid());
        assert_eq!(pool.statistics().killed, 0);
    }
}

#[tokio::test]
async fn an_interrupted_call_loses_the_session() {
    let job = session_job();
    let pool = pool(1);
    let session = pool.session(&job).await.unwrap();
    let other = pool.session(&job).await.unwrap();
    let spin = session.run::<()>("spin", ());
    assert!(
        tokio::time::timeout(Duration::from_millis(200), spin)
            .await
            .is_err()
    );
    assert!(session.is_lost());
    let err = session.run::<u64>("bump", ()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SessionLost, "{err}");
    // The interrupt left the worker to the other session.
    assert_eq!(other.run::<u64>("bump", ()).await.unwrap(), 1);
    assert_eq!(pool.statistics().killed, 0);
}

#[tokio::test]
async fn a_kill_loses_every_session_on_its_worker_and_no_other() {
    let job = session_job();
    let pool = pool(2);
    let mut sessions = Vec::new();
    for _ in 0..6 {
        sessions.push(pool.session(&job).await.unwrap());
    }
    let pids: HashSet<u32> = sessions.iter().filter_map(Session::pid).collect();
    assert_eq!(pids.len(), 2, "sessions spread over both workers");
    let victim = sessions[0].pid().unwrap();
    let spin = sessions[0].call::<()>("spin", ()).on_cancel(Cancel::Kill);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), spin)
            .await
            .is_err()
    );
    eventually("the killed worker's sessions to be lost", || {
        sessions
            .iter()
            .filter(|s| s.pid() == Some(victim))
            .all(Session::is_lost)
    })
    .await;
    for s in &sessions {
        let got = s.run::<u64>("bump", ()).await;
        if s.pid() == Some(victim) {
            let err = got.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::SessionLost, "{err}");
        } else {
            assert_eq!(got.unwrap(), 1, "a session on the other worker goes on");
            assert!(!s.is_lost());
        }
    }
    assert_eq!(pool.run::<u64>(&job, "bump", ()).await.unwrap(), 1);
    assert_eq!(pool.statistics().killed, 1);
}

#[tokio::test]
async fn a_closed_session_refuses_calls() {
    let job = session_job();
    let pool = pool(1);
    let session = pool.session(&job).await.unwrap();
    assert_eq!(session.run::<u64>("bump", ()).await.unwrap(), 1);
    session.close().await.unwrap();
    assert!(session.is_lost());
    let err = session.run::<u64>("bump", ()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SessionLost);
    assert!(err.to_string().contains("closed"), "{err}");
    session.close().await.unwrap();
}

#[tokio::test]
async fn bad_names_and_arguments_leave_the_session_alone() {
    let job = session_job();
    let pool = pool(1);
    let session = pool.session(&job).await.unwrap();
    assert_eq!(session.run::<u64>("bump", ()).await.unwrap(), 1);
    let err = session.run::<u64>("no-such", ()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSuchFunction, "{err}");
    let err = session.run::<u64>("bump", (1u8,)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ArgumentMismatch, "{err}");
    let err = session.run::<u64>("grow", ("many",)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ArgumentMismatch, "{err}");
    let err = session.run::<String>("bump", ()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ResultMismatch, "{err}");
    // A session's sandbox is the one it opened with.
    let err = session
        .call::<u64>("bump", ())
        .env("KEY", "value")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(!session.is_lost());
    // The mismatched result was of a call that ran (2); this is the next.
    assert_eq!(session.run::<u64>("bump", ()).await.unwrap(), 3);
}

#[tokio::test]
async fn a_worker_holding_sessions_is_neither_retired_nor_idled_out() {
    let job = session_job();
    let pool = Pool::builder()
        .workers(1)
        .retire_after(1)
        .idle_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let session = pool.session(&job).await.unwrap();
    let pid = session.pid();
    for want in 1..=3u64 {
        assert_eq!(session.run::<u64>("bump", ()).await.unwrap(), want);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(session.pid(), pid);
    // A plain call between them shares the worker and does not retire it.
    assert_eq!(pool.run::<u64>(&job, "bump", ()).await.unwrap(), 1);
    assert_eq!(session.run::<u64>("bump", ()).await.unwrap(), 4);
    // Once the session is closed, the worker retires as usual.
    session.close().await.unwrap();
    for _ in 0..2 {
        assert_eq!(pool.run::<u64>(&job, "bump", ()).await.unwrap(), 1);
    }
    assert!(pool.statistics().spawned >= 2);
}

#[tokio::test]
async fn hundreds_of_sessions_share_two_workers() {
    let job = session_job();
    let pool = pool(2);
    let mut sessions = Vec::new();
    for _ in 0..300 {
        sessions.push(pool.session(&job).await.unwrap());
    }
    for (i, s) in sessions.iter().enumerate() {
        let n = 1 + i as u32 % 3;
        for _ in 0..n {
            s.run::<u64>("bump", ()).await.unwrap();
        }
    }
    for (i, s) in sessions.iter().enumerate() {
        let want = 2 + u64::from(i as u32 % 3);
        assert_eq!(s.run::<u64>("bump", ()).await.unwrap(), want, "session {i}");
    }
    let stats = pool.statistics();
    assert_eq!(stats.spawned, 2);
    let pids: HashSet<u32> = sessions.iter().filter_map(Session::pid).collect();
    assert_eq!(pids.len(), 2);
    drop(sessions);
    // Dropped sessions are closed with the workers' next requests.
    assert_eq!(pool.run::<u64>(&job, "bump", ()).await.unwrap(), 1);
}

#[tokio::test]
async fn a_call_dropped_with_finish_keeps_the_session() {
    let job = session_job();
    let pool = pool(1);
    let session = pool.session(&job).await.unwrap();
    assert_eq!(session.run::<u64>("bump", ()).await.unwrap(), 1);
    let grow = session
        .call::<u64>("grow", (1u32 << 20,))
        .on_cancel(Cancel::Finish);
    // Dropped at once, or finished: either way the session goes on.
    let _ = tokio::time::timeout(Duration::from_micros(1), grow).await;
    assert!(!session.is_lost());
    assert_eq!(session.run::<u64>("bump", ()).await.unwrap(), 2);
}

#[tokio::test]
async fn a_call_waiting_for_its_busy_worker_holds_no_place_in_the_pool() {
    let job = session_job();
    let pool = pool(2);
    let mut sessions = Vec::new();
    for _ in 0..4 {
        sessions.push(Arc::new(pool.session(&job).await.unwrap()));
    }
    let pid = sessions[0].pid();
    let same = sessions[1..]
        .iter()
        .find(|s| s.pid() == pid)
        .expect("two sessions share a worker")
        .clone();
    let busy = sessions[0].clone();
    let spinning = tokio::spawn(async move {
        busy.call::<()>("spin", ())
            .timeout(Duration::from_secs(3))
            .await
    });
    eventually("the worker to be busy", || pool.statistics().busy >= 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let waiting = tokio::spawn(async move { same.run::<u64>("bump", ()).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The other worker serves a plain call while both wait.
    assert_eq!(pool.run::<u64>(&job, "bump", ()).await.unwrap(), 1);
    assert!(
        !spinning.is_finished(),
        "the plain call did not wait for the spin"
    );
    let err = spinning.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(waiting.await.unwrap().unwrap(), 1);
}

#[tokio::test]
async fn a_worker_idles_out_once_its_last_session_closes() {
    let job = session_job();
    let pool = Pool::builder()
        .workers(1)
        .idle_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let session = pool.session(&job).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pool.statistics().idle, 1, "kept while it holds a session");
    drop(session);
    eventually("the worker to idle out", || pool.statistics().idle == 0).await;
}

#[tokio::test]
async fn a_cluster_pool_has_no_sessions() {
    // Refused before any connection to the server.
    let pool = Pool::builder().nats("nats://127.0.0.1:1").build().unwrap();
    let err = pool.session(&session_job()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("cluster"), "{err}");
}
