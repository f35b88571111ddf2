//! The default sandbox: no files, no environment, no network, and
//! `wasi:http` linked with outgoing requests denied (`http_allowlist` has
//! the requests a call allows).

use crate::common::{job, pool, temp_dir};

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

#[tokio::test]
async fn env_vars_are_granted_one_by_one() {
    let pool = pool(1);
    let sandbox = job(wasmpool_guests::SANDBOX);
    let v: Option<String> = pool
        .call(&sandbox, "env-var", ("GREETING",))
        .env("GREETING", "hello")
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("hello"));
    let v: Option<String> = pool
        .call(&sandbox, "env-var", ("HOME",))
        .env("GREETING", "hello")
        .await
        .unwrap();
    assert_eq!(v, None);
    // An allowlisted host variable passes through; others still do not.
    let v: Option<String> = pool
        .call(&sandbox, "env-var", ("PATH",))
        .env_from_host("PATH")
        .env_from_host("WASMPOOL_SURELY_UNSET")
        .await
        .unwrap();
    assert_eq!(v, std::env::var("PATH").ok());
}

#[tokio::test]
async fn preopens_confine_the_guest_to_its_directory() {
    let dir = temp_dir("preopen");
    std::fs::create_dir_all(dir.join("ro")).unwrap();
    std::fs::create_dir_all(dir.join("rw")).unwrap();
    std::fs::write(dir.join("ro/data.txt"), "inside").unwrap();
    // A symbolic link out of the preopen (Windows needs a privilege to
    // make one, so there the other escapes are tried alone).
    #[cfg(unix)]
    std::os::unix::fs::symlink("/etc/passwd", dir.join("ro/escape")).unwrap();
    let pool = wasmpool::Pool::builder()
        .workers(1)
        .preopen_dir(dir.join("ro"), "/ro", wasmpool::DirAccess::ReadOnly)
        .preopen_dir(dir.join("rw"), "/rw", wasmpool::DirAccess::ReadWrite)
        .build()
        .unwrap();
    let sandbox = job(wasmpool_guests::SANDBOX);
    let read = |path: &'static str| {
        let pool = pool.clone();
        let sandbox = sandbox.clone();
        async move {
            pool.run::<Result<String, String>>(&sandbox, "read-file", (path,))
                .await
                .unwrap()
        }
    };
    assert_eq!(read("/ro/data.txt").await, Ok("inside".to_string()));
    assert!(read("/ro/../../etc/passwd").await.is_err());
    #[cfg(unix)]
    assert!(
        read("/ro/escape").await.is_err(),
        "a symlink out of the preopen"
    );
    assert!(read("/etc/passwd").await.is_err());

    let w: Result<(), String> = pool
        .run(&sandbox, "write-file", ("/ro/new.txt", "x"))
        .await
        .unwrap();
    assert!(w.is_err(), "wrote to a read-only preopen");
    assert!(!dir.join("ro/new.txt").exists());
    let w: Result<(), String> = pool
        .run(&sandbox, "write-file", ("/rw/new.txt", "x"))
        .await
        .unwrap();
    assert_eq!(w, Ok(()));
    assert_eq!(
        std::fs::read_to_string(dir.join("rw/new.txt")).unwrap(),
        "x"
    );
    pool.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_missing_preopen_is_a_config_error_before_any_call() {
    let missing = temp_dir("preopen-missing").join("nowhere");
    let err = wasmpool::Pool::builder()
        .workers(1)
        .preopen_dir(&missing, "/data", wasmpool::DirAccess::ReadOnly)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), wasmpool::ErrorKind::Config);
    assert!(err.to_string().contains("/data"), "{err}");

    // Per call too: the call fails on the host, and no worker is started.
    let pool = wasmpool::Pool::builder().workers(1).build().unwrap();
    let sandbox = job(wasmpool_guests::SANDBOX);
    let err = pool
        .call::<Result<String, String>>(&sandbox, "read-file", ("/data/x",))
        .preopen_dir(&missing, "/data", wasmpool::DirAccess::ReadOnly)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), wasmpool::ErrorKind::Config);
    assert_eq!(pool.statistics().spawned, 0);
}

#[tokio::test]
async fn deterministic_calls_repeat_exactly() {
    let pool = pool(1);
    let sandbox = job(wasmpool_guests::SANDBOX);
    let det = |seed: u64| {
        let (pool, sandbox) = (pool.clone(), sandbox.clone());
        async move {
            let bytes: Vec<u8> = pool
                .call(&sandbox, "random-bytes", (64u32,))
                .deterministic(seed)
                .await
                .unwrap();
            let clocks: (u64, u64) = pool
                .call(&sandbox, "clocks", ())
                .deterministic(seed)
                .await
                .unwrap();
            (bytes, clocks)
        }
    };
    let (a, b, c) = (det(7).await, det(7).await, det(8).await);
    assert_eq!(a, b, "the same seed gives the same bytes and times");
    assert_ne!(a.0, c.0, "another seed gives other bytes");
    assert_eq!(a.1.0, 1_700_000_000);

    let r1: Vec<u8> = pool.run(&sandbox, "random-bytes", (64u32,)).await.unwrap();
    let r2: Vec<u8> = pool.run(&sandbox, "random-bytes", (64u32,)).await.unwrap();
    assert_ne!(r1, r2, "real randomness by default");
    let (wall, _) = pool
        .run::<(u64, u64)>(&sandbox, "clocks", ())
        .await
        .unwrap();
    assert!(wall > 1_700_000_000);
}
