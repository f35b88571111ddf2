//! A guest that makes outgoing `wasi:http` requests, for the tests of the
//! pool's HTTP allowlist.

wit_bindgen::generate!({ path: "../../../wit/jobs", world: "fetch" });

use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
use wasi::io::streams::StreamError;

struct Fetch;

impl Guest for Fetch {
    fn fetch(method: String, url: String, body: Vec<u8>) -> Result<Response, String> {
        send(&method, &url, &body)
    }

    fn get_following(url: String, hops: u32) -> Result<Response, String> {
        let mut url = url;
        let mut left = hops;
        loop {
            let response = send("GET", &url, &[])?;
            match &response.location {
                Some(next) if (300..400).contains(&response.status) && left > 0 => {
                    left -= 1;
                    url = next.clone();
                }
                _ => return Ok(response),
            }
        }
    }

    fn get_many(url: String, n: u32) -> Vec<Result<u16, String>> {
        (0..n)
            .map(|_| send("GET", &url, &[]).map(|r| r.status))
            .collect()
    }
}

/// Sends one request and reads its response whole.
fn send(method: &str, url: &str, body: &[u8]) -> Result<Response, String> {
    let (scheme, rest) = match url.split_once("://") {
        Some(("https", r)) => (Scheme::Https, r),
        Some(("http", r)) => (Scheme::Http, r),
        _ => return Err(format!("unsupported url {url}")),
    };
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let method = match method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        other => Method::Other(other.to_string()),
    };
    let req = OutgoingRequest::new(Fields::new());
    req.set_method(&method).map_err(|()| "bad method".to_string())?;
    req.set_scheme(Some(&scheme))
        .map_err(|()| "bad scheme".to_string())?;
    req.set_authority(Some(authority))
        .map_err(|()| "bad authority".to_string())?;
    req.set_path_with_query(Some(&path))
        .map_err(|()| "bad path".to_string())?;
    let outgoing = req.body().map_err(|()| "no body".to_string())?;
    let future = outgoing_handler::handle(req, None).map_err(|e| format!("{e:?}"))?;
    // The body goes after `handle`, as a streaming client sends it.
    {
        let stream = outgoing.write().map_err(|()| "no body stream".to_string())?;
        for chunk in body.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| format!("writing the body: {e:?}"))?;
        }
    }
    OutgoingBody::finish(outgoing, None).map_err(|e| format!("{e:?}"))?;
    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(resp))) => resp,
        Some(Ok(Err(e))) => return Err(format!("{e:?}")),
        Some(Err(())) => return Err("response taken twice".into()),
        None => return Err("no response".into()),
    };
    let status = response.status();
    let location = response
        .headers()
        .get(&"location".to_string())
        .first()
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let incoming = response.consume().map_err(|()| "no body".to_string())?;
    let mut bytes = Vec::new();
    {
        let stream = incoming.stream().map_err(|()| "no body stream".to_string())?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(e) => return Err(format!("reading the body: {e:?}")),
            }
        }
    }
    Ok(Response {
        status,
        location,
        body: bytes,
    })
}

export!(Fetch);
