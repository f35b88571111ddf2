//! A guest's outgoing `wasi:http` requests, inside a worker: refused at
//! once when the call may make none, otherwise sent whole to the host
//! ([`GuestOp::Http`]), which checks and makes them. The worker never
//! opens a socket (a confined one cannot).
//!
//! The request body is read whole first (the guest may write it after
//! `handle`, before it waits for the response), up to
//! [`MAX_REQUEST_BODY`]; the response comes back whole, up to the call's
//! limit, which the host enforces.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

use super::port::Port;
use crate::wire::{Answer, GuestOp, HttpFailure, HttpRequest, HttpResponse, MAX_REQUEST_BODY};

/// What reports a connection's errors after the response, to `wasi:http`;
/// nothing here, where the response arrives whole.
type Io = Box<dyn Future<Output = Result<(), Error>> + Send>;

/// The outcome of a request, as `wasi:http`'s hooks return it.
type Sent = Result<(http::Response<WasiBody>, Io), Error>;

/// The `wasi:http` hooks of one call's store.
pub(super) struct Outgoing {
    /// The way to the host, when the call may make requests; `None`
    /// refuses every one in the worker.
    port: Option<Arc<Port>>,
}

impl Outgoing {
    /// Hooks that forward requests through `port` when `granted`, and
    /// refuse them all otherwise.
    pub(super) fn new(port: &Arc<Port>, granted: bool) -> Outgoing {
        Outgoing {
            port: granted.then(|| port.clone()),
        }
    }
}

impl wasmtime_wasi_http::WasiHttpHooks for Outgoing {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Io,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let Some(port) = self.port.clone() else {
            return Box::new(async { Err(Error::HttpRequestDenied) });
        };
        Box::new(async move {
            let request = whole(request).await?;
            // The guest waits here while the host makes the request; an
            // interrupt (cancel, timeout) ends the wait, and the host drops
            // the request when the call ends.
            let answer = port
                .exchange(GuestOp::Http(Box::new(request)), None)
                .map_err(|e| Error::InternalError(Some(e.to_string())))?;
            match answer {
                Answer::Http(outcome) => match *outcome {
                    Ok(response) => response_of(response),
                    Err(failure) => Err(error_of(failure)),
                },
                other => Err(Error::InternalError(Some(format!(
                    "the host answered an HTTP request with {}",
                    other.label()
                )))),
            }
        })
    }
}

/// `request` with its body read whole, for the host.
async fn whole(request: http::Request<WasiBody>) -> Result<HttpRequest, Error> {
    let (parts, mut body) = request.into_parts();
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if (bytes.len() + data.len()) as u64 > MAX_REQUEST_BODY {
                return Err(Error::HttpRequestBodySize(Some(
                    (bytes.len() + data.len()) as u64,
                )));
            }
            bytes.extend_from_slice(&data);
        }
    }
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                serde_bytes::ByteBuf::from(value.as_bytes().to_vec()),
            )
        })
        .collect();
    Ok(HttpRequest {
        method: parts.method.as_str().to_string(),
        uri: parts.uri.to_string(),
        headers,
        body: serde_bytes::ByteBuf::from(bytes),
    })
}

/// The response the host got, for the guest.
fn response_of(response: HttpResponse) -> Sent {
    let HttpResponse {
        status,
        headers,
        body,
    } = response;
    let mut builder = http::Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(name, value.into_vec());
    }
    let body = Full::new(Bytes::from(body.into_vec()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let response = builder
        .body(body)
        .map_err(|e| Error::InternalError(Some(format!("the host's response: {e}"))))?;
    Ok((response, Box::new(async { Ok(()) })))
}

/// The `wasi:http` error code for why the host gave no response.
fn error_of(failure: HttpFailure) -> Error {
    match failure {
        HttpFailure::Denied(_) => Error::HttpRequestDenied,
        HttpFailure::TooMany(_) => Error::ConnectionLimitReached,
        HttpFailure::InvalidUri(_) => Error::HttpRequestUriInvalid,
        HttpFailure::RequestTooLarge => Error::HttpRequestBodySize(Some(MAX_REQUEST_BODY)),
        HttpFailure::Dns(_) => Error::DnsError {
            rcode: None,
            info_code: None,
        },
        HttpFailure::ConnectionRefused(_) => Error::ConnectionRefused,
        HttpFailure::ConnectionTimeout => Error::ConnectionTimeout,
        HttpFailure::ResponseTimeout => Error::HttpResponseTimeout,
        HttpFailure::Tls(_) => Error::TlsProtocolError,
        HttpFailure::ResponseTooLarge(seen) => Error::HttpResponseBodySize(Some(seen)),
        HttpFailure::Protocol(_) => Error::HttpProtocolError,
    }
}
