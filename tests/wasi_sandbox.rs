//! The default sandbox: no files, no environment, no network, and
//! `wasi:http` linked with outgoing requests denied.

mod common;

use common::{job, pool};

#[tokio::test]
async fn a_guest_importing_wasi_http_loads_and_its_requests_are_denied() {
    let pool = pool(1);
    let sandbox = job(wasmpool_guests::SANDBOX);
    let r: Result<u16, String> = pool
        .run(&sandbox, "http-get", ("http://127.0.0.1:9/",))
        .await
        .unwrap();
    let err = r.unwrap_err();
    assert!(err.contains("HttpRequestDenied"), "{err}");
}

#[tokio::test]
async fn no_files_no_environment_no_sockets() {
    let pool = pool(1);
    let sandbox = job(wasmpool_guests::SANDBOX);
    let r: Result<String, String> = pool
        .run(&sandbox, "read-file", ("/etc/passwd",))
        .await
        .unwrap();
    assert!(r.is_err(), "{r:?}");
    let r: Result<String, String> = pool
        .run(&sandbox, "read-file", ("../../etc/passwd",))
        .await
        .unwrap();
    assert!(r.is_err(), "{r:?}");
    assert!(std::env::var_os("PATH").is_some());
    let v: Option<String> = pool.run(&sandbox, "env-var", ("PATH",)).await.unwrap();
    assert_eq!(v, None);

    // A listener the guest would reach if it had the network.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let r: Result<(), String> = pool.run(&sandbox, "tcp-connect", (addr,)).await.unwrap();
    assert!(r.is_err(), "{r:?}");
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "nothing connected");
}
