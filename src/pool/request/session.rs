//! A session's requests ([`crate::Session`]): its open, its calls, its
//! close and its handle drops, each to the one worker that holds it. They
//! share the request path of every call (the checks, [`Target`], the
//! watchdog); what is theirs is the worker they must wait for, and what a
//! reply says of the session.

use super::*;

impl PoolInner {
    /// Opens a session of `job` with `options` on a worker of the pool's:
    /// a new one while there is room, else the one with the fewest
    /// sessions.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before the worker has answered closes the
    /// session it may have opened, with the worker's next request.
    pub(in crate::pool) async fn open_session(
        &self,
        job: &Job,
        options: CallOptions,
        policy: Policy,
    ) -> Result<SessionLink, Error> {
        let roster = self.local_roster("sessions")?;
        let pool_preopens = self.options.preopens.len();
        if let Some(added) = options.preopens.get(pool_preopens..)
            && !added.is_empty()
        {
            crate::pool::builder::check_preopens(added)?;
        }
        let compiled = self.check_job(job, &options).await?;
        let grants = if roster.confines() {
            Grants::of(&options.preopens)
        } else {
            Grants::default()
        };
        let kind = compiled.kind();
        let permit = roster.permit(policy.tenant.as_deref()).await?;
        let worker = roster.checkout_for_session(&grants, kind).await?;
        let session = self.next_call.fetch_add(1, Ordering::Relaxed);
        let link = SessionLink::new(session, worker.shared.clone());
        // Counted before the request, so that the worker is not retired
        // as it comes back; uncounted (and closed) if the open fails or
        // is dropped.
        worker.shared.session_opened();
        let mut unopened = Unopened(Some(&link));
        let req = CallRequest {
            id: self.next_call.fetch_add(1, Ordering::Relaxed),
            artifact: compiled.artifact.clone(),
            export: ExportPath {
                instance: None,
                func: String::new(),
            },
            items: vec![Payload::Inline(empty_args())],
            options,
            session: Some(SessionOp::Open(session)),
            pending: Pending::default(),
        };
        let target = Target {
            roster,
            grants: &grants,
            kind,
            http: None,
            pinned: true,
            resources: Some(link.host.clone()),
            streams: None,
        };
        // A worker that died before it took the open lost no session: it
        // had none yet.
        let replied = target
            .send(req, worker, permit, policy, None)
            .await
            .map_err(|e| {
                if e.kind() == ErrorKind::SessionLost {
                    Error::crashed(None, "before it opened the session")
                } else {
                    e
                }
            })?;
        call_result(one_outcome(replied)?, None)?;
        unopened.0 = None;
        drop(unopened);
        Ok(link)
    }

    /// A session's call of `func` with `args` (an encoded argument tuple),
    /// in the session's turn.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future cancels the call as `policy` says; unless it
    /// says [`Cancel::Finish`], that loses the session.
    pub(in crate::pool) async fn call_session(
        self: Arc<Self>,
        session: &SessionInner,
        func: &str,
        args: Vec<u8>,
        options: CallOptions,
        policy: Policy,
    ) -> CallResult {
        let span = call_span(&session.job, func, 1);
        async move {
            let _turn = session.order.lock().await;
            let link = &session.link;
            link.usable()?;
            let checked = self.check_session(&session.job, func, &options).await?;
            let args = check_args(&checked.resolved, args)?;
            let op = SessionOp::Call(link.id);
            // Armed once the request is handed to the worker: a call dropped
            // before then never reached the instance.
            let lose_on_drop = LoseOnDrop {
                link,
                armed: AtomicBool::new(false),
                arm: policy.on_cancel != Cancel::Finish,
            };
            let handed = Some(&lose_on_drop.armed);
            let sent = self
                .send_session(session, &checked, op, args, options, policy, handed)
                .await;
            lose_on_drop.armed.store(false, Ordering::Relaxed);
            let replied = sent.inspect_err(|e| {
                if e.kind() == ErrorKind::SessionLost {
                    link.lose(&e.to_string());
                }
            })?;
            let scope = replied.scope.clone();
            let outcome = one_outcome(replied)?;
            if let Some(why) = &outcome.1.lost {
                link.lose(why);
            }
            call_result(outcome, scope.as_deref())
        }
        .instrument(span)
        .await
    }

    /// Sends `op` (a close, a drop) to `session`'s worker.
    pub(in crate::pool) async fn session_op(
        &self,
        session: &SessionInner,
        op: SessionOp,
        policy: Policy,
    ) -> Result<(), Error> {
        let compiled = self.compiler.compiled(&session.job).await?;
        let checked = Checked {
            resolved: Arc::new(Resolved {
                export: ExportPath {
                    instance: None,
                    func: String::new(),
                },
                params: 0,
                session_only: None,
                transmits: false,
            }),
            compiled,
        };
        let options = session.options.clone();
        let replied = self
            .send_session(
                session,
                &checked,
                op,
                empty_args().into_vec(),
                options,
                policy,
                None,
            )
            .await?;
        let outcome = one_outcome(replied)?;
        if let Some(why) = &outcome.1.lost {
            session.link.lose(why);
        }
        call_result(outcome, None).map(|_| ())
    }

    /// The roster of a local pool; a cluster pool has none, and no `what`.
    #[cfg_attr(
        not(feature = "cluster"),
        expect(unused_variables, reason = "only a cluster pool's error names it")
    )]
    fn local_roster(&self, what: &str) -> Result<&Arc<Roster>, Error> {
        if self.backend.is_closed() {
            return Err(Error::closed());
        }
        match &self.backend {
            Backend::Local(roster) => Ok(roster),
            #[cfg(feature = "cluster")]
            Backend::Cluster(_) => Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "a cluster pool has no {what}: its calls go to whichever node is free, \
                     and an instance kept across calls would pin them to one"
                ),
            )),
        }
    }

    /// Sends a request of `session` to its worker, once the worker is free;
    /// raises `handed` as it hands it over.
    #[expect(clippy::too_many_arguments, reason = "a request's parts, passed once")]
    async fn send_session(
        &self,
        session: &SessionInner,
        checked: &Checked,
        op: SessionOp,
        args: Vec<u8>,
        options: CallOptions,
        policy: Policy,
        handed: Option<&AtomicBool>,
    ) -> Result<Replied, Error> {
        let roster = self.local_roster("sessions")?;
        let http = Outbound::new(&options.http, 1)?.map(Arc::new);
        let (worker, permit) = roster
            .session_worker(&session.link.worker, policy.tenant.as_deref())
            .await?;
        let (grants, kind) = (worker.grants.clone(), worker.kind);
        let id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let span = tracing::Span::current();
        span.record("call", id);
        span.record("worker", worker.id);
        let req = CallRequest {
            id,
            artifact: checked.compiled.artifact.clone(),
            export: checked.resolved.export.clone(),
            items: vec![Payload::Inline(serde_bytes::ByteBuf::from(args))],
            options,
            session: Some(op),
            pending: Pending::default(),
        };
        let target = Target {
            roster,
            grants: &grants,
            kind,
            http,
            pinned: true,
            resources: Some(session.link.host.clone()),
            streams: None,
        };
        if let Some(handed) = handed {
            handed.store(true, Ordering::Relaxed);
        }
        target.send(req, worker, permit, policy, None).await
    }
}

/// An encoded empty argument tuple.
fn empty_args() -> serde_bytes::ByteBuf {
    serde_bytes::ByteBuf::from(vec![0x90])
}

/// The one outcome of a request of one item.
fn one_outcome(replied: Replied) -> Result<Outcome, Error> {
    let mut outcomes = replied.outcomes.into_iter();
    match (outcomes.next(), outcomes.next()) {
        (Some(outcome), None) => Ok(outcome),
        _ => Err(Error::new(
            ErrorKind::Protocol,
            "the worker did not answer one call with one outcome",
        )),
    }
}

/// A session's open that has not succeeded: dropped, it closes the
/// session the worker may have opened.
struct Unopened<'a>(Option<&'a SessionLink>);

impl Drop for Unopened<'_> {
    fn drop(&mut self) {
        if let Some(link) = self.0 {
            link.worker.session_ended(link.id, true);
        }
    }
}

/// A session's call in flight: dropped while `armed` (the request is with
/// the worker, and has not answered), it loses the session, unless `arm`
/// is off (the call finishes anyway).
struct LoseOnDrop<'a> {
    link: &'a SessionLink,
    armed: AtomicBool,
    arm: bool,
}

impl Drop for LoseOnDrop<'_> {
    fn drop(&mut self) {
        if self.arm && self.armed.load(Ordering::Relaxed) {
            self.link.lose("a call was cancelled before it ended");
        }
    }
}
