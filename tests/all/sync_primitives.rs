//! The pool's named primitives, used by real guests in separate workers
//! and by the host: contention, timeouts, and holders that are cancelled,
//! killed or trap.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::{alive, eventually, job, pool};
use futures_util::future::join_all;
use wasmpool::{ErrorKind, Pool, Queue, WorkerKind};

fn coop() -> wasmpool::Job {
    job(wasmpool_guests::COOP)
}

/// Everything in `log` now, closing it.
async fn drain(log: &Queue<u64>) -> Vec<u64> {
    log.close();
    let mut out = Vec::new();
    while let Some(v) = log.get().await.unwrap() {
        out.push(v);
    }
    out
}

/// Checks a log of `2 * tag` (enter) and `2 * tag + 1` (leave) entries:
/// returns the most holders inside at once.
fn most_inside(log: &[u64]) -> usize {
    let mut inside = BTreeSet::new();
    let mut most = 0;
    for &entry in log {
        let tag = entry / 2;
        if entry % 2 == 0 {
            assert!(inside.insert(tag), "{tag} entered twice: {log:?}");
        } else {
            assert!(inside.remove(&tag), "{tag} left without entering: {log:?}");
        }
        most = most.max(inside.len());
    }
    assert!(inside.is_empty(), "someone never left: {log:?}");
    most
}

/// Waits until `log` has `n` values, then takes them.
async fn take(log: &Queue<u64>, n: usize) -> Vec<u64> {
    let mut got = Vec::new();
    for _ in 0..n {
        let v = tokio::time::timeout(Duration::from_secs(20), log.get())
            .await
            .expect("a logged value")
            .unwrap()
            .expect("the log is open");
        got.push(v);
    }
    got
}

async fn lock_excludes(kind: WorkerKind) {
    let pool = Pool::builder()
        .workers(3)
        .worker_kind(kind)
        .build()
        .unwrap();
    let job = coop();
    let _lock = pool.lock("L").unwrap();
    let log = pool.queue::<u64>("log", 0).unwrap();
    let calls = (0..6u64)
        .map(|tag| pool.run::<bool>(&job, "with-lock", ("L", "log", tag, 15u64, None::<u64>)));
    for r in join_all(calls).await {
        assert!(r.unwrap());
    }
    let log = drain(&log).await;
    assert_eq!(log.len(), 12);
    assert_eq!(most_inside(&log), 1, "{log:?}");
}

#[tokio::test]
async fn a_lock_lets_one_guest_in_at_a_time() {
    lock_excludes(WorkerKind::Process).await;
}

#[tokio::test]
async fn a_lock_lets_one_thread_worker_in_at_a_time() {
    lock_excludes(WorkerKind::Thread).await;
}

#[tokio::test]
async fn a_killed_lock_holder_releases_the_lock() {
    let pool = pool(2);
    let job = coop();
    let _lock = pool.lock("L").unwrap();
    let log = pool.queue::<u64>("log", 0).unwrap();
    let holder = pool.spawn::<()>(&job, "hold-forever", ("lock", "L", "log", 100u64));
    assert_eq!(take(&log, 1).await, [100]);
    let pid = holder.pid().expect("a process worker");
    // A second guest waits for the lock...
    let waiter = pool.spawn::<bool>(&job, "with-lock", ("L", "log", 1u64, 0u64, None::<u64>));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiter.is_finished(), "the lock is held");
    // ... and gets it once the holder is killed.
    holder.kill();
    assert!(holder.await.unwrap_err().is_cancelled());
    assert!(waiter.await.unwrap());
    assert_eq!(take(&log, 2).await, [2, 3]);
    eventually("the holder's process to die", || !alive(pid)).await;
}

#[tokio::test]
async fn a_cancelled_lock_holder_releases_the_lock_and_its_worker_survives() {
    let pool = pool(2);
    let job = coop();
    let lock = pool.lock("L").unwrap();
    let log = pool.queue::<u64>("log", 0).unwrap();
    let holder = pool.spawn::<()>(&job, "hold-forever", ("lock", "L", "log", 7u64));
    assert_eq!(take(&log, 1).await, [7]);
    holder.cancel();
    assert!(holder.await.unwrap_err().is_cancelled());
    // The host takes it at once.
    let guard = tokio::time::timeout(Duration::from_secs(20), lock.lock())
        .await
        .expect("the lock was released")
        .unwrap();
    drop(guard);
    assert_eq!(pool.statistics().killed, 0);
}

#[tokio::test]
async fn a_guest_waiting_for_a_lock_times_out_or_is_cancelled_and_gets_nothing() {
    let pool = pool(2);
    let job = coop();
    let lock = pool.lock("L").unwrap();
    let log = pool.queue::<u64>("log", 0).unwrap();
    let guard = lock.lock().await.unwrap();
    // A guest's timeout: `false`, without the lock.
    let got: bool = pool
        .run(&job, "with-lock", ("L", "log", 1u64, 0u64, Some(50u64)))
        .await
        .unwrap();
    assert!(!got);
    // A waiting guest that is cancelled wakes at once.
    let waiter = pool.spawn::<bool>(&job, "with-lock", ("L", "log", 2u64, 0u64, None::<u64>));
    eventually("the waiter to start", || waiter.pid().is_some()).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    waiter.cancel();
    assert!(waiter.await.unwrap_err().is_cancelled());
    // The cancelled waiter was not handed the lock on its way out: the
    // next taker gets it as soon as the host lets go.
    drop(guard);
    let got: bool = tokio::time::timeout(
        Duration::from_secs(20),
        pool.run(&job, "with-lock", ("L", "log", 3u64, 0u64, Some(10_000u64))),
    )
    .await
    .expect("the lock is free")
    .unwrap();
    assert!(got);
    assert_eq!(drain(&log).await, [6, 7]);
}

#[tokio::test]
async fn a_semaphore_bounds_how_many_guests_hold_a_permit() {
    let pool = pool(4);
    let job = coop();
    let _sem = pool.semaphore("S", 2).unwrap();
    let log = pool.queue::<u64>("log", 0).unwrap();
    let calls = (0..8u64)
        .map(|tag| pool.run::<bool>(&job, "with-permit", ("S", "log", tag, 20u64, None::<u64>)));
    for r in join_all(calls).await {
        assert!(r.unwrap());
    }
    let log = drain(&log).await;
    assert_eq!(log.len(), 16);
    assert!(most_inside(&log) <= 2, "{log:?}");
}

#[tokio::test]
async fn permits_of_killed_and_trapping_holders_come_back() {
    let pool = pool(2);
    let job = coop();
    let sem = pool.semaphore("S", 1).unwrap();
    let log = pool.queue::<u64>("log", 0).unwrap();
    let holder = pool.spawn::<()>(&job, "hold-forever", ("semaphore", "S", "log", 9u64));
    assert_eq!(take(&log, 1).await, [9]);
    // Nobody else gets in meanwhile.
    let got: bool = pool
        .run(&job, "with-permit", ("S", "log", 1u64, 0u64, Some(50u64)))
        .await
        .unwrap();
    assert!(!got);
    holder.kill();
    assert!(holder.await.unwrap_err().is_cancelled());
    let got: bool = pool
        .run(
            &job,
            "with-permit",
            ("S", "log", 2u64, 0u64, Some(20_000u64)),
        )
        .await
        .unwrap();
    assert!(got);
    assert_eq!(take(&log, 2).await, [4, 5]);
    // The host can take the one permit too: nothing leaked.
    let permit = tokio::time::timeout(Duration::from_secs(20), sem.acquire())
        .await
        .expect("the permit is free")
        .unwrap();
    drop(permit);
}

#[tokio::test]
async fn a_barrier_lets_its_parties_go_together() {
    let pool = pool(3);
    let job = coop();
    let barrier = pool.barrier("B", 4).unwrap();
    let guests = (0..3).map(|_| pool.run::<Option<u32>>(&job, "barrier-wait", ("B", None::<u64>)));
    let (places, host) = tokio::join!(join_all(guests), barrier.wait());
    let mut places: Vec<u32> = places.into_iter().map(|r| r.unwrap().unwrap()).collect();
    places.push(u32::try_from(host.unwrap()).unwrap());
    places.sort_unstable();
    assert_eq!(places, [0, 1, 2, 3]);
}

#[tokio::test]
async fn a_killed_party_gives_its_place_at_the_barrier_up() {
    let pool = pool(3);
    let job = coop();
    let _barrier = pool.barrier("B", 2).unwrap();
    let first = pool.spawn::<Option<u32>>(&job, "barrier-wait", ("B", None::<u64>));
    eventually("the first party to start", || first.pid().is_some()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    first.kill();
    assert!(first.await.unwrap_err().is_cancelled());
    // Had the dead party kept its place, the second would pass alone and
    // the third wait for ever.
    let second = pool.run::<Option<u32>>(&job, "barrier-wait", ("B", Some(20_000u64)));
    let third = pool.run::<Option<u32>>(&job, "barrier-wait", ("B", Some(20_000u64)));
    let (a, b) = tokio::join!(second, third);
    let mut places = [a.unwrap().unwrap(), b.unwrap().unwrap()];
    places.sort_unstable();
    assert_eq!(places, [0, 1]);
}

#[tokio::test]
async fn a_barrier_wait_times_out_in_the_guest() {
    let pool = pool(1);
    let job = coop();
    let _barrier = pool.barrier("B", 2).unwrap();
    let place: Option<u32> = pool
        .run(&job, "barrier-wait", ("B", Some(30u64)))
        .await
        .unwrap();
    assert_eq!(place, None);
}

#[tokio::test]
async fn an_event_wakes_every_waiting_guest() {
    let pool = pool(3);
    let job = coop();
    let event = pool.event("E").unwrap();
    let missed: bool = pool
        .run(&job, "event-wait", ("E", Some(20u64)))
        .await
        .unwrap();
    assert!(!missed);
    let a = pool.spawn::<bool>(&job, "event-wait", ("E", None::<u64>));
    let b = pool.spawn::<bool>(&job, "event-wait", ("E", Some(20_000u64)));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!event.is_set());
    // A guest sets it.
    pool.run::<()>(&job, "event-set", ("E",)).await.unwrap();
    assert!(a.await.unwrap());
    assert!(b.await.unwrap());
    assert!(event.is_set());
    event.clear();
    assert!(!event.is_set());
    let host_wait = tokio::spawn({
        let event = event.clone();
        async move { event.wait().await }
    });
    event.set();
    host_wait.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_condition_notify_wakes_a_waiting_guest() {
    let pool = pool(2);
    let job = coop();
    let cond = pool.condition("C").unwrap();
    let timed_out: bool = pool
        .run(&job, "condition-wait", ("C", Some(20u64)))
        .await
        .unwrap();
    assert!(!timed_out);
    let waiter = pool.spawn::<bool>(&job, "condition-wait", ("C", Some(20_000u64)));
    // Notify until the waiter has been woken: a notify before it waits
    // wakes nobody.
    while !waiter.is_finished() {
        {
            let guard = cond.lock().await.unwrap();
            guard.notify(1);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(waiter.await.unwrap());
    // A guest notifies a host waiter.
    let mut guard = cond.lock().await.unwrap();
    let notifier = tokio::spawn({
        let pool = pool.clone();
        let job = job.clone();
        async move {
            loop {
                pool.run::<()>(&job, "condition-notify", ("C", 1u32))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    assert!(guard.wait_timeout(Duration::from_secs(20)).await.unwrap());
    drop(guard);
    notifier.abort();
}

#[tokio::test]
async fn an_rlock_can_be_taken_again_by_its_holder() {
    let pool = pool(1);
    let job = coop();
    let rlock = pool.rlock("R").unwrap();
    let nested: bool = pool.run(&job, "rlock-nested", ("R", 3u32)).await.unwrap();
    assert!(nested);
    // Released as often as taken: the host gets it.
    drop(rlock.lock().await.unwrap());
    let _plain = pool.lock("P").unwrap();
    // "P" is a lock, not an rlock: the guest cannot open it as one.
    let nested: bool = pool.run(&job, "rlock-nested", ("P", 2u32)).await.unwrap();
    assert!(!nested);
}

#[tokio::test]
async fn values_a_dead_consumer_took_go_back_to_the_queue() {
    let pool = pool(2);
    let job = coop();
    let input = pool.joinable_queue::<u64>("in", 0).unwrap();
    let log = pool.queue::<u64>("log", 0).unwrap();
    for x in [10, 11, 12] {
        input.put(&x).await.unwrap();
    }
    // One consumer traps, one is killed, each holding a value.
    let err = pool
        .run::<()>(&job, "take-and-trap", ("in", "log"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Trap);
    let spinner = pool.spawn::<()>(&job, "take-and-spin", ("in", "log"));
    assert_eq!(take(&log, 2).await, [10, 10]);
    spinner.kill();
    assert!(spinner.await.unwrap_err().is_cancelled());
    // Both came back to the front.
    assert_eq!(input.len(), 3);
    let results = pool.queue::<u64>("results", 0).unwrap();
    input.close();
    let taken: u64 = pool.run(&job, "consume", ("in", "results")).await.unwrap();
    assert_eq!(taken, 3);
    input.join().await.unwrap();
    assert_eq!(drain(&results).await, [100, 121, 144]);
}

#[tokio::test]
async fn producers_and_consumers_lose_nothing_when_consumers_die() {
    let pool = pool(4);
    let job = coop();
    let input = pool.joinable_queue::<u64>("in", 8).unwrap();
    let results = pool.queue::<u64>("results", 0).unwrap();
    let _log = pool.queue::<u64>("log", 0).unwrap();
    let producers = [(1u64, 60u64), (61, 60)]
        .map(|(first, count)| pool.run::<()>(&job, "produce", ("in", first, count)));
    let consumer = pool.spawn::<u64>(&job, "consume", ("in", "results"));
    let victim = pool.spawn::<()>(&job, "take-and-spin", ("in", "log"));
    eventually("the victim to take a value", || victim.pid().is_some()).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    victim.kill();
    assert!(victim.await.unwrap_err().is_cancelled());
    for r in join_all(producers).await {
        r.unwrap();
    }
    input.close();
    let second: u64 = pool.run(&job, "consume", ("in", "results")).await.unwrap();
    let first = consumer.await.unwrap();
    input.join().await.unwrap();
    let mut squares = drain(&results).await;
    squares.sort_unstable();
    let expected: Vec<u64> = (1..=120u64).map(|x| x * x).collect();
    assert_eq!(squares, expected);
    assert_eq!(first + second, 120);
}

#[tokio::test]
async fn names_are_checked() {
    let pool = pool(1);
    let job = coop();
    let missing: String = pool.run(&job, "open-lock", ("nope",)).await.unwrap();
    assert!(missing.contains("no lock named \"nope\""), "{missing}");
    pool.queue::<u64>("x", 4).unwrap();
    assert_eq!(pool.lock("x").unwrap_err().kind(), ErrorKind::Sync);
    assert_eq!(
        pool.queue::<u64>("x", 5).unwrap_err().kind(),
        ErrorKind::Sync
    );
    pool.queue::<u64>("x", 4)
        .expect("the same settings give the same queue");
    assert_eq!(
        pool.semaphore("s", 0).unwrap_err().kind(),
        ErrorKind::Config
    );
    assert_eq!(pool.barrier("b", 0).unwrap_err().kind(), ErrorKind::Config);
    assert_eq!(pool.event("").unwrap_err().kind(), ErrorKind::Config);
}

#[tokio::test]
async fn host_futures_are_cancel_safe() {
    let pool = pool(1);
    let q = pool.queue::<u64>("q", 1).unwrap();
    // A get that times out takes nothing.
    assert!(
        tokio::time::timeout(Duration::from_millis(20), q.get())
            .await
            .is_err()
    );
    q.put(&1).await.unwrap();
    // A put into a full queue that times out puts nothing.
    assert!(
        tokio::time::timeout(Duration::from_millis(20), q.put(&2))
            .await
            .is_err()
    );
    assert_eq!(q.len(), 1);
    assert_eq!(q.get().await.unwrap(), Some(1));
    // A lock acquire that times out holds nothing.
    let lock = pool.lock("L").unwrap();
    let guard = lock.lock().await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(20), lock.lock())
            .await
            .is_err()
    );
    drop(guard);
    drop(lock.lock().await.unwrap());
    // A closed queue refuses puts and drains.
    q.put(&3).await.unwrap();
    q.close();
    assert_eq!(q.put(&4).await.unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(q.get().await.unwrap(), Some(3));
    assert_eq!(q.get().await.unwrap(), None);
    // task_done needs a joinable queue.
    assert_eq!(q.task_done().unwrap_err().kind(), ErrorKind::Sync);
}

#[tokio::test]
async fn a_call_timeout_stops_a_guest_blocked_on_a_lock_without_a_kill() {
    let pool = pool(1);
    let job = coop();
    let lock = pool.lock("L").unwrap();
    let _log = pool.queue::<u64>("log", 0).unwrap();
    let guard = lock.lock().await.unwrap();
    let err = pool
        .call::<bool>(&job, "with-lock", ("L", "log", 1u64, 0u64, None::<u64>))
        .timeout(Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(pool.statistics().killed, 0);
    // It no longer waits: the host takes the lock again at once.
    drop(guard);
    drop(
        tokio::time::timeout(Duration::from_secs(20), lock.lock())
            .await
            .expect("nobody else holds it")
            .unwrap(),
    );
}

#[tokio::test]
async fn a_value_marked_done_by_the_host_does_not_come_back() {
    let pool = pool(1);
    let job = coop();
    let input = pool.joinable_queue::<u64>("in", 0).unwrap();
    let log = pool.queue::<u64>("log", 0).unwrap();
    input.put(&10).await.unwrap();
    let spinner = pool.spawn::<()>(&job, "take-and-spin", ("in", "log"));
    assert_eq!(take(&log, 1).await, [10]);
    // The host marks the guest's value done, then the guest dies.
    eprintln!("DEBUG len before {}", input.len());
    input.task_done().unwrap();
    eprintln!("DEBUG len after td {}", input.len());
    spinner.kill();
    assert!(spinner.await.unwrap_err().is_cancelled());
    assert_eq!(input.len(), 0);
    tokio::time::timeout(Duration::from_secs(20), input.join())
        .await
        .expect("nothing is unfinished")
        .unwrap();
}

#[tokio::test]
async fn a_host_condition_wait_that_times_out_holds_the_lock_again() {
    let pool = pool(1);
    let job = coop();
    let cond = pool.condition("C").unwrap();
    let mut guard = cond.lock().await.unwrap();
    assert!(!guard.wait_timeout(Duration::from_millis(20)).await.unwrap());
    // Held again: a guest cannot take it...
    let err = pool
        .call::<()>(&job, "condition-notify", ("C", 1u32))
        .timeout(Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    // ... until the guard goes.
    drop(guard);
    tokio::time::timeout(
        Duration::from_secs(20),
        pool.run::<()>(&job, "condition-notify", ("C", 1u32)),
    )
    .await
    .expect("the lock is free")
    .unwrap();
}
