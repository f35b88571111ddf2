//! Giving memory back: what a worker keeps for its next call, when it
//! gives that back, and when the pool replaces a worker that holds too
//! much. The whole policy is here; the mechanisms it drives are elsewhere
//! (the allocator's tuning, `malloc_trim` and `/proc` reads in
//! [`crate::platform`], a new engine in the executor, the payload
//! region's pages in [`crate::worker`]).
//!
//! A worker keeps memory for its next call in four places. Each bound
//! trades a call's page faults against what an idle worker holds:
//!
//! | what is kept | up to | given back | by |
//! |---|---|---|---|
//! | a worker process's freed heap | (the allocator's tuning) | [`GIVE_BACK_AFTER`] idle | [`Idler::give_back`], in the worker |
//! | a freed instance's guest memory, reset in place | [`KEEP_RESIDENT`] | [`GIVE_BACK_AFTER`] idle, when a guest grew to [`KEEP_RESIDENT`] or a process holds over [`PRIVATE_MAX`] | [`Idler::give_back`]: a new engine |
//! | the pages of a process's payload region | [`KEEP_REGION`] | [`GIVE_BACK_AFTER`] idle | the pool's housekeeper |
//! | the whole worker process | [`PoolBuilder::retire_above`](crate::PoolBuilder::retire_above) (default: no bound) | after the call that passed it | the pool's roster, at check-in: [`holds_more_than`] |
//!
//! Back-to-back calls keep all of it: only a worker idle for
//! [`GIVE_BACK_AFTER`] gives anything back. A worker's own memory is read
//! one way throughout: its resident pages that are neither file-backed
//! nor shared memory (`/proc/{pid}/statm`), so that the compiled code
//! mapped from the cache and the payload region, shared with the host,
//! are not counted.
//!
//! This module knows nothing of the executor, the worker or the pool: the
//! engine's settings (`crate::engine`), the worker process's loop
//! (`crate::runtime`), the worker thread's loop and the region
//! (`crate::worker`) and the roster (`crate::pool`) all read it, so it
//! depends on [`crate::platform`] alone. The executor comes in through
//! [`GuestMemory`].

use std::time::Duration;

use crate::platform;

/// How long a worker sits idle after a call before it gives back what it
/// kept for the next one: 1 second. Calls that follow one another sooner
/// keep it all.
///
/// One wait for the three things a worker gives back: its freed heap and
/// its guest memory (in the worker, [`Idler::take_wait`]) and its payload
/// region's pages (on the host, by the housekeeper).
pub(crate) const GIVE_BACK_AFTER: Duration = Duration::from_secs(1);

/// How much of a freed instance's memory a worker's engine keeps
/// resident, reset in place, for the next instance: 16 MiB. The next
/// call then takes no page faults for them. A guest that grew its memory
/// to this or more makes an idle worker renew its engine
/// ([`Idler::give_back`]).
pub(crate) const KEEP_RESIDENT: usize = 16 << 20;

/// An idle worker process holding more of its own memory than this, once
/// its allocator has given back what it can, makes a new engine, so that
/// the guest memory wasmtime keeps for freed instances goes back too:
/// 32 MiB.
///
/// Measured idle: 1 MiB after calls of a Rust, componentize-js or
/// componentize-py guest (the latter two mapped copy-on-write), 13 and
/// 36 MiB for those two copied in; more than 48 MiB after one 64 MiB echo
/// (the payload region test's case).
pub(crate) const PRIVATE_MAX: u64 = 32 << 20;

/// How much of its payload region a worker process keeps in memory while
/// idle: 8 MiB. Past it, the pages go back to the kernel once the worker
/// has been idle for [`GIVE_BACK_AFTER`].
pub(crate) const KEEP_REGION: u64 = 8 << 20;

/// What an executor can give back, for [`Idler::give_back`]. A trait so
/// that this module, which the engine's settings read, needs nothing of
/// the executor's.
pub(crate) trait GuestMemory {
    /// The largest size a guest's linear memory grew to since the last
    /// time this was asked.
    fn take_grown(&mut self) -> usize;

    /// Gives back all the guest memory the engine keeps for freed
    /// instances, by making a new engine.
    fn renew_engine(&mut self);
}

/// A worker's side of the policy, kept by the loop that waits for its
/// calls: a worker process's ([`crate::runtime`]) or a worker thread's.
pub(crate) struct Idler {
    /// Whether a call has run since memory was last given back.
    due: bool,
    own: Own,
}

/// Whose memory a worker gives back.
enum Own {
    /// A process's own: its allocator's and its engine's. Its footprint
    /// is read from a descriptor opened before it confined itself; `None`
    /// where there is no `/proc`.
    Process(Option<platform::Footprint>),
    /// A thread's engine only: the allocator and the rest of the memory
    /// are the host's.
    Thread,
}

impl Idler {
    /// In a worker process: opens what it reads its footprint from. Call
    /// it before the process confines itself (the sandbox denies `/proc`),
    /// and [`keep_freed_memory`] before that.
    pub(crate) fn process() -> Idler {
        Idler {
            due: false,
            own: Own::Process(platform::Footprint::open()),
        }
    }

    /// In a worker thread.
    pub(crate) fn thread() -> Idler {
        Idler {
            due: false,
            own: Own::Thread,
        }
    }

    /// A call has run: memory is due back if none follows soon.
    pub(crate) fn called(&mut self) {
        self.due = true;
    }

    /// How long to wait for the next call before [`give_back`]: once
    /// after each call, [`GIVE_BACK_AFTER`]; then `None`, wait for ever,
    /// until the next call.
    ///
    /// [`give_back`]: Idler::give_back
    pub(crate) fn take_wait(&mut self) -> Option<Duration> {
        std::mem::take(&mut self.due).then_some(GIVE_BACK_AFTER)
    }

    /// No call came for [`GIVE_BACK_AFTER`]: gives back what the worker
    /// kept for the next one.
    ///
    /// A process trims its allocator; then, if a guest grew its memory to
    /// [`KEEP_RESIDENT`] or more, or the process still holds more than
    /// [`PRIVATE_MAX`] of its own, it renews its engine and trims again.
    /// A thread renews its engine if a guest grew that much: the host's
    /// footprint does not tell a worker thread's memory apart.
    pub(crate) fn give_back(&mut self, guest: &mut impl GuestMemory) {
        let grew = guest.take_grown() >= KEEP_RESIDENT;
        match &self.own {
            Own::Process(footprint) => {
                platform::trim_freed_memory();
                let held = footprint
                    .as_ref()
                    .and_then(platform::Footprint::private_bytes)
                    .is_some_and(|b| b > PRIVATE_MAX);
                if held || grew {
                    guest.renew_engine();
                    platform::trim_freed_memory();
                }
            }
            Own::Thread => {
                if grew {
                    guest.renew_engine();
                }
            }
        }
    }
}

/// In a worker process, first thing, before it starts any thread: its
/// allocator keeps freed memory for the next call rather than handing it
/// back to the OS at once (see [`platform::keep_freed_memory`]), until
/// [`Idler::give_back`] trims it.
pub(crate) fn keep_freed_memory() {
    platform::keep_freed_memory();
}

/// On the host: whether the worker process `pid` holds more than `bound`
/// bytes of its own memory (as its [`Idler`] reads it). False where there
/// is no `/proc`, or the process is gone.
///
/// One open and read of `/proc/{pid}/statm`: a few microseconds, paid at
/// each check-in of a pool with
/// [`retire_above`](crate::PoolBuilder::retire_above) only.
pub(crate) fn holds_more_than(pid: u32, bound: u64) -> bool {
    platform::Footprint::of(pid)
        .and_then(|f| f.private_bytes())
        .is_some_and(|b| b > bound)
}
