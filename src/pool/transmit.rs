//! [`StreamReader`] and [`FutureReader`]: the component model's `stream<T>`
//! and `future<T>` as Rust values, and how their items cross between a
//! call and its worker.
//!
//! Each stream has a window of credit per direction
//! ([`STREAM_WINDOW`]): a side sends only what the other has room for, and
//! gives credit back as its reader takes what came. So a slow reader on
//! the host holds up the guest's writes, and a slow guest holds up the
//! host's reading of a stream it was passed: neither side buffers more
//! than about one window of a stream.

use crate::locks::Locked as _;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};

use futures_util::stream::{Stream, StreamExt as _};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::sync::{Notify, oneshot};

use crate::error::{Error, ErrorKind};
use crate::values::TransmitRef;
use crate::wire::{Chunk, Outcome, Payload, ToWorker, WireError, WireOutcome};

/// How much of one stream may be on its way, in each direction, before
/// its reader takes some: 1 MiB of items as they cross (a `stream<u8>`'s
/// bytes as they are; other items as MessagePack, a few bytes each).
pub const STREAM_WINDOW: u64 = crate::runtime::STREAM_WINDOW;

use crate::runtime::RESULTS_FROM;

/// The most items of a passed stream that go in one chunk: fixed-size
/// ones, and ones that hold more (strings).
const CHUNK_ITEMS: usize = 4096;
const CHUNK_BIG_ITEMS: usize = 16;

/// The most bytes of a passed `stream<u8>` that go in one chunk.
const CHUNK_BYTES: usize = 256 << 10;

/// The component model's `stream<T>`: items that come one after another,
/// while the call that made them goes on.
///
/// - **As a result**, it reads what the guest writes, as it writes it:
///   it is a [`Stream`] of `Result<T, Error>`. An item that does not fit
///   `T` comes as an [`ErrorKind::ResultMismatch`] error; a call that
///   fails while it writes (a trap, its timeout, a cancel) ends the stream
///   with that error. After an error the stream ends.
/// - **As an argument**, made with [`from_stream`](StreamReader::from_stream),
///   it feeds the guest the items of a Rust stream, as the guest reads
///   them. It must be a whole parameter of the function (a `stream<T>`
///   parameter), not inside another value.
///
/// A stream outlives its call's return: the call holds its worker's place
/// in the pool (one of its [`async_calls`](crate::PoolBuilder::async_calls)
/// lanes, and its timeout keeps running) until every stream of the call
/// has ended, or been dropped. Dropping a result stream tells the guest,
/// whose next write fails.
///
/// [`Call::report`](crate::Call::report)'s usage covers the call up to
/// its return, not the items that cross after it.
///
/// `T` is what the items are read as (or written from): the payload must
/// be a bool, an integer, a float, a char or a string. Streams and futures
/// cross only in a plain [`Pool::run`](crate::Pool::run) or
/// [`Pool::call`](crate::Pool::call), to process workers that run several
/// async calls at once (the default for async components); a session, a
/// batch ([`Pool::map`](crate::Pool::map)), a thread worker or a cluster
/// pool refuses them with [`ErrorKind::Unsupported`].
///
/// ```no_run
/// # async fn demo(pool: wasmpool::Pool, job: wasmpool::Job) -> Result<(), wasmpool::Error> {
/// use futures_util::StreamExt as _;
/// use wasmpool::StreamReader;
///
/// // `count-up: async func(n: u32, delay-ms: u32) -> stream<u32>`
/// let mut s: StreamReader<u32> = pool.run(&job, "count-up", (5u32, 100u32)).await?;
/// while let Some(x) = s.next().await {
///     let x: u32 = x?;
///     println!("{x}");
/// }
/// // `sum: async func(items: stream<u32>) -> u64`
/// let items = StreamReader::from_stream(futures_util::stream::iter(1..=1000u32));
/// let total: u64 = pool.run(&job, "sum", (items,)).await?;
/// assert_eq!(total, 500_500);
/// # Ok(()) }
/// ```
pub struct StreamReader<T> {
    inner: Mutex<Inner<T>>,
}

// Nothing in it is pinned: its source is boxed.
impl<T> Unpin for StreamReader<T> {}

enum Inner<T> {
    /// Made by the host, not yet passed.
    Source(Pin<Box<dyn Stream<Item = T> + Send>>),
    /// Bytes made by the host in chunks, not yet passed; and those of a
    /// chunk read on the host, not yet taken.
    Bytes(Pin<Box<dyn Stream<Item = Vec<u8>> + Send>>, VecDeque<T>),
    /// A call's result, read from its worker.
    Remote(Incoming<T>),
    /// Passed to a call.
    Gone,
}

impl<T> fmt::Debug for StreamReader<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &*self.inner.locked() {
            Inner::Source(_) => "from_stream",
            Inner::Bytes(..) => "from_byte_chunks",
            Inner::Remote(_) => "result",
            Inner::Gone => "passed",
        };
        f.debug_tuple("StreamReader").field(&what).finish()
    }
}

impl<T: Send + 'static> StreamReader<T> {
    /// A stream that feeds a call's guest the items of `items`, as the
    /// guest reads them: pass it as the argument for a `stream<T>`
    /// parameter. `items` is polled only as the guest's reads make room
    /// (see [`STREAM_WINDOW`]), on the Tokio runtime the call was made on.
    pub fn from_stream(items: impl Stream<Item = T> + Send + 'static) -> StreamReader<T> {
        StreamReader {
            inner: Mutex::new(Inner::Source(Box::pin(items))),
        }
    }
}

impl StreamReader<u8> {
    /// A `stream<u8>` that feeds a call's guest the bytes of `chunks`, a
    /// chunk at a time: as [`from_stream`](StreamReader::from_stream), at
    /// the cost of a poll per chunk rather than per byte. Chunks of more
    /// than 256 KiB are cut (and copied) to that size as they go.
    ///
    /// ```no_run
    /// # async fn demo(pool: wasmpool::Pool, job: wasmpool::Job) -> Result<(), wasmpool::Error> {
    /// use wasmpool::StreamReader;
    /// let chunks = futures_util::stream::iter([b"hello, ".to_vec(), b"world".to_vec()]);
    /// // `count-bytes: async func(data: stream<u8>) -> u64`
    /// let n: u64 = pool.run(&job, "count-bytes", (StreamReader::from_byte_chunks(chunks),)).await?;
    /// assert_eq!(n, 12);
    /// # Ok(()) }
    /// ```
    pub fn from_byte_chunks(
        chunks: impl Stream<Item = Vec<u8>> + Send + 'static,
    ) -> StreamReader<u8> {
        StreamReader {
            inner: Mutex::new(Inner::Bytes(Box::pin(chunks), VecDeque::new())),
        }
    }
}

impl<T> StreamReader<T> {
    /// How many bytes of a result's items have come from the worker and
    /// wait to be read, as they crossed (see [`STREAM_WINDOW`], which
    /// bounds it, give or take one chunk: at most 256 KiB of bytes, 4096
    /// numbers, or 16 strings). Zero for a
    /// stream made with [`from_stream`](StreamReader::from_stream).
    pub fn buffered_bytes(&self) -> u64 {
        match &*self.inner.locked() {
            Inner::Remote(incoming) => incoming
                .pipe
                .state
                .locked()
                .chunks
                .iter()
                .map(Chunk::len)
                .sum(),
            _ => 0,
        }
    }
}

impl<T: DeserializeOwned + Send + 'static> StreamReader<T> {
    /// The items that have come, all at once (at least one, waiting for
    /// it if none has): for a stream of many small items, such as bytes,
    /// this spares a poll per item. `None` once the stream has ended.
    ///
    /// ```no_run
    /// # async fn demo(pool: wasmpool::Pool, job: wasmpool::Job) -> Result<(), wasmpool::Error> {
    /// // `bytes: async func(n: u64) -> stream<u8>`
    /// let mut s: wasmpool::StreamReader<u8> = pool.run(&job, "bytes", (1u64 << 20,)).await?;
    /// let mut total = 0;
    /// while let Some(bytes) = s.next_batch().await {
    ///     total += bytes?.len();
    /// }
    /// assert_eq!(total, 1 << 20);
    /// # Ok(()) }
    /// ```
    pub async fn next_batch(&mut self) -> Option<Result<Vec<T>, Error>> {
        std::future::poll_fn(|cx| self.poll_batch(cx)).await
    }

    fn poll_batch(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Vec<T>, Error>>> {
        let inner = self.inner.get_mut().unwrap_or_else(|p| p.into_inner());
        match inner {
            Inner::Remote(incoming) => incoming.poll_batch(cx),
            Inner::Source(items) => match items.as_mut().poll_next(cx) {
                Poll::Ready(Some(item)) => Poll::Ready(Some(Ok(vec![item]))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
            Inner::Bytes(chunks, taken) if taken.is_empty() => {
                match chunks.as_mut().poll_next(cx) {
                    Poll::Ready(Some(bytes)) => Poll::Ready(Some(byte_items(bytes))),
                    Poll::Ready(None) => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                }
            }
            Inner::Bytes(_, taken) => Poll::Ready(Some(Ok(taken.drain(..).collect()))),
            Inner::Gone => Poll::Ready(None),
        }
    }
}

impl<T: DeserializeOwned + Send + 'static> Stream for StreamReader<T> {
    type Item = Result<T, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let inner = self
            .get_mut()
            .inner
            .get_mut()
            .unwrap_or_else(|p| p.into_inner());
        match inner {
            Inner::Remote(incoming) => incoming.poll_item(cx),
            Inner::Source(items) => items.as_mut().poll_next(cx).map(|i| i.map(Ok)),
            Inner::Bytes(chunks, taken) => loop {
                if let Some(item) = taken.pop_front() {
                    return Poll::Ready(Some(Ok(item)));
                }
                match ready!(chunks.as_mut().poll_next(cx)) {
                    Some(bytes) => match byte_items(bytes) {
                        Ok(items) => *taken = items.into(),
                        Err(e) => return Poll::Ready(Some(Err(e))),
                    },
                    None => return Poll::Ready(None),
                }
            },
            Inner::Gone => Poll::Ready(None),
        }
    }
}

/// The bytes of a chunk made by the host, as the items of a stream read on
/// the host.
fn byte_items<T: DeserializeOwned + 'static>(bytes: Vec<u8>) -> Result<Vec<T>, Error> {
    Chunk::Bytes(serde_bytes::ByteBuf::from(bytes))
        .decode()
        .map_err(|e| Error::new(ErrorKind::ResultMismatch, e))
}

/// The component model's `future<T>`: one value, which comes later.
///
/// As a result it resolves to the value the guest writes, or the error
/// that ended its call first. As an argument, made with
/// [`from_future`](FutureReader::from_future), it gives the guest the
/// value of a Rust future once the guest reads it. Otherwise as
/// [`StreamReader`], whose rules it shares.
///
/// ```no_run
/// # async fn demo(pool: wasmpool::Pool, job: wasmpool::Job) -> Result<(), wasmpool::Error> {
/// use wasmpool::FutureReader;
/// // `eventually: async func(value: u32, delay-ms: u32) -> future<u32>`
/// let f: FutureReader<u32> = pool.run(&job, "eventually", (7u32, 100u32)).await?;
/// let v: u32 = f.await?;
/// assert_eq!(v, 7);
/// // `add-later: async func(x: future<u32>, y: u32) -> u32`
/// let x = FutureReader::from_future(async { 40u32 });
/// let sum: u32 = pool.run(&job, "add-later", (x, 2u32)).await?;
/// assert_eq!(sum, 42);
/// # Ok(()) }
/// ```
pub struct FutureReader<T> {
    stream: StreamReader<T>,
}

impl<T> fmt::Debug for FutureReader<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FutureReader").field(&self.stream).finish()
    }
}

impl<T: Send + 'static> FutureReader<T> {
    /// A future that gives a call's guest the value of `value` once the
    /// guest reads it: pass it as the argument for a `future<T>`
    /// parameter. `value` is polled on the Tokio runtime the call was made
    /// on, once the guest's instance is made.
    pub fn from_future(value: impl Future<Output = T> + Send + 'static) -> FutureReader<T> {
        FutureReader {
            stream: StreamReader::from_stream(futures_util::stream::once(value)),
        }
    }
}

impl<T: DeserializeOwned + Send + 'static> Future for FutureReader<T> {
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut().stream.poll_next_unpin(cx) {
            Poll::Ready(Some(item)) => Poll::Ready(item),
            Poll::Ready(None) => Poll::Ready(Err(Error::new(
                ErrorKind::Closed,
                "the future ended without a value (the guest dropped its writer)",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

thread_local! {
    /// The streams and futures the arguments being encoded on this thread
    /// pass, in order.
    static SENDING: std::cell::RefCell<Option<Vec<Source>>> = const { std::cell::RefCell::new(None) };
    /// The call whose result this thread reads now.
    static READING: std::cell::RefCell<Option<Arc<CallStreams>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f`, which encodes a call's arguments, and returns what it made
/// together with the streams and futures they pass.
pub(crate) fn sending<R>(f: impl FnOnce() -> R) -> (R, Outgoing) {
    let before = SENDING.with(|s| s.borrow_mut().replace(Vec::new()));
    let r = f();
    let sent = SENDING.with(|s| std::mem::replace(&mut *s.borrow_mut(), before));
    (r, Outgoing(sent.unwrap_or_default()))
}

/// Runs `f`, which reads call `streams`' result: the streams and futures
/// it reads are that call's. Those it leaves are dropped.
pub(crate) fn reading<R>(streams: &Arc<CallStreams>, f: impl FnOnce() -> R) -> R {
    let before = READING.with(|r| r.borrow_mut().replace(streams.clone()));
    let r = f();
    READING.with(|r| *r.borrow_mut() = before);
    streams.drop_unclaimed();
    r
}

/// The streams and futures a call's arguments pass, in order.
#[derive(Default)]
pub(crate) struct Outgoing(Vec<Source>);

impl Outgoing {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Outgoing({})", self.0.len())
    }
}

/// A passed stream's items, as chunks.
type Source = Pin<Box<dyn Stream<Item = Result<Chunk, String>> + Send>>;

/// Batches the items of `items` into chunks: what is ready, up to a
/// chunk's worth.
fn chunks<T: Serialize + Send + 'static>(items: Pin<Box<dyn Stream<Item = T> + Send>>) -> Source {
    let bytes = std::any::TypeId::of::<T>() == std::any::TypeId::of::<u8>();
    let most = if bytes {
        CHUNK_BYTES
    } else if std::mem::needs_drop::<T>() {
        CHUNK_BIG_ITEMS
    } else {
        CHUNK_ITEMS
    };
    Box::pin(items.ready_chunks(most).map(Chunk::encode))
}

impl<T: Serialize + Send + 'static> Serialize for StreamReader<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        send(&self.inner, false, s)
    }
}

impl<T: Serialize + Send + 'static> Serialize for FutureReader<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        send(&self.stream.inner, true, s)
    }
}

/// Passes what `inner` holds as the next stream of the arguments being
/// encoded.
fn send<T: Serialize + Send + 'static, S: Serializer>(
    inner: &Mutex<Inner<T>>,
    future: bool,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::Error as _;
    let what = if future {
        "FutureReader"
    } else {
        "StreamReader"
    };
    let index = SENDING.with(|sending| {
        let mut sending = sending.borrow_mut();
        let Some(sent) = sending.as_mut() else {
            return Err(S::Error::custom(format!(
                "a {what} can only be encoded as a call's argument"
            )));
        };
        let items = match std::mem::replace(&mut *inner.locked(), Inner::Gone) {
            Inner::Source(items) => items,
            // A result passed on: its chunks as they come, up to its
            // first error.
            Inner::Remote(mut incoming) => {
                let read = std::mem::take(&mut incoming.items);
                let read = (!read.is_empty()).then(|| Chunk::encode(Vec::from(read)));
                let rest = futures_util::stream::poll_fn(move |cx| {
                    incoming
                        .poll_chunk(cx)
                        .map(|c| c.and_then(Result::ok).map(Ok))
                });
                sent.push(Box::pin(futures_util::stream::iter(read).chain(rest)));
                return Ok(u32::try_from(sent.len() - 1).unwrap_or(u32::MAX));
            }
            Inner::Bytes(chunks, taken) => {
                let taken = (!taken.is_empty()).then(|| Chunk::encode(Vec::from(taken)));
                let rest = chunks.flat_map(|bytes| {
                    let pieces: Vec<Result<Chunk, String>> = if bytes.len() <= CHUNK_BYTES {
                        vec![Ok(Chunk::Bytes(serde_bytes::ByteBuf::from(bytes)))]
                    } else {
                        bytes
                            .chunks(CHUNK_BYTES)
                            .map(|c| Ok(Chunk::Bytes(serde_bytes::ByteBuf::from(c.to_vec()))))
                            .collect()
                    };
                    futures_util::stream::iter(pieces)
                });
                sent.push(Box::pin(futures_util::stream::iter(taken).chain(rest)));
                return Ok(u32::try_from(sent.len() - 1).unwrap_or(u32::MAX));
            }
            Inner::Gone => {
                return Err(S::Error::custom(format!(
                    "this {what} was already passed to a call"
                )));
            }
        };
        sent.push(chunks(items));
        Ok(u32::try_from(sent.len() - 1).unwrap_or(u32::MAX))
    })?;
    TransmitRef { future, index }.to_value().serialize(s)
}

/// A stream or future as it is read from a result.
#[derive(Deserialize)]
struct Marker {
    #[serde(rename = "\u{1}wasmpool:stream")]
    stream: (bool, u32),
}

impl<'de, T: DeserializeOwned + Send + 'static> Deserialize<'de> for StreamReader<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        receive(d, false).map(|incoming| StreamReader {
            inner: Mutex::new(Inner::Remote(incoming)),
        })
    }
}

impl<'de, T: DeserializeOwned + Send + 'static> Deserialize<'de> for FutureReader<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        receive(d, true).map(|incoming| FutureReader {
            stream: StreamReader {
                inner: Mutex::new(Inner::Remote(incoming)),
            },
        })
    }
}

fn receive<'de, T: DeserializeOwned + 'static, D: Deserializer<'de>>(
    d: D,
    future: bool,
) -> Result<Incoming<T>, D::Error> {
    use serde::de::Error as _;
    let what = if future { "future" } else { "stream" };
    let Marker {
        stream: (is_future, index),
    } = Marker::deserialize(d).map_err(|e| D::Error::custom(format!("expected a {what}: {e}")))?;
    if is_future != future {
        return Err(D::Error::custom(format!(
            "expected a {what}, got a {}",
            if is_future { "future" } else { "stream" }
        )));
    }
    let Some(streams) = READING.with(|r| r.borrow().clone()) else {
        return Err(D::Error::custom(format!(
            "a {what} can only be read from a call's result"
        )));
    };
    streams
        .claim(index)
        .map(Incoming::new)
        .ok_or_else(|| D::Error::custom(format!("{what} {index} was read already")))
}

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
struct Incoming<T> {
    call: Arc<CallStreams>,
    index: u32,
    pipe: Arc<InPipe>,
    items: VecDeque<T>,
    /// Whether its end (or error) was given.
    done: bool,
}

impl<T> Incoming<T> {
    /// The next chunk as it came, or the end; the worker is given credit
    /// for it.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Chunk, WireError>>> {
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
}

impl<T: DeserializeOwned + 'static> Incoming<T> {
    fn new((call, index, pipe): (Arc<CallStreams>, u32, Arc<InPipe>)) -> Incoming<T> {
        Incoming {
            call,
            index,
            pipe,
            items: VecDeque::new(),
            done: false,
        }
    }

    /// The next chunk's items, decoded, or the end.
    fn poll_batch(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Vec<T>, Error>>> {
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

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, Error>>> {
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
            sources: Mutex::new(outgoing.0.into_iter().map(Some).collect()),
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
    fn claim(self: &Arc<Self>, index: u32) -> Option<(Arc<CallStreams>, u32, Arc<InPipe>)> {
        let pipe = self.in_pipe(index);
        let mut state = pipe.state.locked();
        if state.claimed {
            return None;
        }
        state.claimed = true;
        drop(state);
        Some((self.clone(), index, pipe))
    }

    /// Drops the result's streams that no reader took.
    fn drop_unclaimed(&self) {
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
