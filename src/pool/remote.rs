//! The caller's side of a cluster pool ([`PoolBuilder::nats`](super::PoolBuilder::nats)): uploads components, publishes
//! orders, gathers answers, cancels what it stops waiting for, and keeps
//! the nodes' heartbeats.

use crate::locks::Locked as _;
use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::PublishErrorKind};
use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::sync::{OnceCell, oneshot};
use tokio::task::JoinHandle;

use super::JobLink;
use super::policy::Policy;
use crate::error::{Error, ErrorKind};
use crate::host::{Failure, HostContext, HostFns};
use crate::job::Job;
use crate::nats::wire::{
    self, Beat, CancelOrder, ChannelOp, ChannelReply, ChannelStep, HostCall, HostReply, Order,
    OrderAnswer,
};
use crate::nats::{self, nats_error};
use crate::sync::{Owner, Registry};
use crate::wire::{Answer, GuestOp};
use crate::wire::{CallOptions, Outcome};

/// A node is taken for gone when it has been silent this long.
const NODE_SILENT: Duration = Duration::from_secs(3);

/// How long a publish may wait for JetStream's ack before it is sent
/// again (with the same message id, so it is stored once).
const PUBLISH_RETRY: Duration = Duration::from_millis(500);

/// The caller's side of a cluster pool.
pub(crate) struct Caller {
    url: String,
    /// This caller's name in the cluster: its results subject and its
    /// orders' ids.
    id: String,
    link: OnceCell<Linked>,
    /// The orders waiting for their answer.
    pending: Arc<Mutex<HashMap<u64, Pending>>>,
    /// The latest heartbeat of each node, and when it came.
    nodes: Arc<Mutex<HashMap<String, Heard>>>,
    next: AtomicU64,
    /// The host functions the guests of this caller's calls import.
    host_fns: Arc<HostFns>,
    /// The pool's registry, where its job handles' channels are.
    registry: Arc<Registry>,
    /// Set by the pool's shutdown: no new call is sent.
    closed: AtomicBool,
}

/// A node's latest heartbeat, and when it came.
struct Heard {
    at: Instant,
    beat: Beat,
}

/// An order waiting for its answer: where the answer goes, and the order,
/// to send again if its answer may have been lost.
struct Pending {
    tx: oneshot::Sender<OrderAnswer>,
    order: Bytes,
    /// The call's data, for its host functions.
    data: Option<Arc<dyn Any + Send + Sync>>,
    /// Its host functions and channel steps running here, aborted when
    /// it ends.
    host_calls: Vec<tokio::task::AbortHandle>,
    /// The key of its job channel in this pool's registry, for a call
    /// with a [`JobHandle`](crate::JobHandle).
    channel: Option<String>,
}

/// A caller connected to its cluster.
struct Linked {
    client: async_nats::Client,
    js: jetstream::Context,
    store: jetstream::object_store::ObjectStore,
    /// Components known to be in the bucket.
    uploaded: tokio::sync::Mutex<HashSet<String>>,
    /// The answers, heartbeats and liveness tasks, stopped with the caller.
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Linked {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Caller {
    pub(crate) fn new(url: String, host_fns: Arc<HostFns>, registry: Arc<Registry>) -> Caller {
        Caller {
            url,
            host_fns,
            registry,
            id: nats::unique_name(),
            link: OnceCell::new(),
            pending: Arc::default(),
            nodes: Arc::default(),
            next: AtomicU64::new(1),
            closed: AtomicBool::new(false),
        }
    }

    /// Stops new calls; those in flight go on.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Whether [`close`](Caller::close) was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Connects on first use.
    async fn linked(&self) -> Result<&Linked, Error> {
        self.link.get_or_try_init(|| self.link_up()).await
    }

    async fn link_up(&self) -> Result<Linked, Error> {
        let url = &self.url;
        let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let client = nats::connect(
            url,
            &format!("wasmpool caller {}", self.id),
            Some(events_tx),
        )
        .await?;
        let js = jetstream::new(client.clone());
        let store = nats::streams(&js, url).await?;
        let mut tasks = Vec::new();
        // Answers: plain messages on this caller's own subject.
        let answers = client
            .subscribe(wire::results_subject(&self.id))
            .await
            .map_err(|e| nats_error("subscribing to results", url, e))?;
        tasks.push(tokio::spawn(take_answers(answers, self.pending.clone())));
        // An answer sent while this caller was reconnecting, or dropped
        // because it read too slowly, is lost: after either, every order
        // still waiting is sent again (and run again if it had run: at
        // least once). The first answer per order wins.
        let (pending, resend_js, caller) = (self.pending.clone(), js.clone(), self.id.clone());
        tasks.push(tokio::spawn(async move {
            let mut resends = 0u64;
            while let Some(event) = events.recv().await {
                if !matches!(
                    event,
                    async_nats::Event::Connected | async_nats::Event::SlowConsumer(_)
                ) {
                    continue;
                }
                let orders: Vec<(u64, Bytes)> = pending
                    .locked()
                    .iter()
                    .map(|(id, p)| (*id, p.order.clone()))
                    .collect();
                if orders.is_empty() {
                    continue;
                }
                resends += 1;
                tracing::info!(orders = orders.len(), %event, "sending the waiting orders again");
                for (id, order) in orders {
                    let js = resend_js.clone();
                    let msg_id = format!("{caller}.{id}.{resends}");
                    tokio::spawn(async move { store_order(&js, id, msg_id, order).await });
                }
            }
        }));
        // Host calls of this caller's guests, forwarded by their nodes.
        if !self.host_fns.is_empty() {
            let calls = client
                .subscribe(wire::host_subject(&self.id))
                .await
                .map_err(|e| nats_error("subscribing to host calls", url, e))?;
            tasks.push(tokio::spawn(serve_host_calls(
                calls,
                client.clone(),
                self.host_fns.clone(),
                self.pending.clone(),
            )));
        }
        // Job channel steps of this caller's spawned calls, bridged by
        // their nodes.
        let steps = client
            .subscribe(wire::channel_subject(&self.id))
            .await
            .map_err(|e| nats_error("subscribing to job channels", url, e))?;
        tasks.push(tokio::spawn(serve_channel_steps(
            steps,
            client.clone(),
            self.registry.clone(),
            self.pending.clone(),
        )));
        // Nodes' heartbeats.
        let mut beats = client
            .subscribe(wire::NODES_WILDCARD)
            .await
            .map_err(|e| nats_error("subscribing to heartbeats", url, e))?;
        let nodes = self.nodes.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(msg) = beats.next().await {
                if let Ok(beat) = wire::decode::<Beat>(&msg.payload, "heartbeat") {
                    let mut nodes = nodes.locked();
                    nodes.retain(|_, heard| heard.at.elapsed() < NODE_SILENT * 10);
                    let at = Instant::now();
                    nodes.insert(beat.node.clone(), Heard { at, beat });
                }
            }
        }));
        // This caller's own heartbeat, so that nodes drop orders of a
        // caller that has gone.
        let (beat_client, subject) = (client.clone(), wire::caller_subject(&self.id));
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(wire::HEARTBEAT);
            loop {
                tick.tick().await;
                let _ = beat_client.publish(subject.clone(), Bytes::new()).await;
            }
        }));
        tracing::debug!(caller = %self.id, %url, "cluster caller connected");
        Ok(Linked {
            client,
            js,
            store,
            uploaded: tokio::sync::Mutex::default(),
            tasks,
        })
    }

    /// Connects now, if not yet connected.
    pub(crate) async fn connect(&self) -> Result<(), Error> {
        self.linked().await.map(|_| ())
    }

    /// The sums of the live nodes' counters.
    pub(crate) fn statistics(&self) -> crate::pool::Statistics {
        let mut s = crate::pool::Statistics::default();
        for n in self.nodes() {
            s.max_workers += n.workers;
            s.idle += n.idle;
            s.busy += n.busy;
            s.spawned += n.spawned;
            s.crashed += n.crashed;
            s.killed += n.killed;
            s.calls += n.calls;
        }
        s
    }

    /// The nodes heard from in the last few seconds.
    pub(crate) fn nodes(&self) -> Vec<NodeInfo> {
        let nodes = self.nodes.locked();
        let mut list: Vec<NodeInfo> = nodes
            .values()
            .filter(|heard| heard.at.elapsed() < NODE_SILENT)
            .map(|heard| NodeInfo::from_beat(&heard.beat, heard.at.elapsed()))
            .collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }

    /// Puts `job` in the bucket unless it is there.
    async fn upload(&self, linked: &Linked, job: &Job) -> Result<(), Error> {
        let hash = job.hash();
        let mut uploaded = linked.uploaded.lock().await;
        if uploaded.contains(hash) {
            return Ok(());
        }
        if linked.store.info(hash).await.is_err() {
            let mut bytes = job.bytes();
            linked
                .store
                .put(hash, &mut bytes)
                .await
                .map_err(|e| nats_error("uploading the component", &self.url, e))?;
            tracing::debug!(
                component = &hash[..16],
                bytes = job.bytes().len(),
                "component uploaded"
            );
        }
        uploaded.insert(hash.to_string());
        Ok(())
    }

    /// Runs `items` (encoded argument tuples) as calls of `func` on some
    /// node, and returns one outcome per item.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future cancels the order on its node, as `policy`
    /// (or a kill asked through its job's handle) says.
    pub(crate) async fn call(
        &self,
        job: &Job,
        func: String,
        items: Vec<serde_bytes::ByteBuf>,
        options: CallOptions,
        policy: Policy,
    ) -> Result<Vec<Outcome>, Error> {
        let Policy {
            on_cancel,
            grace,
            job: link,
            data,
            // The nodes serve a cluster's orders first come first served.
            tenant: _,
        } = policy;
        let linked = self.linked().await?;
        self.upload(linked, job).await?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        // The caller waits as long as a local pool would let the calls
        // run, queueing included.
        let limit = options.timeout.map(|t| {
            t.saturating_mul(u32::try_from(items.len()).unwrap_or(u32::MAX))
                .saturating_add(grace)
        });
        let mut order = Order {
            id,
            caller: self.id.clone(),
            component: job.hash().to_string(),
            func,
            items,
            options,
            on_cancel,
            grace,
            deadline_ms: limit.map(|l| wire::now_ms().saturating_add(l.as_millis() as u64)),
            channel: false,
        };
        let channel = link
            .as_ref()
            .map(|l| l.channel().to_string())
            .filter(|c| !c.is_empty());
        order.channel = channel.is_some();
        let payload = Bytes::from(wire::encode(&order));
        let (tx, rx) = oneshot::channel();
        self.pending.locked().insert(
            id,
            Pending {
                tx,
                order: payload.clone(),
                data,
                host_calls: Vec::new(),
                channel,
            },
        );
        let mut guard = Waiting {
            caller: self,
            client: linked.client.clone(),
            id,
            link,
            answered: false,
        };
        let started = Instant::now();
        let wait = async {
            self.publish(linked, id, payload).await?;
            tracing::trace!(
                call = id,
                stored_us = started.elapsed().as_micros() as u64,
                "order stored"
            );
            rx.await
                .map_err(|_| Error::new(ErrorKind::PoolClosed, "the cluster caller stopped"))
        };
        let answer = match limit {
            None => wait.await?,
            Some(limit) => match tokio::time::timeout(limit, wait).await {
                Ok(answer) => answer?,
                Err(_) => return Err(self.overran(limit)),
            },
        };
        guard.answered = true;
        tracing::trace!(call = id, node = %answer.node, answered_us = started.elapsed().as_micros() as u64, "order answered");
        answer.outcomes.map_err(Error::from)
    }

    /// Publishes an order until JetStream has stored it.
    async fn publish(&self, linked: &Linked, id: u64, payload: Bytes) -> Result<(), Error> {
        store_order(&linked.js, id, format!("{}.{id}", self.id), payload).await
    }

    /// The error of a call that got no answer within `limit`.
    fn overran(&self, limit: Duration) -> Error {
        let serving = !self.nodes().is_empty();
        let mut message =
            format!("no answer from the cluster within the call's timeout ({limit:?})");
        if !serving {
            message.push_str(&format!(
                "; no node is serving the stream {} on {}: none has sent a heartbeat in the \
                 last {NODE_SILENT:?} (start one with `wasmpool serve --nats {}`)",
                wire::CALLS_STREAM,
                self.url,
                self.url
            ));
        }
        Error::new(ErrorKind::Timeout, message)
    }
}

/// Publishes an order until JetStream has stored it, with `msg_id` (so
/// that the server stores it once however often it is sent).
async fn store_order(
    js: &jetstream::Context,
    id: u64,
    msg_id: String,
    payload: Bytes,
) -> Result<(), Error> {
    loop {
        let publish = jetstream::message::PublishMessage::build()
            .payload(payload.clone())
            .message_id(&msg_id);
        match js.send_publish(wire::CALLS_SUBJECT, publish).await {
            Ok(ack) => match tokio::time::timeout(PUBLISH_RETRY * 10, ack).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => tracing::debug!(call = id, error = %e, "order not stored; again"),
                Err(_) => tracing::debug!(call = id, "order not acked; again"),
            },
            Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "the call's arguments ({} bytes) do not fit in one NATS message: {e}",
                        payload.len()
                    ),
                ));
            }
            Err(e) => tracing::debug!(call = id, error = %e, "order not sent; again"),
        }
        tokio::time::sleep(PUBLISH_RETRY).await;
    }
}

/// A node's request: where to reply, and what it asks; `None` (and a
/// warning) for a message that is not one.
fn request<T: serde::de::DeserializeOwned>(
    msg: &async_nats::Message,
    what: &str,
) -> Option<(async_nats::Subject, T)> {
    let reply_to = msg.reply.clone()?;
    match wire::decode::<T>(&msg.payload, what) {
        Ok(request) => Some((reply_to, request)),
        Err(e) => {
            tracing::warn!(error = %e, "dropping a malformed {what}");
            None
        }
    }
}

/// Runs the host functions that nodes forward, each as a task of its own
/// (aborted when its call ends), and answers each request.
async fn serve_host_calls(
    mut calls: async_nats::Subscriber,
    client: async_nats::Client,
    fns: Arc<HostFns>,
    pending: Arc<Mutex<HashMap<u64, Pending>>>,
) {
    use futures_util::FutureExt as _;
    while let Some(msg) = calls.next().await {
        let Some((reply_to, call)) = request::<HostCall>(&msg, "host call") else {
            continue;
        };
        let Some(data) = pending.locked().get(&call.order).map(|w| w.data.clone()) else {
            // The call ended: nobody waits for this host call's result.
            continue;
        };
        let cx = HostContext::remote(&call.function, &call.export, data);
        let function = call.function.clone();
        let future = fns.invoke(cx, call.args.into_vec());
        let client = client.clone();
        let task = tokio::spawn(async move {
            let reply = match future {
                None => HostReply::Failed(format!("no host function is registered for {function}")),
                Some(future) => match std::panic::AssertUnwindSafe(future).catch_unwind().await {
                    Ok(Ok(result)) => HostReply::Done(serde_bytes::ByteBuf::from(result)),
                    Ok(Err(Failure::Func(e))) => HostReply::Failed(e.to_string()),
                    Ok(Err(Failure::Mismatch(m))) => HostReply::Mismatch(m),
                    Err(_) => HostReply::Failed(format!("host function {function} panicked")),
                },
            };
            let _ = client
                .publish(reply_to, Bytes::from(wire::encode(&reply)))
                .await;
        });
        match pending.locked().get_mut(&call.order) {
            Some(waiting) => {
                waiting.host_calls.retain(|t| !t.is_finished());
                waiting.host_calls.push(task.abort_handle());
            }
            // The call ended meanwhile, and did not see this task.
            None => task.abort(),
        }
    }
}

/// Takes the steps of the job channels that nodes bridge: a value the
/// guest emitted goes into the handle's channel, as if the guest were
/// here; a guest's `recv` takes the next value the handle sent. Each step
/// is a task of its own, aborted when its call ends.
async fn serve_channel_steps(
    mut steps: async_nats::Subscriber,
    client: async_nats::Client,
    registry: Arc<Registry>,
    pending: Arc<Mutex<HashMap<u64, Pending>>>,
) {
    while let Some(msg) = steps.next().await {
        let Some((reply_to, op)) = request::<ChannelOp>(&msg, "channel step") else {
            continue;
        };
        let mut pending = pending.locked();
        let waiting = pending.get_mut(&op.order);
        let Some((waiting, key)) = waiting.and_then(|w| {
            let key = w.channel.clone()?;
            Some((w, key))
        }) else {
            let reply = ChannelReply::Closed;
            let client = client.clone();
            tokio::spawn(async move {
                let _ = client
                    .publish(reply_to, Bytes::from(wire::encode(&reply)))
                    .await;
            });
            continue;
        };
        // The guest's side of the channel: an owner no local worker has.
        let owner = Owner::Worker(u64::MAX - op.order);
        let (registry, client) = (registry.clone(), client.clone());
        let task = tokio::spawn(async move {
            let guest_op = match op.step {
                ChannelStep::Emit(value) => GuestOp::Emit { value },
                ChannelStep::Recv => GuestOp::Recv,
            };
            let answer = crate::sync::as_guest(&registry, owner, guest_op, &key).await;
            let reply = match answer {
                Answer::Done => ChannelReply::Done,
                Answer::Value(v) => ChannelReply::Value(v),
                Answer::Nothing | Answer::Closed => ChannelReply::Closed,
                other => ChannelReply::Failed(format!("{other:?}")),
            };
            let _ = client
                .publish(reply_to, Bytes::from(wire::encode(&reply)))
                .await;
        });
        waiting.host_calls.retain(|t| !t.is_finished());
        waiting.host_calls.push(task.abort_handle());
    }
}

/// Hands each answer to the order waiting for it; a second answer to the
/// same order (a redelivered order run twice) finds no one and is dropped.
async fn take_answers(
    mut answers: async_nats::Subscriber,
    pending: Arc<Mutex<HashMap<u64, Pending>>>,
) {
    while let Some(msg) = answers.next().await {
        match wire::decode::<OrderAnswer>(&msg.payload, "answer") {
            Ok(answer) => {
                let tx = pending.locked().remove(&answer.id);
                match tx {
                    Some(p) => {
                        let _ = p.tx.send(answer);
                    }
                    None => {
                        tracing::debug!(call = answer.id, node = %answer.node, "duplicate or late answer dropped")
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "dropping a malformed answer"),
        }
    }
}

/// An order waiting for its answer. Dropped unanswered, it cancels the
/// order on whichever node runs it.
struct Waiting<'a> {
    caller: &'a Caller,
    client: async_nats::Client,
    id: u64,
    link: Option<Arc<JobLink>>,
    answered: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let pending = self.caller.pending.locked().remove(&self.id);
        for task in pending.iter().flat_map(|p| &p.host_calls) {
            task.abort();
        }
        if self.answered {
            return;
        }
        let cancel = CancelOrder {
            caller: self.caller.id.clone(),
            id: self.id,
            kill: self.link.as_ref().is_some_and(|l| l.kill_requested()),
        };
        tracing::debug!(
            call = self.id,
            kill = cancel.kill,
            "cluster call dropped; cancelling"
        );
        let client = self.client.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = client
                    .publish(wire::CANCEL_SUBJECT, Bytes::from(wire::encode(&cancel)))
                    .await;
                let _ = client.flush().await;
            });
        }
    }
}

/// What a node said about itself in its latest heartbeat, from
/// [`Pool::nodes`](crate::Pool::nodes).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeInfo {
    /// The node's name in the cluster.
    pub id: String,
    /// The machine it runs on.
    pub host: String,
    /// Its process id there.
    pub pid: u32,
    /// The most calls it runs at once.
    pub workers: usize,
    /// Its live workers waiting for a call.
    pub idle: usize,
    /// Its workers running a call.
    pub busy: usize,
    /// Orders (a call, or a batch of `map` items) it has taken and not
    /// yet answered.
    pub running: usize,
    /// Calls it has run.
    pub calls: u64,
    /// Worker processes it has started.
    pub spawned: u64,
    /// Its workers that died unasked.
    pub crashed: u64,
    /// Its workers killed by cancels.
    pub killed: u64,
    /// How long ago the heartbeat came.
    pub last_seen: Duration,
}

impl NodeInfo {
    pub(crate) fn from_beat(beat: &Beat, last_seen: Duration) -> NodeInfo {
        NodeInfo {
            id: beat.node.clone(),
            host: beat.host.clone(),
            pid: beat.pid,
            workers: beat.workers,
            idle: beat.idle,
            busy: beat.busy,
            running: beat.running,
            calls: beat.calls,
            spawned: beat.spawned,
            crashed: beat.crashed,
            killed: beat.killed,
            last_seen,
        }
    }
}
