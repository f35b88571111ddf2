//! [`Policy`]: what a call's request carries besides its options, from
//! [`Call`](super::Call) down to the worker or the cluster node.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use super::job_handle::JobLink;
use crate::options::Cancel;

/// What to do when a call is dropped or overruns, and what its host
/// functions see.
#[derive(Clone)]
pub(crate) struct Policy {
    pub(crate) on_cancel: Cancel,
    pub(crate) grace: Duration,
    /// The handle's side of a spawned job.
    pub(crate) job: Option<Arc<JobLink>>,
    /// What the call's host functions see.
    pub(crate) data: Option<Arc<dyn Any + Send + Sync>>,
    /// Whose share of the workers the call takes; `None` for the default
    /// tenant.
    pub(crate) tenant: Option<Arc<str>>,
}

impl Policy {
    /// A request that runs to its end if its caller goes away, with no
    /// data, job or tenant of its own: a session's open, close and drop.
    pub(crate) fn finish(grace: Duration) -> Policy {
        Policy {
            on_cancel: Cancel::Finish,
            grace,
            job: None,
            data: None,
            tenant: None,
        }
    }

    /// The cancel mode to apply now: `on_cancel`, unless the job's handle
    /// asked for a kill.
    pub(super) fn cancel_mode(&self) -> Cancel {
        match &self.job {
            Some(job) if job.kill_requested() => Cancel::Kill,
            _ => self.on_cancel,
        }
    }
}
