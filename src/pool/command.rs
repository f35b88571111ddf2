//! [`Command`]: a command component (a program with a `main`) run the way
//! `wasmtime run` runs it, with arguments and stdin, to its exit status
//! and captured output ([`CommandOutput`]).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::Pool;
use super::call::{Args, Call, Output, encode_args, typed};
use super::job_handle::JobHandle;
use super::setters::call_option_setters;
use crate::error::{Error, ErrorKind};
use crate::job::Job;
use crate::options::{Cancel, Stdio};
use crate::pool::Usage;
use crate::wire::{CallOptions, Stdin};

/// The export every command component has: `wasi:cli/run`'s `run`.
const RUN: &str = "wasi:cli/run#run";

/// A run of a command component, from [`Pool::command`]: set its
/// arguments, stdin and sandbox, then await [`output`](Command::output).
///
/// A command component is what `cargo build --target wasm32-wasip2` makes
/// of a binary crate: it exports `wasi:cli/run`, reads its arguments,
/// environment and stdin, writes stdout and stderr, and ends with an exit
/// status. Its run is an ordinary call of `run` in every other way: the
/// same sandbox setters as [`Call`] (`env`, `preopen_dir`, `timeout`,
/// `max_memory`, `fuel`, ...), the same limits and errors, a fresh
/// instance each time.
///
/// The program's exit, by returning from `main` or by `exit(n)`, is its
/// outcome, not an error: [`CommandOutput::status`]. A trap, a timeout, a
/// limit or a crashed worker is an [`Error`] of the same kind as for a
/// call.
///
/// stdout and stderr are captured by default, each up to
/// [`CAPTURE_LIMIT`](crate::CAPTURE_LIMIT) (see
/// [`max_output_bytes`](Command::max_output_bytes)); set
/// [`stdout`](Command::stdout) to [`Stdio::Inherit`] to pass it through.
///
/// # Cancel safety
///
/// As [`Call`]: dropping the awaited future cancels the run as
/// [`on_cancel`](Command::on_cancel) says.
#[must_use = "a command does nothing until its output is awaited"]
pub struct Command<'a> {
    pool: Pool,
    job: &'a Job,
    arg0: Option<String>,
    args: Vec<String>,
    stdin: Vec<u8>,
    on_cancel: Cancel,
    options: CallOptions,
    grace: Duration,
}

impl fmt::Debug for Command<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("job", self.job)
            .field("arg0", &self.arg0)
            .field("args", &self.args)
            .field("stdin_bytes", &self.stdin.len())
            .field("on_cancel", &self.on_cancel)
            .field("options", &self.options)
            .field("grace", &self.grace)
            .finish()
    }
}

/// How a command ended, from [`Command::output`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommandOutput {
    /// The exit status, as `wasmtime run` reports it: 0 when `run`
    /// returns `ok` (a Rust `main` that returns), 1 when it returns `err`,
    /// and `n` for an `exit(n)` that the program's WASI can carry. WASI
    /// 0.2's `exit` carries only success or failure, so a Rust guest's
    /// `std::process::exit(3)` built for `wasm32-wasip2` is 1; built for
    /// `wasm32-wasip1` it is 3 (modulo 256, as a Unix status).
    pub status: i32,
    /// What the program wrote to stdout; empty unless captured (the
    /// default).
    pub stdout: Vec<u8>,
    /// What the program wrote to stderr; empty unless captured (the
    /// default).
    pub stderr: Vec<u8>,
    /// What the run cost: wall and CPU time, peak memory. Its `bytes_in`
    /// and `bytes_out` are those of the call of `run` (its empty arguments
    /// and its status), not of stdin and stdout, whose sizes are those of
    /// what you gave and got.
    pub usage: Usage,
    /// The fuel the run burned, on a pool that meters fuel
    /// ([`PoolBuilder::fuel`](crate::PoolBuilder::fuel)); `None` on
    /// others.
    pub fuel_consumed: Option<u64>,
}

impl CommandOutput {
    /// Whether the program exited with status 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

impl Pool {
    /// A run of the command component `job`: a program with a `main`,
    /// run as `wasmtime run` runs it. See [`Command`].
    ///
    /// ```no_run
    /// # async fn demo(pool: wasmpool::Pool) -> Result<(), wasmpool::Error> {
    /// let sort = wasmpool::Job::from_file("sort.wasm")?;
    /// let out = pool
    ///     .command(&sort)
    ///     .args(["-n", "--reverse"])
    ///     .stdin(b"3\n1\n2\n".to_vec())
    ///     .timeout(std::time::Duration::from_secs(2))
    ///     .output()
    ///     .await?;
    /// assert!(out.success());
    /// print!("{}", String::from_utf8_lossy(&out.stdout));
    /// # Ok(()) }
    /// ```
    pub fn command<'a>(&self, job: &'a Job) -> Command<'a> {
        let inner = &self.handle.inner;
        let mut options = inner.options.clone();
        options.stdout = Stdio::Capture;
        options.stderr = Stdio::Capture;
        Command {
            pool: self.clone(),
            job,
            arg0: None,
            args: Vec::new(),
            stdin: Vec::new(),
            on_cancel: inner.on_cancel,
            options,
            grace: inner.grace,
        }
    }
}

impl<'a> Command<'a> {
    call_option_setters!();

    /// Adds one argument (after `argv[0]`).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments (after `argv[0]`).
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The program's `argv[0]`. Default: the name of the file the job
    /// was read from ([`Job::from_file`]), whatever its extension, as
    /// `wasmtime run` names it; `"main.wasm"` for a job made from bytes
    /// (or read from a file whose name is not UTF-8).
    pub fn arg0(mut self, name: impl Into<String>) -> Self {
        self.arg0 = Some(name.into());
        self
    }

    /// What the program reads from stdin. Default: nothing (end of file
    /// at once).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = bytes.into();
        self
    }

    /// What to do when the run is dropped while it runs. Default: the
    /// pool's ([`Cancel::Interrupt`] unless set). See [`Call::on_cancel`].
    pub fn on_cancel(mut self, mode: Cancel) -> Self {
        self.on_cancel = mode;
        self
    }

    /// Runs the program to its exit.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoSuchFunction`] if `job` is not a command (it
    /// exports no `wasi:cli/run`); otherwise as a [`Call`]: a trap
    /// ([`ErrorKind::Trap`]), a timeout, a limit, a crashed worker. An
    /// exit, whatever its status, is not an error. The output the program
    /// wrote before a trap, a limit or a timeout is on the error
    /// ([`Error::stdout`], [`Error::stderr`]).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future cancels the run as its cancel mode says.
    pub async fn output(self) -> Result<CommandOutput, Error> {
        let origin = self.job.origin().to_string();
        let call = self.into_call(false);
        command_output(call.report().await, &origin)
    }

    /// Starts the program with its stdin and stdout as streams: write its
    /// input in chunks with [`CommandHandle::write_stdin`] as it runs
    /// (after the [`stdin`](Command::stdin) set beforehand, if any), read its
    /// output as it is written with [`CommandHandle::read_stdout`], and
    /// await the handle for its exit. stderr is still captured, into the
    /// [`CommandOutput`]; its `stdout` is empty.
    ///
    /// A large input never has to be in memory whole, and a program that
    /// answers line by line can be talked to. Each direction buffers
    /// [`JOB_CHANNEL_CAPACITY`](crate::JOB_CHANNEL_CAPACITY) chunks, then
    /// waits: as with a child process's pipes, read its stdout while you
    /// write, or a program that writes as much as it reads stops.
    ///
    /// ```no_run
    /// # async fn demo(pool: wasmpool::Pool, cat: wasmpool::Job) -> Result<(), wasmpool::Error> {
    /// let run = pool.command(&cat).arg("cat").spawn();
    /// run.write_stdin(b"hello ".to_vec()).await?;
    /// run.write_stdin(b"world\n".to_vec()).await?;
    /// run.close_stdin();
    /// let mut echoed = Vec::new();
    /// while let Some(chunk) = run.read_stdout().await? {
    ///     echoed.extend(chunk);
    /// }
    /// assert_eq!(echoed, b"hello world\n");
    /// assert!(run.await?.success());
    /// # Ok(()) }
    /// ```
    ///
    /// # Panics
    ///
    /// Never: outside a Tokio runtime the handle resolves to an
    /// [`ErrorKind::Config`] error, as [`Call::spawn`]'s does.
    pub fn spawn(self) -> CommandHandle {
        let origin = self.job.origin().to_string();
        let call = self.into_call(true);
        CommandHandle {
            job: call.spawn_then(move |out| command_output(out, &origin)),
        }
    }

    /// The call of `run` this command is; `stdio_channel` makes its stdin
    /// and stdout the job channel.
    fn into_call(self, stdio_channel: bool) -> Call<'a, i32> {
        let Command {
            pool,
            job,
            arg0,
            args,
            stdin,
            on_cancel,
            mut options,
            grace,
        } = self;
        let arg0 = arg0.unwrap_or_else(|| job.file_name().unwrap_or("main.wasm").to_string());
        options.args = std::iter::once(arg0).chain(args).collect();
        options.stdin = (!stdin.is_empty()).then(|| Stdin(stdin.into()));
        options.command = true;
        options.stdio_channel = stdio_channel;
        // The output's usage has the run's CPU time, as `report` gives it.
        options.cpu_time = true;
        let mut call: Call<'_, i32> =
            pool.new_call(job, RUN, Args::Encoded(encode_args(&())), typed);
        call.on_cancel = on_cancel;
        call.options = options;
        call.grace = grace;
        call
    }
}

/// A command's output from its call's, `origin` naming it in errors.
fn command_output(out: Result<Output<i32>, Error>, origin: &str) -> Result<CommandOutput, Error> {
    let out = out.map_err(|e| {
        if e.kind() == ErrorKind::NoSuchFunction {
            Error::new(
                ErrorKind::NoSuchFunction,
                format!("{origin} is not a command component: it exports no wasi:cli/run ({e})"),
            )
        } else {
            e
        }
    })?;
    Ok(CommandOutput {
        status: out.value,
        stdout: out.stdout.unwrap_or_default(),
        stderr: out.stderr.unwrap_or_default(),
        usage: out.usage,
        fuel_consumed: out.fuel_consumed,
    })
}

/// The most bytes one chunk of a streamed stdin holds
/// ([`CommandHandle::write_stdin`]): 64 KiB.
pub const STDIN_CHUNK: usize = 64 << 10;

/// A command started with [`Command::spawn`]: write its stdin and read
/// its stdout as it runs, and await the handle for its [`CommandOutput`].
///
/// # Cancel safety
///
/// As [`JobHandle`]: dropping the handle cancels the run as its cancel
/// mode says, and [`cancel`](CommandHandle::cancel) and
/// [`kill`](CommandHandle::kill) end it at once. Under
/// [`Cancel::Finish`] a dropped handle's program runs on, but its stdout
/// has no reader any more: its next write fails, as a write to a closed
/// pipe does.
#[must_use = "dropping a command handle cancels the run"]
#[derive(Debug)]
pub struct CommandHandle {
    job: JobHandle<CommandOutput>,
}

impl CommandHandle {
    /// Writes `bytes` to the program's stdin, in chunks of at most
    /// [`STDIN_CHUNK`] bytes. Waits while
    /// [`JOB_CHANNEL_CAPACITY`](crate::JOB_CHANNEL_CAPACITY) chunks are
    /// unread, so that at most that many chunks are held for the program.
    /// An empty write sends nothing.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] once the program has ended or its stdin was
    /// closed.
    ///
    /// # Cancel safety
    ///
    /// A write dropped while it waits for room has written the chunks
    /// before the one it waited to send, and none after.
    pub async fn write_stdin(&self, bytes: impl Into<Vec<u8>>) -> Result<(), Error> {
        let bytes = bytes.into();
        if bytes.len() <= STDIN_CHUNK {
            if !bytes.is_empty() {
                self.job.send_raw(serde_bytes::ByteBuf::from(bytes)).await?;
            }
            return Ok(());
        }
        for chunk in bytes.chunks(STDIN_CHUNK) {
            self.job
                .send_raw(serde_bytes::ByteBuf::from(chunk.to_vec()))
                .await?;
        }
        Ok(())
    }

    /// Ends the program's stdin: once it has read what was written, its
    /// next read is the end of the file. A program that reads its stdin
    /// to the end does not finish before this.
    pub fn close_stdin(&self) {
        self.job.close();
    }

    /// The next chunk the program wrote to stdout, as it wrote it, or
    /// `None` once it has ended and every chunk was read.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a chunk a dropped read was handed is kept for the
    /// next.
    pub async fn read_stdout(&self) -> Result<Option<Vec<u8>>, Error> {
        Ok(self
            .job
            .recv_raw()
            .await?
            .map(serde_bytes::ByteBuf::into_vec))
    }

    /// Cancels the run, as [`JobHandle::cancel`].
    pub fn cancel(&self) {
        self.job.cancel();
    }

    /// Cancels the run by killing its worker process, as
    /// [`JobHandle::kill`].
    pub fn kill(&self) {
        self.job.kill();
    }

    /// Whether the run has ended.
    pub fn is_finished(&self) -> bool {
        self.job.is_finished()
    }

    /// The process id of the worker running the program, once it has
    /// started (`None` for thread workers).
    pub fn pid(&self) -> Option<u32> {
        self.job.pid()
    }
}

impl Future for CommandHandle {
    type Output = Result<CommandOutput, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.job).poll(cx)
    }
}
