//! What a call costs in time, measured in the worker around it: its wall
//! time, and the CPU time of the thread that runs it.
//!
//! The executor runs a call's guest on its own thread (a current-thread
//! runtime, whose fibers stay on that thread), so that thread's CPU time
//! is the call's, for a worker process and a worker thread alike. The
//! wall time costs two reads of the monotonic clock (no system call); the
//! CPU time two reads of the thread's CPU clocks (two system calls each,
//! close to a microsecond in all), so it is read only for a call whose
//! caller takes its report ([`Call::report`](crate::Call::report)): a
//! plain call, a `map` and a spawned job skip it. Nothing is allocated.

use std::time::Instant;

use crate::platform;
use crate::wire::Measured;

/// A call's clocks, started.
pub(super) struct Meter {
    wall: Instant,
    /// The thread's CPU time at the start, in all and in system mode, in
    /// nanoseconds.
    cpu_ns: Option<(u64, u64)>,
}

impl Meter {
    /// Reads the clocks, the thread's CPU clocks only if `cpu`: the call
    /// starts now.
    pub(super) fn start(cpu: bool) -> Meter {
        Meter {
            wall: Instant::now(),
            cpu_ns: if cpu { platform::thread_cpu_ns() } else { None },
        }
    }

    /// Reads the clocks again, and writes what the call took into
    /// `measured`.
    pub(super) fn stop(self, measured: &mut Measured) {
        let now = self.cpu_ns.and_then(|_| platform::thread_cpu_ns());
        measured.wall_ns = u64::try_from(self.wall.elapsed().as_nanos()).unwrap_or(u64::MAX);
        measured.cpu_ns = match (self.cpu_ns, now) {
            (Some((total0, system0)), Some((total, system))) => {
                let total = total.saturating_sub(total0);
                // The kernel's split lags the exact total (see
                // `thread_cpu_ns`): its system part is capped by it, and
                // the rest is user time.
                let system = system.saturating_sub(system0).min(total);
                Some((total - system, system))
            }
            _ => None,
        };
    }
}
