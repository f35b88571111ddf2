//! Streams and futures that cross between a call's guest and the host, on
//! a worker that runs several calls at once (see `lanes`).
//!
//! A stream the host passes becomes a stream the worker's store writes
//! ([`StreamProducer`]) from the chunks the host sends; a stream or future
//! in a call's result is read by the worker ([`StreamConsumer`]), which
//! sends its items to the host as the guest writes them.
//!
//! Back-pressure is by credit, in bytes on the wire, per stream and per
//! direction: a side sends only as much as the other has granted, and
//! grants more as its reader takes what came. [`WINDOW`] is the credit
//! each side starts with, so neither side holds more than about that
//! much of one stream (and one chunk) at a time.

use crate::locks::Locked as _;
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use serde::Serialize;
use serde::de::DeserializeOwned;
use wasmtime::component::{
    Destination, FutureAny, FutureConsumer, FutureProducer, FutureReader, Lift, Lower, ResourceAny,
    Source, StreamAny, StreamConsumer, StreamProducer, StreamReader, StreamResult, Type, Val,
    VecBuffer,
};
use wasmtime::{Store, StoreContextMut};

use super::lanes::Replies;
use super::store::State;
use crate::error::ErrorKind;
use crate::values::wit::{Mismatch, type_name};
use crate::values::{Handles, Path, TransmitRef, Value};
use crate::wire::{Chunk, FromWorker, WireError};

/// The credit each side of a stream starts with, in bytes on the wire.
pub(crate) const WINDOW: u64 = 1 << 20;

/// The numbers of the streams and futures in a call's result start here;
/// those the host passes, at 0.
pub(crate) const RESULTS_FROM: u32 = 1 << 31;

/// The most a chunk of a byte stream carries.
const MAX_BYTES: usize = 256 << 10;

/// The most items a chunk of any other stream carries: numbers, and
/// strings.
const MAX_ITEMS: usize = 4096;
const MAX_STRINGS: usize = 16;

/// Calls `$f::<T>($args)` with `T` the Rust type of payload `$payload`.
macro_rules! by_payload {
    ($payload:expr, $f:ident, $($args:expr),*) => {
        match $payload {
            Some(Type::Bool) => $f::<bool>($($args),*),
            Some(Type::S8) => $f::<i8>($($args),*),
            Some(Type::U8) => $f::<u8>($($args),*),
            Some(Type::S16) => $f::<i16>($($args),*),
            Some(Type::U16) => $f::<u16>($($args),*),
            Some(Type::S32) => $f::<i32>($($args),*),
            Some(Type::U32) => $f::<u32>($($args),*),
            Some(Type::S64) => $f::<i64>($($args),*),
            Some(Type::U64) => $f::<u64>($($args),*),
            Some(Type::Float32) => $f::<f32>($($args),*),
            Some(Type::Float64) => $f::<f64>($($args),*),
            Some(Type::Char) => $f::<char>($($args),*),
            Some(Type::String) => $f::<String>($($args),*),
            other => Err(wasmtime::Error::msg(format!(
                "a stream or future of {other:?} cannot cross"
            ))),
        }
    };
}

/// One stream's or future's state, shared by its end in the store and the
/// request reader.
#[derive(Default)]
struct Pipe {
    state: Mutex<PipeState>,
    /// The end in the store, waiting for chunks or credit.
    waker: AtomicWaker,
}

#[derive(Default)]
struct PipeState {
    /// A stream the host writes: the chunks come, not yet given to the
    /// guest.
    chunks: VecDeque<Chunk>,
    /// The host's end has ended (the host wrote it whole, or dropped its
    /// reader).
    ended: bool,
    /// Why the host could not write it whole.
    error: Option<WireError>,
    /// A stream the host reads: how much more it may be sent.
    credit: u64,
}

impl Pipe {
    fn update(&self, f: impl FnOnce(&mut PipeState)) {
        f(&mut self.state.locked());
        self.waker.wake();
    }
}

/// The pipes of the calls in flight, by call and stream, as the request
/// reader routes the host's frames to them.
#[derive(Default)]
pub(crate) struct Pipes(Mutex<HashMap<(u64, u32), Arc<Pipe>>>);

impl Pipes {
    fn open(&self, call: u64, stream: u32, credit: u64) -> Arc<Pipe> {
        let pipe = Arc::new(Pipe::default());
        pipe.state.locked().credit = credit;
        self.0.locked().insert((call, stream), pipe.clone());
        pipe
    }

    fn close(&self, call: u64, stream: u32) {
        self.0.locked().remove(&(call, stream));
    }

    fn get(&self, call: u64, stream: u32) -> Option<Arc<Pipe>> {
        self.0.locked().get(&(call, stream)).cloned()
    }

    /// Items the host sent for a stream it passed. Those of a stream
    /// closed meanwhile are dropped.
    pub(crate) fn items(&self, call: u64, stream: u32, chunk: Chunk) {
        if let Some(pipe) = self.get(call, stream) {
            pipe.update(|s| s.chunks.push_back(chunk));
        }
    }

    /// The host's end of a stream has ended (`error`: it could not write
    /// it whole).
    pub(crate) fn end(&self, call: u64, stream: u32, error: Option<WireError>) {
        if let Some(pipe) = self.get(call, stream) {
            pipe.update(|s| {
                s.ended = true;
                s.error = error;
            });
        }
    }

    /// The host took `bytes` more of a stream it reads.
    pub(crate) fn credit(&self, call: u64, stream: u32, bytes: u64) {
        if let Some(pipe) = self.get(call, stream) {
            pipe.update(|s| s.credit = s.credit.saturating_add(bytes));
        }
    }
}

/// The streams and futures of one call, from its arguments' decoding to
/// their last item.
pub(crate) struct Transmits {
    call: u64,
    pipes: Arc<Pipes>,
    replies: Arc<Replies>,
    /// The passed ones, waiting for the call's store: the parameter each
    /// stands for, its number and its type.
    args: Vec<(usize, u32, Type)>,
    /// The returned ones, waiting to be read: number, type, value.
    results: Vec<(u32, Type, Val)>,
    next: u32,
    /// How many ends in the store are still open, and who waits for none.
    open: Arc<Open>,
    /// Why the call failed, when an end found out first (a passed
    /// stream's items of the wrong type): the call's error.
    failure: Arc<Mutex<Option<WireError>>>,
}

#[derive(Default)]
struct Open {
    count: AtomicUsize,
    none: tokio::sync::Notify,
}

impl Open {
    fn enter(self: &Arc<Self>) -> OpenEnd {
        self.count.fetch_add(1, Ordering::SeqCst);
        OpenEnd(self.clone())
    }
}

/// Counts one open end until dropped.
struct OpenEnd(Arc<Open>);

impl Drop for OpenEnd {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.none.notify_one();
        }
    }
}

/// What an end in the store shares with its call.
#[derive(Clone)]
struct EndOf {
    call: u64,
    stream: u32,
    pipes: Arc<Pipes>,
    replies: Arc<Replies>,
    failure: Arc<Mutex<Option<WireError>>>,
}

impl EndOf {
    fn send(&self, frame: &FromWorker) {
        // A host that cannot be written to is gone; the main loop ends
        // when the request pipe does.
        let _ = self.replies.write(frame);
    }

    fn fail(&self, e: WireError) {
        self.failure.locked().get_or_insert(e);
    }
}

impl Transmits {
    pub(crate) fn new(call: u64, pipes: Arc<Pipes>, replies: Arc<Replies>) -> Transmits {
        Transmits {
            call,
            pipes,
            replies,
            args: Vec::new(),
            results: Vec::new(),
            next: RESULTS_FROM,
            open: Arc::default(),
            failure: Arc::default(),
        }
    }

    fn end_of(&self, stream: u32) -> EndOf {
        EndOf {
            call: self.call,
            stream,
            pipes: self.pipes.clone(),
            replies: self.replies.clone(),
            failure: self.failure.clone(),
        }
    }

    /// Whether the call's result holds streams or futures to read.
    pub(crate) fn returned_any(&self) -> bool {
        !self.results.is_empty()
    }

    /// How many streams and futures the call's result holds.
    pub(crate) fn returned_count(&self) -> u32 {
        u32::try_from(self.results.len()).unwrap_or(u32::MAX)
    }

    /// Whether any end in the store is still open.
    pub(crate) fn any_open(&self) -> bool {
        self.open.count.load(Ordering::SeqCst) > 0
    }

    /// Resolves once no end in the store is open.
    pub(crate) async fn all_ended(&self) {
        while self.any_open() {
            self.open.none.notified().await;
        }
    }

    /// Why the call failed, if one of its ends found out first.
    pub(crate) fn failure(&self) -> Option<WireError> {
        self.failure.locked().clone()
    }

    /// The call failed with `e` (unless an end found out first): what the
    /// ends still open tell the host when the store drops them.
    pub(crate) fn fail(&self, e: WireError) {
        self.failure.locked().get_or_insert(e);
    }

    /// Makes the passed streams and futures in `store`, in their places in
    /// `params`, and gives the host its first credit for each.
    fn bind_args(&mut self, store: &mut Store<State>, params: &mut [Val]) -> wasmtime::Result<()> {
        for (param, stream, ty) in std::mem::take(&mut self.args) {
            let end = self.end_of(stream);
            self.pipes.open(self.call, stream, 0);
            let open = self.open.enter();
            let val = match &ty {
                Type::Stream(s) => by_payload!(s.ty(), arg_stream, store, end.clone(), open),
                Type::Future(f) => by_payload!(f.ty(), arg_future, store, end.clone(), open),
                _ => unreachable!("only streams and futures are bound"),
            }?;
            params[param] = val;
            end.send(&FromWorker::Credit {
                call: self.call,
                stream,
                bytes: WINDOW,
            });
        }
        Ok(())
    }

    /// Opens the pipes of the result's streams and futures. Before the
    /// host hears of them: the first frame it sends for one (its end, if
    /// its reader drops it unread) must find its pipe.
    pub(crate) fn open_results(&self) {
        for (stream, _, _) in &self.results {
            self.pipes.open(self.call, *stream, WINDOW);
        }
    }

    /// Starts reading the streams and futures the call returned, sending
    /// their items to the host as the guest writes them (their pipes
    /// opened by [`open_results`](Self::open_results)).
    pub(crate) fn read_results(&mut self, store: &mut Store<State>) -> wasmtime::Result<()> {
        for (stream, ty, val) in std::mem::take(&mut self.results) {
            let end = self.end_of(stream);
            let open = self.open.enter();
            match (&ty, val) {
                (Type::Stream(s), Val::Stream(any)) => {
                    by_payload!(s.ty(), result_stream, store, any, end, open)?
                }
                (Type::Future(f), Val::Future(any)) => {
                    by_payload!(f.ty(), result_future, store, any, end, open)?
                }
                _ => unreachable!("only streams and futures are kept"),
            }
        }
        Ok(())
    }

    /// Closes what the call returned but nobody will read: its result could
    /// not be sent.
    pub(crate) fn close_results(&mut self, store: &mut Store<State>) {
        for (_, _, val) in std::mem::take(&mut self.results) {
            let _ = match val {
                Val::Stream(mut any) => any.close(&mut *store),
                Val::Future(mut any) => any.close(&mut *store),
                _ => Ok(()),
            };
        }
    }
}

impl Drop for Transmits {
    fn drop(&mut self) {
        let mut pipes = self.pipes.0.locked();
        pipes.retain(|(call, _), _| *call != self.call);
    }
}

impl Handles for Transmits {
    fn lower(&mut self, path: &Path<'_>, ty: &Type, v: Value) -> Result<Val, Mismatch> {
        crate::values::NoHandles.lower(path, ty, v)
    }

    fn lift(&mut self, ty: &Type, r: ResourceAny) -> Value {
        crate::values::NoHandles.lift(ty, r)
    }

    fn lower_transmit(&mut self, path: &Path<'_>, ty: &Type, v: Value) -> Result<Val, Mismatch> {
        let future = matches!(ty, Type::Future(_));
        let param = match path {
            Path::Index(Path::Root(_), i) => *i,
            _ => {
                return Err(Mismatch(format!(
                    "{path}: {} crosses only as a whole parameter",
                    type_name(ty)
                )));
            }
        };
        match TransmitRef::from_value(&v) {
            Some(t) if t.future == future => {
                self.args.push((param, t.index, ty.clone()));
                // Made in the call's store, once it has one.
                Ok(Val::Bool(false))
            }
            _ => Err(Mismatch(format!(
                "{path}: expected a {} for {}, got {}",
                if future {
                    "FutureReader"
                } else {
                    "StreamReader"
                },
                type_name(ty),
                v.describe()
            ))),
        }
    }

    fn bind_transmits(
        &mut self,
        store: &mut Store<State>,
        params: &mut [Val],
    ) -> wasmtime::Result<()> {
        self.bind_args(store, params)
    }

    fn lift_transmit(&mut self, ty: &Type, v: Val) -> Value {
        let index = self.next;
        self.next += 1;
        self.results.push((index, ty.clone(), v));
        TransmitRef {
            future: matches!(ty, Type::Future(_)),
            index,
        }
        .to_value()
    }
}

/// What a stream's or future's items can be: the payloads the host can
/// name.
trait Item: Lift + Lower + Serialize + DeserializeOwned + Send + Sync + Unpin + 'static {}

impl<T: Lift + Lower + Serialize + DeserializeOwned + Send + Sync + Unpin + 'static> Item for T {}

fn arg_stream<T: Item>(
    store: &mut Store<State>,
    end: EndOf,
    open: OpenEnd,
) -> wasmtime::Result<Val> {
    let reader = StreamReader::<T>::new(&mut *store, Passed::<T>::new(end, open))?;
    Ok(Val::Stream(StreamAny::try_from_stream_reader(
        store, reader,
    )?))
}

fn arg_future<T: Item>(
    store: &mut Store<State>,
    end: EndOf,
    open: OpenEnd,
) -> wasmtime::Result<Val> {
    let reader = FutureReader::<T>::new(&mut *store, PassedFuture(Passed::<T>::new(end, open)))?;
    Ok(Val::Future(FutureAny::try_from_future_reader(
        store, reader,
    )?))
}

fn result_stream<T: Item>(
    store: &mut Store<State>,
    any: StreamAny,
    end: EndOf,
    open: OpenEnd,
) -> wasmtime::Result<()> {
    let reader = any.try_into_stream_reader::<T>()?;
    reader.pipe(store, Returned::<T>::new(end, open))
}

fn result_future<T: Item>(
    store: &mut Store<State>,
    any: FutureAny,
    end: EndOf,
    open: OpenEnd,
) -> wasmtime::Result<()> {
    let reader = any.try_into_future_reader::<T>()?;
    reader.pipe(store, ReturnedFuture(Returned::<T>::new(end, open)))
}

/// The guest's end of a stream the host passed: it writes what the host
/// sends, and gives credit back as the guest takes it.
struct Passed<T> {
    end: EndOf,
    _open: OpenEnd,
    /// Items decoded, not yet handed over (a future's one value).
    held: Vec<T>,
    pipe: Arc<Pipe>,
}

impl<T: Item> Passed<T> {
    fn new(end: EndOf, open: OpenEnd) -> Passed<T> {
        let pipe = end
            .pipes
            .get(end.call, end.stream)
            .expect("opened before its end is made");
        Passed {
            end,
            _open: open,
            held: Vec::new(),
            pipe,
        }
    }

    /// The next items the host sent: `Ready(None)` once it has ended.
    fn poll_items(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Vec<T>>, wasmtime::Error>> {
        if !self.held.is_empty() {
            return Poll::Ready(Ok(Some(std::mem::take(&mut self.held))));
        }
        self.pipe.waker.register(cx.waker());
        let next = {
            let mut state = self.pipe.state.locked();
            match state.chunks.pop_front() {
                Some(chunk) => Some(chunk),
                None if state.ended => match state.error.take() {
                    None => return Poll::Ready(Ok(None)),
                    Some(e) => {
                        let message = e.message.clone();
                        self.end.fail(e);
                        return Poll::Ready(Err(wasmtime::Error::msg(message)));
                    }
                },
                None => None,
            }
        };
        let Some(chunk) = next else {
            return Poll::Pending;
        };
        self.end.send(&FromWorker::Credit {
            call: self.end.call,
            stream: self.end.stream,
            bytes: chunk.len(),
        });
        match chunk.decode::<T>() {
            Ok(items) => Poll::Ready(Ok(Some(items))),
            Err(e) => {
                let e = WireError::new(
                    ErrorKind::ArgumentMismatch,
                    format!(
                        "args: stream {}: an item does not fit: {e}",
                        self.end.stream
                    ),
                );
                let message = e.message.clone();
                self.end.fail(e);
                Poll::Ready(Err(wasmtime::Error::msg(message)))
            }
        }
    }
}

impl<T> Drop for Passed<T> {
    fn drop(&mut self) {
        // The guest dropped its end, or the call ended: the host stops.
        self.end.send(&FromWorker::End {
            call: self.end.call,
            stream: self.end.stream,
            error: None,
        });
        self.end.pipes.close(self.end.call, self.end.stream);
    }
}

impl<T: Item> StreamProducer<State> for Passed<T> {
    type Item = T;
    type Buffer = VecBuffer<T>;

    fn poll_produce<'a>(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        _: StoreContextMut<'a, State>,
        mut destination: Destination<'a, T, VecBuffer<T>>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        let me = self.get_mut();
        match me.poll_items(cx) {
            Poll::Ready(Ok(Some(items))) => {
                destination.set_buffer(items.into());
                Poll::Ready(Ok(StreamResult::Completed))
            }
            Poll::Ready(Ok(None)) => Poll::Ready(Ok(StreamResult::Dropped)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if finish => Poll::Ready(Ok(StreamResult::Cancelled)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// [`Passed`] for a future: its one value.
struct PassedFuture<T>(Passed<T>);

impl<T: Item> FutureProducer<State> for PassedFuture<T> {
    type Item = T;

    fn poll_produce(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        _: StoreContextMut<'_, State>,
        finish: bool,
    ) -> Poll<wasmtime::Result<Option<T>>> {
        let me = &mut self.get_mut().0;
        match me.poll_items(cx) {
            Poll::Ready(Ok(Some(mut items))) => match items.len() {
                1 => Poll::Ready(Ok(items.pop())),
                n => {
                    let e = format!(
                        "args: future {}: expected one value, got {n}",
                        me.end.stream
                    );
                    me.end
                        .fail(WireError::new(ErrorKind::ArgumentMismatch, e.clone()));
                    Poll::Ready(Err(wasmtime::Error::msg(e)))
                }
            },
            Poll::Ready(Ok(None)) => {
                let e = format!(
                    "args: future {}: the host's future ended without a value",
                    me.end.stream
                );
                me.end
                    .fail(WireError::new(ErrorKind::ArgumentMismatch, e.clone()));
                Poll::Ready(Err(wasmtime::Error::msg(e)))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if finish => Poll::Ready(Ok(None)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The host's end of a stream the guest returned: it sends what the guest
/// writes, within the host's credit.
struct Returned<T> {
    end: EndOf,
    _open: OpenEnd,
    pipe: Arc<Pipe>,
    _items: std::marker::PhantomData<fn() -> T>,
}

impl<T: Item> Returned<T> {
    fn new(end: EndOf, open: OpenEnd) -> Returned<T> {
        let pipe = end
            .pipes
            .get(end.call, end.stream)
            .expect("opened before its end is made");
        Returned {
            end,
            _open: open,
            pipe,
            _items: std::marker::PhantomData,
        }
    }

    /// Sends `items` as one chunk.
    fn send(&mut self, items: Vec<T>) -> wasmtime::Result<()> {
        let chunk = Chunk::encode(items).map_err(wasmtime::Error::msg)?;
        {
            let mut state = self.pipe.state.locked();
            state.credit = state.credit.saturating_sub(chunk.len());
        }
        self.end.send(&FromWorker::Items {
            call: self.end.call,
            stream: self.end.stream,
            chunk,
        });
        Ok(())
    }

    /// Whether the host dropped its reader, else how much it may be sent
    /// (registering for more when that is nothing).
    fn room(&self, cx: &mut Context<'_>) -> Result<u64, ()> {
        self.pipe.waker.register(cx.waker());
        let state = self.pipe.state.locked();
        if state.ended {
            Err(())
        } else {
            Ok(state.credit)
        }
    }
}

impl<T> Drop for Returned<T> {
    fn drop(&mut self) {
        // Unless the host dropped its reader, it is told: the guest ended
        // the stream, or the call ended, and then the call's error says
        // why.
        if !self.pipe.state.locked().ended {
            let error = self.end.failure.locked().clone();
            self.end.send(&FromWorker::End {
                call: self.end.call,
                stream: self.end.stream,
                error,
            });
        }
        self.end.pipes.close(self.end.call, self.end.stream);
    }
}

impl<T: Item> StreamConsumer<State> for Returned<T> {
    type Item = T;

    fn poll_consume(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut store: StoreContextMut<'_, State>,
        mut source: Source<'_, T>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        let me = self.get_mut();
        let credit = match me.room(cx) {
            Err(()) => return Poll::Ready(Ok(StreamResult::Dropped)),
            Ok(0) if finish => return Poll::Ready(Ok(StreamResult::Cancelled)),
            Ok(0) => return Poll::Pending,
            Ok(credit) => credit,
        };
        let remaining = source.remaining(&mut store);
        let most = if std::any::TypeId::of::<T>() == std::any::TypeId::of::<u8>() {
            MAX_BYTES.min(usize::try_from(credit).unwrap_or(usize::MAX))
        } else if std::mem::needs_drop::<T>() {
            MAX_STRINGS
        } else {
            MAX_ITEMS
        };
        let mut items = Vec::with_capacity(remaining.clamp(1, most));
        source.read(&mut store, &mut items)?;
        if !items.is_empty() {
            me.send(items)?;
        }
        Poll::Ready(Ok(StreamResult::Completed))
    }
}

/// [`Returned`] for a future: its one value.
struct ReturnedFuture<T>(Returned<T>);

impl<T: Item> FutureConsumer<State> for ReturnedFuture<T> {
    type Item = T;

    fn poll_consume(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut store: StoreContextMut<'_, State>,
        mut source: Source<'_, T>,
        _finish: bool,
    ) -> Poll<wasmtime::Result<()>> {
        let me = &mut self.get_mut().0;
        if me.room(cx).is_err() {
            return Poll::Ready(Ok(()));
        }
        let mut value = Vec::with_capacity(1);
        source.read(&mut store, &mut value)?;
        if !value.is_empty() {
            me.send(value)?;
        }
        Poll::Ready(Ok(()))
    }
}
