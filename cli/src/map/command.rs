//! `wasmpool map --command`: a command component run once per input
//! line, each run's exit status, output and cost one JSON line.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};
use wasmpool::{ErrorKind, Job, Pool};

use crate::exit::{self, Failure};
use crate::options::CallOptions;
use crate::report;

/// The fields of a run's object, as its error message lists them.
const FIELDS: &str = "\"args\", \"stdin\", \"stdin_base64\", \"env\", \"arg0\", \"id\"";

/// One run, as its input line describes it.
#[derive(Debug, Default, PartialEq)]
struct Run {
    /// The arguments after `argv[0]`.
    args: Vec<String>,
    arg0: Option<String>,
    stdin: Vec<u8>,
    /// Over the command line's `--env`.
    env: Vec<(String, String)>,
}

impl Run {
    /// A run from its line's JSON: an object of [`FIELDS`], every one
    /// optional, or an array of arguments. The error says what is wrong.
    /// The `id`, anything, is the caller's: it is echoed back on the
    /// run's output line.
    fn parse(v: Value) -> Result<Run, String> {
        let object = match v {
            Value::Array(_) => {
                return Ok(Run {
                    args: strings("the line", v)?,
                    ..Run::default()
                });
            }
            Value::Object(o) => o,
            other => {
                return Err(format!(
                    "expected an object such as {{\"args\": [\"-n\", \"3\"], \"stdin\": \"...\"}}, \
                     or an array of arguments, not {}",
                    kind(&other)
                ));
            }
        };
        if object.contains_key("stdin") && object.contains_key("stdin_base64") {
            return Err("give \"stdin\" or \"stdin_base64\", not both".into());
        }
        let mut run = Run::default();
        for (key, value) in object {
            match key.as_str() {
                "id" => {}
                "args" => run.args = strings("\"args\"", value)?,
                "arg0" => run.arg0 = Some(string("\"arg0\"", value)?),
                "stdin" => run.stdin = string("\"stdin\"", value)?.into_bytes(),
                "stdin_base64" => {
                    let text = string("\"stdin_base64\"", value)?;
                    run.stdin = BASE64
                        .decode(text.trim())
                        .map_err(|e| format!("\"stdin_base64\" is not base64: {e}"))?;
                }
                "env" => {
                    let Value::Object(vars) = value else {
                        return Err(format!(
                            "\"env\" must be an object of strings, such as {{\"MODE\": \"fast\"}}, not {}",
                            kind(&value)
                        ));
                    };
                    for (k, v) in vars {
                        if k.is_empty() || k.contains('=') {
                            return Err(format!("\"env\": {k:?} is not a variable name"));
                        }
                        let v = string(&format!("\"env\".{k}"), v)?;
                        run.env.push((k, v));
                    }
                }
                _ => return Err(format!("unknown field {key:?} (a run has {FIELDS})")),
            }
        }
        Ok(run)
    }
}

/// `v` as a string, or an error about `what`.
fn string(what: &str, v: Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(format!("{what} must be a string, not {}", kind(&other))),
    }
}

/// `v` as an array of strings, or an error about `what`.
fn strings(what: &str, v: Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = v else {
        return Err(format!(
            "{what} must be an array of strings, not {}",
            kind(&v)
        ));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| string(&format!("{what}[{i}]"), item))
        .collect()
}

/// What a JSON value is, for a message: `a number (3)`.
fn kind(v: &Value) -> String {
    let what = match v {
        Value::Null => return "null".into(),
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    let mut text = v.to_string();
    if text.len() > 40 {
        text = format!("{}...", text.chars().take(37).collect::<String>());
    }
    format!("{what} ({text})")
}

/// `base` with `over` in place of the variables it also sets.
fn merged(base: &[(String, String)], over: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = base
        .iter()
        .filter(|(k, _)| !over.iter().any(|(o, _)| o == k))
        .cloned()
        .collect();
    env.extend(over);
    env
}

/// `bytes` under `key` as text when they are UTF-8, else as base64 under
/// `{key}_base64`.
fn insert_output(o: &mut Map<String, Value>, key: &str, bytes: Vec<u8>) {
    match String::from_utf8(bytes) {
        Ok(text) => o.insert(key.into(), text.into()),
        Err(e) => o.insert(
            format!("{key}_base64"),
            BASE64.encode(e.into_bytes()).into(),
        ),
    };
}

/// Checks that `job` is a command component, before any line.
///
/// # Errors
///
/// A usage failure if it exports no `wasi:cli/run`.
pub(super) fn check(job: &Job, path: &std::path::Path) -> Result<(), Failure> {
    let is_command = job.exports()?.iter().any(|f| {
        f.func == "run"
            && f.interface
                .as_deref()
                .is_some_and(|i| i.split('@').next() == Some("wasi:cli/run"))
    });
    if is_command {
        return Ok(());
    }
    Err(Failure::usage(format!(
        "{} is not a command component: it exports no wasi:cli/run, so there is no `main` \
         to run; leave out --command and give the function to call for each line",
        path.display()
    )))
}

/// Runs input line `number` (its text `line`): its output line and whether
/// it failed. `env` is the command line's `--env`.
///
/// # Errors
///
/// What no line can fix, which ends the map: a component that is not a
/// command, or that the pool cannot run.
///
/// # Cancel safety
///
/// Dropping the future cancels the run, as the pool's cancel mode says.
pub(super) async fn one(
    pool: &Pool,
    job: &Job,
    options: &CallOptions,
    env: &[(String, String)],
    number: u64,
    line: &str,
) -> Result<(String, bool), Failure> {
    let mut o = Map::new();
    o.insert("line".into(), number.into());
    let invalid = |mut o: Map<String, Value>, message: String| {
        o.insert(
            "error".into(),
            serde_json::json!({
                "line": number,
                "kind": "invalid-input",
                "message": message,
            }),
        );
        (Value::Object(o).to_string(), true)
    };
    let v = match serde_json::from_str::<Value>(line) {
        Ok(v) => v,
        Err(e) => return Ok(invalid(o, format!("line {number} is not JSON: {e}"))),
    };
    // The id of a line that is wrong otherwise still tells which it was.
    if let Some(id) = v.get("id") {
        o.insert("id".into(), id.clone());
    }
    let Run {
        args,
        arg0,
        stdin,
        env: own_env,
    } = match Run::parse(v) {
        Ok(run) => run,
        Err(message) => return Ok(invalid(o, format!("line {number}: {message}"))),
    };
    o.insert("args".into(), args.clone().into());
    let mut command = pool.command(job).args(args).stdin(stdin);
    if let Some(arg0) = arg0 {
        command = command.arg0(arg0);
    }
    let command = options.apply_command_with_env(command, merged(env, own_env));
    match command.output().await {
        Ok(out) => {
            o.insert("status".into(), out.status.into());
            insert_output(&mut o, "stdout", out.stdout);
            insert_output(&mut o, "stderr", out.stderr);
            let mut usage = report::usage_json(&out.usage);
            // The bytes of a call's arguments and result: for a program,
            // its (empty) arguments and its exit status, not its stdin and
            // stdout, whose sizes are on the line.
            usage.remove("bytes_in");
            usage.remove("bytes_out");
            usage.insert("fuel".into(), out.fuel_consumed.into());
            o.insert("report".into(), usage.into());
            Ok((Value::Object(o).to_string(), false))
        }
        // What no line can fix ends the map.
        Err(e) if matches!(e.kind(), ErrorKind::NoSuchFunction | ErrorKind::Unsupported) => {
            Err(e.into())
        }
        Err(e) => {
            // What the program wrote before it failed, beside the error.
            if let Some(stdout) = e.stdout() {
                insert_output(&mut o, "stdout", stdout.to_vec());
            }
            if let Some(stderr) = e.stderr() {
                insert_output(&mut o, "stderr", stderr.to_vec());
            }
            if let Value::Object(error) = exit::to_json(&e, number) {
                o.extend(error);
            }
            Ok((Value::Object(o).to_string(), true))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: Value) -> Result<Run, String> {
        Run::parse(v)
    }

    #[test]
    fn a_run_is_an_object_or_an_array_of_arguments() {
        let run = parse(json!({
            "args": ["-n", "3"],
            "stdin": "3\n1\n",
            "env": {"MODE": "fast"},
            "arg0": "sort",
            "id": {"case": 7},
        }))
        .unwrap();
        assert_eq!(
            run,
            Run {
                args: vec!["-n".into(), "3".into()],
                arg0: Some("sort".into()),
                stdin: b"3\n1\n".to_vec(),
                env: vec![("MODE".into(), "fast".into())],
            }
        );
        assert_eq!(parse(json!({})).unwrap(), Run::default());
        assert_eq!(
            parse(json!(["a", "b c"])).unwrap().args,
            ["a".to_string(), "b c".to_string()]
        );
        assert_eq!(
            parse(json!({"stdin_base64": "AP8K"})).unwrap().stdin,
            [0, 255, b'\n']
        );
    }

    #[test]
    fn a_wrong_run_says_what_is_wrong() {
        let err = |v: Value| parse(v).unwrap_err();
        assert!(err(json!({"argz": []})).contains("unknown field \"argz\""));
        assert!(
            err(json!({"args": ["-n", 3]}))
                .contains("\"args\"[1] must be a string, not a number (3)")
        );
        assert!(err(json!({"args": "-n"})).contains("must be an array of strings"));
        assert!(err(json!({"stdin": "a", "stdin_base64": "YQ=="})).contains("not both"));
        assert!(err(json!({"stdin_base64": "!!"})).contains("not base64"));
        assert!(err(json!({"env": ["A=1"]})).contains("\"env\" must be an object"));
        assert!(err(json!({"env": {"A": 1}})).contains("\"env\".A must be a string"));
        assert!(err(json!({"env": {"A=B": "1"}})).contains("not a variable name"));
        assert!(err(json!(3)).contains("not a number (3)"));
        assert!(err(json!([1])).contains("the line[0] must be a string"));
    }

    #[test]
    fn a_run_s_env_wins_over_the_command_line_s() {
        let base = [("A".into(), "1".into()), ("B".into(), "2".into())];
        let env = merged(
            &base,
            vec![("B".into(), "3".into()), ("C".into(), "4".into())],
        );
        let want: Vec<(String, String)> = [("A", "1"), ("B", "3"), ("C", "4")]
            .map(|(k, v)| (k.into(), v.into()))
            .into();
        assert_eq!(env, want);
    }

    #[test]
    fn output_is_text_when_it_is_utf8_else_base64() {
        let mut o = Map::new();
        insert_output(&mut o, "stdout", b"caf\xc3\xa9\n".to_vec());
        insert_output(&mut o, "stderr", vec![0xff, 0x00]);
        assert_eq!(
            Value::Object(o),
            json!({"stdout": "café\n", "stderr_base64": "/wA="})
        );
    }
}
