//! The built `wasmpool` binary on the example guests: its output, its
//! messages and its exit codes.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn wasmpool(args: &[&str]) -> Output {
    run_with_input(args, None)
}

fn run_with_input(args: &[&str], input: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmpool"))
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Written from a thread, so that an input larger than a pipe holds
    // cannot wait on an output that waits on it.
    let writer = input.map(|input| {
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            // A command that stops reading early has its exit code to say
            // why.
            let _ = stdin.write_all(&input);
        })
    });
    let out = child.wait_with_output().unwrap();
    if let Some(writer) = writer {
        writer.join().unwrap();
    }
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Asserts the exit code, showing the output when it is not the one.
fn code(o: &Output, want: i32) {
    assert_eq!(
        o.status.code(),
        Some(want),
        "stdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wasmpool-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fib(n: u64) -> u64 {
    let (mut a, mut b) = (0u64, 1u64);
    for _ in 0..n {
        (a, b) = (b, a + b);
    }
    a
}

mod cluster;
mod map_command;

use wasmpool_guests::{CMD, CONFIG, FAULTS, FIB, SANDBOX, TYPES};

#[test]
fn inspect_lists_exports_types_and_imports() {
    let o = wasmpool(&["inspect", TYPES]);
    code(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("  echo-u8: func(v: u8) -> u8\n"), "{out}");
    assert!(
        out.contains("  wasmpool:jobs/types@0.1.0#area: func(s: shape) -> f64\n"),
        "{out}"
    );
    assert!(out.contains("  variant shape { circle(f64), rectangle(tuple<f64, f64>), polygon(list<point>), empty }\n"), "{out}");
    assert!(out.contains("(provided: WASI)"), "{out}");

    let o = wasmpool(&["inspect", "--json", FIB]);
    code(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = v["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fib", "wasmpool:jobs/math@0.1.0#fib"]);
    assert_eq!(v["exports"][0]["signature"], "func(n: u64) -> u64");

    let o = wasmpool(&["inspect", "--wit", FIB]);
    code(&o, 0);
    assert!(
        stdout(&o).contains("export fib: func(n: u64) -> u64;"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn run_reports_what_the_call_cost() {
    let o = wasmpool(&["run", "--json", "--report", FIB, "fib", "25"]);
    code(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["value"], serde_json::json!(fib(25)));
    let r = &v["report"];
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
    assert!(n("wall_ns") > 0, "{r}");
    assert!(n("cpu_ns") > 0, "{r}");
    assert_eq!(n("cpu_ns"), n("cpu_user_ns") + n("cpu_system_ns"), "{r}");
    assert!(n("peak_memory_bytes") >= 64 << 10, "{r}");
    assert_eq!((n("bytes_in"), n("bytes_out")), (2, 5), "{r}");
    assert!(r["fuel"].is_null(), "not metered: {r}");

    let o = wasmpool(&[
        "run", "--json", "--report", "--fuel", "10000000", FIB, "fib", "10",
    ]);
    code(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["report"]["fuel"].as_u64().unwrap() > 0, "{v}");

    // Without `--json`, the value alone on stdout and a line on stderr.
    let o = wasmpool(&["run", "--report", FIB, "fib", "20"]);
    code(&o, 0);
    assert_eq!(stdout(&o), "6765\n");
    let err = stderr(&o);
    assert!(err.starts_with("wall "), "{err}");
    assert!(err.contains(", cpu "), "{err}");
    assert!(err.contains("peak memory "), "{err}");
}

#[test]
fn run_gives_the_guest_its_config() {
    let o = wasmpool(&[
        "run",
        "--config",
        "region=eu",
        "--config",
        "a=b=c",
        CONFIG,
        "get-all",
    ]);
    code(&o, 0);
    assert_eq!(stdout(&o), "[(\"a\", \"b=c\"), (\"region\", \"eu\")]\n");
    let o = wasmpool(&["run", CONFIG, "get", "\"region\""]);
    code(&o, 0);
    assert_eq!(stdout(&o), "none\n");
    let o = wasmpool(&["run", "--config", "region", CONFIG, "get", "\"region\""]);
    code(&o, 2);
    assert!(stderr(&o).contains("expected K=V"), "{}", stderr(&o));
}

#[test]
fn run_prints_wave_and_json_results() {
    let o = wasmpool(&["run", FIB, "fib", "20"]);
    code(&o, 0);
    assert_eq!(stdout(&o), "6765\n");

    // The `wasmtime run --invoke` style, and an interface's function.
    let o = wasmpool(&["run", TYPES, "area(rectangle((2.0, 3.5)))"]);
    code(&o, 0);
    assert_eq!(stdout(&o), "7\n");
    let o = wasmpool(&["run", FIB, "wasmpool:jobs/math#fib(10)"]);
    code(&o, 0);
    assert_eq!(stdout(&o), "55\n");

    let o = wasmpool(&["run", TYPES, "echo-shape", "polygon([{x: 1, y: 2}])"]);
    code(&o, 0);
    assert_eq!(stdout(&o), "polygon([{x: 1, y: 2}])\n");

    let o = wasmpool(&[
        "run",
        "--json",
        TYPES,
        "echo-points",
        r#"[{"x":1,"y":2},null]"#,
    ]);
    code(&o, 0);
    assert_eq!(stdout(&o), "[{\"x\":1,\"y\":2},null]\n");

    // Several parameters, each its own word.
    let o = wasmpool(&["run", TYPES, "mix", "1", "\"ab\"", "[3, 4]", "false"]);
    code(&o, 0);
    assert_eq!(stdout(&o), "(2, \"AB\", [4, 3], true)\n");

    // A function without a result prints nothing.
    let o = wasmpool(&["run", TYPES, "nothing"]);
    code(&o, 0);
    assert_eq!(stdout(&o), "");
}

#[test]
fn run_gives_the_guest_its_directories_and_environment() {
    let dir = temp_dir("dirs");
    std::fs::write(dir.join("in.txt"), "from the host").unwrap();
    let spec = format!("{}::/data", dir.display());
    let o = wasmpool(&[
        "run",
        "--ro-dir",
        &spec,
        SANDBOX,
        "read-file",
        "\"/data/in.txt\"",
    ]);
    code(&o, 0);
    assert_eq!(stdout(&o), "ok(\"from the host\")\n");
    // Read-only means read-only.
    let o = wasmpool(&[
        "run",
        "--ro-dir",
        &spec,
        SANDBOX,
        "write-file",
        "\"/data/out.txt\"",
        "\"x\"",
    ]);
    code(&o, 0);
    assert!(stdout(&o).starts_with("err("), "{}", stdout(&o));
    let o = wasmpool(&[
        "run",
        "--dir",
        &spec,
        SANDBOX,
        "write-file",
        "\"/data/out.txt\"",
        "\"x\"",
    ]);
    code(&o, 0);
    assert_eq!(std::fs::read_to_string(dir.join("out.txt")).unwrap(), "x");

    let o = wasmpool(&["run", "--env", "MODE=fast", SANDBOX, "env-var", "\"MODE\""]);
    code(&o, 0);
    assert_eq!(stdout(&o), "some(\"fast\")\n");
    // Nothing else of the host's environment.
    let o = wasmpool(&["run", SANDBOX, "env-var", "\"PATH\""]);
    code(&o, 0);
    assert_eq!(stdout(&o), "none\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_trap_exits_4_with_its_panic_and_backtrace() {
    let o = wasmpool(&["run", FAULTS, "panic", "\"it broke\""]);
    code(&o, 4);
    let err = stderr(&o);
    assert!(err.contains("error: trap: "), "{err}");
    assert!(err.contains("trap code: "), "{err}");
    assert!(err.contains("guest panic: it broke"), "{err}");
    assert!(err.contains("wasm backtrace:"), "{err}");
    assert_eq!(stdout(&o), "");

    let o = wasmpool(&["run", FAULTS, "divide(1, 0)"]);
    code(&o, 4);
    assert!(stderr(&o).contains("trap code: "), "{}", stderr(&o));
}

#[test]
fn run_runs_a_command_component_the_wasmtime_run_way() {
    let cmd = CMD;
    // Arguments after `--`, argv[0] the file name; stdout passed through.
    let o = wasmpool(&["run", cmd, "--", "args", "-n", "a b"]);
    code(&o, 0);
    assert_eq!(stdout(&o), "cmd.wasm\nargs\n-n\na b\n");
    // stdin passed through.
    let o = run_with_input(&["run", cmd, "--", "sort"], Some(b"10\n-1\n3\n"));
    code(&o, 0);
    assert_eq!(stdout(&o), "-1\n3\n10\n");
    // The program's exit status is the command line's.
    let o = wasmpool(&["run", cmd, "--", "exit", "3"]);
    code(&o, 1);
    assert_eq!(stdout(&o), "bye\n");
    let o = wasmpool(&["run", cmd, "--", "fail"]);
    code(&o, 1);
    assert!(stderr(&o).contains("failing on purpose"), "{}", stderr(&o));
    // The sandbox flags apply; a trap exits 134, as under `wasmtime run`.
    let o = wasmpool(&["run", "--env", "MODE=judge", cmd, "--", "env", "MODE"]);
    code(&o, 0);
    assert_eq!(stdout(&o), "judge\n");
    let o = wasmpool(&["run", cmd, "--", "panic"]);
    code(&o, 134);
    assert_eq!(stdout(&o), "before\n");
    assert!(
        stderr(&o).contains("guest panic: the command panicked"),
        "{}",
        stderr(&o)
    );
    // A component with no `main`, and arguments after `--` for a function.
    let o = wasmpool(&["run", FIB]);
    code(&o, 2);
    assert!(
        stderr(&o).contains("is not a command component"),
        "{}",
        stderr(&o)
    );
    let o = wasmpool(&["run", FIB, "fib", "--", "3"]);
    code(&o, 2);
}

#[test]
fn a_program_is_talked_to_through_the_command_line_line_by_line() {
    use std::io::{BufRead as _, BufReader, Write as _};
    // stdin and stdout are streamed: each answer comes back while stdin
    // is still open.
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmpool"))
        .args(["run", CMD, "--", "lines"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    for word in ["one", "two"] {
        writeln!(stdin, "{word}").unwrap();
        stdin.flush().unwrap();
        let mut answer = String::new();
        stdout.read_line(&mut answer).unwrap();
        assert_eq!(answer, format!("{}\n", word.to_uppercase()));
    }
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn a_program_whose_stdout_is_closed_ends_quietly() {
    // `| head -c 1`: nobody reads the rest of the output; the program is
    // stopped and the command line exits quietly, as `map` does.
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "head -c 3000000 /dev/zero | {} run {CMD} -- cat | head -c 1 | wc -c",
            env!("CARGO_BIN_EXE_wasmpool")
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "1");
}

#[test]
fn a_program_is_bounded_by_max_output_and_reports_its_fuel() {
    // "cmd.wasm\n" is past 4 bytes: the write fails, the program panics on
    // it, and the run ends as the output limit.
    let o = wasmpool(&["run", "--max-output", "4", CMD, "--", "args"]);
    code(&o, 6);
    assert!(stderr(&o).contains("limit: output"), "{}", stderr(&o));
    let o = wasmpool(&["run", "--report", "--fuel", "1000000000", CMD]);
    code(&o, 0);
    assert_eq!(stdout(&o), "hello\n");
    assert!(stderr(&o).contains(", fuel "), "{}", stderr(&o));
    assert!(!stderr(&o).contains("bytes in"), "{}", stderr(&o));
}

#[test]
fn a_timeout_exits_5() {
    let o = wasmpool(&["run", "--timeout", "300ms", FAULTS, "spin-forever"]);
    code(&o, 5);
    assert!(stderr(&o).contains("error: timeout: "), "{}", stderr(&o));
}

#[test]
fn a_resource_limit_exits_6() {
    let o = wasmpool(&["run", "--max-memory", "2MiB", FAULTS, "alloc", "67108864"]);
    code(&o, 6);
    assert!(stderr(&o).contains("limit: memory"), "{}", stderr(&o));
    let o = wasmpool(&["run", "--fuel", "10000", FIB, "fib", "40"]);
    code(&o, 6);
    assert!(stderr(&o).contains("limit: fuel"), "{}", stderr(&o));
}

#[test]
fn bad_arguments_are_usage_errors() {
    let o = wasmpool(&["run", FIB, "fib", "\"thirty\""]);
    code(&o, 2);
    let err = stderr(&o);
    assert!(err.contains("argument-mismatch"), "{err}");
    assert!(err.contains("args[0] (n: u64)"), "{err}");
    assert!(err.contains("\"thirty\""), "{err}");

    let o = wasmpool(&["run", FIB, "fib(1, 2)"]);
    code(&o, 2);
    assert!(stderr(&o).contains("fib(n: u64)"), "{}", stderr(&o));

    let o = wasmpool(&[
        "run",
        "--json",
        TYPES,
        "echo-point",
        r#"{"x": 1, "y": "no"}"#,
    ]);
    code(&o, 2);
    assert!(
        stderr(&o).contains("args[0].y: expected s32"),
        "{}",
        stderr(&o)
    );

    let o = wasmpool(&["run", FIB, "fob", "1"]);
    code(&o, 2);
    assert!(stderr(&o).contains("no-such-function"), "{}", stderr(&o));
    assert!(stderr(&o).contains("it exports: fib"), "{}", stderr(&o));

    let o = wasmpool(&["run", "--timeout", "soon", FIB, "fib", "1"]);
    code(&o, 2);
    assert!(stderr(&o).contains("not a duration"), "{}", stderr(&o));

    let o = wasmpool(&["run"]);
    code(&o, 2);
    assert!(stderr(&o).contains("Usage"), "{}", stderr(&o));
}

#[test]
fn missing_and_invalid_components() {
    let o = wasmpool(&["run", "/no/such/job.wasm", "fib", "1"]);
    code(&o, 7);
    assert!(stderr(&o).contains("/no/such/job.wasm"), "{}", stderr(&o));
    assert!(stderr(&o).contains("No such file"), "{}", stderr(&o));

    let dir = temp_dir("invalid");
    let bad = dir.join("bad.wasm");
    std::fs::write(&bad, "not wasm at all").unwrap();
    let o = wasmpool(&["inspect", bad.to_str().unwrap()]);
    code(&o, 3);
    assert!(stderr(&o).contains("invalid-component"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_has_examples_and_exit_codes() {
    let o = wasmpool(&["--help"]);
    code(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("Examples:"), "{out}");
    assert!(out.contains("Exit codes:"), "{out}");
    for sub in ["run", "map", "bench", "inspect"] {
        let o = wasmpool(&[sub, "--help"]);
        code(&o, 0);
        assert!(stdout(&o).contains("Examples:"), "{sub}: {}", stdout(&o));
    }
}

#[test]
fn map_streams_ten_thousand_lines_in_order() {
    let dir = temp_dir("map10k");
    let input = dir.join("in.jsonl");
    let mut text = String::new();
    for i in 0..10_000u64 {
        text.push_str(&format!("{}\n", i % 30));
    }
    std::fs::write(&input, text).unwrap();
    let output = dir.join("out.jsonl");
    let o = wasmpool(&[
        "map",
        FIB,
        "fib",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    code(&o, 0);
    let out = std::fs::read_to_string(&output).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 10_000);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(*line, fib(i as u64 % 30).to_string(), "line {}", i + 1);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn map_gives_one_error_line_per_bad_line_and_goes_on() {
    // Arguments by name, a trap, a line that is not JSON, one that does
    // not fit, and a blank line, which is skipped.
    let input = b"{\"a\": 7, \"b\": 2}\n[1, 0]\nnot json\n\n{\"a\": \"x\", \"b\": 1}\n[9, 3]\n";
    let o = run_with_input(&["map", FAULTS, "divide"], Some(input));
    code(&o, 8);
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "{}", stdout(&o));
    assert_eq!(lines[0], serde_json::json!(3));
    assert_eq!(lines[1]["error"]["line"], 2);
    assert_eq!(lines[1]["error"]["kind"], "trap");
    assert!(lines[1]["error"]["trap_code"].is_string(), "{}", lines[1]);
    assert_eq!(lines[2]["error"]["line"], 3);
    assert_eq!(lines[2]["error"]["kind"], "invalid-input");
    assert_eq!(lines[3]["error"]["line"], 5);
    assert_eq!(lines[3]["error"]["kind"], "argument-mismatch");
    assert!(
        lines[3]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("args[0]"),
        "{}",
        lines[3]
    );
    assert_eq!(lines[4], serde_json::json!(3));
    assert!(stderr(&o).contains("3 of 5 lines failed"), "{}", stderr(&o));
}

#[test]
fn map_unordered_gives_every_result_once() {
    let input: String = (1..=200u64).map(|i| format!("{}\n", i % 25)).collect();
    let o = run_with_input(
        &["map", "--unordered", "--workers", "2", FIB, "fib"],
        Some(input.as_bytes()),
    );
    code(&o, 0);
    let mut got: Vec<u64> = stdout(&o).lines().map(|l| l.parse().unwrap()).collect();
    let mut want: Vec<u64> = (1..=200u64).map(|i| fib(i % 25)).collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
}

#[test]
fn map_stops_at_once_for_a_function_that_is_not_there() {
    let o = run_with_input(&["map", FIB, "nope"], Some(b"1\n2\n"));
    code(&o, 2);
    assert_eq!(stdout(&o), "");
    assert!(stderr(&o).contains("no-such-function"), "{}", stderr(&o));
}

#[test]
fn bench_reports_percentiles_and_throughput() {
    let o = wasmpool(&[
        "bench",
        "--json",
        "--calls",
        "300",
        "--workers",
        "2",
        FIB,
        "fib",
        "15",
    ]);
    code(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["calls"], 300);
    assert_eq!(v["workers"], 2);
    let lat = &v["latency_us"];
    let (p50, p99, max) = (
        lat["p50"].as_f64().unwrap(),
        lat["p99"].as_f64().unwrap(),
        lat["max"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "{v}");
    assert!(v["calls_per_second"].as_f64().unwrap() > 0.0, "{v}");

    let o = wasmpool(&["bench", "--calls", "50", FIB, "fib(10)"]);
    code(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("50 calls of fib"), "{out}");
    assert!(out.contains("p99"), "{out}");
    assert!(out.contains("calls/s"), "{out}");

    let o = wasmpool(&["bench", "--calls", "5", FAULTS, "unreachable"]);
    code(&o, 4);
}
