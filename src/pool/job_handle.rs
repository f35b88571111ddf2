//! [`JobHandle`]: a spawned call, with its duplex channel to the guest.

use crate::locks::Locked as _;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::cancel::CancelHandle;
use crate::error::{Error, ErrorKind};
use crate::sync::{HostOp, Registry, Unget, check, decode, encode};
use crate::wire::{Answer, GuestOp};

/// The handle's side of a spawned job, shared with its call.
pub(crate) struct JobLink {
    channel: String,
    kill: AtomicBool,
    pid: Mutex<Option<u32>>,
}

impl JobLink {
    pub(crate) fn kill_requested(&self) -> bool {
        self.kill.load(Ordering::SeqCst)
    }

    /// A link with no channel: only a kill to ask for, as a cluster node
    /// does for its orders.
    #[cfg(feature = "cluster")]
    pub(crate) fn detached() -> JobLink {
        JobLink {
            channel: String::new(),
            kill: AtomicBool::new(false),
            pid: Mutex::new(None),
        }
    }

    /// A link whose call gets the job channel `channel` of its pool: a
    /// cluster node's bridge of a remote handle's channel.
    #[cfg(feature = "cluster")]
    pub(crate) fn with_channel(channel: String) -> JobLink {
        JobLink {
            channel,
            kill: AtomicBool::new(false),
            pid: Mutex::new(None),
        }
    }

    /// The key of the job's channel in its pool's registry; empty for none.
    #[cfg(feature = "cluster")]
    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }

    /// Makes a cancel of the call a kill.
    #[cfg(feature = "cluster")]
    pub(crate) fn request_kill(&self) {
        self.kill.store(true, Ordering::SeqCst);
    }

    /// The call was handed to `worker`: it gets the channel.
    pub(crate) fn started(&self, worker: &crate::worker::Shared) {
        *self.pid.locked() = worker.pid();
        if !self.channel.is_empty() {
            worker.guest.attach_channel(self.channel.clone());
        }
    }
}

/// A job started with [`Pool::spawn`](crate::Pool::spawn) or
/// [`Call::spawn`](crate::Call::spawn): await it for the result, and talk
/// to the guest while it runs.
///
/// The job runs whether or not the handle is polled. It has a duplex
/// channel: [`send`](Self::send) values that the guest takes with `recv`
/// (`wasmpool_guest::recv`), [`close`](Self::close) the input so that the
/// guest's `recv` returns `None`, and [`recv`](Self::recv) values that the
/// guest `emit`s: results or progress as it goes. Each direction buffers
/// [`JOB_CHANNEL_CAPACITY`](crate::JOB_CHANNEL_CAPACITY) values; beyond
/// that the sender waits.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(pool: wasmpool::Pool, job: wasmpool::Job) -> Result<(), wasmpool::Error> {
/// // A guest that doubles every number it receives until end of input.
/// let handle = pool.spawn::<u64>(&job, "double-stream", ());
/// for x in 1..=3u64 {
///     handle.send(&x).await?;
/// }
/// handle.close();
/// while let Some(y) = handle.recv::<u64>().await? {
///     println!("{y}");
/// }
/// let received: u64 = handle.await?;
/// assert_eq!(received, 3);
/// # Ok(()) }
/// ```
///
/// # Panics
///
/// Never: made outside a Tokio runtime, the handle resolves to an
/// [`ErrorKind::Config`] error instead of running.
///
/// # Cancel safety
///
/// Dropping the handle cancels the job, as its [`Cancel`](crate::Cancel)
/// mode says, like dropping a call's future; values it emitted and nobody
/// received are dropped with it.
#[must_use = "dropping a job handle cancels the job"]
pub struct JobHandle<R> {
    registry: Arc<Registry>,
    link: Arc<JobLink>,
    cancel: CancelHandle,
    task: Result<tokio::task::JoinHandle<Result<R, Error>>, Option<Error>>,
    _result: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for JobHandle<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobHandle")
            .field("pid", &self.pid())
            .field("finished", &self.is_finished())
            .finish_non_exhaustive()
    }
}

impl<R: Send + 'static> JobHandle<R> {
    /// Runs `call` as a task of the current Tokio runtime.
    pub(crate) fn spawn(
        registry: Arc<Registry>,
        channel: String,
        cancel: CancelHandle,
        call: impl FnOnce(Arc<JobLink>) -> Pin<Box<dyn Future<Output = Result<R, Error>> + Send>>,
    ) -> JobHandle<R> {
        let link = Arc::new(JobLink {
            channel,
            kill: AtomicBool::new(false),
            pid: Mutex::new(None),
        });
        let task = match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let fut = call(link.clone());
                let registry = registry.clone();
                let link = link.clone();
                Ok(rt.spawn(async move {
                    let r = fut.await;
                    // Whether or not it reached a worker, the job is over.
                    registry.end_channel(&link.channel);
                    r
                }))
            }
            Err(_) => {
                // Nothing will run: the channel is over before it began.
                registry.end_channel(&link.channel);
                Err(Some(Error::new(
                    ErrorKind::Config,
                    "Pool::spawn needs a Tokio runtime: call it from within one",
                )))
            }
        };
        JobHandle {
            registry,
            link,
            cancel,
            task,
            _result: PhantomData,
        }
    }
}

impl<R> JobHandle<R> {
    /// Cancels the job: it is interrupted (or killed, or left to finish,
    /// as its [`Cancel`](crate::Cancel) mode says) and the handle resolves
    /// with [`ErrorKind::Cancelled`] at once. A guest blocked in a
    /// `wasmpool:sync` call wakes as soon as the interrupt reaches its
    /// worker; from the cancel on, an interrupted guest is granted nothing
    /// more (no lock, permit or value), and what it held is released once
    /// it has stopped.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Cancels the job by killing its worker process, whatever its cancel
    /// mode. A thread worker cannot be killed: its guest is interrupted.
    pub fn kill(&self) {
        self.link.kill.store(true, Ordering::SeqCst);
        self.cancel.cancel();
    }

    /// Whether the job has finished, so that awaiting the handle returns
    /// at once.
    pub fn is_finished(&self) -> bool {
        match &self.task {
            Ok(task) => task.is_finished(),
            Err(_) => true,
        }
    }

    /// The process id of the worker running the job: `None` before it has
    /// started, and for thread workers.
    pub fn pid(&self) -> Option<u32> {
        *self.link.pid.locked()
    }

    /// Sends `value` to the guest, which takes it with `recv`. Waits while
    /// [`JOB_CHANNEL_CAPACITY`](crate::JOB_CHANNEL_CAPACITY) values are
    /// buffered.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] once the job has finished or the input was
    /// closed; [`ErrorKind::ArgumentMismatch`] if `value` cannot be
    /// encoded.
    ///
    /// # Cancel safety
    ///
    /// As [`Queue::put`](crate::Queue::put): a send dropped while it waits
    /// for room sends nothing and gives up its place; one that found room
    /// before the drop has sent its value, once.
    pub async fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        let value = encode(value, "sending to the job")?;
        self.send_raw(value).await
    }

    /// Sends one value's bytes as they are, unencoded.
    pub(crate) async fn send_raw(&self, value: serde_bytes::ByteBuf) -> Result<(), Error> {
        let op = HostOp::submit(
            &self.registry,
            self.registry.host_owner(),
            GuestOp::Emit { value },
            Some(&self.link.channel),
            None,
        );
        check(op.answer().await, "sending to the job").map(drop)
    }

    /// The next value the guest emitted, or `None` once the job has
    /// finished and every value it emitted was received.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ResultMismatch`] if the value does not decode as a `T`;
    /// the value is consumed.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a value a dropped `recv` had already been handed goes
    /// back to the front of the job's values, so no value is lost.
    pub async fn recv<T: DeserializeOwned>(&self) -> Result<Option<T>, Error> {
        match self.recv_raw().await? {
            Some(v) => decode(&v, "a value the job emitted").map(Some),
            None => Ok(None),
        }
    }

    /// The next value's bytes as they are, undecoded.
    pub(crate) async fn recv_raw(&self) -> Result<Option<serde_bytes::ByteBuf>, Error> {
        let op = HostOp::submit(
            &self.registry,
            self.registry.host_owner(),
            GuestOp::Recv,
            Some(&self.link.channel),
            Some(Unget::Channel(&self.link.channel)),
        );
        match check(op.answer().await, "receiving from the job")? {
            Answer::Value(v) => Ok(Some(v)),
            _ => Ok(None),
        }
    }

    /// Closes the job's input: once it has taken what was sent, its `recv`
    /// returns `None`. Further sends fail with [`ErrorKind::Closed`].
    pub fn close(&self) {
        self.registry.close_input(&self.link.channel);
    }
}

impl<R> Future for JobHandle<R> {
    type Output = Result<R, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.task {
            Ok(task) => Pin::new(task).poll(cx).map(|r| match r {
                Ok(r) => r,
                Err(e) if e.is_cancelled() => Err(Error::new(
                    ErrorKind::Cancelled,
                    "the job's task was cancelled",
                )),
                Err(e) => Err(Error::new(
                    ErrorKind::Protocol,
                    format!("the job's task failed: {e}"),
                )),
            }),
            Err(e) => Poll::Ready(Err(e.take().unwrap_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    "the job handle was polled after it resolved",
                )
            }))),
        }
    }
}

impl<R> Drop for JobHandle<R> {
    fn drop(&mut self) {
        if let Ok(task) = &self.task {
            task.abort();
        }
        self.registry.remove_channel(&self.link.channel);
    }
}
