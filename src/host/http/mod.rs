//! Outbound HTTP for guests, made by the host: a worker stays socketless
//! and sends each `wasi:http` request here whole
//! ([`GuestOp::Http`](crate::wire::GuestOp::Http)); the worker's [`Seat`]
//! checks it against the call's [`Outbound`] (the allowlist and limits the
//! host took from the call's own options, never from the worker), makes
//! it on the `wasmpool-http` thread, and answers with the whole response
//! or the `wasi:http` error code the guest gets.
//!
//! [`Seat`]: super::Seat

#[cfg_attr(not(feature = "wasi-http"), allow(dead_code))]
mod allowlist;
#[cfg(feature = "wasi-http")]
mod client;

use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) use allowlist::Allowlist;

use crate::error::{Error, ErrorKind};
use crate::options::{
    DEFAULT_HTTP_TIMEOUT, DEFAULT_MAX_HTTP_REQUESTS, DEFAULT_MAX_HTTP_RESPONSE_BYTES,
};
use crate::wire::{HttpFailure, HttpGrant, HttpRequest, HttpResponse, MAX_RESPONSE_LIMIT};

/// Checks a call's grant before it is sent: every pattern parses, and this
/// build can make requests at all.
///
/// # Errors
///
/// [`ErrorKind::Config`] for a bad pattern or a zero limit;
/// [`ErrorKind::Unsupported`] without the `wasi-http` feature.
pub(crate) fn check_grant(grant: &HttpGrant) -> Result<(), Error> {
    if grant.is_empty() {
        return Ok(());
    }
    if !cfg!(feature = "wasi-http") {
        return Err(Error::new(
            ErrorKind::Unsupported,
            "outbound HTTP (allow_http) needs wasmpool's `wasi-http` feature",
        ));
    }
    Allowlist::parse(&grant.allow)?;
    if grant.timeout.is_some_and(|t| t.is_zero()) {
        return Err(Error::new(
            ErrorKind::Config,
            "http_timeout must be more than zero",
        ));
    }
    if grant.max_response.is_some_and(|m| m > MAX_RESPONSE_LIMIT) {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "max_http_response_bytes must be at most {MAX_RESPONSE_LIMIT} bytes (512 MiB): \
                 a response travels whole"
            ),
        ));
    }
    if grant.max_requests == Some(0) {
        return Err(Error::new(
            ErrorKind::Config,
            "max_http_requests must be at least 1; to allow no requests, allow no host",
        ));
    }
    Ok(())
}

/// What one request sent to a worker may reach, and how much: the host's
/// own copy of the call's grant, parsed.
#[derive(Debug)]
pub(crate) struct Outbound {
    #[cfg_attr(not(feature = "wasi-http"), allow(dead_code))]
    allow: Allowlist,
    #[cfg_attr(not(feature = "wasi-http"), allow(dead_code))]
    timeout: std::time::Duration,
    #[cfg_attr(not(feature = "wasi-http"), allow(dead_code))]
    max_response: u64,
    /// The most requests: the call's limit once per item of the request.
    max_requests: u64,
    made: AtomicU64,
}

impl Outbound {
    /// The outbound HTTP of a request of `items` calls with `grant`, or
    /// `None` when it may make none.
    ///
    /// # Errors
    ///
    /// As [`check_grant`].
    pub(crate) fn new(grant: &HttpGrant, items: usize) -> Result<Option<Outbound>, Error> {
        if grant.is_empty() {
            return Ok(None);
        }
        check_grant(grant)?;
        let per_call = u64::from(grant.max_requests.unwrap_or(DEFAULT_MAX_HTTP_REQUESTS));
        Ok(Some(Outbound {
            allow: Allowlist::parse(&grant.allow)?,
            timeout: grant.timeout.unwrap_or(DEFAULT_HTTP_TIMEOUT),
            max_response: grant
                .max_response
                .unwrap_or(DEFAULT_MAX_HTTP_RESPONSE_BYTES),
            max_requests: per_call.saturating_mul(items.max(1) as u64),
            made: AtomicU64::new(0),
        }))
    }

    /// Counts one more request, or refuses it when the call has made all
    /// it may.
    pub(crate) fn take_turn(&self) -> Result<(), HttpFailure> {
        let made = self.made.fetch_add(1, Ordering::Relaxed);
        if made >= self.max_requests {
            return Err(HttpFailure::TooMany(
                u32::try_from(self.max_requests).unwrap_or(u32::MAX),
            ));
        }
        Ok(())
    }

    /// Makes `req` if the allowlist allows it.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the connection.
    pub(crate) async fn fetch(&self, req: HttpRequest) -> Result<HttpResponse, HttpFailure> {
        #[cfg(feature = "wasi-http")]
        {
            let limits = client::Limits {
                timeout: self.timeout,
                max_response: self.max_response,
            };
            client::fetch(&self.allow, req, limits).await
        }
        #[cfg(not(feature = "wasi-http"))]
        {
            let _ = req;
            Err(HttpFailure::Denied(
                "this build has no outbound HTTP".into(),
            ))
        }
    }
}

/// The runtime outbound requests run on: one `wasmpool-http` thread,
/// started on the first request and kept for the life of the process. Not
/// the caller's runtime, which may lack the I/O driver these need.
pub(crate) fn runtime() -> Result<tokio::runtime::Handle, String> {
    use std::sync::OnceLock;
    static RUNTIME: OnceLock<Result<tokio::runtime::Handle, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("creating the outbound HTTP runtime: {e}"))?;
            let handle = rt.handle().clone();
            std::thread::Builder::new()
                .name("wasmpool-http".into())
                .spawn(move || rt.block_on(std::future::pending::<()>()))
                .map_err(|e| format!("starting the wasmpool-http thread: {e}"))?;
            Ok(handle)
        })
        .clone()
}
