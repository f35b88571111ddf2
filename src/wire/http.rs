//! Outbound HTTP: what a call may reach ([`HttpGrant`], in its options),
//! and a guest's `wasi:http` request and its answer as they cross between
//! worker and host, in a [`GuestOp::Http`](super::GuestOp::Http) and an
//! [`Answer::Http`](super::Answer::Http).
//!
//! The worker never connects anywhere: it sends the whole request to the
//! host, which checks it against the grant *it* holds for the call (never
//! one a worker sends back), makes it, and answers with the whole response
//! or the `wasi:http` error code the guest gets.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// The largest request body a guest may send, in bytes: 16 MiB. A larger
/// one fails in the worker with `wasi:http`'s `HTTP-request-body-size`,
/// before anything reaches the host.
pub(crate) const MAX_REQUEST_BODY: u64 = 16 << 20;

/// The largest response limit a call may set, in bytes: 512 MiB. A
/// response travels whole in one frame, and frames stop at 1 GiB.
pub(crate) const MAX_RESPONSE_LIMIT: u64 = 512 << 20;

/// What outbound HTTP a call may make. Empty (the default): none, and the
/// worker refuses every request itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HttpGrant {
    /// Allowlist patterns as the user wrote them (`"https://*.example.com"`),
    /// checked when the pool is built or the call sent.
    pub(crate) allow: Vec<String>,
    /// How long one request may take, from resolving its host to the last
    /// byte of its response.
    pub(crate) timeout: Option<Duration>,
    /// The largest response body the host accepts, in bytes.
    pub(crate) max_response: Option<u64>,
    /// The most requests one call may make.
    pub(crate) max_requests: Option<u32>,
}

impl HttpGrant {
    /// Whether the call may make any request at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.allow.is_empty()
    }
}

/// A guest's outgoing request, whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HttpRequest {
    pub(crate) method: String,
    /// The absolute URI: scheme, authority, path and query.
    pub(crate) uri: String,
    pub(crate) headers: Vec<(String, ByteBuf)>,
    pub(crate) body: ByteBuf,
}

/// The response the host got, whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, ByteBuf)>,
    pub(crate) body: ByteBuf,
}

/// Why the host did not answer a request with a response: each is a
/// `wasi:http` error code the guest sees. The reasons in the strings are
/// for the host's traces, not for the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum HttpFailure {
    /// Off the allowlist, or the call has none (`HTTP-request-denied`).
    Denied(String),
    /// The call made as many requests as it may (`connection-limit-reached`).
    TooMany(u32),
    /// Not an absolute `http` or `https` URI (`HTTP-request-URI-invalid`).
    InvalidUri(String),
    /// The request body is over [`MAX_REQUEST_BODY`]
    /// (`HTTP-request-body-size`).
    RequestTooLarge,
    /// The host name did not resolve (`DNS-error`).
    Dns(String),
    /// No address took the connection (`connection-refused`).
    ConnectionRefused(String),
    /// Resolving and connecting took longer than the request's timeout
    /// (`connection-timeout`).
    ConnectionTimeout,
    /// The response took longer than what was left of the timeout
    /// (`HTTP-response-timeout`).
    ResponseTimeout,
    /// The TLS handshake failed (`TLS-protocol-error`).
    Tls(String),
    /// The response body is larger than the call accepts
    /// (`HTTP-response-body-size`, with the bytes seen so far).
    ResponseTooLarge(u64),
    /// The server broke HTTP, or the connection broke
    /// (`HTTP-protocol-error`).
    Protocol(String),
}
