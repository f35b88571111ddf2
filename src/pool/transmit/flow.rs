//! How a call's streams and futures cross between the host and its
//! worker: the host's end of each result stream ([`Incoming`]), the pump
//! of each passed one, and the hub that routes a worker's frames to its
//! calls ([`CallStreams`], [`StreamHub`]).

use crate::locks::Locked as _;
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};

use futures_util::stream::{Stream, StreamExt as _};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, oneshot};

use super::Outgoing;
use crate::error::{Error, ErrorKind};
use crate::runtime::RESULTS_FROM;
use crate::wire::{Chunk, Outcome, Payload, ToWorker, WireError, WireOutcome};

/// A passed stream's items, as chunks.
pub(super) type Source = Pin<Box<dyn Stream<Item = Result<Chunk, String>> + Send>>;

/// Where a call's frames to its worker go: the worker's request pipe.
pub(crate) trait FrameSink: Send + Sync {
    fn send(&self, frame: &ToWorker) -> std::io::Result<()>;
}

/// A stream of a call's result, as the host holds it: what came, and how
/// the worker is told of what was taken.
#[derive(Default)]
struct InPipe {
    state: Mutex<InState>,
}

#[derive(Default)]
struct InState {
    chunks: VecDeque<Chunk>,
    /// How it ended, once it has: `Err` when its call failed first.
    end: Option<Result<(), WireError>>,
    waker: Option<Waker>,
    /// A reader has it.
    claimed: bool,
    /// Its reader is gone.
    dropped: bool,
}

/// The host's end of a stream of a call's result.
pub(super) struct Incoming<T> {
    call: Arc<CallStreams>,
    index: u32,
    pipe: Arc<InPipe>,
    /// Items of a chunk read, not yet taken.
    pub(super) items: VecDeque<T>,
    /// Whether its end (or error) was given.
    done: bool,
}

impl<T> Incoming<T> {
    /// The next chunk as it came, or the end; the worker is given credit
    /// for it.
    pub(super) fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Chunk, WireError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let chunk = {
            let mut state = self.pipe.state.locked();
            match state.chunks.pop_front() {
                Some(chunk) => chunk,
                None => match state.end.take() {
                    Some(end) => {
                        self.done = true;
                        return Poll::Ready(end.err().map(Err));
                    }
                    None => {
                        state.waker = Some(cx.waker().clone());
                        return Poll::Pending;
                    }
                },
            }
        };
        self.call.send(&ToWorker::Credit {
            call: self.call.id,
            stream: self.index,
            bytes: chunk.len(),
        });
        Poll::Ready(Some(Ok(chunk)))
    }

    /// How many bytes of items have come and wait to be read.
    pub(super) fn buffered_bytes(&self) -> u64 {
        self.pipe.state.locked().chunks.iter().map(Chunk::len).sum()
    }
}

impl<T: DeserializeOwned + 'static> Incoming<T> {
    /// The next chunk's items, decoded, or the end.
    pub(super) fn poll_batch(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Vec<T>, Error>>> {
        if !self.items.is_empty() {
            return Poll::Ready(Some(Ok(self.items.drain(..).collect())));
        }
        match ready!(self.poll_chunk(cx)) {
            None => Poll::Ready(None),
            Some(Err(e)) => Poll::Ready(Some(Err(Error::from(e)))),
            Some(Ok(chunk)) => match chunk.decode::<T>() {
                Ok(items) => Poll::Ready(Some(Ok(items))),
                Err(e) => {
                    self.done = true;
                    Poll::Ready(Some(Err(Error::new(
                        ErrorKind::ResultMismatch,
                        format!("stream item: {e}"),
                    ))))
                }
            },
        }
    }

    pub(super) fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, Error>>> {
        loop {
            if let Some(item) = self.items.pop_front() {
                return Poll::Ready(Some(Ok(item)));
            }
            match self.poll_batch(cx) {
                Poll::Ready(Some(Ok(items))) => self.items = items.into(),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<T> Drop for Incoming<T> {
    fn drop(&mut self) {
        let ended = {
            let mut state = self.pipe.state.locked();
            state.dropped = true;
            state.end.is_some() || self.done
        };
        if !ended {
            // The guest's next write finds its reader gone.
            self.call.send(&ToWorker::End {
                call: self.call.id,
                stream: self.index,
                error: None,
            });
        }
    }
}

/// A stream the host passes, as its pump sees it.
#[derive(Default)]
struct OutPipe {
    credit: Mutex<u64>,
    more: Notify,
    /// The guest's end is gone.
    closed: AtomicBool,
}

/// A call's streams and futures on the host: where its worker's frames for
/// them go, and how the host writes to it.
pub(crate) struct CallStreams {
    pub(crate) id: u64,
    runtime: tokio::runtime::Handle,
    sink: Mutex<Option<Arc<dyn FrameSink>>>,
    /// The passed ones not yet started (started at their first credit),
    /// and the started ones.
    sources: Mutex<Vec<Option<Source>>>,
    out: Mutex<HashMap<u32, Arc<OutPipe>>>,
    incoming: Mutex<HashMap<u32, Arc<InPipe>>>,
    /// Told the call's result, if it comes before the call's end.
    returned: Mutex<Option<oneshot::Sender<Outcome>>>,
    /// The call has ended: frames for it are dropped.
    finished: AtomicBool,
}

impl CallStreams {
    /// For call `id`, passing `outgoing`; the receiver gets its result if
    /// it comes before its end.
    pub(crate) fn new(
        id: u64,
        outgoing: Outgoing,
    ) -> (Arc<CallStreams>, oneshot::Receiver<Outcome>) {
        let (tx, rx) = oneshot::channel();
        let streams = CallStreams {
            id,
            runtime: tokio::runtime::Handle::current(),
            sink: Mutex::new(None),
            sources: Mutex::new(outgoing.into_sources().into_iter().map(Some).collect()),
            out: Mutex::default(),
            incoming: Mutex::default(),
            returned: Mutex::new(Some(tx)),
            finished: AtomicBool::new(false),
        };
        (Arc::new(streams), rx)
    }

    /// Its frames go to `sink`, the worker it is sent to.
    pub(crate) fn send_to(&self, sink: Arc<dyn FrameSink>) {
        *self.sink.locked() = Some(sink);
    }

    fn send(&self, frame: &ToWorker) {
        if self.finished.load(Ordering::SeqCst) {
            return;
        }
        let sink = self.sink.locked().clone();
        if let Some(sink) = sink {
            // A worker that cannot be written to is dead; its host thread
            // ends the call.
            let _ = sink.send(frame);
        }
    }

    /// The call returned `outcome`, holding `count` streams and futures,
    /// and its streams go on. Those its reader does not take are dropped
    /// once its result is read.
    pub(crate) fn returned(&self, (result, report): WireOutcome, count: u32) {
        for i in 0..count {
            self.in_pipe(RESULTS_FROM.saturating_add(i));
        }
        let result = result.and_then(|payload| match payload {
            Payload::Inline(bytes) => Ok(bytes),
            Payload::InRegion { .. } => Err(WireError::new(
                ErrorKind::Protocol,
                "a result with streams came in the payload region",
            )),
        });
        if let Some(tx) = self.returned.locked().take() {
            let _ = tx.send((result, report));
        }
    }

    fn in_pipe(&self, stream: u32) -> Arc<InPipe> {
        self.incoming.locked().entry(stream).or_default().clone()
    }

    /// Items of a result's stream came.
    pub(crate) fn items(&self, stream: u32, chunk: Chunk) {
        let pipe = self.in_pipe(stream);
        let mut state = pipe.state.locked();
        if state.dropped {
            return;
        }
        state.chunks.push_back(chunk);
        if let Some(w) = state.waker.take() {
            w.wake();
        }
    }

    /// One of the call's streams ended on the worker's side: a result's
    /// (with the call's error if it failed), or a passed one whose guest
    /// end is gone.
    pub(crate) fn end(&self, stream: u32, error: Option<WireError>) {
        if stream >= RESULTS_FROM {
            let pipe = self.in_pipe(stream);
            let mut state = pipe.state.locked();
            state.end.get_or_insert(error.map_or(Ok(()), Err));
            if let Some(w) = state.waker.take() {
                w.wake();
            }
        } else if let Some(out) = self.out.locked().get(&stream) {
            out.closed.store(true, Ordering::SeqCst);
            out.more.notify_one();
        } else if let Some(source) = self.sources.locked().get_mut(stream as usize) {
            // Closed before it was started.
            source.take();
        }
    }

    /// The guest took `bytes` more of passed stream `stream`: the first
    /// credit starts its pump.
    pub(crate) fn credit(self: &Arc<Self>, stream: u32, bytes: u64) {
        let out = {
            let mut outs = self.out.locked();
            match outs.get(&stream) {
                Some(out) => out.clone(),
                None => {
                    let source = self
                        .sources
                        .locked()
                        .get_mut(stream as usize)
                        .and_then(Option::take);
                    let Some(source) = source else { return };
                    let out = Arc::new(OutPipe::default());
                    outs.insert(stream, out.clone());
                    self.runtime
                        .spawn(pump(self.clone(), stream, source, out.clone()));
                    out
                }
            }
        };
        *out.credit.locked() += bytes;
        out.more.notify_one();
    }

    /// A result's stream or future `index`, for its reader.
    pub(super) fn claim<T>(self: &Arc<Self>, index: u32) -> Option<Incoming<T>> {
        let pipe = self.in_pipe(index);
        let mut state = pipe.state.locked();
        if state.claimed {
            return None;
        }
        state.claimed = true;
        drop(state);
        Some(Incoming {
            call: self.clone(),
            index,
            pipe,
            items: VecDeque::new(),
            done: false,
        })
    }

    /// Drops the result's streams that no reader took.
    pub(super) fn drop_unclaimed(&self) {
        let unclaimed: Vec<u32> = self
            .incoming
            .locked()
            .iter()
            .filter(|(_, p)| !p.state.locked().claimed)
            .map(|(i, _)| *i)
            .collect();
        for stream in unclaimed {
            self.in_pipe(stream).state.locked().dropped = true;
            self.send(&ToWorker::End {
                call: self.id,
                stream,
                error: None,
            });
        }
    }

    /// The call has ended (`error`: how, if it failed): its result's
    /// streams that did not end are ended, with that error or as cut
    /// short, and its passed ones stop.
    pub(crate) fn finish(&self, error: Option<WireError>) {
        self.finished.store(true, Ordering::SeqCst);
        self.returned.locked().take();
        for pipe in self.incoming.locked().values() {
            let mut state = pipe.state.locked();
            if state.end.is_none() {
                let e = error.clone().unwrap_or_else(|| {
                    WireError::new(ErrorKind::Protocol, "the call ended before its stream did")
                });
                state.end = Some(Err(e));
                if let Some(w) = state.waker.take() {
                    w.wake();
                }
            }
        }
        for out in self.out.locked().values() {
            out.closed.store(true, Ordering::SeqCst);
            out.more.notify_one();
        }
        self.sources.locked().clear();
    }
}

/// Writes passed stream `stream`'s chunks to the worker as its credit
/// allows, then its end.
async fn pump(call: Arc<CallStreams>, stream: u32, mut source: Source, out: Arc<OutPipe>) {
    let mut error = None;
    loop {
        // Room first: the source is polled only when its items can go.
        loop {
            if out.closed.load(Ordering::SeqCst) {
                return;
            }
            if *out.credit.locked() > 0 {
                break;
            }
            out.more.notified().await;
        }
        let next = tokio::select! {
            next = source.next() => next,
            () = closed(&out) => return,
        };
        match next {
            Some(Ok(chunk)) => {
                {
                    let mut credit = out.credit.locked();
                    *credit = credit.saturating_sub(chunk.len());
                }
                call.send(&ToWorker::Items {
                    call: call.id,
                    stream,
                    chunk,
                });
            }
            Some(Err(e)) => {
                error = Some(crate::wire::WireError::new(
                    ErrorKind::ArgumentMismatch,
                    format!("args: stream {stream}: {e}"),
                ));
                break;
            }
            None => break,
        }
    }
    call.send(&ToWorker::End {
        call: call.id,
        stream,
        error,
    });
}

/// Resolves once the guest's end of `out` is gone.
async fn closed(out: &OutPipe) {
    while !out.closed.load(Ordering::SeqCst) {
        out.more.notified().await;
    }
}

/// The calls with streams of one worker process, by call.
#[derive(Default)]
pub(crate) struct StreamHub(Mutex<HashMap<u64, Arc<CallStreams>>>);

impl StreamHub {
    /// Routes call `call`'s frames to `streams` until the guard drops.
    pub(crate) fn register(self: &Arc<Self>, streams: &Arc<CallStreams>) -> Registered {
        self.0.locked().insert(streams.id, streams.clone());
        Registered {
            hub: self.clone(),
            id: streams.id,
        }
    }

    pub(crate) fn get(&self, call: u64) -> Option<Arc<CallStreams>> {
        self.0.locked().get(&call).cloned()
    }
}

/// A call's place in its worker's [`StreamHub`].
pub(crate) struct Registered {
    hub: Arc<StreamHub>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.hub.0.locked().remove(&self.id);
    }
}
