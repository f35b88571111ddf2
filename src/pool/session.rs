//! [`Session`]: one instance of a job, kept alive across calls on the
//! worker that holds it; and the link its [`Resource`]s keep to it.

use crate::locks::Locked as _;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Pool;
use super::call::{self, Args, Call, encode_args};
use super::policy::Policy;
use super::resource::Resource;
use super::setters::call_option_setters;
use crate::error::{Error, ErrorKind};
use crate::host::resources::HostTable;
use crate::job::Job;
use crate::options::Cancel;
use crate::wire::{CallOptions, SessionOp};
use crate::worker::Shared;

/// One instance of a job, kept alive across calls: a plugin that keeps
/// state, and the way to the component model's resources.
///
/// [`Pool::run`] gives every call a fresh instance. A session is one
/// instance that call after call runs on, in the worker that holds it:
/// what a call leaves in the guest's memory, the next one finds. Open one
/// with [`Pool::session`]; call it with [`run`](Session::run), or with
/// [`call`](Session::call) for the per-call options of [`Pool::call`]
/// (timeout, fuel, captured output, host-function data, tenant).
///
/// ```no_run
/// # async fn demo(pool: wasmpool::Pool, job: wasmpool::Job) -> Result<(), wasmpool::Error> {
/// let session = pool.session(&job).await?;
/// let a: u64 = session.run("bump", ()).await?;
/// let b: u64 = session.run("bump", ()).await?;
/// assert_eq!(b, a + 1);
/// session.close().await?;
/// # Ok(()) }
/// ```
///
/// `Session` is `Send + Sync` and its methods take `&self`: share it
/// behind an `Arc`. Its calls run one at a time, in the order they were
/// made (first awaited: a call's place is taken when its future is first
/// polled).
///
/// A host function must not call a session on the worker whose guest is
/// calling it: that session's call waits for the worker, which waits for
/// the host function.
///
/// # Workers
///
/// A session is an instance, not a worker: one worker holds many
/// sessions (each costs the memory its guest has touched, tens of KiB for
/// a small Rust guest), and runs their calls among the pool's other
/// calls, one at a time. Sessions spread over the pool's workers as they
/// open. A session's call waits for its worker, and takes a place among
/// the pool's calls as any call does. A worker holding sessions is never
/// retired for its age ([`retire_after`](crate::PoolBuilder::retire_after),
/// [`retire_above`](crate::PoolBuilder::retire_above)) or for idling
/// ([`idle_timeout`](crate::PoolBuilder::idle_timeout)).
///
/// The session's sandbox is the one it opened with: environment,
/// preopened directories, stdio and the memory limit are set on
/// [`Pool::session`]'s builder, and a call that sets them otherwise fails
/// with [`ErrorKind::Config`].
///
/// # How a session is lost
///
/// - A call that **traps**, **times out** or is **interrupted** (dropped
///   or cancelled with [`Cancel::Interrupt`]), or runs into a **limit**
///   (memory, fuel, output) ends the instance: the component model forbids
///   entering an instance again after a trap. That call fails as it
///   would on [`Pool::run`]; every later call fails with
///   [`ErrorKind::SessionLost`], whose message says why.
/// - A call dropped with [`Cancel::Finish`] runs to its end and leaves
///   the session as the call leaves it.
/// - A call that never enters the guest (no such function, arguments that
///   do not fit, a [`Resource`] the session does not hold, a sandbox
///   setting of its own) fails alone: the session goes on. So does a call
///   dropped before it reached the worker (still waiting for it).
/// - A resource's destructor that traps, when a dropped [`Resource`] is
///   dropped in the guest before the next call, loses the session too: that
///   call fails with the trap.
/// - [`Cancel::Kill`], a timeout past its grace, or a worker that
///   crashes ends the worker, and so **every session on it**. Sessions
///   on other workers, and the pool, go on.
/// - After [`close`](Session::close), calls fail with
///   [`ErrorKind::SessionLost`] too.
///
/// [`is_lost`](Session::is_lost) tells whether the session is gone.
/// Dropping a `Session` closes it: its instance is dropped with the next
/// request its worker serves. A session holds a handle on its pool, as a
/// [`Call`] does: the pool's workers live at least as long as it.
///
/// # Resources
///
/// A function whose signature holds a `resource` (an `own<T>` or a
/// `borrow<T>`) can only be called on a session, since the resource
/// lives in the session's instance. A returned handle is a [`Resource`],
/// passed back by reference for a `borrow` and by value for an `own`:
///
/// ```no_run
/// # async fn demo(session: wasmpool::Session) -> Result<(), wasmpool::Error> {
/// use wasmpool::Resource;
/// let c: Resource = session.run("pkg:x/counters#[constructor]counter", (5i64,)).await?;
/// let v: i64 = session.run("pkg:x/counters#[method]counter.add", (&c, 3i64)).await?;
/// assert_eq!(v, 8);
/// let last: i64 = session.run("pkg:x/counters#consume", (c,)).await?; // moved
/// # Ok(()) }
/// ```
///
/// Cluster pools have no sessions: [`Pool::session`] fails with
/// [`ErrorKind::Unsupported`].
pub struct Session {
    pub(super) inner: Arc<SessionInner>,
}

/// What a [`Session`] and its calls share.
pub(crate) struct SessionInner {
    pub(super) pool: Pool,
    pub(super) job: Job,
    pub(super) link: Arc<SessionLink>,
    /// The options it opened with: its calls start from them.
    pub(super) options: CallOptions,
    pub(super) on_cancel: Cancel,
    pub(super) grace: Duration,
    /// Its calls run one at a time, first come first served.
    pub(super) order: tokio::sync::Mutex<()>,
}

/// What a session's [`Resource`]s know of it: where to send their drops.
pub(crate) struct SessionLink {
    pub(crate) id: u64,
    pub(crate) worker: Arc<Shared>,
    /// The host values its guest holds handles to
    /// ([`HostContext::new_resource`](crate::HostContext::new_resource)):
    /// dropped when the session closes or is lost.
    pub(crate) host: Arc<HostTable>,
    state: Mutex<LinkState>,
}

#[derive(Default)]
struct LinkState {
    closed: bool,
    lost: Option<String>,
    /// The worker no longer counts the session: it was closed or lost.
    released: bool,
}

impl SessionLink {
    pub(super) fn new(id: u64, worker: Arc<Shared>) -> SessionLink {
        SessionLink {
            id,
            worker,
            host: Arc::default(),
            state: Mutex::default(),
        }
    }

    /// Handle `handle` was dropped on the host: the guest drops it before
    /// the session's next call. Nothing, once the session is gone.
    pub(crate) fn dropped(&self, handle: u64) {
        if self.usable().is_ok() {
            self.worker.handle_dropped(self.id, handle);
        }
    }

    /// The session is lost, for `why` (kept if it already was): its
    /// worker no longer counts it, and drops what is left of its instance
    /// with its next request.
    pub(super) fn lose(&self, why: &str) {
        let why = why.strip_prefix("the session is lost: ").unwrap_or(why);
        {
            let mut state = self.state.locked();
            if state.lost.is_none() {
                state.lost = Some(why.to_string());
            }
        }
        self.release();
    }

    /// The worker no longer counts the session, and drops its instance
    /// with its next request; the host's values the guest held go. Once.
    fn release(&self) {
        let first = !std::mem::replace(&mut self.state.locked().released, true);
        if first {
            self.worker.session_ended(self.id, true);
        }
        self.host.clear();
    }

    /// Ok while calls can go to the session; else why not.
    pub(super) fn usable(&self) -> Result<(), Error> {
        let state = self.state.locked();
        if state.closed {
            return Err(Error::new(ErrorKind::SessionLost, "the session was closed"));
        }
        if let Some(why) = &state.lost {
            return Err(Error::new(
                ErrorKind::SessionLost,
                format!("the session is lost: {why}"),
            ));
        }
        if self.worker.is_gone() {
            // Found out here: the host's values the guest held go now.
            drop(state);
            self.lose("its worker ended (it crashed, or was killed)");
            return Err(worker_ended(None));
        }
        Ok(())
    }

    /// Marks the session closed, and releases it.
    fn close(&self) {
        self.state.locked().closed = true;
        self.release();
    }
}

/// The error of a session whose worker ended: `detail` says how, if known.
pub(super) fn worker_ended(detail: Option<&Error>) -> Error {
    let message = match detail {
        Some(e) => format!("the session is lost: its worker ended ({e})"),
        None => "the session is lost: its worker ended (it crashed, or was killed)".to_string(),
    };
    Error::new(ErrorKind::SessionLost, message)
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.inner.link.id)
            .field("job", &self.inner.job)
            .field("pid", &self.pid())
            .field("lost", &self.is_lost())
            .finish()
    }
}

impl Session {
    /// Calls `func` on the session's instance with `args` and returns its
    /// result: [`Pool::run`] on this session.
    ///
    /// # Errors
    ///
    /// As [`Pool::run`], and [`ErrorKind::SessionLost`] once the session
    /// is lost or closed (see [How a session is lost](Session#how-a-session-is-lost)).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future cancels the call as the pool's
    /// [`on_cancel`](crate::PoolBuilder::on_cancel) mode says; unless that
    /// is [`Cancel::Finish`], it loses the session.
    pub fn run<'a, R: DeserializeOwned + Send + 'a>(
        &'a self,
        func: &'a str,
        args: impl Serialize,
    ) -> impl Future<Output = Result<R, Error>> + Send + 'a {
        self.call(func, args).into_future()
    }

    /// Like [`run`](Session::run), but returns the [`Call`] builder, to set
    /// per-call options on: [`timeout`](Call::timeout),
    /// [`fuel`](Call::fuel), [`data`](Call::data),
    /// [`on_cancel`](Call::on_cancel), [`report`](Call::report) and the
    /// others, as on [`Pool::call`].
    ///
    /// ```no_run
    /// # async fn demo(session: wasmpool::Session) -> Result<(), wasmpool::Error> {
    /// use std::time::Duration;
    /// let n: u64 = session.call("bump", ()).timeout(Duration::from_secs(1)).await?;
    /// # Ok(()) }
    /// ```
    pub fn call<'a, R: DeserializeOwned>(
        &'a self,
        func: &'a str,
        args: impl Serialize,
    ) -> Call<'a, R> {
        let inner = &self.inner;
        Call {
            pool: inner.pool.clone(),
            job: &inner.job,
            func,
            args: Args::Encoded(encode_args(&args)),
            decode: call::typed::<R>,
            on_cancel: inner.on_cancel,
            options: inner.options.clone(),
            grace: inner.grace,
            cancel: Arc::default(),
            link: None,
            data: None,
            tenant: None,
            session: Some(inner.clone()),
            _result: PhantomData,
        }
    }

    /// Whether the session is lost or closed: its calls fail with
    /// [`ErrorKind::SessionLost`]. A call that loses it says so when it
    /// returns; a worker that dies is seen at once.
    pub fn is_lost(&self) -> bool {
        self.inner.link.usable().is_err()
    }

    /// The worker process holding the session; `None` on a
    /// [thread worker](crate::WorkerKind::Thread).
    pub fn pid(&self) -> Option<u32> {
        self.inner.link.worker.pid()
    }

    /// Drops the guest's resource behind `resource` now, running its
    /// destructor, and waits for it. Dropping a [`Resource`] does the same
    /// before the session's next call.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ArgumentMismatch`], naming the resource, for a handle
    /// of another session or one a call consumed (the session goes on);
    /// [`ErrorKind::SessionLost`] on a lost session; a trap of the
    /// destructor, which loses the session. The handle is consumed either
    /// way: another session's handle, refused here, is then dropped as a
    /// handle is, and its own session drops the resource.
    ///
    /// # Cancel safety
    ///
    /// Dropped before it has sent the drop, the handle is dropped as any
    /// handle is: before the session's next call.
    pub async fn drop_resource(&self, mut resource: Resource) -> Result<(), Error> {
        if resource.is_host() || resource.owner() != self.inner.link.id {
            return Err(Error::new(
                ErrorKind::ArgumentMismatch,
                format!(
                    "resource {} (handle {}) belongs to another session",
                    resource.type_name(),
                    resource.handle()
                ),
            ));
        }
        let _turn = self.inner.order.lock().await;
        self.inner.link.usable()?;
        // Dropped before this point, the handle still drops its resource,
        // before the session's next call.
        resource.detach();
        let op = SessionOp::Drop {
            session: self.inner.link.id,
            handle: resource.handle(),
            type_name: resource.type_name().to_string(),
        };
        self.send(op).await
    }

    /// Closes the session: its instance is dropped in the worker, and its
    /// calls fail with [`ErrorKind::SessionLost`] from now on. Closing a
    /// lost or closed session does nothing. It waits for the calls awaited
    /// before it, and for the worker to drop the instance.
    ///
    /// # Errors
    ///
    /// None that matter: the session is closed whatever happens. An error
    /// says only that the worker could not be told at once (it ended, or
    /// the pool closed), and then its instance is gone with it.
    ///
    /// # Cancel safety
    ///
    /// The session is closed once this is first polled past its turn; the
    /// worker drops the instance with its next request if this future is
    /// dropped before it has.
    pub async fn close(&self) -> Result<(), Error> {
        let link = &self.inner.link;
        let _turn = self.inner.order.lock().await;
        let open = link.usable().is_ok();
        // The close goes to the worker with its next request: the one
        // below, or any other.
        link.close();
        if !open {
            return Ok(());
        }
        self.send(SessionOp::Close(link.id)).await
    }

    /// Sends `op` to the session's worker.
    async fn send(&self, op: SessionOp) -> Result<(), Error> {
        let inner = &self.inner;
        let policy = Policy::finish(inner.grace);
        let pool = inner.pool.handle.inner.clone();
        pool.session_op(inner, op, policy).await
    }
}

impl Drop for SessionInner {
    /// The last handle on the session is gone (the `Session`, and any
    /// call of it spawned as a job): it closes.
    fn drop(&mut self) {
        self.link.close();
    }
}

/// [`Pool::session`]'s builder: the session's sandbox and limits, set
/// before it opens. Await it for the [`Session`].
///
/// It takes the setters of [`Call`]: a [`timeout`](OpenSession::timeout)
/// bounds the instantiation and is the default of each call, and
/// [`env`](OpenSession::env), [`preopen_dir`](OpenSession::preopen_dir),
/// [`stdout`](OpenSession::stdout) and
/// [`max_memory`](OpenSession::max_memory) are the session's for good.
#[must_use = "a session opens only when awaited"]
pub struct OpenSession<'a> {
    pub(super) pool: Pool,
    pub(super) job: &'a Job,
    pub(super) options: CallOptions,
    pub(super) grace: Duration,
    pub(super) on_cancel: Cancel,
}

impl fmt::Debug for OpenSession<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenSession")
            .field("job", self.job)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl OpenSession<'_> {
    call_option_setters!();

    /// What dropping one of the session's calls before it ends does.
    /// Default: the pool's setting.
    pub fn on_cancel(mut self, mode: Cancel) -> Self {
        self.on_cancel = mode;
        self
    }
}

impl<'a> IntoFuture for OpenSession<'a> {
    type Output = Result<Session, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<Session, Error>> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let OpenSession {
                pool,
                job,
                options,
                grace,
                on_cancel,
            } = self;
            // A dropped open finishes, and is closed with the worker's next
            // request: killing the worker would lose its other sessions.
            let policy = Policy::finish(grace);
            let inner = pool.handle.inner.clone();
            let link = inner.open_session(job, options.clone(), policy).await?;
            // The open's own timeout stays the default of the calls.
            Ok(Session {
                inner: Arc::new(SessionInner {
                    pool,
                    job: job.clone(),
                    link: Arc::new(link),
                    options,
                    on_cancel,
                    grace,
                    order: tokio::sync::Mutex::new(()),
                }),
            })
        })
    }
}
