//! Calls on many machines: a [`Pool`](crate::Pool) whose calls run on
//! worker [`Node`]s, through NATS JetStream.
//!
//! ```text
//!  caller: Pool::builder().nats(url)       NATS server (-js)                    nodes: wasmpool serve
//!  component ──put once per hash──▶ object store wasmpool-components ──get once──▶ compile, disk cache
//!  call ─────publish, stored──────▶ stream WASMPOOL_CALLS (work queue) ─pull──────▶ local Pool
//!  result ◀───────────────────────── wasmpool.results.<caller> ◀────────publish, then ack
//!  drop / cancel ─────────────────▶ wasmpool.cancel ──────────────────────────────▶ interrupt / kill
//!  nodes(), statistics() ◀────────── wasmpool.nodes.<node>  ◀───────── heartbeat, every second
//!  alive ─────────────────────────▶ wasmpool.callers.<caller> ──────────────────▶ drop a dead caller's calls
//! ```
//!
//! - **Calls** are MessagePack orders on the work-queue stream
//!   `WASMPOOL_CALLS` (file storage), pulled by every node from one
//!   durable consumer. A node keeps one pull request of one order at the
//!   server per free worker, so at most `workers` orders are un-acked on a
//!   node: the stream is the queue, and a busy node takes nothing more. A
//!   batch of [`Pool::map`](crate::Pool::map) items travels as one order.
//!   The caller sends an order until JetStream has stored it, with a
//!   message id, so a resend is stored once.
//! - **Components** are uploaded once per content hash to the object store
//!   `wasmpool-components`. A node fetches each once and checks its hash,
//!   and its pool compiles it once into its on-disk cache.
//! - **Answers** are plain messages on the caller's own subject: a node
//!   sends the answer, then acks the order, and while a call runs it tells
//!   the server it is still working three times per ack wait. An answer
//!   can be lost only with a connection: after the caller reconnects (or
//!   is told it read too slowly), it sends every order it still waits for
//!   again. The caller keeps the first answer per order and drops any
//!   other.
//! - **Host functions** stay in the caller: a node's guest that calls one
//!   waits while the node asks the caller (NATS request-reply on
//!   `wasmpool.host.<caller>`), which runs it with the call's data.
//! - **Job channels**: a node bridges the channel of a spawned call's
//!   guest to its [`JobHandle`](crate::JobHandle) (NATS request-reply on
//!   `wasmpool.chan.<caller>`); every value the guest emitted is delivered
//!   before the answer is sent.
//! - **Cancels** go to every node on `wasmpool.cancel`; the node running
//!   the order applies its cancel mode (interrupt, kill, finish).
//! - **Heartbeats**: nodes publish their load every second on
//!   `wasmpool.nodes.<id>` ([`Pool::nodes`](crate::Pool::nodes)), and
//!   callers say they are alive on `wasmpool.callers.<id>`. A node drops
//!   the orders of a caller silent for 5 s and cancels its running calls,
//!   and drops an order whose caller's timeout has passed.
//!
//! # Delivery
//!
//! Execution is **at least once**, results **exactly once**:
//!
//! - a node killed mid-call leaves its un-acked orders to the server,
//!   which hands them to another node once the ack wait (30 s by default,
//!   [`Node::ack_wait`]) has passed;
//! - a node that dies after it ran a call and before its ack, or an order
//!   sent again after a reconnect, runs the call a second time;
//! - the NATS server restarted with its file store loses no order, and
//!   callers and nodes reconnect by themselves.
//!
//! A job with effects outside its sandbox must therefore be idempotent.
//!
//! # Not supported
//!
//! - named `wasmpool:sync` primitives: a pool's primitives live in one
//!   host, and there is no distributed lock. [`Pool::queue`](crate::Pool::queue)
//!   and the others fail with
//!   [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported), and a
//!   guest that opens one on a node is told that it is not supported;
//! - arguments or results larger than one NATS message (the server's
//!   `max_payload`, 1 MiB by default) fail with `Unsupported`.

mod node;

use std::time::Duration;

pub use crate::pool::NodeInfo;
pub use node::Node;

/// How long JetStream waits for a node's ack before it hands the order to
/// another node, unless [`Node::ack_wait`] says otherwise.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);
