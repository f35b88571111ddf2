//! Where a pool's calls run: on its own workers, or on a cluster's nodes.
//!
//! A pool is one or the other for its whole life, so the two designs are
//! one enum, chosen in [`PoolBuilder::build`](super::PoolBuilder::build),
//! and every place that differs matches it here (the call path in
//! `request/` matches it once, to send). A cluster pool starts no
//! roster and no housekeeper thread.

use std::sync::Arc;

use super::Statistics;
use super::roster::Roster;

/// Where a pool's calls run.
pub(super) enum Backend {
    /// On this pool's worker processes or threads.
    Local(Arc<Roster>),
    /// On the worker nodes of a cluster, over NATS JetStream.
    #[cfg(feature = "cluster")]
    Cluster(Arc<super::remote::Caller>),
}

impl Backend {
    /// Whether the pool is closed to new calls.
    pub(super) fn is_closed(&self) -> bool {
        match self {
            Backend::Local(roster) => roster.is_closed(),
            #[cfg(feature = "cluster")]
            Backend::Cluster(caller) => caller.is_closed(),
        }
    }

    /// Closes the pool to new calls.
    pub(super) fn close(&self) {
        match self {
            Backend::Local(roster) => roster.close(),
            #[cfg(feature = "cluster")]
            Backend::Cluster(caller) => caller.close(),
        }
    }

    /// The last `Pool` handle is gone: closes the pool and kills every
    /// local worker. Never blocks.
    pub(super) fn terminate(&self) {
        match self {
            Backend::Local(roster) => roster.terminate(),
            #[cfg(feature = "cluster")]
            Backend::Cluster(caller) => caller.close(),
        }
    }

    /// Waits until every local worker has ended; a cluster pool has none.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops only the waiting.
    pub(super) async fn all_exited(&self) {
        match self {
            Backend::Local(roster) => roster.all_exited().await,
            #[cfg(feature = "cluster")]
            Backend::Cluster(_) => {}
        }
    }

    /// The pool's counters; for a cluster, the sums over the nodes heard
    /// from lately.
    pub(super) fn statistics(&self) -> Statistics {
        match self {
            Backend::Local(roster) => roster.statistics(),
            #[cfg(feature = "cluster")]
            Backend::Cluster(caller) => caller.statistics(),
        }
    }

    /// The pids of the live local worker processes.
    pub(super) fn pids(&self) -> Vec<u32> {
        match self {
            Backend::Local(roster) => roster.pids(),
            #[cfg(feature = "cluster")]
            Backend::Cluster(_) => Vec::new(),
        }
    }

    /// How many requests can run at once: one per worker, or for a
    /// cluster, one per worker of the nodes (and at least two, before any
    /// node is heard from).
    pub(super) fn parallelism(&self) -> usize {
        match self {
            Backend::Local(roster) => roster.size().get(),
            #[cfg(feature = "cluster")]
            Backend::Cluster(caller) => caller.statistics().max_workers.max(2),
        }
    }
}
