//! The one public error type, classified once where each failure arises.

use std::fmt;
use std::process::ExitStatus;

use serde::{Deserialize, Serialize};

/// The error type of every fallible wasmpool operation.
///
/// An `Error` is opaque: ask [`kind`](Error::kind) what went wrong, and the
/// accessors for the details that kind carries, such as
/// [`trap_code`](Error::trap_code), [`panic_message`](Error::panic_message)
/// or [`exit_status`](Error::exit_status). Its [`Display`](fmt::Display) is
/// a lowercase sentence meant for people; never match on it.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(pool: wasmpool::Pool, job: wasmpool::Job) {
/// use wasmpool::ErrorKind;
///
/// match pool.run::<()>(&job, "panic", ("boom",)).await {
///     Ok(()) => {}
///     Err(e) if e.kind() == ErrorKind::Trap => {
///         eprintln!("guest trapped: {:?} {:?}", e.trap_code(), e.panic_message());
///     }
///     Err(e) => eprintln!("other failure: {e}"),
/// }
/// # }
/// ```
pub struct Error {
    inner: Box<Inner>,
}

/// What an [`Error`] carries; the crate's own code reads and fills it where
/// an error crosses the wire.
pub(crate) struct Inner {
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
    pub(crate) trap_code: Option<TrapCode>,
    pub(crate) limit: Option<Limit>,
    pub(crate) panic_message: Option<String>,
    pub(crate) backtrace: Option<String>,
    pub(crate) exit_status: Option<ExitStatus>,
    /// What the guest wrote before it failed, when captured.
    pub(crate) stdout: Option<Vec<u8>>,
    pub(crate) stderr: Option<Vec<u8>>,
    pub(crate) source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// What kind of failure an [`Error`] is.
///
/// New kinds may be added, so a `match` needs a wildcard arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The guest trapped: `unreachable`, division by zero, an out-of-bounds
    /// access, a Rust panic, and so on. See [`Error::trap_code`] and
    /// [`Error::panic_message`].
    Trap,
    /// The call ran past its timeout.
    Timeout,
    /// The call was cancelled before it finished.
    Cancelled,
    /// The worker died while the guest was running the call: killed from
    /// outside, or a crash of the runtime itself. See
    /// [`Error::exit_status`]. The pool replaces the worker. A worker that
    /// dies before it takes a call (killed while idle, say) does not fail
    /// it: the pool skips a worker it finds dead, and sends a request that
    /// a dead worker never took to a fresh worker, once; only if that one
    /// dies too before taking it does the call fail with this kind.
    WorkerCrashed,
    /// The call exceeded one of its limits: memory, fuel or wasm stack. See
    /// [`Error::limit`].
    ResourceLimit,
    /// The bytes are not a valid WebAssembly component, or the component
    /// needs imports that wasmpool does not provide.
    InvalidComponent,
    /// The component exports no function by that name, or the name is
    /// ambiguous.
    NoSuchFunction,
    /// The arguments do not match the function's parameters.
    ArgumentMismatch,
    /// The function's result does not fit the type asked for.
    ResultMismatch,
    /// The function uses a type that wasmpool cannot pass across a process
    /// boundary, such as a resource handle; or the pool cannot do what the
    /// call asks, such as outbound HTTP on a cluster pool.
    Unsupported,
    /// A worker process could not be started.
    Spawn,
    /// The pool was shut down.
    PoolClosed,
    /// A pool setting is out of range.
    Config,
    /// A worker broke the protocol; it has been replaced.
    Protocol,
    /// An I/O error on the host, such as an unreadable component file.
    Io,
    /// A queue, or a job's channel, is closed: its job has finished, or
    /// [`Queue::close`](crate::Queue::close) was called.
    Closed,
    /// A synchronisation primitive was misused: a name taken by another
    /// kind, or one created again with other settings.
    Sync,
    /// A host function the guest called failed: it returned an error (see
    /// [`std::error::Error::source`] for that error), panicked, or was
    /// called with, or returned, values that do not fit the import's WIT
    /// types. The message names the function. The guest trapped; its worker
    /// is kept. See [`PoolBuilder::host_fn`](crate::PoolBuilder::host_fn).
    HostFunction,
    /// The [`Session`](crate::Session) is gone: an earlier call trapped,
    /// timed out or was interrupted (the component model forbids entering
    /// an instance again after that), its worker died or was killed, or the
    /// session was closed. The message says which. Open a new session.
    SessionLost,
}

/// The WebAssembly trap behind an [`ErrorKind::Trap`] or
/// [`ErrorKind::ResourceLimit`] error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum TrapCode {
    /// The wasm call stack was exhausted.
    StackOverflow,
    /// A load or store outside linear memory.
    MemoryOutOfBounds,
    /// A misaligned atomic access.
    HeapMisaligned,
    /// An access outside a table.
    TableOutOfBounds,
    /// An indirect call through a null table entry.
    IndirectCallToNull,
    /// An indirect call with the wrong signature.
    BadSignature,
    /// Integer overflow, as in `i32.div_s` of `MIN / -1`.
    IntegerOverflow,
    /// Integer division by zero.
    IntegerDivisionByZero,
    /// A float that does not fit the integer it is converted to.
    BadConversionToInteger,
    /// An `unreachable` instruction; Rust panics and aborts end here too.
    UnreachableCodeReached,
    /// An epoch interrupt: the call was cancelled or timed out.
    Interrupt,
    /// The call ran out of fuel.
    OutOfFuel,
    /// The component instance was entered after it had trapped.
    CannotEnterComponent,
    /// Any other trap.
    Other,
}

impl TrapCode {
    pub(crate) fn from_wasmtime(trap: wasmtime::Trap) -> TrapCode {
        use wasmtime::Trap as T;
        match trap {
            T::StackOverflow => TrapCode::StackOverflow,
            T::MemoryOutOfBounds => TrapCode::MemoryOutOfBounds,
            T::HeapMisaligned => TrapCode::HeapMisaligned,
            T::TableOutOfBounds => TrapCode::TableOutOfBounds,
            T::IndirectCallToNull => TrapCode::IndirectCallToNull,
            T::BadSignature => TrapCode::BadSignature,
            T::IntegerOverflow => TrapCode::IntegerOverflow,
            T::IntegerDivisionByZero => TrapCode::IntegerDivisionByZero,
            T::BadConversionToInteger => TrapCode::BadConversionToInteger,
            T::UnreachableCodeReached => TrapCode::UnreachableCodeReached,
            T::Interrupt => TrapCode::Interrupt,
            T::OutOfFuel => TrapCode::OutOfFuel,
            T::CannotEnterComponent => TrapCode::CannotEnterComponent,
            _ => TrapCode::Other,
        }
    }
}

impl fmt::Display for TrapCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrapCode::StackOverflow => "call stack exhausted",
            TrapCode::MemoryOutOfBounds => "out of bounds memory access",
            TrapCode::HeapMisaligned => "unaligned atomic",
            TrapCode::TableOutOfBounds => "out of bounds table access",
            TrapCode::IndirectCallToNull => "uninitialized element",
            TrapCode::BadSignature => "indirect call type mismatch",
            TrapCode::IntegerOverflow => "integer overflow",
            TrapCode::IntegerDivisionByZero => "integer divide by zero",
            TrapCode::BadConversionToInteger => "invalid conversion to integer",
            TrapCode::UnreachableCodeReached => "wasm `unreachable` instruction executed",
            TrapCode::Interrupt => "interrupt",
            TrapCode::OutOfFuel => "all fuel consumed",
            TrapCode::CannotEnterComponent => "cannot enter component instance",
            TrapCode::Other => "trap",
        })
    }
}

/// Which limit an [`ErrorKind::ResourceLimit`] error exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Limit {
    /// Linear memory (or table) growth past the allowed maximum.
    Memory,
    /// The fuel budget.
    Fuel,
    /// The wasm stack.
    Stack,
    /// The size of a call's result, encoded
    /// ([`max_result_bytes`](crate::Call::max_result_bytes)).
    Result,
    /// What a guest wrote to its stdout or stderr
    /// ([`max_output_bytes`](crate::Call::max_output_bytes)).
    Output,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::Memory => "memory",
            Limit::Fuel => "fuel",
            Limit::Stack => "wasm stack",
            Limit::Result => "result size",
            Limit::Output => "output",
        })
    }
}

impl Error {
    /// The details, to fill in.
    pub(crate) fn inner_mut(&mut self) -> &mut Inner {
        &mut self.inner
    }

    /// The details, taken apart.
    pub(crate) fn into_inner(self) -> Inner {
        *self.inner
    }

    /// A copy for another item of a failed batch. The source, which cannot
    /// be cloned, is folded into the message.
    pub(crate) fn duplicate(&self) -> Error {
        let i = &self.inner;
        let message = match &i.source {
            Some(source) => format!("{}: {source}", i.message),
            None => i.message.clone(),
        };
        Error {
            inner: Box::new(Inner {
                kind: i.kind,
                message,
                trap_code: i.trap_code,
                limit: i.limit,
                panic_message: i.panic_message.clone(),
                backtrace: i.backtrace.clone(),
                exit_status: i.exit_status,
                stdout: i.stdout.clone(),
                stderr: i.stderr.clone(),
                source: None,
            }),
        }
    }

    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                trap_code: None,
                limit: None,
                panic_message: None,
                backtrace: None,
                exit_status: None,
                stdout: None,
                stderr: None,
                source: None,
            }),
        }
    }

    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        self.inner.source = Some(Box::new(source));
        self
    }

    pub(crate) fn with_boxed_source(
        mut self,
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    ) -> Error {
        self.inner.source = Some(source);
        self
    }

    pub(crate) fn io(context: impl fmt::Display, err: std::io::Error) -> Error {
        Error::new(ErrorKind::Io, format!("{context}: {err}")).with_source(err)
    }

    pub(crate) fn closed() -> Error {
        Error::new(ErrorKind::PoolClosed, "the pool is shut down")
    }

    pub(crate) fn crashed(status: Option<ExitStatus>, context: &str) -> Error {
        let how = match status {
            Some(s) => describe_status(s),
            None => "exited".to_string(),
        };
        let mut e = Error::new(ErrorKind::WorkerCrashed, format!("worker {how} {context}"));
        e.inner.exit_status = status;
        e
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The trap code, for [`ErrorKind::Trap`] and for limits enforced by a
    /// trap (stack, fuel).
    pub fn trap_code(&self) -> Option<TrapCode> {
        self.inner.trap_code
    }

    /// Which limit was exceeded, for [`ErrorKind::ResourceLimit`].
    pub fn limit(&self) -> Option<Limit> {
        self.inner.limit
    }

    /// The guest's panic message, taken from the tail of its stderr, when it
    /// panicked (Rust) or reported an allocation failure.
    pub fn panic_message(&self) -> Option<&str> {
        self.inner.panic_message.as_deref()
    }

    /// The wasm backtrace of a trap, one frame a line, when there is one.
    pub fn wasm_backtrace(&self) -> Option<&str> {
        self.inner.backtrace.as_deref()
    }

    /// What the guest wrote to its stdout before the call failed, when
    /// stdout was captured ([`Stdio::Capture`](crate::Stdio::Capture), a
    /// [`Command`](crate::Command)'s default). A trap, a limit or a
    /// timeout that the worker survives keeps it. It is `None` when no
    /// worker answered: a cancel (which the caller sees at once), a
    /// timeout that ended in a kill, a crashed worker.
    ///
    /// ```no_run
    /// # async fn demo(pool: wasmpool::Pool, prog: wasmpool::Job) {
    /// if let Err(e) = pool.command(&prog).arg("panic").output().await {
    ///     let printed = e.stdout().unwrap_or_default();
    ///     eprintln!("{e}, after printing {}", String::from_utf8_lossy(printed));
    /// }
    /// # }
    /// ```
    pub fn stdout(&self) -> Option<&[u8]> {
        self.inner.stdout.as_deref()
    }

    /// What the guest wrote to its stderr before the call failed, when
    /// captured: as [`stdout`](Error::stdout). A Rust guest's panic message
    /// is here, and also in [`panic_message`](Error::panic_message).
    pub fn stderr(&self) -> Option<&[u8]> {
        self.inner.stderr.as_deref()
    }

    /// How the worker process ended, for [`ErrorKind::WorkerCrashed`].
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.inner.exit_status
    }

    /// Whether this is [`ErrorKind::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        self.inner.kind == ErrorKind::Cancelled
    }

    /// Whether this is [`ErrorKind::Timeout`].
    pub fn is_timeout(&self) -> bool {
        self.inner.kind == ErrorKind::Timeout
    }

    /// Whether this is [`ErrorKind::Trap`].
    pub fn is_trap(&self) -> bool {
        self.inner.kind == ErrorKind::Trap
    }
}

fn describe_status(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("was killed by signal {sig}");
        }
    }
    #[cfg(windows)]
    if status.code() == Some(crate::platform::KILL_CODE as i32) {
        return format!("was terminated (exit code {})", crate::platform::KILL_CODE);
    }
    match status.code() {
        Some(code) => format!("exited with code {code}"),
        None => format!("ended ({status})"),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.message)?;
        if let Some(panic) = &self.inner.panic_message
            && !self.inner.message.contains(panic.as_str())
        {
            write!(f, ": {panic}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Inner {
            kind,
            message,
            trap_code,
            limit,
            panic_message,
            backtrace,
            exit_status,
            stdout,
            stderr,
            source,
        } = &*self.inner;
        f.debug_struct("Error")
            .field("kind", kind)
            .field("message", message)
            .field("trap_code", trap_code)
            .field("limit", limit)
            .field("panic_message", panic_message)
            .field("backtrace", backtrace)
            .field("exit_status", exit_status)
            .field("stdout_bytes", &stdout.as_ref().map(Vec::len))
            .field("stderr_bytes", &stderr.as_ref().map(Vec::len))
            .field("source", source)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
