//! `wasmpool run`: one call, its result printed as WAVE or JSON, and on
//! request what it cost.

use std::path::PathBuf;

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
  wasmpool run --dir ./data::/data --env MODE=fast job.wasm process '\"/data/in.txt\"'")]
pub struct Args {
    /// The component.
    component: PathBuf,
    /// The function: `fib`, `ns:pkg/iface#fib`, or a whole call such as
    /// `area(circle(2.0))`.
    func: String,
    /// The arguments, one per parameter: WAVE, or JSON with `--json`.
    args: Vec<String>,
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
    let (func, dyn_args) = call_args(&args.func, &args.args, args.json)?;
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
