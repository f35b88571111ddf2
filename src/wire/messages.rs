//! The messages of the protocol: the handshake, calls and their outcomes,
//! and the control frames.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Answer, GuestOp, HttpGrant, WireError};
use crate::engine::EngineSettings;
use crate::options::{DirAccess, Stdio};

/// The first frame, host to worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Init {
    pub(crate) version: u32,
    pub(crate) engine: EngineSettings,
    /// Keep a job's instance between calls ([`crate::PoolBuilder::reuse_instances`]).
    pub(crate) reuse_instances: bool,
    /// What the worker confines itself to before it loads a guest; `None`
    /// when the pool was built with `confine(false)`.
    pub(crate) sandbox: Option<Sandbox>,
    /// Compile this instead of serving calls, then exit.
    pub(crate) compile: Option<CompileOrder>,
    /// The size of the payload region the worker inherited (see
    /// [`Payload::InRegion`]), if it has one.
    pub(crate) region: Option<u64>,
    /// How many calls the worker may be sent at once: more than one only
    /// for a worker whose engine runs async components, which then runs
    /// its plain calls side by side (see `runtime::lanes`).
    pub(crate) lanes: u32,
}

/// Where one call's arguments, or its result, are: in the frame, or in
/// the worker's payload region, shared with the host.
///
/// The region is split in two: the host writes requests' payloads in the
/// first half, the worker results in the second. Each request uses its
/// half from the start; the host writes the next request's only after the
/// last one's reply. Payloads under [`INLINE_MAX`] go in the frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Payload {
    Inline(serde_bytes::ByteBuf),
    InRegion { offset: u64, len: u64 },
}

impl Payload {
    /// How many bytes it holds, wherever they are.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Payload::Inline(bytes) => bytes.len() as u64,
            Payload::InRegion { len, .. } => *len,
        }
    }
}

/// The largest payload sent in a frame when a region is at hand.
pub(crate) const INLINE_MAX: usize = 64 << 10;

/// A worker's payload region: 1 GiB of address space, which costs memory
/// only where it is written. Payloads larger than half of it go in frames.
pub(crate) const REGION_SIZE: u64 = 1 << 30;

/// Where the worker's half of the region starts.
pub(crate) const RESULTS_AT: u64 = REGION_SIZE / 2;

/// A component for a child process to compile into the artifact cache, so
/// that the compiler's memory is never the host's. Answered twice: with
/// [`FromWorker::Ready`] as the handshake, when the child has taken the
/// order (or [`FromWorker::Failed`] if it cannot serve it), then with
/// [`FromWorker::Ready`] once the artifact is in place, or
/// [`FromWorker::Failed`] if the component does not compile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CompileOrder {
    pub(crate) component: serde_bytes::ByteBuf,
    /// Where to say the component came from, in errors.
    pub(crate) origin: String,
    /// The cache directory, and the artifact's name in it.
    pub(crate) dir: PathBuf,
    pub(crate) name: String,
}

/// The filesystem a confined worker keeps: its compile cache, read-only,
/// and the directories its calls may preopen, each with its access.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Sandbox {
    /// Directories the worker reads compiled artifacts from.
    pub(crate) read: Vec<PathBuf>,
    /// Host directories its calls may preopen.
    pub(crate) dirs: Vec<Grant>,
}

/// A host directory a worker may reach, and how.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct Grant {
    pub(crate) host: PathBuf,
    pub(crate) access: DirAccess,
}

/// Frames the host sends on the request pipe after [`Init`].
#[derive(Debug, Serialize, Deserialize)]
// One frame is decoded at a time; boxing the call would cost an allocation
// per call for nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum ToWorker {
    Call(CallRequest),
    /// The answer to the guest's [`FromWorker::Sync`] operation `seq`.
    Answer {
        seq: u64,
        answer: Answer,
    },
    /// Items of stream (or the value of future) `stream` that call `call`
    /// was passed: sent only within the credit the worker gave.
    Items {
        call: u64,
        stream: u32,
        chunk: Chunk,
    },
    /// The host's side of stream `stream` of call `call` has ended: it
    /// was written to its end (`error` `None`), or it could not be.
    End {
        call: u64,
        stream: u32,
        error: Option<WireError>,
    },
    /// Credit: the host has taken `bytes` more of stream `stream`, a
    /// result of call `call`, from the worker.
    Credit {
        call: u64,
        stream: u32,
        bytes: u64,
    },
}

/// A run of a stream's items as they cross: the bytes of a `stream<u8>`
/// as they are, any other items as one MessagePack array.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Chunk {
    Bytes(serde_bytes::ByteBuf),
    Items(serde_bytes::ByteBuf),
}

impl Chunk {
    /// Its size on the wire, which is what credit counts.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Chunk::Bytes(b) | Chunk::Items(b) => b.len() as u64,
        }
    }

    /// `items` as they cross: bytes as they are, anything else as an
    /// array.
    pub(crate) fn encode<T: Serialize + 'static>(items: Vec<T>) -> Result<Chunk, String> {
        let items: Box<dyn std::any::Any> = Box::new(items);
        match items.downcast::<Vec<u8>>() {
            Ok(bytes) => Ok(Chunk::Bytes(serde_bytes::ByteBuf::from(*bytes))),
            Err(items) => {
                let Ok(items) = items.downcast::<Vec<T>>() else {
                    unreachable!("it was a Vec<T>")
                };
                rmp_serde::to_vec(&*items)
                    .map(|b| Chunk::Items(serde_bytes::ByteBuf::from(b)))
                    .map_err(|e| format!("a stream item cannot be encoded: {e}"))
            }
        }
    }

    /// The items, as `T`s.
    pub(crate) fn decode<T: serde::de::DeserializeOwned + 'static>(self) -> Result<Vec<T>, String> {
        match self {
            Chunk::Bytes(bytes) => {
                let bytes: Box<dyn std::any::Any> = Box::new(bytes.into_vec());
                match bytes.downcast::<Vec<T>>() {
                    Ok(items) => Ok(*items),
                    Err(bytes) => {
                        let Ok(bytes) = bytes.downcast::<Vec<u8>>() else {
                            unreachable!("it was a Vec<u8>")
                        };
                        bytes
                            .iter()
                            .map(|&b| {
                                T::deserialize(serde::de::IntoDeserializer::<
                                    serde::de::value::Error,
                                >::into_deserializer(b))
                                .map_err(|e| format!("a stream of bytes (u8): {e}"))
                            })
                            .collect()
                    }
                }
            }
            Chunk::Items(b) => rmp_serde::from_slice::<Vec<T>>(&b).map_err(|e| e.to_string()),
        }
    }
}

/// [`ToWorker::Call`] from a borrowed request: the same bytes on the wire,
/// without a copy of the request, so that the host keeps it to send again
/// if the worker dies before taking it. Its payloads are borrowed, or
/// moved to the worker's region.
#[derive(Debug, Serialize)]
pub(crate) enum CallFrame<'a> {
    Call(CallRef<'a>),
}

/// [`CallRequest`], borrowed: the same fields, in the same order.
#[derive(Debug, Serialize)]
pub(crate) struct CallRef<'a> {
    pub(crate) id: u64,
    pub(crate) artifact: &'a Artifact,
    pub(crate) export: &'a ExportPath,
    pub(crate) items: Vec<PayloadRef<'a>>,
    pub(crate) options: &'a CallOptions,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) session: &'a Option<SessionOp>,
    #[serde(skip_serializing_if = "Pending::is_empty")]
    pub(crate) pending: &'a Pending,
}

impl<'a> CallRef<'a> {
    /// `req` as it is, every payload where it is.
    pub(crate) fn of(req: &'a CallRequest) -> CallRef<'a> {
        CallRef {
            id: req.id,
            artifact: &req.artifact,
            export: &req.export,
            items: req.items.iter().map(PayloadRef::of).collect(),
            options: &req.options,
            session: &req.session,
            pending: &req.pending,
        }
    }
}

impl<'a> PayloadRef<'a> {
    pub(crate) fn of(p: &'a Payload) -> PayloadRef<'a> {
        match p {
            Payload::Inline(b) => PayloadRef::Inline(serde_bytes::Bytes::new(b)),
            Payload::InRegion { offset, len } => PayloadRef::InRegion {
                offset: *offset,
                len: *len,
            },
        }
    }
}

/// [`Payload`], borrowed.
#[derive(Debug, Serialize)]
pub(crate) enum PayloadRef<'a> {
    Inline(&'a serde_bytes::Bytes),
    InRegion { offset: u64, len: u64 },
}

/// Calls of one exported function: usually one, several for a batch from
/// [`crate::Pool::map`]. The worker runs them in order, each on its own
/// instance, and answers them together in one [`FromWorker::Done`]. A
/// cancel of `id` cancels the item running and every item after it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CallRequest {
    pub(crate) id: u64,
    pub(crate) artifact: Artifact,
    pub(crate) export: ExportPath,
    /// The arguments of each call: a MessagePack array with one element
    /// per parameter.
    pub(crate) items: Vec<Payload>,
    pub(crate) options: CallOptions,
    /// What the request does with a session, if it is one's: its one item
    /// opens, calls, closes or drops a handle of the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) session: Option<SessionOp>,
    /// What the host let go of since its last request to this worker,
    /// to drop before this one runs.
    #[serde(default, skip_serializing_if = "Pending::is_empty")]
    pub(crate) pending: Pending,
}

/// What a request does with a session ([`crate::Session`]). The request
/// has one item: the call's arguments, or an empty tuple.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum SessionOp {
    /// Instantiates the job, with the request's options, as session `id`.
    Open(u64),
    /// Calls the export on session `id`'s instance.
    Call(u64),
    /// Ends session `id`.
    Close(u64),
    /// Drops resource `handle` of session `session`: an error if it has
    /// none such.
    Drop {
        session: u64,
        handle: u64,
        type_name: String,
    },
}

/// Sessions and resource handles the host has let go of, for the worker
/// to drop before its next request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Pending {
    /// Sessions dropped without [`crate::Session::close`].
    pub(crate) closes: Vec<u64>,
    /// Handles dropped on the host: (session, handle). One the session no
    /// longer holds (consumed by a call) is passed over.
    pub(crate) drops: Vec<(u64, u64)>,
}

impl Pending {
    pub(crate) fn is_empty(&self) -> bool {
        self.closes.is_empty() && self.drops.is_empty()
    }

    /// What goes with a request that does `op`: every close (dropping a
    /// store runs no guest code), and the handle drops of the request's
    /// own session, whose destructors run in its call, under its
    /// interrupts and with its host functions. Other sessions' drops wait
    /// for their own requests; those of a session closed go with it.
    pub(crate) fn for_request(&mut self, op: Option<&SessionOp>) -> Pending {
        let own = match op {
            Some(SessionOp::Call(s) | SessionOp::Close(s)) => Some(*s),
            Some(SessionOp::Drop { session, .. }) => Some(*session),
            Some(SessionOp::Open(_)) | None => None,
        };
        let closes = std::mem::take(&mut self.closes);
        let (drops, kept) = std::mem::take(&mut self.drops)
            .into_iter()
            .filter(|(s, _)| !closes.contains(s))
            .partition(|(s, _)| Some(*s) == own);
        self.drops = kept;
        Pending { closes, drops }
    }
}

/// How one call ended: its MessagePack-encoded result, or an error, and
/// what it reported; on the host, once taken out of the region.
pub(crate) type Outcome = (Result<serde_bytes::ByteBuf, WireError>, Report);

/// [`Outcome`] as the worker sends it: the result may be in the region.
pub(crate) type WireOutcome = (Result<Payload, WireError>, Report);

/// Per-call settings the worker enforces: limits and the WASI sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CallOptions {
    /// Interrupt the call (epoch) after this long.
    pub(crate) timeout: Option<std::time::Duration>,
    /// The most linear memory an instance may grow to, in bytes.
    pub(crate) max_memory: Option<u64>,
    /// Environment variables the guest sees.
    pub(crate) env: Vec<(String, String)>,
    /// Host directories the guest sees.
    pub(crate) preopens: Vec<Preopen>,
    /// The fuel budget; needs an engine with fuel turned on.
    pub(crate) fuel: Option<u64>,
    pub(crate) stdout: Stdio,
    pub(crate) stderr: Stdio,
    /// Seed for deterministic random numbers and clocks.
    pub(crate) deterministic: Option<u64>,
    /// The most each output stream (stdout, stderr) takes, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_output: Option<u64>,
    /// The largest result the worker sends, in encoded bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_result: Option<u64>,
    /// The outbound HTTP the call may make; none by default. The worker
    /// only needs to know whether to forward requests: the host checks
    /// each against its own copy.
    #[serde(default, skip_serializing_if = "HttpGrant::is_empty")]
    pub(crate) http: HttpGrant,
    /// The program's arguments, `argv[0]` first: set for a command
    /// ([`crate::Pool::command`]), empty for other calls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) args: Vec<String>,
    /// What the guest reads from stdin; empty when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) stdin: Option<Stdin>,
    /// The call is a command's `wasi:cli/run#run`: its exit, by `exit(n)`
    /// or by returning, is its outcome (an exit status), not an error.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) command: bool,
    /// The guest's stdin and stdout are its job channel
    /// ([`crate::Command::spawn`]): stdin reads what the handle writes,
    /// stdout's writes go to the handle, both as raw bytes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) stdio_channel: bool,
    /// Measure the CPU time of the call's thread: set only for a call
    /// whose report its caller takes ([`crate::Call::report`]), since the
    /// thread's CPU clocks cost four system calls a call.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) cpu_time: bool,
    /// What the guest reads through `wasi:config/store`: the pool's
    /// entries, overridden key by key by the call's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) config: BTreeMap<String, String>,
    /// Test only: what the worker does natively instead of the guest.
    #[cfg(feature = "test-hooks")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) test_hook: Option<Box<TestHook>>,
}

/// A command's stdin, in one shared buffer: the worker's copies of the
/// call's options (the shape of its store, that of an instance made ahead)
/// and the guest's stdin pipe all hold the bytes the request brought,
/// never a copy of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stdin(pub(crate) bytes::Bytes);

impl Serialize for Stdin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Stdin {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(d)?;
        Ok(Stdin(bytes.into_vec().into()))
    }
}

/// What a worker does instead of a call's guest, in tests: what no guest
/// can make it do.
#[cfg(feature = "test-hooks")]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum TestHook {
    /// Tries to break out of its confinement natively, and reports how
    /// each attempt ended.
    Escape(EscapeAttempt),
    /// Blocks natively this long, deaf to interrupts: a worker stuck
    /// outside wasm, which only a kill ends.
    Stall(std::time::Duration),
    /// A hostile worker: fills what part of `[offset, offset + len)` is in
    /// its payload region with `fill`, then answers each item with a
    /// result said to be there.
    Scribble { offset: u64, len: u64, fill: u8 },
}

/// What [`TestHook::Escape`] tries.
#[cfg(feature = "test-hooks")]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EscapeAttempt {
    /// A file outside every preopen, to open for reading.
    pub(crate) outside: PathBuf,
    /// A directory granted read-only, to create a file in.
    pub(crate) readonly: Option<PathBuf>,
    /// Also `execve` in the worker itself (which replaces it if that works).
    pub(crate) exec: bool,
}

/// What a call reports besides its result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Report {
    pub(crate) fuel_consumed: Option<u64>,
    pub(crate) stdout: Option<serde_bytes::ByteBuf>,
    pub(crate) stderr: Option<serde_bytes::ByteBuf>,
    /// What the call cost. Defaulted when absent, so that a cluster node
    /// of the last version still answers a caller of this one.
    #[serde(default)]
    pub(crate) measured: Measured,
    /// Why the call's session was lost by this call (a trap, an
    /// interrupt), or is gone; `None` for a call that left it usable, or
    /// is no session's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) lost: Option<String>,
}

/// What the worker measured of one call, for [`crate::Usage`].
///
/// It travels as a MessagePack array of integers, not as a map with
/// field names: about 16 bytes on a no-op call's reply instead of about
/// 60.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Measured {
    /// Wall time in the worker, from the arguments taken to the result
    /// encoded, in nanoseconds.
    pub(crate) wall_ns: u64,
    /// The CPU time of the thread that ran the call over the same span,
    /// user and system, in nanoseconds; `None` where the OS does not
    /// count it per thread.
    pub(crate) cpu_ns: Option<(u64, u64)>,
    /// The most linear memory the call's instance had at once, in bytes,
    /// summed over its memories.
    pub(crate) peak_memory: u64,
    /// The encoded arguments the worker took, in bytes.
    pub(crate) bytes_in: u64,
    /// The encoded result the worker sent, in bytes (0 for a failed call).
    pub(crate) bytes_out: u64,
}

impl Serialize for Measured {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Measured {
            wall_ns,
            cpu_ns,
            peak_memory,
            bytes_in,
            bytes_out,
        } = *self;
        (wall_ns, cpu_ns, peak_memory, bytes_in, bytes_out).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Measured {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (wall_ns, cpu_ns, peak_memory, bytes_in, bytes_out) = Deserialize::deserialize(d)?;
        Ok(Measured {
            wall_ns,
            cpu_ns,
            peak_memory,
            bytes_in,
            bytes_out,
        })
    }
}

/// A host directory mapped into the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Preopen {
    pub(crate) host: PathBuf,
    pub(crate) guest: String,
    pub(crate) access: DirAccess,
}

/// A compiled component on disk, as the host's engine serialized it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Artifact {
    /// Content hash of the component and the engine's settings.
    pub(crate) key: String,
    pub(crate) path: PathBuf,
}

/// Where a function sits among a component's exports.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct ExportPath {
    /// The exported instance (interface), or `None` for a world-level
    /// function.
    pub(crate) instance: Option<String>,
    pub(crate) func: String,
}

impl std::fmt::Display for ExportPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.instance {
            Some(i) => write!(f, "{i}#{}", self.func),
            None => f.write_str(&self.func),
        }
    }
}

/// Frames the worker sends on the reply pipe.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromWorker {
    /// The answer to [`Init`]: the engine is up.
    Ready { version: u32, pid: u32 },
    /// The answer to [`Init`] when the engine could not be built.
    Failed { message: String },
    /// The outcomes of a request's calls, one per item, in order.
    Done { id: u64, outcomes: Vec<WireOutcome> },
    /// A `wasmpool:sync` operation of the running guest; answered with
    /// [`ToWorker::Answer`] of the same `seq`.
    Sync { seq: u64, op: GuestOp },
    /// [`FromWorker::Sync`] from the guest of call `call`, one of the
    /// calls a worker with lanes runs at once.
    CallSync { call: u64, seq: u64, op: GuestOp },
    /// Call `id` returned `outcome`, which holds `streams` streams or
    /// futures (numbered from `RESULTS_FROM`), or passed ones still open:
    /// its [`FromWorker::Done`] comes once they have all ended.
    Returned {
        id: u64,
        outcome: WireOutcome,
        streams: u32,
    },
    /// Items of stream (or the value of future) `stream` in call `call`'s
    /// result: sent only within the credit the host gave.
    Items {
        call: u64,
        stream: u32,
        chunk: Chunk,
    },
    /// The worker's side of stream `stream` of call `call` has ended: the
    /// guest ended it (`error` `None`), or the call failed.
    End {
        call: u64,
        stream: u32,
        error: Option<WireError>,
    },
    /// Credit: the guest has taken `bytes` more of stream `stream`, which
    /// call `call` was passed.
    Credit { call: u64, stream: u32, bytes: u64 },
}

/// Frames the host sends on the control socket.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Control {
    /// Interrupt call `id`, if it is still running.
    Cancel { id: u64 },
}
