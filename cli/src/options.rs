//! What `run`, `map` and `bench` share: the pool, the call options, and
//! the parsing of durations, sizes, directories and arguments.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args as ClapArgs;
use wasmpool::{Call, Command, DirAccess, DynArgs, Job, Pool};

use crate::exit::Failure;

/// The limits and sandbox of these options set on a call or a command,
/// which have the same setters, with the environment variables `$env`.
macro_rules! apply_to {
    ($options:expr, $call:expr, $env:expr) => {{
        let options = $options;
        let mut call = $call;
        if let Some(t) = options.timeout {
            call = call.timeout(t);
        }
        if let Some(m) = options.max_memory {
            call = call.max_memory(m);
        }
        if let Some(m) = options.max_output {
            call = call.max_output_bytes(m);
        }
        for (dirs, access) in [
            (&options.dirs, DirAccess::ReadWrite),
            (&options.ro_dirs, DirAccess::ReadOnly),
        ] {
            for d in dirs {
                // Checked by `check`.
                if let Ok((host, guest)) = split_dir(d) {
                    call = call.preopen_dir(host, guest, access);
                }
            }
        }
        for (k, v) in $env {
            call = call.env(k, v);
        }
        for c in &options.config {
            // Checked by `check`.
            if let Some((k, v)) = c.split_once('=') {
                call = call.config(k, v);
            }
        }
        call
    }};
}

/// The pool and the limits and sandbox of each call.
#[derive(ClapArgs, Debug, Clone)]
pub struct CallOptions {
    /// Fail a call that runs longer than this: `2s`, `500ms`, `1m`, or
    /// seconds.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// The most linear memory a call may grow to: `64MiB`, `1GiB`,
    /// `65536`.
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub max_memory: Option<u64>,
    /// The most bytes each of the guest's stdout and stderr may take:
    /// `1MiB`, `65536`. A write past it fails, and a guest that fails on
    /// that ends with a limit error (output). Default: 16 MiB captured,
    /// no limit passed through.
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub max_output: Option<u64>,
    /// The fuel budget of each call (instructions, roughly).
    #[arg(long, value_name = "N")]
    pub fuel: Option<u64>,
    /// Give the guest a host directory, read-write: `HOST::GUEST`, or
    /// `HOST` for the same path in the guest. Repeatable.
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    pub dirs: Vec<String>,
    /// Give the guest a host directory, read-only. Repeatable.
    #[arg(long = "ro-dir", value_name = "HOST[::GUEST]")]
    pub ro_dirs: Vec<String>,
    /// Set an environment variable for the guest: `K=V`, or `K` for the
    /// host's value. Repeatable.
    #[arg(long = "env", value_name = "K[=V]")]
    pub env: Vec<String>,
    /// Set a configuration value the guest reads through
    /// `wasi:config/store`: `K=V`. Repeatable.
    #[arg(long = "config", value_name = "K=V")]
    pub config: Vec<String>,
    /// How many worker processes (default: one per core).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Where compiled components are cached (default:
    /// `$XDG_CACHE_HOME/wasmpool`).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Run the calls on the nodes of a cluster (`wasmpool serve`) through
    /// this NATS server, instead of on local workers.
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
}

impl CallOptions {
    /// The pool these options ask for.
    pub fn pool(&self) -> Result<Pool, Failure> {
        let mut b = Pool::builder();
        if let Some(n) = self.workers {
            if n == 0 {
                return Err(Failure::usage("--workers must be at least 1"));
            }
            b = b.workers(n);
        }
        if let Some(dir) = &self.cache_dir {
            b = b.cache_dir(dir);
        }
        if let Some(fuel) = self.fuel {
            b = b.fuel(fuel);
        }
        if let Some(url) = &self.nats {
            b = b.nats(url);
        }
        Ok(b.build()?)
    }

    /// Checks the directory, environment and config options before any
    /// call.
    pub fn check(&self) -> Result<(), Failure> {
        for d in self.dirs.iter().chain(&self.ro_dirs) {
            let (host, _) = split_dir(d)?;
            // A cluster's directories are its nodes'.
            if self.nats.is_none() && !std::path::Path::new(&host).is_dir() {
                return Err(Failure::usage(format!(
                    "--dir {d}: {host} is not a directory"
                )));
            }
        }
        for e in &self.env {
            if e.is_empty() || e.starts_with('=') {
                return Err(Failure::usage(format!("--env {e:?}: expected K=V or K")));
            }
        }
        for c in &self.config {
            if !c.contains('=') {
                return Err(Failure::usage(format!("--config {c:?}: expected K=V")));
            }
        }
        Ok(())
    }

    /// The environment variables of `--env`, in order: `K=V` as given,
    /// `K` with the host's value (empty if it has none).
    pub fn env_vars(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (e.clone(), std::env::var(e).unwrap_or_default()),
            })
            .collect()
    }

    /// `call` with these options.
    pub fn apply<'a, R>(&self, call: Call<'a, R>) -> Call<'a, R> {
        apply_to!(self, call, self.env_vars())
    }

    /// [`apply`](Self::apply) for a run of a command component.
    pub fn apply_command<'a>(&self, command: Command<'a>) -> Command<'a> {
        self.apply_command_with_env(command, self.env_vars())
    }

    /// [`apply_command`](Self::apply_command) with the environment
    /// variables `env` in place of those of `--env`.
    pub fn apply_command_with_env<'a>(
        &self,
        command: Command<'a>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Command<'a> {
        apply_to!(self, command, env)
    }
}

/// `HOST::GUEST` or `HOST`.
fn split_dir(d: &str) -> Result<(String, String), Failure> {
    let (host, guest) = match d.split_once("::") {
        Some((h, g)) => (h.to_string(), g.to_string()),
        None => (d.to_string(), d.to_string()),
    };
    if host.is_empty() || guest.is_empty() {
        return Err(Failure::usage(format!(
            "--dir {d:?}: expected HOST::GUEST or HOST"
        )));
    }
    Ok((host, guest))
}

/// `2s`, `500ms`, `1.5s`, `1m`, `100us`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) =
        number_and_unit(s).ok_or(format!("{s:?} is not a duration (try 2s, 500ms, 1m)"))?;
    let secs = match unit {
        "" | "s" | "sec" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "ns" => n / 1e9,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        u => return Err(format!("unknown unit {u:?} in {s:?} (try s, ms, us, m, h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

/// `1.5ms` as `(1.5, "ms")`.
fn number_and_unit(s: &str) -> Option<(f64, &str)> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    Some((num.parse().ok()?, unit.trim()))
}

/// `64MiB`, `64M` (both 2^20), `64MB` (10^6), `1GiB`, `512KiB`, or bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (n, unit) =
        number_and_unit(s).ok_or(format!("{s:?} is not a size (try 64MiB, 1GiB, 65536)"))?;
    let scale = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        u => return Err(format!("unknown unit {u:?} in {s:?} (try KiB, MiB, GiB)")),
    };
    let bytes = n * scale;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(format!("{s:?} is too large"));
    }
    Ok(bytes as u64)
}

/// Reads a component, mapping a missing or unreadable file to an I/O
/// failure and a bad one to an invalid-component failure.
pub fn load(path: &std::path::Path) -> Result<Job, Failure> {
    Job::from_file(path).map_err(Failure::from)
}

/// The function and its arguments from a command line: `FUNC ARGS...`, or
/// `FUNC(ARGS)` as `wasmtime run --invoke` takes it. Arguments are WAVE,
/// or JSON with `json`.
pub fn call_args(func: &str, args: &[String], json: bool) -> Result<(String, DynArgs), Failure> {
    if let Some(open) = func.find('(') {
        let name = func[..open].trim();
        let rest = func[open + 1..].trim_end();
        let Some(inner) = rest.strip_suffix(')') else {
            return Err(Failure::usage(format!(
                "{func:?}: a call must end with `)`"
            )));
        };
        if !args.is_empty() {
            return Err(Failure::usage(format!(
                "give the arguments either inside {func:?} or after it, not both"
            )));
        }
        if name.is_empty() {
            return Err(Failure::usage(format!("{func:?}: no function name")));
        }
        if json {
            let v: serde_json::Value = serde_json::from_str(&format!("[{inner}]"))
                .map_err(|e| Failure::usage(format!("{func:?}: arguments are not JSON: {e}")))?;
            let serde_json::Value::Array(items) = v else {
                unreachable!("parsed as an array")
            };
            return Ok((name.to_string(), DynArgs::json_each(items)));
        }
        return Ok((name.to_string(), DynArgs::wave(inner)));
    }
    if json {
        let values = args
            .iter()
            .enumerate()
            .map(|(i, a)| {
                serde_json::from_str(a).map_err(|e| {
                    Failure::usage(format!("argument {} ({a:?}) is not JSON: {e}", i + 1))
                })
            })
            .collect::<Result<Vec<serde_json::Value>, _>>()?;
        return Ok((func.to_string(), DynArgs::json_each(values)));
    }
    Ok((func.to_string(), DynArgs::wave_each(args)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3 fortnights").is_err());
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("2MB").unwrap(), 2_000_000);
        assert_eq!(parse_size("65536").unwrap(), 65536);
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn invoke_style_and_words() {
        let (f, a) = call_args("area(circle(2.0))", &[], false).unwrap();
        assert_eq!(f, "area");
        assert_eq!(a, DynArgs::wave("circle(2.0)"));
        let (f, a) = call_args("fib", &["30".into()], false).unwrap();
        assert_eq!(f, "fib");
        assert_eq!(a, DynArgs::wave_each(["30"]));
        let (_, a) = call_args("f", &["[1,2]".into()], true).unwrap();
        assert_eq!(a, DynArgs::json_each(vec![serde_json::json!([1, 2])]));
        assert!(call_args("f(1", &[], false).is_err());
        assert!(call_args("f(1)", &["2".into()], false).is_err());
        assert!(call_args("f", &["{".into()], true).is_err());
    }
}
