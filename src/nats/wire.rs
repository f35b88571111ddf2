//! What callers and nodes say to each other over NATS: MessagePack
//! messages, and the names of the streams, subjects and bucket they use.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};
use crate::options::Cancel;
use crate::wire::{CallOptions, Outcome, WireError};

/// The work-queue stream of calls.
pub(crate) const CALLS_STREAM: &str = "WASMPOOL_CALLS";
/// The one subject of [`CALLS_STREAM`].
pub(crate) const CALLS_SUBJECT: &str = "wasmpool.calls";
/// The durable pull consumer every node pulls calls from.
pub(crate) const NODES_CONSUMER: &str = "wasmpool-nodes";
/// Cancels of running calls, to every node.
pub(crate) const CANCEL_SUBJECT: &str = "wasmpool.cancel";
/// The object store bucket of components, by content hash.
pub(crate) const COMPONENTS_BUCKET: &str = "wasmpool-components";

/// Where results for `caller` go.
pub(crate) fn results_subject(caller: &str) -> String {
    format!("wasmpool.results.{caller}")
}

/// Where node `node` says it is alive.
pub(crate) fn node_subject(node: &str) -> String {
    format!("wasmpool.nodes.{node}")
}

/// Every node's heartbeats.
pub(crate) const NODES_WILDCARD: &str = "wasmpool.nodes.*";

/// Where caller `caller` says it is alive.
pub(crate) fn caller_subject(caller: &str) -> String {
    format!("wasmpool.callers.{caller}")
}

/// Where the host calls of `caller`'s guests go.
pub(crate) fn host_subject(caller: &str) -> String {
    format!("wasmpool.host.{caller}")
}

/// Where the job channel operations of `caller`'s spawned calls go.
pub(crate) fn channel_subject(caller: &str) -> String {
    format!("wasmpool.chan.{caller}")
}

/// Every caller's heartbeats.
pub(crate) const CALLERS_WILDCARD: &str = "wasmpool.callers.*";

/// How often callers and nodes say they are alive.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);

/// A request: one or more calls of one function, run in order on one
/// worker of one node.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Order {
    /// Unique per caller; with `caller`, unique in the cluster.
    pub(crate) id: u64,
    pub(crate) caller: String,
    /// The component's content hash: its name in the bucket.
    pub(crate) component: String,
    pub(crate) func: String,
    /// Each call's encoded argument tuple.
    pub(crate) items: Vec<serde_bytes::ByteBuf>,
    pub(crate) options: CallOptions,
    pub(crate) on_cancel: Cancel,
    pub(crate) grace: Duration,
    /// Milliseconds since the Unix epoch after which the caller no longer
    /// waits: a node that takes the order later drops it.
    pub(crate) deadline_ms: Option<u64>,
    /// The call has a [`JobHandle`](crate::JobHandle) whose channel the
    /// node bridges to the caller.
    #[serde(default)]
    pub(crate) channel: bool,
}

/// A node's answer to an [`Order`]: one outcome per item, or one error
/// for all.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct OrderAnswer {
    pub(crate) id: u64,
    pub(crate) node: String,
    pub(crate) outcomes: Result<Vec<Outcome>, WireError>,
}

/// A caller's cancel of an order it no longer waits for.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CancelOrder {
    pub(crate) caller: String,
    pub(crate) id: u64,
    /// Kill the worker, whatever the order's own cancel mode.
    pub(crate) kill: bool,
}

/// A guest's call of a host function, forwarded by its node to the caller
/// (NATS request-reply).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HostCall {
    /// The order whose guest calls.
    pub(crate) order: u64,
    pub(crate) function: String,
    pub(crate) export: String,
    /// The arguments, MessagePack.
    pub(crate) args: serde_bytes::ByteBuf,
}

/// The caller's answer to a [`HostCall`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum HostReply {
    /// The result, MessagePack.
    Done(serde_bytes::ByteBuf),
    /// The function failed (its error's text).
    Failed(String),
    /// The values did not fit the function's types.
    Mismatch(String),
}

/// One step of a node's bridge of a job channel, asked of the caller
/// (NATS request-reply): a value the guest emitted, or the guest's wish for
/// the next value sent to it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ChannelOp {
    pub(crate) order: u64,
    pub(crate) step: ChannelStep,
}

/// What a [`ChannelOp`] does.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ChannelStep {
    Emit(serde_bytes::ByteBuf),
    Recv,
}

/// The caller's answer to a [`ChannelOp`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ChannelReply {
    Done,
    Value(serde_bytes::ByteBuf),
    /// The channel is closed (and, for `Recv`, drained).
    Closed,
    Failed(String),
}

/// What a node says about itself every [`HEARTBEAT`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Beat {
    pub(crate) node: String,
    pub(crate) host: String,
    pub(crate) pid: u32,
    pub(crate) workers: usize,
    pub(crate) idle: usize,
    pub(crate) busy: usize,
    /// Orders taken and not yet answered.
    pub(crate) running: usize,
    pub(crate) spawned: u64,
    pub(crate) crashed: u64,
    pub(crate) killed: u64,
    pub(crate) calls: u64,
}

/// Encodes a cluster message.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(value).expect("cluster messages always encode")
}

/// Decodes a cluster message, as a [`ErrorKind::Protocol`] error when it
/// is not one.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, Error> {
    rmp_serde::from_slice(bytes).map_err(|e| {
        Error::new(
            ErrorKind::Protocol,
            format!("a malformed {what} on the cluster: {e}"),
        )
    })
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::TrapCode;
    use crate::wire::Report;

    #[test]
    fn orders_and_answers_round_trip() {
        let order = Order {
            id: 7,
            caller: "c1".into(),
            component: "ab".repeat(32),
            func: "fib".into(),
            items: vec![serde_bytes::ByteBuf::from(vec![0x91, 0x05])],
            options: CallOptions {
                timeout: Some(Duration::from_millis(250)),
                fuel: Some(10),
                ..CallOptions::default()
            },
            on_cancel: Cancel::Kill,
            grace: Duration::from_secs(1),
            deadline_ms: Some(12),
            channel: true,
        };
        let back: Order = decode(&encode(&order), "order").unwrap();
        assert_eq!(back.items, order.items);
        assert_eq!(back.options, order.options);
        assert_eq!(back.on_cancel, Cancel::Kill);
        assert_eq!(back.deadline_ms, Some(12));

        let mut trap = WireError::new(ErrorKind::Trap, "boom");
        trap.trap_code = Some(TrapCode::UnreachableCodeReached);
        trap.panic_message = Some("boom".into());
        let answer = OrderAnswer {
            id: 7,
            node: "n".into(),
            outcomes: Ok(vec![
                (Ok(serde_bytes::ByteBuf::from(vec![5])), Report::default()),
                (Err(trap), Report::default()),
            ]),
        };
        let back: OrderAnswer = decode(&encode(&answer), "answer").unwrap();
        let outcomes = back.outcomes.unwrap();
        assert_eq!(outcomes[0].0.as_ref().unwrap().as_ref(), &[5]);
        let e = Error::from(outcomes[1].0.clone().unwrap_err());
        assert_eq!(e.kind(), ErrorKind::Trap);
        assert_eq!(e.trap_code(), Some(TrapCode::UnreachableCodeReached));
        assert_eq!(e.panic_message(), Some("boom"));
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        let e = decode::<Order>(b"\xc1nonsense", "order").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol);
        assert!(e.to_string().contains("malformed order"), "{e}");
    }
}
