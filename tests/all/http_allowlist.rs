//! Outbound HTTP through the allowlist: the `fetch` guest's `wasi:http`
//! requests, made by the host, against real HTTP servers on 127.0.0.1
//! that the tests start (plain `std::net`, a thread per connection).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use wasmpool::{ErrorKind, Pool, WorkerKind};

use crate::common::job;

/// The `fetch` guest's `response` record.
#[derive(Debug, Deserialize)]
struct Response {
    status: u16,
    location: Option<String>,
    body: serde_bytes::ByteBuf,
}

/// A request the server received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    host: String,
    body: Vec<u8>,
}

/// A tiny HTTP/1.1 server on 127.0.0.1, on a port of its own. Each
/// connection carries one request and is closed after its response:
///
/// - `/hello`: 200, `hello`;
/// - `/echo`: 200, the request body;
/// - `/redirect?to=URL`: 302 to `URL`;
/// - `/big?n=N`: 200, N bytes, with a `content-length`;
/// - `/chunked?n=N`: 200, N bytes, chunked, without one;
/// - `/stall`: no response until the client goes.
struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let log = log.clone();
                std::thread::spawn(move || serve(conn, &log));
            }
        });
        Server { port, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn pattern(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(conn: TcpStream, log: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let (mut length, mut host) = (0usize, String::new());
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "host" => host = value.trim().to_string(),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    log.lock().unwrap().push(Seen {
        method,
        path: path.clone(),
        host,
        body: body.clone(),
    });
    let mut out = conn;
    let number = |p: &str| -> usize { p.split_once("n=").map_or(0, |(_, n)| n.parse().unwrap()) };
    let reply = |out: &mut TcpStream, status: &str, headers: &str, body: &[u8]| {
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n",
            body.len()
        );
        let _ = out.write_all(head.as_bytes());
        let _ = out.write_all(body);
    };
    if path == "/hello" {
        reply(&mut out, "200 OK", "", b"hello");
    } else if path == "/echo" {
        reply(&mut out, "200 OK", "", &body);
    } else if let Some(to) = path.strip_prefix("/redirect?to=") {
        reply(&mut out, "302 Found", &format!("location: {to}\r\n"), b"");
    } else if path.starts_with("/big") {
        reply(&mut out, "200 OK", "", &vec![b'x'; number(&path)]);
    } else if path.starts_with("/chunked") {
        let _ = out.write_all(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        );
        let mut left = number(&path);
        while left > 0 {
            let n = left.min(1000);
            let chunk = format!("{n:x}\r\n{}\r\n", "x".repeat(n));
            if out.write_all(chunk.as_bytes()).is_err() {
                return;
            }
            left -= n;
        }
        let _ = out.write_all(b"0\r\n\r\n");
    } else if path == "/stall" {
        // Until the client closes the connection.
        let _ = reader.read(&mut [0; 1]);
    } else {
        reply(&mut out, "404 Not Found", "", b"");
    }
}

fn pool_with(kind: WorkerKind, allow: &[String]) -> Pool {
    let mut b = Pool::builder().workers(1).worker_kind(kind);
    for a in allow {
        b = b.allow_http(a.clone());
    }
    b.build().unwrap()
}

async fn get(pool: &Pool, url: &str) -> Result<Response, String> {
    pool.run(
        &job(wasmpool_guests::FETCH),
        "fetch",
        ("GET", url, serde_bytes::Bytes::new(b"")),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn an_allowed_request_is_made_by_the_host() {
    let server = Server::start();
    for kind in [WorkerKind::Process, WorkerKind::Thread] {
        let pool = pool_with(kind, &[server.pattern()]);
        let r = get(&pool, &server.url("/hello")).await.unwrap();
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, &b"hello"[..]),
            "{kind:?}"
        );

        // A body the guest writes after `handle` goes out whole.
        let body = vec![7u8; 100_000];
        let fetch = job(wasmpool_guests::FETCH);
        let r: Result<Response, String> = pool
            .run(
                &fetch,
                "fetch",
                ("POST", server.url("/echo"), serde_bytes::Bytes::new(&body)),
            )
            .await
            .unwrap();
        let r = r.unwrap();
        assert_eq!(r.status, 200);
        assert!(
            r.body.as_slice() == body,
            "{kind:?}: the body came back changed"
        );
    }
    let seen = server.seen();
    assert_eq!(seen.len(), 4);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("GET", "/hello")
    );
    assert_eq!(seen[1].method, "POST");
    assert_eq!(seen[1].body.len(), 100_000);
    assert_eq!(seen[0].host, format!("127.0.0.1:{}", server.port));
}

#[tokio::test]
async fn a_pool_without_a_grant_denies_every_request() {
    let server = Server::start();
    let pool = Pool::builder().workers(1).build().unwrap();
    let err = get(&pool, &server.url("/hello")).await.unwrap_err();
    assert!(err.contains("HttpRequestDenied"), "{err}");
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn a_host_off_the_list_is_denied() {
    let allowed = Server::start();
    let other = Server::start();
    let pool = pool_with(WorkerKind::Process, &[allowed.pattern()]);
    // Another port of the same address.
    let err = get(&pool, &other.url("/hello")).await.unwrap_err();
    assert!(err.contains("HttpRequestDenied"), "{err}");
    // The same address and port under another name.
    let err = get(&pool, &format!("http://localhost:{}/hello", allowed.port))
        .await
        .unwrap_err();
    assert!(err.contains("HttpRequestDenied"), "{err}");
    // Another scheme.
    let err = get(&pool, &format!("https://127.0.0.1:{}/hello", allowed.port))
        .await
        .unwrap_err();
    assert!(err.contains("HttpRequestDenied"), "{err}");
    assert!(allowed.seen().is_empty());
    assert!(other.seen().is_empty());
    // The list itself still works.
    assert_eq!(
        get(&pool, &allowed.url("/hello")).await.unwrap().status,
        200
    );
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_needs_loopback_allowed() {
    let server = Server::start();
    let by_name = format!("http://localhost:{}", server.port);
    let url = format!("{by_name}/hello");
    // The name is allowed, but it resolves to 127.0.0.1 (as a rebinding
    // would), which is not.
    let pool = pool_with(WorkerKind::Process, std::slice::from_ref(&by_name));
    let err = get(&pool, &url).await.unwrap_err();
    assert!(err.contains("HttpRequestDenied"), "{err}");
    assert!(server.seen().is_empty());
    // With the address allowed too, the same request goes through, to the
    // address that was checked, under the name the guest gave.
    let pool = pool_with(WorkerKind::Process, &[by_name, server.pattern()]);
    let r = get(&pool, &url).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(server.seen()[0].host, format!("localhost:{}", server.port));
}

#[tokio::test]
async fn a_redirect_off_the_list_is_not_followed() {
    let allowed = Server::start();
    let other = Server::start();
    let pool = pool_with(WorkerKind::Process, &[allowed.pattern()]);
    let url = allowed.url(&format!("/redirect?to={}", other.url("/hello")));
    // The host returns the redirect as it came...
    let r = get(&pool, &url).await.unwrap();
    assert_eq!(r.status, 302);
    assert_eq!(r.location, Some(other.url("/hello")));
    // ...and a guest that follows it makes a new request, which is denied.
    let fetch = job(wasmpool_guests::FETCH);
    let r: Result<Response, String> = pool
        .run(&fetch, "get-following", (&url, 3u32))
        .await
        .unwrap();
    let err = r.unwrap_err();
    assert!(err.contains("HttpRequestDenied"), "{err}");
    assert!(other.seen().is_empty());
    // A redirect within the list is followed by the guest.
    let within = allowed.url(&format!("/redirect?to={}", allowed.url("/hello")));
    let r: Result<Response, String> = pool
        .run(&fetch, "get-following", (&within, 3u32))
        .await
        .unwrap();
    assert_eq!(r.unwrap().body.as_slice(), b"hello");
}

#[tokio::test]
async fn a_response_over_the_limit_is_refused() {
    let server = Server::start();
    let pool = Pool::builder()
        .workers(1)
        .allow_http(server.pattern())
        .max_http_response_bytes(10_000)
        .build()
        .unwrap();
    let r = get(&pool, &server.url("/big?n=10000")).await.unwrap();
    assert_eq!(r.body.len(), 10_000);
    // Declared too large, and too large without a declared length.
    for path in ["/big?n=10001", "/chunked?n=50000"] {
        let err = get(&pool, &server.url(path)).await.unwrap_err();
        assert!(err.contains("HttpResponseBodySize"), "{path}: {err}");
    }
    // A call may set its own limit.
    let fetch = job(wasmpool_guests::FETCH);
    let r: Result<Response, String> = pool
        .call(
            &fetch,
            "fetch",
            (
                "GET",
                server.url("/big?n=20000"),
                serde_bytes::Bytes::new(b""),
            ),
        )
        .max_http_response_bytes(20_000)
        .await
        .unwrap();
    assert_eq!(r.unwrap().body.len(), 20_000);
}

#[tokio::test]
async fn a_call_makes_at_most_its_number_of_requests() {
    let server = Server::start();
    let pool = Pool::builder()
        .workers(1)
        .allow_http(server.pattern())
        .max_http_requests(2)
        .build()
        .unwrap();
    let fetch = job(wasmpool_guests::FETCH);
    let r: Vec<Result<u16, String>> = pool
        .run(&fetch, "get-many", (server.url("/hello"), 3u32))
        .await
        .unwrap();
    assert_eq!(r[..2], [Ok(200), Ok(200)]);
    let err = r[2].as_ref().unwrap_err();
    assert!(err.contains("ConnectionLimitReached"), "{err}");
    assert_eq!(server.seen().len(), 2);
    // The count is per call.
    let r: Vec<Result<u16, String>> = pool
        .run(&fetch, "get-many", (server.url("/hello"), 2u32))
        .await
        .unwrap();
    assert_eq!(r, [Ok(200), Ok(200)]);
}

#[tokio::test]
async fn a_request_past_its_timeout_fails_in_the_guest() {
    let server = Server::start();
    let pool = Pool::builder()
        .workers(1)
        .allow_http(server.pattern())
        .http_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    // The server never answers: only the timeout ends the request.
    let err = get(&pool, &server.url("/stall")).await.unwrap_err();
    assert!(err.contains("HttpResponseTimeout"), "{err}");
    // The worker serves the next call.
    assert_eq!(get(&pool, &server.url("/hello")).await.unwrap().status, 200);
}

#[tokio::test]
async fn a_calls_grant_is_its_own() {
    let server = Server::start();
    let pool = Pool::builder().workers(1).build().unwrap();
    let fetch = job(wasmpool_guests::FETCH);
    let r: Result<Response, String> = pool
        .call(
            &fetch,
            "fetch",
            ("GET", server.url("/hello"), serde_bytes::Bytes::new(b"")),
        )
        .allow_http(server.pattern())
        .await
        .unwrap();
    assert_eq!(r.unwrap().status, 200);
    // The next call on the same worker, without the grant, has none.
    let err = get(&pool, &server.url("/hello")).await.unwrap_err();
    assert!(err.contains("HttpRequestDenied"), "{err}");
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn bad_patterns_are_config_errors() {
    for bad in [
        "127.0.0.1:80",
        "ftp://example.com",
        "https://example.com/path",
        "https://a.*.com",
    ] {
        let err = Pool::builder().allow_http(bad).build().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{bad}: {err}");
        assert!(err.to_string().contains(bad), "{err}");
    }
    let pool = Pool::builder().workers(1).build().unwrap();
    let fetch = job(wasmpool_guests::FETCH);
    let err = pool
        .call::<Result<Response, String>>(
            &fetch,
            "fetch",
            ("GET", "http://x/", serde_bytes::Bytes::new(b"")),
        )
        .allow_http("http://*")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    let err = Pool::builder()
        .allow_http("http://127.0.0.1:8080")
        .max_http_requests(0)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    let err = Pool::builder()
        .allow_http("http://127.0.0.1:8080")
        .max_http_response_bytes(1 << 40)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
}

#[tokio::test]
async fn a_cluster_pool_refuses_outbound_http() {
    // Refused when built, before any connection to the server.
    let err = Pool::builder()
        .nats("nats://127.0.0.1:1")
        .allow_http("https://api.example.com")
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
}
