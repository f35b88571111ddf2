//! Jobs that cooperate through `wasmpool:sync`, imported with the
//! `wasmpool-guest` SDK.

// The generated export shims of `with-lock` and `with-permit` take eight
// core wasm parameters.
#![allow(clippy::too_many_arguments)]

use std::hint::black_box;
use std::thread::sleep;
use std::time::Duration;

use wasmpool_guest::{Barrier, Condition, Error, Event, Lock, Queue, RLock, Semaphore};

wit_bindgen::generate!({ path: "../../../wit/jobs", world: "coop" });

struct Coop;

/// `Some(d)` of a WIT `timeout-ms`.
fn timeout(ms: Option<u64>) -> Option<Duration> {
    ms.map(Duration::from_millis)
}

/// Opens queue `name` of `u64`s; traps if the pool has none.
fn open_queue(name: &str) -> Queue<u64> {
    Queue::open(name).unwrap_or_else(|e| panic!("queue {name:?}: {e}"))
}

/// Puts `value` on `queue`; traps on error.
fn put(queue: &Queue<u64>, value: u64) {
    queue
        .put(&value)
        .unwrap_or_else(|e| panic!("put on {:?}: {e}", queue.name()));
}

/// Gets one value from `queue`; traps on error or when it is closed.
fn take(queue: &Queue<u64>) -> u64 {
    match queue.get() {
        Ok(Some(v)) => v,
        Ok(None) => panic!("queue {:?} is closed", queue.name()),
        Err(e) => panic!("get from {:?}: {e}", queue.name()),
    }
}

/// Integer mixing forever, without calling the host.
fn spin_forever() -> ! {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut i: u64 = 0;
    loop {
        h ^= black_box(i);
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 29;
        black_box(h);
        i = i.wrapping_add(1);
    }
}

/// The value, or `None` on timeout; traps on any other error.
fn timed<T>(what: &str, r: Result<T, Error>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(Error::Timeout) => None,
        Err(e) => panic!("{what}: {e}"),
    }
}

impl Guest for Coop {
    fn with_lock(
        lock: String,
        log: String,
        tag: u64,
        hold_ms: u64,
        timeout_ms: Option<u64>,
    ) -> bool {
        let out = open_queue(&log);
        let lock = Lock::open(&lock).unwrap_or_else(|e| panic!("lock {lock:?}: {e}"));
        let guard = match timeout(timeout_ms) {
            Some(d) => lock.lock_timeout(d),
            None => lock.lock(),
        };
        let Some(guard) = timed("lock", guard) else {
            return false;
        };
        put(&out, 2 * tag);
        sleep(Duration::from_millis(hold_ms));
        put(&out, 2 * tag + 1);
        guard.unlock().unwrap_or_else(|e| panic!("unlock: {e}"));
        true
    }

    fn with_permit(
        semaphore: String,
        log: String,
        tag: u64,
        hold_ms: u64,
        timeout_ms: Option<u64>,
    ) -> bool {
        let out = open_queue(&log);
        let sem =
            Semaphore::open(&semaphore).unwrap_or_else(|e| panic!("semaphore {semaphore:?}: {e}"));
        let permit = match timeout(timeout_ms) {
            Some(d) => sem.acquire_timeout(d),
            None => sem.acquire(),
        };
        let Some(permit) = timed("acquire", permit) else {
            return false;
        };
        put(&out, 2 * tag);
        sleep(Duration::from_millis(hold_ms));
        put(&out, 2 * tag + 1);
        permit.release().unwrap_or_else(|e| panic!("release: {e}"));
        true
    }

    fn hold_forever(kind: String, name: String, log: String, tag: u64) {
        let out = open_queue(&log);
        match kind.as_str() {
            "lock" => {
                let lock = Lock::open(&name).unwrap_or_else(|e| panic!("lock {name:?}: {e}"));
                let guard = lock.lock().unwrap_or_else(|e| panic!("lock: {e}"));
                std::mem::forget(guard);
            }
            "semaphore" => {
                let sem =
                    Semaphore::open(&name).unwrap_or_else(|e| panic!("semaphore {name:?}: {e}"));
                let permit = sem.acquire().unwrap_or_else(|e| panic!("acquire: {e}"));
                std::mem::forget(permit);
            }
            other => panic!("unknown kind {other:?}"),
        }
        put(&out, tag);
        spin_forever()
    }

    fn barrier_wait(name: String, timeout_ms: Option<u64>) -> Option<u32> {
        let barrier = Barrier::open(&name).unwrap_or_else(|e| panic!("barrier {name:?}: {e}"));
        let place = match timeout(timeout_ms) {
            Some(d) => barrier.wait_timeout(d),
            None => barrier.wait(),
        };
        timed("barrier wait", place)
    }

    fn produce(queue: String, first: u64, count: u64) {
        let queue = open_queue(&queue);
        for i in 0..count {
            put(&queue, first + i);
        }
    }

    fn consume(queue: String, results: String) -> u64 {
        let input = open_queue(&queue);
        let output = open_queue(&results);
        let mut taken = 0;
        while let Some(x) = input.get().unwrap_or_else(|e| panic!("get: {e}")) {
            put(&output, x.wrapping_mul(x));
            input
                .task_done()
                .unwrap_or_else(|e| panic!("task_done: {e}"));
            taken += 1;
        }
        taken
    }

    fn take_and_trap(queue: String, log: String) {
        let input = open_queue(&queue);
        let out = open_queue(&log);
        put(&out, take(&input));
        panic!("take-and-trap: trapping without marking the value done");
    }

    fn take_and_spin(queue: String, log: String) {
        let input = open_queue(&queue);
        let out = open_queue(&log);
        put(&out, take(&input));
        spin_forever()
    }

    fn double_stream() -> u64 {
        let mut received = 0;
        while let Some(x) = wasmpool_guest::recv::<u64>().unwrap_or_else(|e| panic!("recv: {e}")) {
            wasmpool_guest::emit(&x.wrapping_mul(2)).unwrap_or_else(|e| panic!("emit: {e}"));
            received += 1;
        }
        received
    }

    fn progress(n: u64) -> u64 {
        for i in 1..=n {
            wasmpool_guest::emit(&i).unwrap_or_else(|e| panic!("emit: {e}"));
        }
        n
    }

    fn event_wait(name: String, timeout_ms: Option<u64>) -> bool {
        let event = Event::open(&name).unwrap_or_else(|e| panic!("event {name:?}: {e}"));
        let waited = match timeout(timeout_ms) {
            Some(d) => event.wait_timeout(d),
            None => event.wait(),
        };
        timed("event wait", waited).is_some()
    }

    fn event_set(name: String) {
        let event = Event::open(&name).unwrap_or_else(|e| panic!("event {name:?}: {e}"));
        event.set().unwrap_or_else(|e| panic!("event set: {e}"));
    }

    fn rlock_nested(name: String, depth: u32) -> bool {
        let Ok(rlock) = RLock::open(&name) else {
            return false;
        };
        let mut guards = Vec::new();
        for _ in 0..depth {
            match rlock.lock() {
                Ok(g) => guards.push(g),
                Err(_) => return false,
            }
        }
        // Released innermost first, as often as it was taken.
        while let Some(g) = guards.pop() {
            if g.unlock().is_err() {
                return false;
            }
        }
        true
    }

    fn condition_wait(name: String, timeout_ms: Option<u64>) -> bool {
        let cond = Condition::open(&name).unwrap_or_else(|e| panic!("condition {name:?}: {e}"));
        let guard = cond
            .lock()
            .unwrap_or_else(|e| panic!("condition lock: {e}"));
        let notified = match timeout(timeout_ms) {
            Some(d) => guard.wait_timeout(d),
            None => guard.wait().map(|()| true),
        };
        notified.unwrap_or_else(|e| panic!("condition wait: {e}"))
    }

    fn condition_notify(name: String, n: u32) {
        let cond = Condition::open(&name).unwrap_or_else(|e| panic!("condition {name:?}: {e}"));
        let guard = cond
            .lock()
            .unwrap_or_else(|e| panic!("condition lock: {e}"));
        guard
            .notify(n)
            .unwrap_or_else(|e| panic!("condition notify: {e}"));
    }

    fn open_lock(name: String) -> String {
        match Lock::open(&name) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    fn square(x: u64) -> u64 {
        x.wrapping_mul(x)
    }
}

export!(Coop);
