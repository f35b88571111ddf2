//! Resources a session's guest exports: handles that cross the process
//! boundary as opaque values, borrowed and moved, dropped from the host,
//! and refused where they do not belong.

use std::fmt::Debug;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::common::{job, pool};
use wasmpool::{ErrorKind, Pool, Resource, WorkerKind};

const C: &str = "wasmpool:jobs/counters";

fn f(name: &str) -> String {
    format!("{C}#{name}")
}

fn session_job() -> wasmpool::Job {
    job(wasmpool_guests::SESSION)
}

#[test]
fn a_resource_is_an_owned_serde_value() {
    fn traits<T: Serialize + DeserializeOwned + Debug + Send + Sync + 'static>() {}
    traits::<Resource>();
    fn shared<T: Send + Sync + 'static>() {}
    shared::<wasmpool::Session>();
}

#[tokio::test]
async fn a_guest_resource_lives_its_whole_life_across_the_boundary() {
    let job = session_job();
    for kind in [WorkerKind::Process, WorkerKind::Thread] {
        whole_life(&job, kind, true).await;
    }
}

/// Every step of a counter's life, on `job` (a guest of the `session`
/// world, in any language). With `observes_drops`, the guest's
/// destructors are seen to run when they should: a language whose
/// destructors run when its collector decides (Python's) shows the
/// handles gone, and no more.
pub(crate) async fn whole_life(job: &wasmpool::Job, kind: WorkerKind, observes_drops: bool) {
    {
        let pool = Pool::builder()
            .workers(1)
            .worker_kind(kind)
            .grace(Duration::from_secs(30))
            .build()
            .unwrap();
        let s = pool.session(job).await.unwrap();
        let a: Resource = s.run(&f("[constructor]counter"), (5i64,)).await.unwrap();
        assert_eq!(a.type_name(), "counter");
        // A borrow: the handle is passed by reference and stays usable.
        let v: i64 = s.run(&f("[method]counter.add"), (&a, 3i64)).await.unwrap();
        assert_eq!(v, 8, "{kind:?}");
        let v: i64 = s.run(&f("[method]counter.get"), (&a,)).await.unwrap();
        assert_eq!(v, 8);
        // Canonical names resolve without the interface too.
        let b: Resource = s.run("[constructor]counter", (10i64,)).await.unwrap();
        let t: i64 = s.run(&f("total"), (&a, &b)).await.unwrap();
        assert_eq!(t, 18);
        // A static function, and a method returning a new own.
        let sum: Resource = s.run(&f("[static]counter.sum"), (&a, &b)).await.unwrap();
        let forked: Resource = s.run("[method]counter.fork", (&b,)).await.unwrap();
        assert_eq!(
            s.run::<i64>("[method]counter.get", (&sum,)).await.unwrap(),
            18
        );
        assert_eq!(
            s.run::<i64>("[method]counter.get", (&forked,))
                .await
                .unwrap(),
            10
        );
        if observes_drops {
            assert_eq!(s.run::<u32>(&f("live"), ()).await.unwrap(), 4);
        }
        // An own moves into the guest, which drops it.
        let v: i64 = s.run(&f("consume"), (sum,)).await.unwrap();
        assert_eq!(v, 18);
        if observes_drops {
            assert_eq!(s.run::<Vec<i64>>(&f("dropped"), ()).await.unwrap(), [18]);
        }
        // An explicit drop runs the destructor at once.
        s.drop_resource(forked).await.unwrap();
        if observes_drops {
            assert_eq!(
                s.run::<Vec<i64>>(&f("dropped"), ()).await.unwrap(),
                [18, 10]
            );
        }
        // An implicit drop runs it before the session's next call.
        let copy_of_a: Resource =
            serde_json::from_value(serde_json::to_value(&a).unwrap()).unwrap();
        drop(a);
        if observes_drops {
            assert_eq!(
                s.run::<Vec<i64>>(&f("dropped"), ()).await.unwrap(),
                [18, 10, 8]
            );
            assert_eq!(s.run::<u32>(&f("live"), ()).await.unwrap(), 1);
        }
        // A handle dropped after the call that borrows it is dropped after
        // that call: passing it by value to a borrow is Rust's move, then
        // a drop.
        let v: i64 = s.run(&f("[method]counter.add"), (b, 1i64)).await.unwrap();
        assert_eq!(v, 11);
        if observes_drops {
            assert_eq!(s.run::<u32>(&f("live"), ()).await.unwrap(), 0);
            assert_eq!(
                s.run::<Vec<i64>>(&f("dropped"), ()).await.unwrap(),
                [18, 10, 8, 11]
            );
        }
        // Whatever the language, a dropped handle is gone from the session.
        let err = s
            .run::<i64>("[method]counter.get", (&copy_of_a,))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), wasmpool::ErrorKind::ArgumentMismatch, "{err}");
        assert!(!s.is_lost());
    }
}

#[tokio::test]
async fn handles_nest_in_results() {
    let job = session_job();
    let pool = pool(1);
    let s = pool.session(&job).await.unwrap();
    let (one, many): (Resource, Vec<Resource>) = s.run(&f("pair"), (1i64,)).await.unwrap();
    assert_eq!(many.len(), 2);
    let mut values = vec![s.run::<i64>("[method]counter.get", (&one,)).await.unwrap()];
    for c in &many {
        values.push(s.run::<i64>("[method]counter.get", (c,)).await.unwrap());
    }
    assert_eq!(values, [1, 2, 3]);
    drop((one, many));
    assert_eq!(s.run::<u32>(&f("live"), ()).await.unwrap(), 0);
}

#[tokio::test]
async fn a_consumed_or_foreign_handle_is_refused_and_the_session_goes_on() {
    let job = session_job();
    let pool = pool(1);
    let s = pool.session(&job).await.unwrap();
    let other = pool.session(&job).await.unwrap();
    let c: Resource = s.run("[constructor]counter", (7i64,)).await.unwrap();
    // A second handle naming the same resource, read back from JSON.
    let copy: Resource = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
    assert_eq!(s.run::<i64>(&f("consume"), (c,)).await.unwrap(), 7);
    let err = s
        .run::<i64>("[method]counter.get", (&copy,))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ArgumentMismatch, "{err}");
    assert!(
        err.to_string().contains("counter"),
        "names the resource: {err}"
    );
    let err = s.drop_resource(copy).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ArgumentMismatch, "{err}");
    // A handle of another session.
    let theirs: Resource = other.run("[constructor]counter", (1i64,)).await.unwrap();
    let err = s
        .run::<i64>("[method]counter.get", (&theirs,))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ArgumentMismatch, "{err}");
    assert!(err.to_string().contains("another session"), "{err}");
    let err = s.drop_resource(theirs).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ArgumentMismatch, "{err}");
    // A handle of the wrong type.
    let tag: Resource = s.run("[constructor]tag", ("t",)).await.unwrap();
    assert_eq!(tag.type_name(), "tag");
    let err = s
        .run::<i64>("[method]counter.add", (&tag, 1i64))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ArgumentMismatch, "{err}");
    assert!(err.to_string().contains("expected a counter"), "{err}");
    // A resource, or a function of one, that does not exist.
    let err = s
        .run::<Resource>("[constructor]gadget", (1i64,))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSuchFunction, "{err}");
    let err = s
        .run::<i64>("[method]counter.nope", (&tag,))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSuchFunction, "{err}");
    // Not a handle at all.
    let err = s
        .run::<i64>("[method]counter.get", (5u32,))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ArgumentMismatch, "{err}");
    // Both sessions go on.
    assert!(!s.is_lost() && !other.is_lost());
    assert_eq!(
        s.run::<String>("[method]tag.name", (&tag,)).await.unwrap(),
        "t"
    );
    assert_eq!(s.run::<Vec<i64>>(&f("dropped"), ()).await.unwrap(), [7]);
    assert_eq!(other.run::<u32>(&f("live"), ()).await.unwrap(), 0);
}

#[tokio::test]
async fn a_plain_call_of_a_resource_function_says_to_open_a_session() {
    let job = session_job();
    let pool = pool(1);
    let err = pool
        .run::<Resource>(&job, "[constructor]counter", (1i64,))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("session"), "{err}");
    let err = pool
        .run::<u32>(&job, "nothing-like-it", ())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSuchFunction);
}

#[tokio::test]
async fn dropping_handles_after_their_session_is_gone_is_harmless() {
    let job = session_job();
    let pool = pool(1);
    let s = pool.session(&job).await.unwrap();
    let kept: Resource = s.run("[constructor]counter", (1i64,)).await.unwrap();
    let lost: Resource = s.run("[constructor]counter", (2i64,)).await.unwrap();
    s.close().await.unwrap();
    drop(kept);
    let t = pool.session(&job).await.unwrap();
    let orphan: Resource = t.run("[constructor]counter", (3i64,)).await.unwrap();
    let _ = t.run::<()>("fail", ()).await.unwrap_err();
    drop(orphan);
    drop(t);
    drop(pool);
    drop(lost);
}
