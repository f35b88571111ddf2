//! Makes one checked outbound request on the host: resolve the host, keep
//! the addresses the allowlist allows, connect to one of *those* (never
//! resolving again), TLS for `https`, HTTP/1.1 with hyper, and read the
//! response body up to the call's limit, all within the request's timeout.
//!
//! Redirects are not followed: a 3xx goes back to the guest as it came,
//! and a guest that follows it makes a new request, checked like any
//! other.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use serde_bytes::ByteBuf;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::rustls;

use super::allowlist::{Allowlist, Destination};
use crate::wire::{HttpFailure, HttpRequest, HttpResponse, MAX_REQUEST_BODY};

/// What one request may take.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) timeout: Duration,
    pub(super) max_response: u64,
}

/// Response headers that describe the connection or the framing the host
/// already undid, not the response the guest gets whole.
const HOP_BY_HOP: [&str; 4] = ["connection", "keep-alive", "transfer-encoding", "upgrade"];

/// Makes `req` if `allow` allows it, within `limits`.
///
/// # Cancel safety
///
/// Dropping the future drops the connection.
pub(super) async fn fetch(
    allow: &Allowlist,
    req: HttpRequest,
    limits: Limits,
) -> Result<HttpResponse, HttpFailure> {
    let HttpRequest {
        method,
        uri,
        headers,
        body,
    } = req;
    let uri: http::Uri = uri
        .parse()
        .map_err(|e| HttpFailure::InvalidUri(format!("{uri:?}: {e}")))?;
    let dest = Destination::of(&uri).map_err(HttpFailure::InvalidUri)?;
    if !allow.allows(&dest) {
        return Err(HttpFailure::Denied(format!(
            "{dest} is not on the call's allowlist"
        )));
    }
    if body.len() as u64 > MAX_REQUEST_BODY {
        return Err(HttpFailure::RequestTooLarge);
    }
    let request = build_request(&uri, &method, headers, body)?;
    let deadline = Instant::now() + limits.timeout;

    let addrs = resolve(&dest, deadline).await?;
    let (checked, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = addrs
        .into_iter()
        .partition(|a| allow.allows_address(&dest, a.ip()));
    if checked.is_empty() {
        return Err(HttpFailure::Denied(format!(
            "{dest} resolves to {refused:?}, internal addresses that are not on the call's \
             allowlist themselves"
        )));
    }
    let tcp = connect(&checked, deadline).await?;
    let stream: Box<dyn Stream> = if dest.https {
        let tls = tls_connect(&dest, tcp);
        match tokio::time::timeout_at(deadline, tls).await {
            Ok(stream) => stream?,
            Err(_) => return Err(HttpFailure::ConnectionTimeout),
        }
    } else {
        Box::new(tcp)
    };
    let exchange = exchange(stream, request, limits.max_response);
    match tokio::time::timeout_at(deadline, exchange).await {
        Ok(response) => response,
        Err(_) => Err(HttpFailure::ResponseTimeout),
    }
}

/// The request as it goes on the wire: the path and query only (the
/// destination is the connection's), the guest's headers, and a `Host`
/// that names the destination that was checked.
fn build_request(
    uri: &http::Uri,
    method: &str,
    headers: Vec<(String, ByteBuf)>,
    body: ByteBuf,
) -> Result<http::Request<Full<Bytes>>, HttpFailure> {
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|_| HttpFailure::Protocol(format!("invalid method {method:?}")))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut builder = http::Request::builder().method(method).uri(path);
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("host") {
            continue;
        }
        builder = builder.header(name, value.into_vec());
    }
    let authority = uri.authority().map_or("", |a| a.as_str());
    builder
        .header(http::header::HOST, authority)
        .body(Full::new(Bytes::from(body.into_vec())))
        .map_err(|e| HttpFailure::Protocol(format!("building the request: {e}")))
}

/// The addresses of `dest`'s host: itself when it is an IP literal.
async fn resolve(dest: &Destination, deadline: Instant) -> Result<Vec<SocketAddr>, HttpFailure> {
    if let Some(ip) = dest.ip() {
        return Ok(vec![SocketAddr::new(ip, dest.port)]);
    }
    let lookup = tokio::net::lookup_host((dest.host.as_str(), dest.port));
    match tokio::time::timeout_at(deadline, lookup).await {
        Ok(Ok(addrs)) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                Err(HttpFailure::Dns(format!("{} has no address", dest.host)))
            } else {
                Ok(addrs)
            }
        }
        Ok(Err(e)) => Err(HttpFailure::Dns(format!("resolving {}: {e}", dest.host))),
        Err(_) => Err(HttpFailure::ConnectionTimeout),
    }
}

/// Connects to the first of `addrs` that takes the connection.
async fn connect(addrs: &[SocketAddr], deadline: Instant) -> Result<TcpStream, HttpFailure> {
    let mut last = String::new();
    for addr in addrs {
        match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => last = format!("connecting to {addr}: {e}"),
            Err(_) => return Err(HttpFailure::ConnectionTimeout),
        }
    }
    Err(HttpFailure::ConnectionRefused(last))
}

/// A connection, plain or TLS.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Stream for T {}

/// TLS over `tcp`, verified for `dest`'s host against the system's root
/// certificates.
async fn tls_connect(dest: &Destination, tcp: TcpStream) -> Result<Box<dyn Stream>, HttpFailure> {
    let config = tls_config()
        .as_ref()
        .map_err(|e| HttpFailure::Tls(e.clone()))?;
    let name = match dest.ip() {
        Some(ip) => rustls::pki_types::ServerName::IpAddress(ip.into()),
        None => rustls::pki_types::ServerName::try_from(dest.host.clone())
            .map_err(|e| HttpFailure::InvalidUri(format!("{}: {e}", dest.host)))?,
    };
    let stream = tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| HttpFailure::Tls(format!("TLS with {dest}: {e}")))?;
    Ok(Box::new(stream))
}

/// The TLS client settings, made once: the system's root certificates,
/// HTTP/1.1.
fn tls_config() -> &'static Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return Err(format!(
                "no trusted root certificates found on this host ({:?})",
                found.errors
            ));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS settings: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    })
}

/// Sends `request` over `stream` and reads the response, whole, up to
/// `max_response` bytes of body.
async fn exchange(
    stream: Box<dyn Stream>,
    request: http::Request<Full<Bytes>>,
    max_response: u64,
) -> Result<HttpResponse, HttpFailure> {
    let io = wasmtime_wasi_http::io::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| HttpFailure::Protocol(format!("HTTP handshake: {e}")))?;
    // The connection is driven here, not in a task of its own, so that it
    // goes when the request does. If it ends first, the request fails on
    // its own.
    let conn = async move {
        let _ = conn.await;
        std::future::pending::<std::convert::Infallible>().await
    };
    let response = async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| HttpFailure::Protocol(format!("sending the request: {e}")))?;
        let (parts, mut body) = response.into_parts();
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if let Some(len) = declared.filter(|&len| len > max_response) {
            return Err(HttpFailure::ResponseTooLarge(len));
        }
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| HttpFailure::Protocol(format!("reading the response: {e}")))?;
            if let Ok(data) = frame.into_data() {
                let total = bytes.len() as u64 + data.len() as u64;
                if total > max_response {
                    return Err(HttpFailure::ResponseTooLarge(total));
                }
                bytes.extend_from_slice(&data);
            }
        }
        let headers = parts
            .headers
            .iter()
            .filter(|(name, _)| !HOP_BY_HOP.contains(&name.as_str()))
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    ByteBuf::from(value.as_bytes().to_vec()),
                )
            })
            .collect();
        Ok(HttpResponse {
            status: parts.status.as_u16(),
            headers,
            body: ByteBuf::from(bytes),
        })
    };
    tokio::select! {
        r = response => r,
        never = conn => match never {},
    }
}
