//! Where a guest waiting in a `wasmpool:sync` import gets its answer: a
//! worker process reads it from its request pipe, a worker thread finds it
//! in its [`Inbox`]. Either wait wakes when the call is interrupted.

use crate::locks::Locked as _;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::platform::{self, WakePipe};
use crate::wire::{Answer, ToWorker, read_frame};

/// How long a worker polls for its next request (or an answer), before it
/// sleeps. Waking a sleeping thread costs 5–15 µs on a virtual machine (an
/// inter-processor interrupt), on each side of each hop; a caller that
/// sends its next call at once skips that, for at most this much CPU per
/// call.
pub(crate) const SPIN: Duration = Duration::from_micros(100);

/// How long to poll for the next frame before sleeping: [`SPIN`] while
/// frames follow each other closely, nothing once one came much later
/// ([`SPARSE`]). Where calls come sparsely (a cluster node's, one per
/// network round trip), polling would burn a core after every call for
/// nothing, on cores that the call's answer needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdleSpin {
    worth: bool,
}

impl Default for IdleSpin {
    fn default() -> IdleSpin {
        IdleSpin { worth: true }
    }
}

impl IdleSpin {
    /// How long to poll before sleeping, this time.
    pub(crate) fn budget(self) -> Duration {
        if self.worth { SPIN } else { Duration::ZERO }
    }

    /// Notes how long the last wait took, from its start to its frame's
    /// arrival (as far as the waiter could tell).
    pub(crate) fn waited(&mut self, wait: Duration) {
        self.worth = wait < SPARSE;
    }
}

/// A wait this long says that frames come sparsely. Well above [`SPIN`]:
/// a frame that came after a sleep took the wake-up too (tens of
/// microseconds here), and a pool whose calls follow each other must not
/// stop polling for that.
const SPARSE: Duration = Duration::from_micros(300);

/// Where a waiting guest gets its answers.
pub(crate) enum Answers {
    /// A worker thread's: the registry posts them.
    Inbox(Arc<Inbox>),
    /// A worker process's: its request pipe, which the guest's thread reads
    /// itself while the guest waits (between calls, the worker's main loop
    /// reads it and drops stale answers). An interrupt rings `wake`.
    Pipe {
        requests: Arc<std::io::PipeReader>,
        wake: WakePipe,
    },
}

impl Answers {
    /// Wakes a waiting guest to check whether it was stopped.
    pub(crate) fn wake(&self) {
        match self {
            Answers::Inbox(inbox) => inbox.wake(),
            Answers::Pipe { wake, .. } => wake.ring(),
        }
    }

    pub(super) fn wait(
        &self,
        seq: u64,
        deadline: Option<Instant>,
        stopped: impl Fn() -> bool,
    ) -> Waited {
        match self {
            Answers::Inbox(inbox) => inbox.wait(seq, deadline, stopped),
            Answers::Pipe { requests, wake } => wait_pipe(requests, wake, seq, deadline, stopped),
        }
    }
}

/// Reads the request pipe until the answer to `seq` arrives.
fn wait_pipe(
    requests: &std::io::PipeReader,
    wake: &WakePipe,
    seq: u64,
    deadline: Option<Instant>,
    stopped: impl Fn() -> bool,
) -> Waited {
    let mut buf = Vec::new();
    loop {
        if stopped() {
            return Waited::Stopped;
        }
        // Most answers come at once: poll before sleeping.
        let mut readable = platform::spin_until_readable(requests, SPIN);
        if !readable {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Waited::Deadline;
            }
            match platform::wait_readable(requests, wake.readable(), left) {
                Ok((r, woken)) => {
                    if woken {
                        wake.drain();
                    }
                    readable = r;
                }
                Err(e) => return Waited::Lost(format!("waiting for the host: {e}")),
            }
        }
        if !readable {
            continue;
        }
        match read_frame::<_, ToWorker>(requests, &mut buf) {
            Ok(Some(ToWorker::Answer { seq: s, answer })) if s == seq => {
                return Waited::Answer(answer);
            }
            // An answer left behind by an earlier, stopped wait.
            Ok(Some(ToWorker::Answer { .. })) => {}
            Ok(Some(ToWorker::Call(_))) => {
                return Waited::Lost("the host sent a call while one runs".into());
            }
            Ok(None) => return Waited::Lost("the host is gone".into()),
            Err(e) => return Waited::Lost(format!("reading from the host: {e}")),
        }
    }
}

/// Where a worker thread receives its answers: the registry posts them
/// directly. An interrupt wakes a waiting guest through [`Inbox::wake`].
/// (A worker process reads its answers from its request pipe.)
#[derive(Default)]
pub(crate) struct Inbox {
    answers: Mutex<VecDeque<(u64, Answer)>>,
    posted: Condvar,
    /// Counts posts, to poll on before sleeping.
    posts: AtomicU64,
}

/// How a wait for an answer ended.
pub(crate) enum Waited {
    Answer(Answer),
    Deadline,
    Stopped,
    /// The host is gone or broke the protocol.
    Lost(String),
}

impl Inbox {
    pub(crate) fn post(&self, seq: u64, answer: Answer) {
        self.answers.locked().push_back((seq, answer));
        self.posts.fetch_add(1, Ordering::Release);
        self.posted.notify_all();
    }

    /// Wakes a waiting guest to check whether it was stopped.
    pub(crate) fn wake(&self) {
        let _guard = self.answers.locked();
        self.posted.notify_all();
    }

    /// Waits for the answer to `seq`, until `deadline` or until `stopped`
    /// says so. Answers to earlier operations, which a stopped guest left
    /// behind, are dropped.
    pub(crate) fn wait(
        &self,
        seq: u64,
        deadline: Option<Instant>,
        stopped: impl Fn() -> bool,
    ) -> Waited {
        let mut answers = self.answers.locked();
        let mut spun = false;
        loop {
            while let Some((s, _)) = answers.front()
                && *s < seq
            {
                answers.pop_front();
            }
            if let Some(i) = answers.iter().position(|(s, _)| *s == seq) {
                let (_, answer) = answers.remove(i).expect("found");
                return Waited::Answer(answer);
            }
            if stopped() {
                return Waited::Stopped;
            }
            if !spun {
                // Most answers come soon: poll for one before sleeping.
                spun = true;
                let posts = self.posts.load(Ordering::Acquire);
                drop(answers);
                let start = Instant::now();
                while self.posts.load(Ordering::Acquire) == posts
                    && start.elapsed() < SPIN
                    && deadline.is_none_or(|d| Instant::now() < d)
                {
                    std::hint::spin_loop();
                }
                answers = self.answers.locked();
                continue;
            }
            answers = match deadline {
                None => crate::locks::unpoisoned(self.posted.wait(answers)),
                Some(at) => {
                    let now = Instant::now();
                    if now >= at {
                        return Waited::Deadline;
                    }
                    crate::locks::unpoisoned(self.posted.wait_timeout(answers, at - now)).0
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_only_while_frames_come_closely() {
        let mut spin = IdleSpin::default();
        assert_eq!(spin.budget(), SPIN);
        // A frame after a wake-up, still close: keep polling.
        spin.waited(SPIN + Duration::from_micros(50));
        assert_eq!(spin.budget(), SPIN);
        // One that came much later: stop, until frames come closely again.
        spin.waited(SPARSE);
        assert_eq!(spin.budget(), Duration::ZERO);
        spin.waited(Duration::from_millis(5));
        assert_eq!(spin.budget(), Duration::ZERO);
        spin.waited(Duration::from_micros(20));
        assert_eq!(spin.budget(), SPIN);
    }
}
