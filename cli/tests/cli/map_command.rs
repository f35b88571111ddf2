//! `wasmpool map --command`: a command component run once per input line,
//! a judge's batch.

use serde_json::{Value, json};
use wasmpool_guests::{CMD, FIB};

use super::{code, run_with_input, stderr, stdout};

/// The output lines as JSON.
fn lines(o: &std::process::Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn map_command_runs_a_batch_with_arguments_stdin_and_env() {
    let input = [
        r#"{"args": ["args", "-n", "a b"], "id": "first"}"#,
        r#"{"args": ["sort"], "stdin": "10\n-1\n3\n"}"#,
        r#"{"args": ["cat"], "stdin_base64": "AP8K"}"#,
        r#"{"args": ["env", "MODE"], "env": {"MODE": "own"}}"#,
        r#"{"args": ["env", "LEVEL"], "env": {"MODE": "own"}}"#,
        r#"["env", "MODE"]"#,
        r#"["exit", "3"]"#,
        r#"{"args": ["fail"]}"#,
        r#"{"args": ["panic"], "id": 9}"#,
        r#"{"argz": ["args"], "id": [10]}"#,
        "not json",
        "",
        r#"{"args": ["args"], "arg0": "sol"}"#,
        "[]",
    ]
    .join("\n");
    let o = run_with_input(
        &[
            "map",
            "--command",
            "--env",
            "MODE=judge",
            "--env",
            "LEVEL=3",
            CMD,
        ],
        Some(input.as_bytes()),
    );
    code(&o, 8);
    let out = lines(&o);
    // One line per input line but the blank one, in input order.
    let numbers: Vec<u64> = out.iter().map(|l| l["line"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14]);
    let by_line = |n: u64| &out[numbers.iter().position(|&m| m == n).unwrap()];

    // Arguments, argv[0] the file name, and the id echoed back.
    let first = by_line(1);
    assert_eq!(first["id"], "first");
    assert_eq!(first["args"], json!(["args", "-n", "a b"]));
    assert_eq!(first["status"], 0);
    assert_eq!(first["stdout"], "cmd.wasm\nargs\n-n\na b\n");
    assert_eq!(first["stderr"], "");
    let report = &first["report"];
    assert!(report["wall_ns"].as_u64().unwrap() > 0, "{first}");
    assert!(report["cpu_ns"].as_u64().unwrap() > 0, "{first}");
    assert!(report["peak_memory_bytes"].as_u64().unwrap() > 0, "{first}");
    // A program's stdin and stdout are on the line, not a call's bytes.
    assert!(report.get("bytes_in").is_none(), "{first}");
    // stdin, as text and as base64; output that is not UTF-8 as base64.
    assert_eq!(by_line(2)["stdout"], "-1\n3\n10\n");
    assert_eq!(by_line(3)["stdout_base64"], "AP8K");
    assert!(by_line(3).get("stdout").is_none(), "{}", by_line(3));
    // A run's env over the command line's, which it keeps otherwise.
    assert_eq!(by_line(4)["stdout"], "own\n");
    assert_eq!(by_line(5)["stdout"], "3\n");
    assert_eq!(by_line(6)["stdout"], "judge\n");
    assert_eq!(by_line(6)["args"], json!(["env", "MODE"]));
    // An exit status is a result (WASI 0.2 carries only success or
    // failure), however it is reached.
    assert_eq!(by_line(7)["status"], 1);
    assert_eq!(by_line(7)["stdout"], "bye\n");
    assert_eq!(by_line(8)["status"], 1);
    assert!(
        by_line(8)["stderr"]
            .as_str()
            .unwrap()
            .contains("failing on purpose"),
        "{}",
        by_line(8)
    );
    // A trap is an error line, with what is known of its run, and the
    // rest go on.
    let trap = by_line(9);
    assert_eq!(trap["id"], 9);
    assert_eq!(trap["args"], json!(["panic"]));
    assert_eq!(trap["error"]["line"], 9);
    assert_eq!(trap["error"]["kind"], "trap");
    assert_eq!(trap["error"]["panic"], "the command panicked");
    assert!(trap.get("status").is_none(), "{trap}");
    // What it wrote before the trap is on the line too.
    assert_eq!(trap["stdout"], "before\n");
    assert!(
        trap["stderr"]
            .as_str()
            .unwrap()
            .contains("the command panicked"),
        "{trap}"
    );
    // Lines that are not runs.
    let bad = by_line(10);
    assert_eq!(bad["id"], json!([10]));
    assert_eq!(bad["error"]["kind"], "invalid-input");
    let message = bad["error"]["message"].as_str().unwrap();
    assert!(message.contains("unknown field \"argz\""), "{message}");
    assert_eq!(by_line(11)["error"]["kind"], "invalid-input");
    assert!(
        by_line(11)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not JSON"),
        "{}",
        by_line(11)
    );
    // argv[0], and a run with no arguments at all.
    assert_eq!(by_line(13)["stdout"], "sol\nargs\n");
    assert_eq!(by_line(14)["stdout"], "hello\n");
    assert_eq!(by_line(14)["args"], json!([]));
    // Only the error lines count as failed, not the nonzero statuses.
    assert!(
        stderr(&o).contains("3 of 13 lines failed"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn map_command_keeps_input_order_or_gives_completion_order() {
    // Slow runs (a sort of many numbers) among fast ones, so that on two
    // workers some finish out of order.
    let numbers: String = (0..20_000).rev().map(|n| format!("{n}\n")).collect();
    let sorted: String = (0..20_000).map(|n| format!("{n}\n")).collect();
    let input: String = (1..=60u64)
        .map(|i| {
            let run = if i % 10 == 1 {
                json!({"args": ["sort"], "stdin": numbers, "id": i})
            } else {
                json!({"args": ["args", i.to_string()], "id": i})
            };
            format!("{run}\n")
        })
        .collect();
    let check = |line: &Value| {
        let i = line["id"].as_u64().unwrap();
        assert_eq!(line["line"], i);
        assert_eq!(line["status"], 0, "{line}");
        let want = if i % 10 == 1 {
            sorted.clone()
        } else {
            format!("cmd.wasm\nargs\n{i}\n")
        };
        assert_eq!(line["stdout"], want.as_str(), "line {i}");
        i
    };

    let o = run_with_input(
        &["map", "--command", "--workers", "2", CMD],
        Some(input.as_bytes()),
    );
    code(&o, 0);
    let ids: Vec<u64> = lines(&o).iter().map(check).collect();
    assert_eq!(ids, (1..=60).collect::<Vec<_>>());

    let o = run_with_input(
        &["map", "--command", "--unordered", "--workers", "2", CMD],
        Some(input.as_bytes()),
    );
    code(&o, 0);
    let mut ids: Vec<u64> = lines(&o).iter().map(check).collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=60).collect::<Vec<_>>());
}

#[test]
fn map_command_times_out_a_run_and_goes_on() {
    let input = b"[\"spin\"]\n[\"args\", \"after\"]\n";
    let o = run_with_input(
        &["map", "--command", "--timeout", "300ms", CMD],
        Some(input),
    );
    code(&o, 8);
    let out = lines(&o);
    assert_eq!(out.len(), 2, "{}", stdout(&o));
    assert_eq!(out[0]["error"]["kind"], "timeout");
    assert_eq!(out[0]["args"], json!(["spin"]));
    assert_eq!(out[1]["stdout"], "cmd.wasm\nargs\nafter\n");
}

#[test]
fn map_command_is_for_a_program_and_takes_no_function() {
    // A function as well.
    let o = run_with_input(&["map", "--command", CMD, "run"], Some(b"[]\n"));
    code(&o, 2);
    assert!(stderr(&o).contains("leave out \"run\""), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    // Neither a function nor --command.
    let o = run_with_input(&["map", CMD], Some(b"[]\n"));
    code(&o, 2);
    assert!(stderr(&o).contains("--command"), "{}", stderr(&o));
    // A component that is not a program.
    let o = run_with_input(&["map", "--command", FIB], Some(b"[]\n"));
    code(&o, 2);
    assert!(
        stderr(&o).contains("is not a command component"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), "");
}
