//! [`Usage`]: what one call cost, as its worker measured it.

use std::time::Duration;

use crate::wire::Measured;

/// What one call cost, as its worker measured it: part of its
/// [`Output`](crate::Output), from [`Call::report`](crate::Call::report).
///
/// The worker measures around the call itself: from the moment it has
/// the call's arguments until its result is encoded. That takes in making
/// the call's instance, when none was made ahead, and leaves out the trip
/// to the worker and back and the wait for a free one. The CPU time costs
/// about a microsecond to take (four system calls), so the worker reads
/// the thread's CPU clocks only for a call whose report is taken, as
/// here; the other figures cost nothing measurable and are always taken.
///
/// The fuel a call burned, where the pool meters it, is
/// [`Output::fuel_consumed`](crate::Output::fuel_consumed).
///
/// ```no_run
/// # async fn demo(pool: wasmpool::Pool, job: wasmpool::Job) -> Result<(), wasmpool::Error> {
/// let out = pool.call::<u64>(&job, "fib", (30u64,)).report().await?;
/// let usage = out.usage;
/// println!("{} in {:?} wall, {:?} CPU", out.value, usage.wall, usage.cpu.map(|c| c.total()));
/// println!("peak memory {} bytes, {} bytes in, {} out", usage.peak_memory, usage.bytes_in, usage.bytes_out);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// The call's wall time in the worker.
    pub wall: Duration,
    /// The CPU time the worker spent on the call, over the same span as
    /// [`wall`](Usage::wall): that of the thread that ran it, so time the
    /// guest spent blocked (a sleep, a wait on a lock) is not in it.
    /// `None` off Linux, where a thread's CPU time is not counted.
    pub cpu: Option<CpuTime>,
    /// The most linear memory the call's instance held at once, in bytes,
    /// summed over its memories: its initial size and every growth. An
    /// instance kept from an earlier call (see
    /// [`reuse_instances`](crate::PoolBuilder::reuse_instances)) starts
    /// at the size it had grown to.
    pub peak_memory: u64,
    /// The call's arguments as the worker received them, encoded
    /// (MessagePack), in bytes.
    pub bytes_in: u64,
    /// The call's result as the worker sent it, encoded (MessagePack), in
    /// bytes.
    pub bytes_out: u64,
}

/// CPU time, split as the OS counts it.
///
/// The [`total`](CpuTime::total) is exact: the scheduler's own count, to
/// the nanosecond. The split between user and system time is the
/// kernel's, which it samples at its timer tick (every 1 to 10 ms), so a
/// call shorter than a few ticks may show all of its time as user time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CpuTime {
    /// Time running the worker's code and the guest's: wasm runs in user
    /// mode.
    pub user: Duration,
    /// Time in the kernel on the worker's behalf: system calls (WASI
    /// I/O, for one) and page faults.
    pub system: Duration,
}

impl CpuTime {
    /// User and system time together: the call's CPU time.
    pub fn total(&self) -> Duration {
        self.user + self.system
    }
}

impl From<Measured> for Usage {
    fn from(m: Measured) -> Usage {
        let Measured {
            wall_ns,
            cpu_ns,
            peak_memory,
            bytes_in,
            bytes_out,
        } = m;
        Usage {
            wall: Duration::from_nanos(wall_ns),
            cpu: cpu_ns.map(|(user, system)| CpuTime {
                user: Duration::from_nanos(user),
                system: Duration::from_nanos(system),
            }),
            peak_memory,
            bytes_in,
            bytes_out,
        }
    }
}
