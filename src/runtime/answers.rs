//! Where a guest waiting in a `wasmpool:sync` import gets its answer: a
//! worker process reads it from its request pipe, a worker thread finds it
//! in its [`Inbox`]. Either wait wakes when the call is interrupted.

use crate::locks::Locked as _;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Poll, Waker};
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

/// Where a waiting guest gets its answers: a blocked host call waits in
/// [`Answers::wait`], an `async func` import's call in
/// [`Answers::wait_async`], and several of those can wait at once (the
/// guest's other tasks run meanwhile). Whichever wait reads an answer
/// hands it to its waiter.
pub(crate) struct Answers {
    way: Way,
    awaited: Arc<Awaited>,
    /// The thread that wakes the async waits when the request pipe has
    /// something to read: started by the first one that has to wait.
    watch: Arc<Watch>,
}

enum Way {
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
    /// A worker thread's, from its inbox.
    pub(crate) fn inbox(inbox: Arc<Inbox>) -> Answers {
        Answers {
            awaited: inbox.awaited.clone(),
            way: Way::Inbox(inbox),
            watch: Arc::default(),
        }
    }

    /// A worker process's, from its request pipe.
    pub(crate) fn pipe(requests: Arc<std::io::PipeReader>, wake: WakePipe) -> Answers {
        Answers {
            way: Way::Pipe { requests, wake },
            awaited: Arc::default(),
            watch: Arc::default(),
        }
    }

    /// Wakes a waiting guest to check whether it was stopped.
    pub(crate) fn wake(&self) {
        match &self.way {
            Way::Inbox(inbox) => inbox.wake(),
            Way::Pipe { wake, .. } => wake.ring(),
        }
    }

    pub(super) fn wait(
        &self,
        seq: u64,
        deadline: Option<Instant>,
        stopped: impl Fn() -> bool,
    ) -> Waited {
        match &self.way {
            Way::Inbox(inbox) => inbox.wait(seq, deadline, stopped),
            Way::Pipe { requests, wake } => {
                wait_pipe(requests, wake, &self.awaited, seq, deadline, stopped)
            }
        }
    }

    /// Sends the operation `seq` with `send` and waits for its answer
    /// without blocking the thread. The wait is registered before the send,
    /// so that an answer that comes at once is kept for it. Dropping the
    /// future gives the wait up; its answer is then dropped when it comes.
    pub(super) async fn wait_async(
        &self,
        seq: u64,
        send: impl FnOnce() -> std::io::Result<()>,
    ) -> Waited {
        struct Forget<'a>(&'a Awaited, u64);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                self.0.waits.locked().remove(&self.1);
            }
        }
        self.awaited
            .waits
            .locked()
            .insert(seq, AsyncWait::default());
        let _forget = Forget(&self.awaited, seq);
        if let Err(e) = send() {
            return Waited::Lost(format!("the host is gone: {e}"));
        }
        std::future::poll_fn(|cx| {
            if let Some(answer) = self.awaited.take(seq, cx.waker()) {
                return Poll::Ready(Waited::Answer(answer));
            }
            let Way::Pipe { requests, .. } = &self.way else {
                // The inbox's `post` wakes it.
                return Poll::Pending;
            };
            // Read what has come, handing each answer to its wait.
            let mut buf = Vec::new();
            while platform::spin_until_readable(&**requests, Duration::ZERO) {
                match read_frame::<_, ToWorker>(&**requests, &mut buf) {
                    Ok(Some(ToWorker::Answer { seq: s, answer })) if s == seq => {
                        return Poll::Ready(Waited::Answer(answer));
                    }
                    Ok(Some(ToWorker::Answer { seq: s, answer })) => self.awaited.route(s, answer),
                    // Streams cross only to workers with lanes, which read
                    // their requests elsewhere.
                    Ok(Some(
                        ToWorker::Items { .. } | ToWorker::End { .. } | ToWorker::Credit { .. },
                    )) => {}
                    Ok(Some(ToWorker::Call(_))) => {
                        return Poll::Ready(Waited::Lost(
                            "the host sent a call while one runs".into(),
                        ));
                    }
                    Ok(None) => return Poll::Ready(Waited::Lost("the host is gone".into())),
                    Err(e) => {
                        return Poll::Ready(Waited::Lost(format!("reading from the host: {e}")));
                    }
                }
            }
            self.watch.ask(requests, &self.awaited);
            Poll::Pending
        })
        .await
    }
}

impl Drop for Answers {
    fn drop(&mut self) {
        self.watch.close();
    }
}

/// The async waits of one executor: the answers that came for them while
/// another wait read, and their wakers.
#[derive(Default)]
pub(crate) struct Awaited {
    waits: Mutex<HashMap<u64, AsyncWait>>,
}

#[derive(Default)]
struct AsyncWait {
    answer: Option<Answer>,
    waker: Option<Waker>,
}

impl Awaited {
    /// Keeps `answer` for the async wait `seq` and wakes it; drops it when
    /// no one waits for it (a stopped wait's).
    fn route(&self, seq: u64, answer: Answer) {
        if let Some(wait) = self.waits.locked().get_mut(&seq) {
            wait.answer = Some(answer);
            if let Some(w) = wait.waker.take() {
                w.wake();
            }
        }
    }

    /// The answer to `seq` if it came; otherwise keeps `waker` to wake.
    fn take(&self, seq: u64, waker: &Waker) -> Option<Answer> {
        let mut waits = self.waits.locked();
        let wait = waits.entry(seq).or_default();
        let answer = wait.answer.take();
        if answer.is_none() {
            wait.waker = Some(waker.clone());
        }
        answer
    }

    fn is_awaited(&self, seq: u64) -> bool {
        self.waits.locked().contains_key(&seq)
    }

    fn wake_all(&self) {
        for wait in self.waits.locked().values_mut() {
            if let Some(w) = wait.waker.take() {
                w.wake();
            }
        }
    }
}

/// A thread that waits, when asked, for the request pipe to be readable,
/// and then wakes every async wait to read it. It never reads the pipe
/// itself, so the guest's thread stays its only reader.
struct Watch {
    asked: Mutex<bool>,
    ask: Condvar,
    started: std::sync::Once,
    closed: AtomicBool,
}

impl Default for Watch {
    fn default() -> Watch {
        Watch {
            asked: Mutex::new(false),
            ask: Condvar::new(),
            started: std::sync::Once::new(),
            closed: AtomicBool::new(false),
        }
    }
}

impl Watch {
    /// How often a watching thread checks whether its executor is gone.
    const CHECK: Duration = Duration::from_millis(100);

    fn ask(self: &Arc<Self>, requests: &Arc<std::io::PipeReader>, awaited: &Arc<Awaited>) {
        self.started.call_once(|| {
            let (watch, requests, awaited) = (self.clone(), requests.clone(), awaited.clone());
            let spawned = std::thread::Builder::new()
                .name("wasmpool-answers".into())
                .spawn(move || watch.run(&requests, &awaited));
            if spawned.is_err() {
                // Without the thread, the waits would never wake: close,
                // and they are woken below, and read again, each time.
                self.closed.store(true, Ordering::SeqCst);
            }
        });
        if self.closed.load(Ordering::SeqCst) {
            // Polled again at once; a wait spins rather than hangs.
            awaited.wake_all();
            return;
        }
        *self.asked.locked() = true;
        self.ask.notify_one();
    }

    fn run(&self, requests: &std::io::PipeReader, awaited: &Awaited) {
        loop {
            {
                let mut asked = self.asked.locked();
                while !*asked {
                    if self.closed.load(Ordering::SeqCst) {
                        return;
                    }
                    asked = crate::locks::unpoisoned(self.ask.wait(asked));
                }
            }
            loop {
                if self.closed.load(Ordering::SeqCst) {
                    return;
                }
                match platform::wait_readable(requests, requests, Some(Self::CHECK)) {
                    Ok((false, _)) => continue,
                    Ok(_) | Err(_) => break,
                }
            }
            // This wake answers every ask made so far: a wait stores its
            // waker before it asks, so it is woken below, and one that
            // stores it after asks again. The asks that came while the
            // pipe was watched do not send the watch round again.
            *self.asked.locked() = false;
            awaited.wake_all();
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _guard = self.asked.locked();
        self.ask.notify_all();
    }
}

/// Reads the request pipe until the answer to `seq` arrives.
fn wait_pipe(
    requests: &std::io::PipeReader,
    wake: &WakePipe,
    awaited: &Awaited,
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
            // An async wait's, or one left behind by an earlier, stopped
            // wait (dropped).
            Ok(Some(ToWorker::Answer { seq: s, answer })) => awaited.route(s, answer),
            // Streams cross only to workers with lanes.
            Ok(Some(ToWorker::Items { .. } | ToWorker::End { .. } | ToWorker::Credit { .. })) => {}
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
    /// The async waits, whose answers go to them instead.
    awaited: Arc<Awaited>,
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
        if self.awaited.is_awaited(seq) {
            return self.awaited.route(seq, answer);
        }
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
