//! `wasmpool`: inspect a WebAssembly component, call its functions with
//! WAVE or JSON arguments, map a JSON-lines file through one, and
//! benchmark it, in a pool of sandboxed worker processes.
//!
//! Run `wasmpool --help` for the commands, their options and the exit
//! codes.

mod bench;
mod exit;
mod inspect;
mod map;
mod options;
mod report;
mod run;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use exit::Failure;

const AFTER_HELP: &str = "\
Examples:
  wasmpool inspect fib.wasm
  wasmpool run fib.wasm fib 30
  wasmpool run shapes.wasm 'area(circle(2.0))'
  wasmpool run --json shapes.wasm sum-points '[{\"x\":1,\"y\":2}]'
  wasmpool run --json --report fib.wasm fib 30
  wasmpool run --timeout 2s --max-memory 64MiB --dir ./data::/data --env K=V job.wasm f
  wasmpool map fib.wasm fib --input items.jsonl > results.jsonl
  wasmpool map --command --timeout 2s sol.wasm --input runs.jsonl
  wasmpool bench fib.wasm fib 20 --calls 10000
  wasmpool serve --nats nats://127.0.0.1:4222 --workers 4

Exit codes:
  0  success
  1  any other error (a worker that could not start, an internal error)
  2  usage: a bad command line, an argument that does not fit the
     function, or no such function
  3  invalid component: not a component, or it imports what nothing
     provides, or it uses types that cannot cross a process boundary
  4  the guest trapped or its worker crashed (a program run with no
     function exits with its own status instead, and 134 for a trap, as
     under `wasmtime run`)
  5  timeout
  6  a resource limit: memory, fuel or stack
  7  I/O: a file that cannot be read or written
  8  map: one or more lines failed (each has an error line); a program's
     nonzero exit status is a result, not a failure
  130  interrupted (Ctrl-C); the running calls were cancelled";

/// Run WebAssembly component functions in a pool of sandboxed worker
/// processes.
#[derive(Parser, Debug)]
#[command(name = "wasmpool", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List a component's exported and imported functions as WIT.
    Inspect(inspect::Args),
    /// Call one exported function and print its result.
    Run(run::Args),
    /// Call a function once per line of a JSON-lines file, or run a
    /// program once per line (`--command`); print one JSON line per
    /// result.
    Map(map::Args),
    /// Call a function many times and report latency and throughput.
    Bench(bench::Args),
    /// Run calls from a cluster: a worker node over NATS JetStream.
    Serve(serve::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(exit::USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // Logs, when asked for: `WASMPOOL_LOG=info`, `WASMPOOL_LOG=wasmpool=debug`.
    if std::env::var_os("WASMPOOL_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("WASMPOOL_LOG"))
            .with_writer(std::io::stderr)
            .init();
    }
    // A node's work is in its worker processes; one thread for its own
    // messages saves a hand-off between threads on every call.
    let mut builder = if matches!(cli.command, Command::Serve(_)) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::OTHER);
        }
    };
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Inspect(args) => inspect::main(args),
            Command::Run(args) => run::main(args).await,
            Command::Map(args) => map::main(args).await,
            Command::Bench(args) => bench::main(args).await,
            Command::Serve(args) => serve::main(args).await,
        }
    });
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            failure.print();
            ExitCode::from(failure.code)
        }
    }
}

/// Waits for Ctrl-C; never returns if the signal cannot be watched.
async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The failure for Ctrl-C.
fn interrupt() -> Failure {
    Failure::new(
        exit::INTERRUPTED,
        "interrupted; the running calls were cancelled",
    )
}
