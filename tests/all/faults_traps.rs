//! Every kind of guest fault comes back as a classified error, and the
//! worker that ran it serves the next call.

use crate::common::{job, pool};
use wasmpool::{ErrorKind, Limit, TrapCode};

#[tokio::test]
async fn each_fault_is_classified_and_the_worker_survives() {
    let pool = pool(1);
    let faults = job(wasmpool_guests::FAULTS);

    let e = pool
        .run::<()>(&faults, "unreachable", ())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Trap);
    assert_eq!(e.trap_code(), Some(TrapCode::UnreachableCodeReached));
    assert!(e.wasm_backtrace().unwrap().contains("unreachable"), "{e:?}");

    let e = pool
        .run::<i32>(&faults, "divide", (7, 0))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Trap);
    assert_eq!(e.trap_code(), Some(TrapCode::IntegerDivisionByZero));
    let q: i32 = pool.run(&faults, "divide", (7, 2)).await.unwrap();
    assert_eq!(q, 3);

    let e = pool
        .run::<u64>(&faults, "out-of-bounds", ())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Trap);
    assert_eq!(e.trap_code(), Some(TrapCode::MemoryOutOfBounds));

    let e = pool
        .run::<u64>(&faults, "recurse", (u64::MAX,))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ResourceLimit);
    assert_eq!(e.limit(), Some(Limit::Stack));
    assert_eq!(e.trap_code(), Some(TrapCode::StackOverflow));
    let shallow: u64 = pool.run(&faults, "recurse", (10u64,)).await.unwrap();
    assert_ne!(shallow, 0);

    let e = pool
        .run::<()>(&faults, "panic", ("the answer is 42",))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Trap);
    assert_eq!(e.trap_code(), Some(TrapCode::UnreachableCodeReached));
    assert_eq!(e.panic_message(), Some("the answer is 42"));
    assert!(e.to_string().contains("the answer is 42"), "{e}");

    // An allocation larger than a 32-bit guest can address panics in the
    // guest's allocator, with a message on stderr.
    let e = pool
        .run::<u64>(&faults, "alloc", (u64::from(u32::MAX) - 1000,))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Trap, "{e:?}");
    assert_eq!(e.panic_message(), Some("capacity overflow"), "{e:?}");
    let sum: u64 = pool.run(&faults, "alloc", (1u64 << 20,)).await.unwrap();
    assert_eq!(sum, 256);

    let stats = pool.statistics();
    assert_eq!(stats.spawned, 1, "every fault was survived: {stats:?}");
    assert_eq!(stats.crashed, 0);
}

#[tokio::test]
async fn a_panic_message_is_per_call() {
    let pool = pool(1);
    let faults = job(wasmpool_guests::FAULTS);
    let e = pool
        .run::<()>(&faults, "panic", ("first",))
        .await
        .unwrap_err();
    assert_eq!(e.panic_message(), Some("first"));
    let e = pool
        .run::<()>(&faults, "unreachable", ())
        .await
        .unwrap_err();
    assert_eq!(
        e.panic_message(),
        None,
        "no stale message from the last call"
    );
    let e = pool
        .run::<()>(&faults, "panic", ("multi\nline",))
        .await
        .unwrap_err();
    assert_eq!(e.panic_message(), Some("multi\nline"));
}
