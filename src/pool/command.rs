//! [`Command`]: a command component (a program with a `main`) run the way
//! `wasmtime run` runs it, with arguments and stdin, to its exit status
//! and captured output ([`CommandOutput`]).

use std::fmt;
use std::time::Duration;

use super::Pool;
use super::call::{Args, Call, encode_args, typed};
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
    /// and `n` for an `exit(n)` that WASI can carry. WASI 0.2's `exit`
    /// carries only success or failure, so a Rust guest's
    /// `std::process::exit(3)` is 1.
    pub status: i32,
    /// What the program wrote to stdout; empty unless captured (the
    /// default).
    pub stdout: Vec<u8>,
    /// What the program wrote to stderr; empty unless captured (the
    /// default).
    pub stderr: Vec<u8>,
    /// What the run cost: wall and CPU time, peak memory, bytes in and
    /// out.
    pub usage: Usage,
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
    /// exit, whatever its status, is not an error.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future cancels the run as its cancel mode says.
    pub async fn output(self) -> Result<CommandOutput, Error> {
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
        let mut call: Call<'_, i32> =
            pool.new_call(job, RUN, Args::Encoded(encode_args(&())), typed);
        call.on_cancel = on_cancel;
        call.options = options;
        call.grace = grace;
        let out = call.report().await.map_err(|e| {
            if e.kind() == ErrorKind::NoSuchFunction {
                Error::new(
                    ErrorKind::NoSuchFunction,
                    format!(
                        "{} is not a command component: it exports no wasi:cli/run ({e})",
                        job.origin()
                    ),
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
        })
    }
}
