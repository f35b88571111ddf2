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
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use futures_util::stream::{Stream, StreamExt as _};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind};
use crate::values::TransmitRef;

mod flow;

use crate::wire::Chunk;
pub(crate) use flow::{CallStreams, FrameSink, Registered, StreamHub};
use flow::{Incoming, Source};

/// How much of one stream may be on its way, in each direction, before
/// its reader takes some: 1 MiB of items as they cross (a `stream<u8>`'s
/// bytes as they are; other items as MessagePack, a few bytes each).
pub const STREAM_WINDOW: u64 = crate::runtime::STREAM_WINDOW;

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
            Inner::Remote(incoming) => incoming.buffered_bytes(),
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

    pub(super) fn into_sources(self) -> Vec<Source> {
        self.0
    }
}

impl fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Outgoing({})", self.0.len())
    }
}

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
        .ok_or_else(|| D::Error::custom(format!("{what} {index} was read already")))
}
