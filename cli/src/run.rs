//! `wasmpool run`: one call, its result printed as WAVE or JSON, and on
//! request what it cost; or, with no function, a command component's
//! `main`, the way `wasmtime run` runs it.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;

use wasmpool::{Job, Stdio};

use crate::exit::Failure;
use crate::options::{CallOptions, call_args, load};
use crate::report;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Arguments are WAVE, the value text of `wasmtime run --invoke`: 30, \"text\",
'c', [1, 2], (1, \"a\"), {x: 1, y: 2}, circle(2.0), dark-blue, {read, write},
some(7), none, ok(1), err(\"no\"). Quote them for the shell.

Examples:
  wasmpool run fib.wasm fib 30
  wasmpool run shapes.wasm 'area(circle(2.0))'
  wasmpool run hello.wasm hello '\"world\"'
  wasmpool run --json shapes.wasm sum-points '[{\"x\":1,\"y\":2}]'
  wasmpool run --report fib.wasm fib 30
  wasmpool run --json --report fib.wasm fib 30 | jq .report.cpu_ns
  wasmpool run --timeout 2s --max-memory 64MiB --fuel 1000000 job.wasm f 1
  wasmpool run --dir ./data::/data --env MODE=fast job.wasm process '\"/data/in.txt\"'

A command component (a program with a `main`, such as a Rust binary built
for wasm32-wasip2, or a WASI 0.1 module) runs with no function; its
arguments follow `--`. Its stdin and stdout are the command line's,
streamed as they come, its stderr too, and its exit status is the command
line's (a trap is 134, as under `wasmtime run`):
  wasmpool run prog.wasm -- input.txt -n 3
  sort-numbers < numbers.txt | wasmpool run --timeout 2s sort.wasm")]
pub struct Args {
    /// The component.
    component: PathBuf,
    /// The function: `fib`, `ns:pkg/iface#fib`, or a whole call such as
    /// `area(circle(2.0))`. Leave it out to run a command component's
    /// `main`.
    func: Option<String>,
    /// The arguments, one per parameter: WAVE, or JSON with `--json`.
    args: Vec<String>,
    /// A command component's arguments (after `argv[0]`, the file name).
    #[arg(last = true, value_name = "PROGRAM_ARGS")]
    program_args: Vec<String>,
    /// Arguments and result are JSON instead of WAVE.
    #[arg(long)]
    json: bool,
    /// Also print what the call cost: wall and CPU time, peak memory,
    /// bytes in and out, fuel. A line on stderr; with `--json`, one object
    /// on stdout instead: {"value": ..., "report": {...}}.
    #[arg(long)]
    report: bool,
    #[command(flatten)]
    options: CallOptions,
}

pub async fn main(args: Args) -> Result<u8, Failure> {
    let job = load(&args.component)?;
    args.options.check()?;
    let Some(func) = &args.func else {
        return command(&args, &job).await;
    };
    if !args.program_args.is_empty() {
        return Err(Failure::usage(
            "arguments after `--` are a command component's; a function takes its arguments before it",
        ));
    }
    let (func, dyn_args) = call_args(func, &args.args, args.json)?;
    let pool = args.options.pool()?;
    let call = args.options.apply(pool.call_dynamic(&job, &func, dyn_args));
    let result = tokio::select! {
        r = call.report() => r,
        () = crate::interrupted() => {
            pool.shutdown().await;
            return Err(crate::interrupt());
        }
    };
    pool.shutdown().await;
    let out = result?;
    let value = &out.value;
    match (args.json, args.report) {
        (true, true) => {
            let both =
                serde_json::json!({"value": value.to_json(), "report": report::to_json(&out)});
            println!("{both}");
        }
        (true, false) => println!("{}", value.to_json()),
        (false, report) => {
            if !value.is_unit() {
                println!("{value}");
            }
            if report {
                eprintln!("{}", report::to_text(&out));
            }
        }
    }
    Ok(0)
}

/// Runs a command component's `main` with the command line's stdin,
/// stdout and stderr, and returns its exit status.
///
/// stdin and stdout are streamed, chunk by chunk as they come, so that a
/// program can be talked to from a terminal or a pipe, and a large input
/// is never held whole. A trap exits as under `wasmtime run`: 134
/// (128 + SIGABRT) on Unix.
async fn command(args: &Args, job: &Job) -> Result<u8, Failure> {
    if args.json {
        return Err(Failure::usage(
            "--json is for a function's arguments and result; a command component has neither",
        ));
    }
    let pool = args.options.pool()?;
    let run = args
        .options
        .apply_command(
            pool.command(job)
                .args(args.program_args.iter().cloned())
                .stderr(Stdio::Inherit),
        )
        .spawn();
    // The command line's stdin, read on a thread of its own: a read of a
    // terminal that never comes must not hold up the exit.
    let (chunks, mut input) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut chunk = vec![0; 64 << 10];
            let read = stdin.read(&mut chunk).map(|n| {
                chunk.truncate(n);
                chunk
            });
            let end = !matches!(&read, Ok(c) if !c.is_empty());
            if chunks.blocking_send(read).is_err() || end {
                break;
            }
        }
    });
    let feed = async {
        // A read error ends the input, as its end does.
        while let Some(Ok(chunk)) = input.recv().await {
            // Empty is the end; a program that has ended takes no more.
            if chunk.is_empty() || run.write_stdin(chunk).await.is_err() {
                break;
            }
        }
        run.close_stdin();
        // The program may still be running: the drain ends this.
        std::future::pending::<Result<(), Failure>>().await
    };
    let drain = async {
        let mut stdout = std::io::stdout();
        while let Some(chunk) = run.read_stdout().await? {
            stdout
                .write_all(&chunk)
                .and_then(|()| stdout.flush())
                .map_err(crate::map::write_failure)?;
        }
        Ok::<(), Failure>(())
    };
    // The program's stdout ends when it does; its stdin may never.
    let streamed = async {
        tokio::select! {
            r = drain => r,
            r = feed => r,
        }
    };
    let streamed = tokio::select! {
        r = streamed => r,
        () = crate::interrupted() => Err(crate::interrupt()),
    };
    let result = match streamed {
        Ok(()) => run.await.map_err(program_failure),
        Err(e) => {
            // Nobody takes its output any more: stop the program before
            // the pool's shutdown, which waits for the calls in flight
            // (a closed stdout, `| head`, ends the command quietly).
            run.kill();
            drop(run);
            Err(e)
        }
    };
    pool.shutdown().await;
    let out = result?;
    if args.report {
        eprintln!(
            "{}",
            report::program_usage_text(&out.usage, out.fuel_consumed)
        );
    }
    // An exit status is a byte, as the shell sees it.
    Ok(out.status as u8)
}

/// A program's failure: a trap exits as `wasmtime run` exits for one, 128
/// + SIGABRT on Unix (3 elsewhere); the rest as for any call.
fn program_failure(e: wasmpool::Error) -> Failure {
    let trap = e.kind() == wasmpool::ErrorKind::Trap;
    let mut failure = Failure::from(e);
    if trap {
        failure.code = if cfg!(unix) { 128 + 6 } else { 3 };
    }
    failure
}
