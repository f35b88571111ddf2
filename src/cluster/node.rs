//! A worker node: pulls orders from the cluster and runs them in a local
//! [`Pool`].

use crate::locks::Locked as _;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, consumer::pull};
use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::io::AsyncReadExt as _;
use tokio::sync::{Semaphore, oneshot};

use super::DEFAULT_ACK_WAIT;
use crate::error::{Error, ErrorKind};
use crate::job::Job;
use crate::nats::wire::{
    self, Beat, CancelOrder, ChannelOp, ChannelReply, ChannelStep, HostCall, HostReply, Order,
    OrderAnswer,
};
use crate::nats::{self, nats_error};
use crate::pool::{JobLink, Policy, Pool, PoolBuilder};
use crate::wire::WireError;

/// A caller silent this long (while this node hears others) has gone: its
/// orders are dropped, and its running calls cancelled.
const CALLER_GONE: Duration = Duration::from_secs(5);

/// How many components a node keeps loaded; more are fetched again.
const JOBS_KEPT: usize = 64;

/// A worker node of a cluster: runs the calls that callers'
/// [`Pool::builder().nats(url)`](crate::PoolBuilder::nats) pools publish,
/// in a local [`Pool`].
///
/// The command line's `wasmpool serve --nats URL` runs one.
///
/// ```no_run
/// # async fn demo() -> Result<(), wasmpool::Error> {
/// use wasmpool::{Pool, cluster::Node};
/// Node::new("nats://127.0.0.1:4222")
///     .pool(Pool::builder().workers(4).cache_dir("/var/cache/wasmpool"))
///     .serve()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a node does nothing until served"]
pub struct Node {
    url: String,
    pool: PoolBuilder,
    ack_wait: Duration,
}

impl Node {
    /// A node of the cluster whose NATS server (with JetStream) is at
    /// `url`, running calls in a [`Pool::new`] pool.
    pub fn new(url: impl Into<String>) -> Node {
        Node {
            url: url.into(),
            pool: Pool::builder(),
            ack_wait: DEFAULT_ACK_WAIT,
        }
    }

    /// The local pool the node runs calls in: its workers (the most calls
    /// it takes at once), cache directory, engine settings and defaults.
    pub fn pool(mut self, pool: PoolBuilder) -> Node {
        self.pool = pool;
        self
    }

    /// How long the server waits for this node's ack of an order before it
    /// hands the order to another node: about how soon the calls of a
    /// node that died run elsewhere. While a call runs, the node tells the
    /// server it is still working three times per `ack_wait`. The setting
    /// is the cluster's (its consumer's); the last node to start sets it.
    /// Default: [`DEFAULT_ACK_WAIT`].
    pub fn ack_wait(mut self, ack_wait: Duration) -> Node {
        self.ack_wait = ack_wait;
        self
    }

    /// Serves orders until the future is dropped, or an error stops it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the NATS server cannot be reached or has no
    /// JetStream; as [`PoolBuilder::build`] for the local pool. Once
    /// connected, a node rides out server restarts and bad orders.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops taking orders, and drops the ones
    /// running: their calls are cancelled, and they go to another node
    /// after the ack wait. [`serve_until`](Node::serve_until) hands them
    /// back at once instead.
    pub async fn serve(self) -> Result<(), Error> {
        self.serve_until(std::future::pending()).await
    }

    /// Serves orders until `stop` completes, then stops gracefully: takes
    /// no more orders, interrupts the calls running here and hands their
    /// orders back to the server (a NAK), so that another node takes them
    /// at once rather than after the ack wait. `wasmpool serve` stops so on
    /// Ctrl-C or SIGTERM.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), wasmpool::Error> {
    /// let stop = async { tokio::signal::ctrl_c().await.ok(); };
    /// wasmpool::cluster::Node::new("nats://127.0.0.1:4222").serve_until(stop).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`serve`](Node::serve).
    pub async fn serve_until(self, stop: impl Future<Output = ()> + Send) -> Result<(), Error> {
        let Node {
            url,
            pool,
            ack_wait,
        } = self;
        if ack_wait < Duration::from_millis(300) {
            return Err(Error::new(
                ErrorKind::Config,
                "ack_wait must be at least 300 ms",
            ));
        }
        let id = nats::unique_name();
        let client = nats::connect(&url, &format!("wasmpool node {id}"), None).await?;
        let pool = pool.forward_host_calls(forwarder(client.clone())).build()?;
        pool.registry().refuse_named(
            "named wasmpool:sync primitives are not supported on a cluster pool: they live \
             in one pool's host, and a node's is not the caller's"
                .into(),
        );
        let workers = pool.statistics().max_workers;
        let js = jetstream::new(client.clone());
        let store = nats::streams(&js, &url).await?;
        consumer(&js, &url, ack_wait).await?;
        tracing::info!(node = %id, %url, workers, ?ack_wait, "node serving");
        let shared = Arc::new(NodeState {
            id,
            url,
            pool,
            client: client.clone(),
            js,
            store,
            ack_wait,
            jobs: Mutex::default(),
            running: Mutex::default(),
            callers: Mutex::default(),
            listening: Instant::now(),
        });
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(heartbeats(shared.clone(), client.clone()));
        tasks.spawn(callers(shared.clone(), client.clone()));
        tasks.spawn(cancels(shared.clone(), client.clone()));
        pull(shared, client, workers, stop).await
    }
}

/// How long one pull request for an order waits at the server.
const PULL_EXPIRES: Duration = Duration::from_secs(2);

/// Takes orders: keeps one pull request of one order at the server for
/// each free worker, on one inbox that lives as long as the node, so that
/// no order delivered to this node goes unseen (a request's own
/// short-lived inbox could be dropped with an order on its way). A
/// request unanswered well past its expiry (the server restarted) is
/// taken for lost.
async fn pull(
    shared: Arc<NodeState>,
    client: async_nats::Client,
    workers: usize,
    stop: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let mut stop = std::pin::pin!(stop);
    let inbox = client.new_inbox();
    let mut deliveries = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| nats_error("subscribing to orders", &shared.url, e))?;
    let next = format!(
        "$JS.API.CONSUMER.MSG.NEXT.{}.{}",
        wire::CALLS_STREAM,
        wire::NODES_CONSUMER
    );
    let request = Bytes::from(format!(
        r#"{{"batch":1,"expires":{}}}"#,
        PULL_EXPIRES.as_nanos()
    ));
    let slots = Arc::new(Semaphore::new(workers));
    // When each outstanding request was sent, oldest first.
    let mut outstanding: std::collections::VecDeque<Instant> = Default::default();
    let mut orders = tokio::task::JoinSet::new();
    let mut sweep = tokio::time::interval(PULL_EXPIRES / 2);
    loop {
        // One request per free worker, less those already out.
        while outstanding.len() < slots.available_permits() {
            match client
                .publish_with_reply(next.clone(), inbox.clone(), request.clone())
                .await
            {
                Ok(()) => outstanding.push_back(Instant::now()),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot ask for orders; again shortly");
                    break;
                }
            }
        }
        tokio::select! {
            msg = deliveries.next() => {
                let Some(msg) = msg else {
                    return Err(nats_error("taking orders", &shared.url, "the subscription ended"));
                };
                outstanding.pop_front();
                if let Some(status) = msg.status {
                    // 408: the request expired; 409: the server dropped it.
                    tracing::trace!(%status, "pull request ended");
                    continue;
                }
                let permit = slots.clone().acquire_owned().await.expect("never closed");
                let msg = jetstream::Message { message: msg, context: shared.js.clone() };
                let shared = shared.clone();
                orders.spawn(async move {
                    shared.take(msg).await;
                    drop(permit);
                });
            }
            Some(_) = orders.join_next(), if !orders.is_empty() => {}
            () = &mut stop => {
                // Hand the running orders back, and wait until they are.
                let running = shared.stop_all();
                tracing::info!(running, "node stopping; handing its orders back");
                let drained = async { while orders.join_next().await.is_some() {} };
                let _ = tokio::time::timeout(Duration::from_secs(10), drained).await;
                return Ok(());
            }
            _ = sweep.tick() => {
                while outstanding
                    .front()
                    .is_some_and(|at| at.elapsed() > PULL_EXPIRES + Duration::from_secs(1))
                {
                    outstanding.pop_front();
                }
            }
        }
    }
}

/// A job channel of the node's pool, bridged to a remote handle's. Dropped
/// with its order, it forgets the channel.
struct Bridge {
    registry: Arc<crate::sync::Registry>,
    key: String,
}

impl Bridge {
    fn open(registry: Arc<crate::sync::Registry>) -> Bridge {
        let key = registry.open_channel();
        Bridge { registry, key }
    }

    /// Asks the caller for one step of its channel.
    async fn step(
        client: &async_nats::Client,
        subject: &str,
        order: u64,
        step: ChannelStep,
    ) -> ChannelReply {
        let op = ChannelOp { order, step };
        let request = async_nats::Request::new()
            .payload(Bytes::from(wire::encode(&op)))
            .timeout(None);
        match client.send_request(subject.to_string(), request).await {
            Ok(reply) => wire::decode(&reply.payload, "channel reply")
                .unwrap_or_else(|e| ChannelReply::Failed(e.to_string())),
            Err(e) => ChannelReply::Failed(e.to_string()),
        }
    }

    /// The handle's values, taken from the caller one by one as the
    /// guest's side here has room, until the handle closes its side. Never
    /// returns otherwise: it is dropped with its call.
    async fn inbound(&self, client: &async_nats::Client, subject: String, order: u64) {
        use crate::sync::HostOp;
        use crate::wire::GuestOp;
        loop {
            match Bridge::step(client, &subject, order, ChannelStep::Recv).await {
                ChannelReply::Value(value) => {
                    let owner = self.registry.host_owner();
                    let op = GuestOp::Emit { value };
                    let _ = HostOp::submit(&self.registry, owner, op, Some(&self.key), None)
                        .answer()
                        .await;
                }
                ChannelReply::Failed(e) => {
                    tracing::debug!(order, error = %e, "job channel from the caller broke");
                    self.registry.close_input(&self.key);
                    break;
                }
                ChannelReply::Done | ChannelReply::Closed => {
                    self.registry.close_input(&self.key);
                    break;
                }
            }
        }
        std::future::pending().await
    }

    /// The guest's values, sent to the caller in order, until the channel
    /// is closed and drained.
    async fn outbound(&self, client: &async_nats::Client, subject: String, order: u64) {
        use crate::sync::{HostOp, Unget};
        use crate::wire::{Answer, GuestOp};
        loop {
            let owner = self.registry.host_owner();
            let unget = Some(Unget::Channel(self.key.as_str()));
            let taken =
                HostOp::submit(&self.registry, owner, GuestOp::Recv, Some(&self.key), unget)
                    .answer()
                    .await;
            let Answer::Value(value) = taken else {
                return;
            };
            if let ChannelReply::Failed(e) =
                Bridge::step(client, &subject, order, ChannelStep::Emit(value)).await
            {
                tracing::debug!(order, error = %e, "job channel to the caller broke");
                return;
            }
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.registry.remove_channel(&self.key);
    }
}

/// Where a guest's host calls go: the caller of its order, as the call's
/// data.
struct Route {
    caller: String,
    order: u64,
}

/// The node's host functions: each host call of a guest goes to its
/// order's caller (NATS request-reply), which runs the function it
/// registered. A caller that has gone fails the call.
fn forwarder(
    client: async_nats::Client,
) -> impl Fn(crate::HostContext, Vec<u8>) -> crate::host::HostFuture + Send + Sync + 'static {
    use crate::host::Failure;
    move |cx, args| {
        let client = client.clone();
        Box::pin(async move {
            let Some(route) = cx.data::<Route>() else {
                return Err(Failure::Mismatch(format!(
                    "host function {} called outside a cluster order",
                    cx.function()
                )));
            };
            let call = HostCall {
                order: route.order,
                function: cx.function().to_string(),
                export: cx.export().to_string(),
                args: serde_bytes::ByteBuf::from(args),
            };
            let request = async_nats::Request::new()
                .payload(Bytes::from(wire::encode(&call)))
                .timeout(None);
            let reply = client
                .send_request(wire::host_subject(&route.caller), request)
                .await
                .map_err(|e| {
                    Failure::Func(
                        format!(
                            "host function {}: its caller did not answer: {e}",
                            cx.function()
                        )
                        .into(),
                    )
                })?;
            match wire::decode::<HostReply>(&reply.payload, "host reply") {
                Ok(HostReply::Done(result)) => Ok(result.into_vec()),
                Ok(HostReply::Failed(message)) => Err(Failure::Func(message.into())),
                Ok(HostReply::Mismatch(message)) => Err(Failure::Mismatch(message)),
                Err(e) => Err(Failure::Func(Box::new(e))),
            }
        })
    }
}

/// The durable pull consumer of orders, with this node's ack wait.
async fn consumer(js: &jetstream::Context, url: &str, ack_wait: Duration) -> Result<(), Error> {
    let stream = js
        .get_stream(wire::CALLS_STREAM)
        .await
        .map_err(|e| nats_error("finding the stream of calls", url, e))?;
    let config = pull::Config {
        durable_name: Some(wire::NODES_CONSUMER.into()),
        description: Some("wasmpool nodes".into()),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait,
        max_deliver: -1,
        max_ack_pending: 100_000,
        max_waiting: 4096,
        ..Default::default()
    };
    let mut consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(wire::NODES_CONSUMER, config.clone())
        .await
        .map_err(|e| nats_error("creating the consumer of calls", url, e))?;
    let current = consumer
        .info()
        .await
        .map_err(|e| nats_error("reading the consumer of calls", url, e))?
        .config
        .ack_wait;
    if current != ack_wait {
        stream
            .update_consumer(config)
            .await
            .map_err(|e| nats_error("setting the ack wait of the consumer of calls", url, e))?;
    }
    Ok(())
}

/// What a node's tasks share.
struct NodeState {
    id: String,
    url: String,
    pool: Pool,
    client: async_nats::Client,
    js: jetstream::Context,
    store: jetstream::object_store::ObjectStore,
    ack_wait: Duration,
    /// Components fetched from the bucket, by content hash.
    jobs: Mutex<HashMap<String, Job>>,
    /// Orders running here, by caller and id.
    running: Mutex<HashMap<(String, u64), Running>>,
    /// When each caller was last heard from.
    callers: Mutex<HashMap<String, Instant>>,
    /// When the node started listening to callers.
    listening: Instant,
}

/// Why a running order stopped before its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// Its caller cancelled it, or has gone: it is done with.
    Cancelled,
    /// This node is stopping: another node is to run it.
    Leaving,
}

/// A running order, for its cancel to find.
struct Running {
    stop: Option<oneshot::Sender<Stop>>,
    link: Arc<JobLink>,
}

impl NodeState {
    /// Whether `caller` has gone: silent for [`CALLER_GONE`] while this
    /// node has been listening that long.
    fn caller_gone(&self, caller: &str) -> bool {
        if self.listening.elapsed() < CALLER_GONE {
            return false;
        }
        let callers = self.callers.locked();
        // Hearing no caller at all is this node's deafness, not theirs.
        let hearing = callers.values().any(|at| at.elapsed() < CALLER_GONE);
        hearing
            && callers
                .get(caller)
                .is_none_or(|at| at.elapsed() >= CALLER_GONE)
    }

    /// Runs one order and answers it; acks it once the answer is stored.
    async fn take(self: Arc<Self>, msg: jetstream::Message) {
        let taken = Instant::now();
        let order: Order = match wire::decode(&msg.payload, "order") {
            Ok(order) => order,
            Err(e) => {
                tracing::warn!(error = %e, "dropping a malformed order");
                let _ = msg.ack_with(AckKind::Term).await;
                return;
            }
        };
        let (caller, id) = (order.caller.clone(), order.id);
        if order.deadline_ms.is_some_and(|d| wire::now_ms() > d) || self.caller_gone(&caller) {
            tracing::debug!(%caller, call = id, "dropping an order nobody waits for");
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        }
        let (stop_tx, stop_rx) = oneshot::channel();
        // A remote handle's channel: one of this pool's, bridged to the
        // caller's while the call runs, and gone with the order.
        let bridge = order
            .channel
            .then(|| Bridge::open(self.pool.registry().clone()));
        let link = Arc::new(match &bridge {
            Some(b) => JobLink::with_channel(b.key.clone()),
            None => JobLink::detached(),
        });
        // A copy of an order this node runs now (the caller sent it again
        // after a reconnect, and both copies were delivered) is dropped:
        // the running copy answers. Run side by side, the second's entry
        // would replace the first's, whose stop would fire; and the
        // first's end would then remove the second's, and stop it too:
        // both cancelled, and the caller never answered.
        let copy = {
            let mut running = self.running.locked();
            match running.entry((caller.clone(), id)) {
                std::collections::hash_map::Entry::Occupied(_) => true,
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(Running {
                        stop: Some(stop_tx),
                        link: link.clone(),
                    });
                    false
                }
            }
        };
        if copy {
            tracing::debug!(%caller, call = id, "a copy of an order running here; dropped");
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        }
        tracing::debug!(%caller, call = id, items = order.items.len(), "order taken");
        let outcome = {
            let run = self.run(order, link, bridge.as_ref());
            let progress = async {
                let mut tick = tokio::time::interval(self.ack_wait / 3);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let _ = msg.ack_with(AckKind::Progress).await;
                }
            };
            tokio::select! {
                outcomes = run => Ok(outcomes),
                stop = stop_rx => Err(stop.unwrap_or(Stop::Cancelled)),
                () = progress => Err(Stop::Cancelled),
            }
        };
        self.running.locked().remove(&(caller.clone(), id));
        match outcome {
            Ok(outcomes) => {
                let ran_us = taken.elapsed().as_micros() as u64;
                let answer = OrderAnswer {
                    id,
                    node: self.id.clone(),
                    outcomes,
                };
                let sent = self.answer(&caller, answer).await;
                let answered_us = taken.elapsed().as_micros() as u64;
                if sent {
                    let _ = msg.ack().await;
                }
                tracing::debug!(%caller, call = id, ran_us, answered_us, sent, "order answered");
            }
            Err(Stop::Cancelled) => {
                tracing::debug!(%caller, call = id, "order cancelled");
                let _ = msg.ack_with(AckKind::Term).await;
            }
            Err(Stop::Leaving) => {
                tracing::debug!(%caller, call = id, "order handed back");
                let _ = msg.ack_with(AckKind::Nak(None)).await;
                let _ = self.client.flush().await;
            }
        }
    }

    /// Runs an order in the local pool.
    async fn run(
        &self,
        order: Order,
        link: Arc<JobLink>,
        bridge: Option<&Bridge>,
    ) -> Result<Vec<crate::wire::Outcome>, WireError> {
        let job = self.job(&order.component).await?;
        let subject = wire::channel_subject(&order.caller);
        let Order {
            id,
            caller,
            func,
            items,
            options,
            on_cancel,
            grace,
            ..
        } = order;
        // A node makes no outbound requests for its callers; a wasmpool
        // caller refuses such calls before they leave, this one did not.
        if !options.http.is_empty() {
            return Err(WireError::new(
                ErrorKind::Unsupported,
                "outbound HTTP (allow_http) is for local pools only: this cluster node makes no \
                 requests for its callers",
            ));
        }
        let items = items.into_iter().map(|b| b.into_vec()).collect();
        let route: Arc<dyn std::any::Any + Send + Sync> = Arc::new(Route { caller, order: id });
        let policy = Policy {
            on_cancel,
            grace,
            job: Some(link),
            data: Some(route),
            tenant: None,
        };
        let run = self.pool.run_order(&job, &func, items, options, policy);
        let Some(bridge) = bridge else {
            return run.await.map_err(WireError::from);
        };
        // The values the guest emits go to the caller until the call has
        // ended and they are drained, before the answer; the values the
        // handle sends come over while the call runs.
        let run = async {
            let r = run.await;
            bridge.registry.end_channel(&bridge.key);
            r
        };
        let inbound = bridge.inbound(&self.client, subject.clone(), id);
        let outbound = bridge.outbound(&self.client, subject, id);
        let (r, ()) = tokio::select! {
            both = async { tokio::join!(run, outbound) } => both,
            () = inbound => unreachable!("the inbound bridge ends only when aborted"),
        };
        r.map_err(WireError::from)
    }

    /// The component with content hash `hash`, from the bucket on first use.
    async fn job(&self, hash: &str) -> Result<Job, WireError> {
        if let Some(job) = self.jobs.locked().get(hash) {
            return Ok(job.clone());
        }
        let fetch =
            async {
                let mut object =
                    self.store.get(hash).await.map_err(|e| {
                        nats_error(&format!("fetching component {hash}"), &self.url, e)
                    })?;
                let mut bytes = Vec::new();
                object.read_to_end(&mut bytes).await.map_err(|e| {
                    Error::io(format_args!("reading component {hash} from NATS"), e)
                })?;
                let job = Job::from_bytes(bytes)?;
                if job.hash() != hash {
                    return Err(Error::new(
                        ErrorKind::Protocol,
                        format!("component {hash} in the bucket has hash {}", job.hash()),
                    ));
                }
                Ok(job)
            };
        let job = fetch.await.map_err(WireError::from)?;
        let mut jobs = self.jobs.locked();
        if jobs.len() >= JOBS_KEPT {
            jobs.clear();
        }
        jobs.insert(hash.to_string(), job.clone());
        Ok(job)
    }

    /// Sends `answer` to its caller, and flushes it to the server; an
    /// answer too big for one message becomes an error. Whether it went.
    /// (Answers are plain NATS messages: a caller that lost some in a
    /// reconnect sends its orders again.)
    async fn answer(&self, caller: &str, answer: OrderAnswer) -> bool {
        let subject = wire::results_subject(caller);
        let mut payload = Bytes::from(wire::encode(&answer));
        let max = self.client.server_info().max_payload;
        if payload.len() + 256 > max {
            let too_big = OrderAnswer {
                id: answer.id,
                node: self.id.clone(),
                outcomes: Err(WireError::new(
                    ErrorKind::Unsupported,
                    format!(
                        "the call's results ({} bytes) do not fit in one NATS message (the \
                         server's max_payload is {max} bytes)",
                        payload.len()
                    ),
                )),
            };
            payload = Bytes::from(wire::encode(&too_big));
        }
        match self.client.publish(subject, payload).await {
            Ok(()) => self.client.flush().await.is_ok(),
            Err(e) => {
                tracing::debug!(error = %e, "answer not sent");
                false
            }
        }
    }

    /// Stops every order running here, to hand it back; how many.
    fn stop_all(&self) -> usize {
        let mut running = self.running.locked();
        for r in running.values_mut() {
            if let Some(stop) = r.stop.take() {
                let _ = stop.send(Stop::Leaving);
            }
        }
        running.len()
    }

    /// Applies a caller's cancel to an order running here.
    fn cancel(&self, cancel: CancelOrder) {
        let mut running = self.running.locked();
        if let Some(r) = running.get_mut(&(cancel.caller, cancel.id)) {
            if cancel.kill {
                r.link.request_kill();
            }
            if let Some(stop) = r.stop.take() {
                let _ = stop.send(Stop::Cancelled);
            }
        }
    }
}

/// Publishes the node's load every [`wire::HEARTBEAT`].
async fn heartbeats(shared: Arc<NodeState>, client: async_nats::Client) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let subject = wire::node_subject(&shared.id);
    let mut tick = tokio::time::interval(wire::HEARTBEAT);
    loop {
        tick.tick().await;
        let stats = shared.pool.statistics();
        let beat = Beat {
            node: shared.id.clone(),
            host: host.clone(),
            pid: std::process::id(),
            workers: stats.max_workers,
            idle: stats.idle,
            busy: stats.busy,
            running: shared.running.locked().len(),
            spawned: stats.spawned,
            crashed: stats.crashed,
            killed: stats.killed,
            calls: stats.calls,
        };
        let _ = client
            .publish(subject.clone(), Bytes::from(wire::encode(&beat)))
            .await;
    }
}

/// Notes callers' heartbeats, and cancels the running orders of callers
/// that have gone.
async fn callers(shared: Arc<NodeState>, client: async_nats::Client) {
    let Ok(mut beats) = client.subscribe(wire::CALLERS_WILDCARD).await else {
        tracing::warn!("cannot hear callers' heartbeats; their orders run regardless");
        return;
    };
    let mut sweep = tokio::time::interval(wire::HEARTBEAT);
    loop {
        tokio::select! {
            msg = beats.next() => {
                let Some(msg) = msg else { return };
                if let Some(caller) = msg.subject.as_str().rsplit('.').next() {
                    shared.callers.locked().insert(caller.to_string(), Instant::now());
                }
            }
            _ = sweep.tick() => {
                let gone: Vec<(String, u64)> = shared
                    .running
                    .locked()
                    .keys()
                    .filter(|(caller, _)| shared.caller_gone(caller))
                    .cloned()
                    .collect();
                for (caller, id) in gone {
                    tracing::info!(%caller, call = id, "its caller has gone; cancelling");
                    shared.cancel(CancelOrder { caller, id, kill: false });
                }
            }
        }
    }
}

/// Applies callers' cancels.
async fn cancels(shared: Arc<NodeState>, client: async_nats::Client) {
    let Ok(mut cancels) = client.subscribe(wire::CANCEL_SUBJECT).await else {
        tracing::warn!("cannot hear cancels; cancelled calls run to the end");
        return;
    };
    while let Some(msg) = cancels.next().await {
        match wire::decode::<CancelOrder>(&msg.payload, "cancel") {
            Ok(cancel) => shared.cancel(cancel),
            Err(e) => tracing::warn!(error = %e, "dropping a malformed cancel"),
        }
    }
}
