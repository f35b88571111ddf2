//! `wasmpool map`: one call per line of a JSON-lines input, one JSON line
//! per result, streamed; or with `--command`, one run of a program per
//! line ([`command`]).

mod command;

use std::future::IntoFuture as _;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;

use futures_util::StreamExt as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use wasmpool::{DynArgs, ErrorKind, Job, Pool, Stdio};

use crate::exit::{self, Failure};
use crate::options::{CallOptions, load};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Each input line is the JSON of one call's arguments: for a function of one
parameter, its value (`30`, `{\"x\": 1}`); of several, an array in order or
an object by parameter name. Blank lines are skipped.

Each output line is the JSON of one result, in input order (or in order of
completion with --unordered). A line that fails gives an error line instead,
and the rest go on:
  {\"error\": {\"line\": 7, \"kind\": \"trap\", \"message\": \"...\", \"trap_code\": \"...\"}}
The exit code is then 8. The guest's stdout goes to stderr, so that it
cannot break the output. A progress bar shows on stderr when it is a
terminal.

With --command, the component is a program (a command component, with a
`main`, as `wasmpool run` runs it with no function), run once per line.
Each input line is one run, every field optional:
  {\"args\": [\"-n\", \"3\"], \"stdin\": \"3\\n1\\n2\\n\", \"env\": {\"K\": \"v\"}, \"id\": 7}
`stdin_base64` gives binary stdin, `arg0` the program's argv[0] (default:
the file name), `env` variables over those of --env, and `id`, anything,
comes back on the run's output line. A bare array is the arguments alone:
  [\"-n\", \"3\"]
Each output line is the run's exit status, stdout, stderr, and what it
cost (wall and CPU time, peak memory, named as `run --json --report`
names them):
  {\"line\": 1, \"id\": 7, \"args\": [\"-n\", \"3\"], \"status\": 0,
   \"stdout\": \"1\\n2\\n3\\n\", \"stderr\": \"\",
   \"report\": {\"wall_ns\": 812345, \"cpu_ns\": 790112, ...}}
with `stdout_base64` (`stderr_base64`) for output that is not UTF-8. A
nonzero status is a result, not a failure: it does not change the exit
code. A run that traps, times out or passes a limit, and a line that is
not a run, give an `error` object in place of the status (with `line`,
`id` and `args` beside it as far as they are known, and the stdout and
stderr the program wrote before it failed), and the exit code is then 8.
The command line's sandbox and limits (--env, --dir, --ro-dir, --timeout,
--max-memory, --max-output, --fuel) apply to every run.

Examples:
  wasmpool map fib.wasm fib --input numbers.jsonl > results.jsonl
  seq 1 30 | wasmpool map fib.wasm fib --unordered --workers 4
  jq -c '.points' data.jsonl | wasmpool map shapes.wasm sum-points | jq -s add
  wasmpool map --command --timeout 2s --max-memory 256MiB sol.wasm < runs.jsonl
  jq -c '{id: .name, stdin: .input}' tests.json | wasmpool map --command sol.wasm \\
      | jq -r '[.id, .status, .stdout] | @tsv'")]
pub struct Args {
    /// The component.
    component: PathBuf,
    /// The function to call for each line. Leave it out with `--command`.
    func: Option<String>,
    /// Run the component as a program once per line (a command
    /// component's `main`), rather than call a function: each line is a
    /// run's arguments, stdin and environment; each output line its exit
    /// status, stdout, stderr and cost.
    #[arg(long)]
    command: bool,
    /// The input: a JSON-lines file, or `-` for stdin (the default).
    #[arg(long, short, default_value = "-", value_name = "FILE")]
    input: PathBuf,
    /// The output: a file, or `-` for stdout (the default).
    #[arg(long, short, default_value = "-", value_name = "FILE")]
    output: PathBuf,
    /// Write results as they finish rather than in input order.
    #[arg(long)]
    unordered: bool,
    /// How many calls may be in flight (default: 4 per worker).
    #[arg(long, value_name = "N")]
    in_flight: Option<usize>,
    #[command(flatten)]
    options: CallOptions,
}

/// What each line is for.
enum Each {
    /// The arguments of a call of this function.
    Call(String),
    /// A run of a command component, with the command line's `--env` as
    /// here.
    Run(Vec<(String, String)>),
}

pub async fn main(args: Args) -> Result<u8, Failure> {
    let each = match (&args.func, args.command) {
        (Some(func), false) => Each::Call(func.clone()),
        (None, true) => Each::Run(args.options.env_vars()),
        (Some(func), true) => {
            return Err(Failure::usage(format!(
                "--command runs a program's `main`, which takes no function: leave out {func:?} \
                 (a run's arguments go on its input line, as \"args\")"
            )));
        }
        (None, false) => {
            return Err(Failure::usage(format!(
                "give the function to call for each line, or --command to run {} as a program \
                 once per line",
                args.component.display()
            )));
        }
    };
    let job = load(&args.component)?;
    args.options.check()?;
    if let Each::Run(_) = each {
        command::check(&job, &args.component)?;
    }
    let (input, size): (Box<dyn AsyncRead + Unpin + Send>, Option<u64>) =
        if args.input.as_os_str() == "-" {
            (Box::new(tokio::io::stdin()), None)
        } else {
            let f = tokio::fs::File::open(&args.input)
                .await
                .map_err(|e| Failure::io(args.input.display(), e))?;
            let size = f.metadata().await.ok().map(|m| m.len());
            (Box::new(f), size)
        };
    let mut output: Box<dyn std::io::Write + Send> = if args.output.as_os_str() == "-" {
        Box::new(std::io::BufWriter::with_capacity(
            1 << 16,
            std::io::stdout(),
        ))
    } else {
        let f = std::fs::File::create(&args.output)
            .map_err(|e| Failure::io(args.output.display(), e))?;
        Box::new(std::io::BufWriter::with_capacity(1 << 16, f))
    };
    let pool = args.options.pool()?;
    // Compile before the first line, so that a bad component fails once,
    // not once per line.
    pool.prepare(&job).await?;
    let in_flight = args
        .in_flight
        .unwrap_or(pool.statistics().max_workers * 4)
        .max(1);
    let bar = progress(size);
    // Input lines, read lazily: only what the calls in flight need is ever
    // held. A read error ends the input, after it is reported.
    let lines = BufReader::with_capacity(1 << 16, input).lines();
    let source = futures_util::stream::unfold(Some(lines), |lines| async move {
        let mut lines = lines?;
        match lines.next_line().await {
            Ok(Some(line)) => Some((Ok(line), Some(lines))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    });
    let calls = source
        .enumerate()
        .filter(|(_, line)| {
            let blank = matches!(line, Ok(l) if l.trim().is_empty());
            std::future::ready(!blank)
        })
        .map(|(i, line)| one(&pool, &job, &each, &args.options, i as u64 + 1, line));
    let mut failed = 0u64;
    let mut done = 0u64;
    let mut interrupted = std::pin::pin!(crate::interrupted());
    let result: Result<(), Failure> = async {
        macro_rules! drain {
            ($stream:expr) => {{
                let mut stream = std::pin::pin!($stream);
                loop {
                    let next = tokio::select! {
                        next = stream.next() => next,
                        () = &mut interrupted => return Err(crate::interrupt()),
                    };
                    let Some(outcome) = next else { break };
                    let (text, bad, bytes) = outcome?;
                    done += 1;
                    failed += u64::from(bad);
                    bar.inc(bytes);
                    bar.set_message(format!("{done} done, {failed} failed"));
                    if let Err(e) = writeln!(output, "{text}") {
                        return Err(write_failure(e));
                    }
                }
            }};
        }
        if args.unordered {
            drain!(calls.buffer_unordered(in_flight));
        } else {
            drain!(calls.buffered(in_flight));
        }
        output.flush().map_err(write_failure)
    }
    .await;
    bar.finish_and_clear();
    pool.shutdown().await;
    match result {
        Err(f) if f.code == 0 => Ok(0),
        Err(f) => Err(f),
        Ok(()) if failed > 0 => {
            eprintln!("{failed} of {done} lines failed");
            Ok(exit::SOME_FAILED)
        }
        Ok(()) => Ok(0),
    }
}

/// A closed stdout (`| head`) ends the command quietly.
pub(crate) fn write_failure(e: std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Failure {
            code: 0,
            text: String::new(),
        }
    } else {
        Failure::io("writing the output", e)
    }
}

/// Calls the function or runs the program for input line `number`: its
/// output line, whether it failed, and how many input bytes it covered.
///
/// # Errors
///
/// What no line can fix, which ends the map: an unreadable input, no such
/// function, a component the pool cannot run.
///
/// # Cancel safety
///
/// Dropping the future cancels the call, as the pool's cancel mode says.
async fn one(
    pool: &Pool,
    job: &Job,
    each: &Each,
    options: &CallOptions,
    number: u64,
    line: std::io::Result<String>,
) -> Result<(String, bool, u64), Failure> {
    let line = line.map_err(|e| Failure::io("reading the input", e))?;
    let bytes = line.len() as u64 + 1;
    let (text, failed) = match each {
        Each::Call(func) => call(pool, job, func, options, number, &line).await?,
        Each::Run(env) => command::one(pool, job, options, env, number, &line).await?,
    };
    Ok((text, failed, bytes))
}

/// Calls `func` with the arguments of input line `number` (its text
/// `line`): its output line and whether it failed.
///
/// # Errors
///
/// As [`one`].
///
/// # Cancel safety
///
/// As [`one`].
async fn call(
    pool: &Pool,
    job: &Job,
    func: &str,
    options: &CallOptions,
    number: u64,
    line: &str,
) -> Result<(String, bool), Failure> {
    let args = match serde_json::from_str::<serde_json::Value>(line) {
        Ok(v) => DynArgs::json(v),
        Err(e) => {
            let err = serde_json::json!({"error": {
                "line": number,
                "kind": "invalid-input",
                "message": format!("line {number} is not JSON: {e}"),
            }});
            return Ok((err.to_string(), true));
        }
    };
    let call = options
        .apply(pool.call_dynamic(job, func, args))
        .stdout(Stdio::Capture);
    Ok(match call.report().into_future().await {
        Ok(out) => {
            if let Some(text) = out.stdout.filter(|t| !t.is_empty()) {
                let _ = std::io::stderr().write_all(&text);
            }
            (out.value.to_json().to_string(), false)
        }
        // What no line can fix ends the map.
        Err(e) if matches!(e.kind(), ErrorKind::NoSuchFunction | ErrorKind::Unsupported) => {
            return Err(e.into());
        }
        Err(e) => (exit::to_json(&e, number).to_string(), true),
    })
}

/// A progress bar on stderr when it is a terminal: bytes of the input
/// when its size is known, else a count.
fn progress(size: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match size {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template(
                "{bar:30} {bytes}/{total_bytes} {msg} ({per_sec}, {eta} left)",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.set_draw_target(ProgressDrawTarget::stderr());
    bar
}
