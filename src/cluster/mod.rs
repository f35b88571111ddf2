//! Calls on many machines: a [`Pool`](crate::Pool) whose calls run on
//! worker [`Node`]s, through NATS JetStream.
//!
//! ```text
//!  caller (Pool::builder().nats(url))          nodes (wasmpool serve --nats url)
//!  ──────────────────────────────────          ─────────────────────────────────
//!  component ──put once by hash──▶ [object store wasmpool-components] ──get──▶ compile, cache on disk
//!  call ──publish──▶ [stream WASMPOOL_CALLS, work queue] ──pull, ≤ workers un-acked──▶ local Pool
//!  result ◀──ordered consumer── [stream WASMPOOL_RESULTS] ◀──publish, then ack──┘
//!  drop / cancel ──▶ wasmpool.cancel ───────────────────────────────────────▶ interrupt / kill
//!  statistics() ◀── wasmpool.nodes.<id> heartbeats ◀──────────────────────── every second
//! ```
//!
//! - **Calls** are MessagePack orders on the work-queue stream
//!   `WASMPOOL_CALLS`, pulled by every node from one durable consumer. A
//!   node asks for no more orders than it has free workers, so the
//!   consumer is the queue and a busy node takes nothing more. A batch of
//!   [`Pool::map`](crate::Pool::map) items travels as one order.
//! - **Components** are uploaded once per content hash to the object store
//!   `wasmpool-components`. A node fetches each once, and its pool
//!   compiles it once into its on-disk cache.
//! - **Results** are published to `WASMPOOL_RESULTS` under the caller's own
//!   subject, with the order as message id, so JetStream drops a second
//!   copy; the caller keeps the first answer per order and drops any
//!   other. A node acks an order only once its result is stored, and
//!   tells the server it is still working every third of the ack wait.
//! - **Cancels** go to every node on `wasmpool.cancel`; the node running
//!   the order applies its cancel mode (interrupt, kill, finish).
//! - **Heartbeats**: nodes publish their load every second on
//!   `wasmpool.nodes.<id>` ([`Pool::nodes`](crate::Pool::nodes)), and
//!   callers say they are alive on `wasmpool.callers.<id>`, so that nodes
//!   drop the orders of a caller that has gone.
//!
//! # Delivery
//!
//! Execution is **at least once**: a node that dies after it ran a call
//! and before its ack leaves the order to be run again by another node
//! once the ack wait (30 s by default, [`Node::ack_wait`]) has passed. The
//! caller still gets exactly one result per call. A job with effects
//! outside its sandbox must therefore be idempotent.

mod caller;
mod node;
pub(crate) mod wire;

use std::time::Duration;

use async_nats::jetstream;

pub(crate) use caller::Caller;
pub use node::{Node, NodeInfo};

use crate::error::{Error, ErrorKind};

/// How long JetStream waits for a node's ack before it hands the order to
/// another node, unless [`Node::ack_wait`] says otherwise.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);

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
