//! What the callers and nodes of a cluster share: the connection to the
//! NATS server, the streams and bucket, and the messages
//! ([`wire`]). The caller's side is `pool::remote`; the node is
//! `cluster::Node`.

pub(crate) mod wire;

use std::time::Duration;

use async_nats::jetstream;

use crate::error::{Error, ErrorKind};

/// A name no other caller or node has: the time, the process and a
/// count, in hex (a NATS subject token).
pub(crate) fn unique_name() -> String {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{nanos:x}{:x}{n:x}", std::process::id())
}

/// A cluster error: what was being done, against which server.
pub(crate) fn nats_error(doing: &str, url: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Io, format!("{doing} on NATS at {url}: {e}"))
}

/// Connects to the NATS server at `url` as `name`, reconnecting for ever
/// once connected. Connection events also go to `events`.
pub(crate) async fn connect(
    url: &str,
    name: &str,
    events: Option<tokio::sync::mpsc::UnboundedSender<async_nats::Event>>,
) -> Result<async_nats::Client, Error> {
    async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .event_callback(move |event| {
            let events = events.clone();
            async move {
                match &event {
                    async_nats::Event::Connected => tracing::info!("connected to NATS"),
                    async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS"),
                    other => tracing::debug!(event = %other, "NATS event"),
                }
                if let Some(events) = events {
                    let _ = events.send(event);
                }
            }
        })
        .connect(url)
        .await
        .map_err(|e| nats_error("connecting", url, e))
}

/// Creates the streams and the bucket the cluster uses, or finds them.
pub(crate) async fn streams(
    js: &jetstream::Context,
    url: &str,
) -> Result<jetstream::object_store::ObjectStore, Error> {
    use jetstream::stream::{Config, RetentionPolicy, StorageType};
    js.get_or_create_stream(Config {
        name: wire::CALLS_STREAM.into(),
        subjects: vec![wire::CALLS_SUBJECT.into()],
        retention: RetentionPolicy::WorkQueue,
        storage: StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Config::default()
    })
    .await
    .map_err(|e| nats_error("creating the stream of calls", url, e))?;
    match js.get_object_store(wire::COMPONENTS_BUCKET).await {
        Ok(store) => Ok(store),
        Err(_) => js
            .create_object_store(jetstream::object_store::Config {
                bucket: wire::COMPONENTS_BUCKET.into(),
                description: Some("wasmpool components, by content hash".into()),
                storage: StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| nats_error("creating the bucket of components", url, e)),
    }
}
