//! A call's stdout and stderr can be captured and returned, or discarded.

use crate::common::{job, pool};
use wasmpool::{ErrorKind, Stdio};

#[tokio::test]
async fn captured_output_comes_back_with_the_result() {
    let pool = pool(1);
    let hello = job(wasmpool_guests::HELLO);
    let out = pool
        .call::<String>(&hello, "hello", ("capture",))
        .stdout(Stdio::Capture)
        .stderr(Stdio::Capture)
        .report()
        .await
        .unwrap();
    assert_eq!(out.value, "greeted capture");
    assert_eq!(
        out.stdout.as_deref(),
        Some(&b"hello from wasm, capture!\n"[..])
    );
    assert_eq!(
        out.stderr.as_deref(),
        Some(&b"a note on stderr for capture\n"[..])
    );

    let out = pool
        .call::<String>(&hello, "hello", ("quiet",))
        .stdout(Stdio::Discard)
        .stderr(Stdio::Discard)
        .report()
        .await
        .unwrap();
    assert_eq!((out.stdout, out.stderr), (None, None));
    // Inherited output is not captured.
    let out = pool
        .call::<String>(&hello, "hello", ("loud",))
        .report()
        .await
        .unwrap();
    assert_eq!((out.stdout, out.stderr), (None, None));
}

#[tokio::test]
async fn panic_messages_are_found_whatever_stderr_does() {
    let pool = pool(1);
    let faults = job(wasmpool_guests::FAULTS);
    for mode in [Stdio::Capture, Stdio::Discard] {
        let e = pool
            .call::<()>(&faults, "panic", ("hidden",))
            .stderr(mode)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Trap);
        assert_eq!(e.panic_message(), Some("hidden"));
    }
}
