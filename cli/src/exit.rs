//! Exit codes, and errors printed as a person wants them.

use std::fmt::Write as _;

use wasmpool::ErrorKind;

pub const OTHER: u8 = 1;
pub const USAGE: u8 = 2;
pub const INVALID_COMPONENT: u8 = 3;
pub const TRAP: u8 = 4;
pub const TIMEOUT: u8 = 5;
pub const LIMIT: u8 = 6;
pub const IO: u8 = 7;
pub const SOME_FAILED: u8 = 8;
pub const INTERRUPTED: u8 = 130;

/// Why the command failed: the exit code and the text for stderr.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub text: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            text: format!("error: {}", message.into()),
        }
    }

    /// A usage error.
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::new(USAGE, message)
    }

    /// An I/O error about `what`.
    pub fn io(what: impl std::fmt::Display, e: std::io::Error) -> Failure {
        Failure::new(IO, format!("{what}: {e}"))
    }

    pub fn print(&self) {
        eprintln!("{}", self.text);
    }
}

impl From<wasmpool::Error> for Failure {
    fn from(e: wasmpool::Error) -> Failure {
        Failure {
            code: code(e.kind()),
            text: describe(&e),
        }
    }
}

/// The exit code for an error of `kind`.
pub fn code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::ArgumentMismatch | ErrorKind::NoSuchFunction | ErrorKind::Config => USAGE,
        ErrorKind::InvalidComponent | ErrorKind::Unsupported => INVALID_COMPONENT,
        ErrorKind::Trap | ErrorKind::WorkerCrashed | ErrorKind::HostFunction => TRAP,
        ErrorKind::Timeout => TIMEOUT,
        ErrorKind::ResourceLimit => LIMIT,
        ErrorKind::Io => IO,
        ErrorKind::Cancelled => INTERRUPTED,
        _ => OTHER,
    }
}

/// `WorkerCrashed` as `worker-crashed`.
pub fn kind_name(kind: ErrorKind) -> String {
    let mut out = String::new();
    for (i, c) in format!("{kind:?}").chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// An error as several lines: the kind and message, then the trap code,
/// the limit, the guest's panic message and the wasm backtrace.
pub fn describe(e: &wasmpool::Error) -> String {
    let mut s = format!("error: {}: {e}", kind_name(e.kind()));
    if let Some(code) = e.trap_code() {
        let _ = write!(s, "\n  trap code: {code}");
    }
    if let Some(limit) = e.limit() {
        let _ = write!(s, "\n  limit: {limit}");
    }
    if let Some(panic) = e.panic_message() {
        let _ = write!(s, "\n  guest panic: {panic}");
    }
    if let Some(status) = e.exit_status() {
        let _ = write!(s, "\n  worker: {status}");
    }
    if let Some(bt) = e.wasm_backtrace() {
        s.push_str("\n  wasm backtrace:");
        for line in bt
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("error while executing"))
        {
            let _ = write!(s, "\n    {line}");
        }
    }
    s
}

/// An error as one JSON object, for `map`'s error lines.
pub fn to_json(e: &wasmpool::Error, line: u64) -> serde_json::Value {
    let mut o = serde_json::Map::new();
    o.insert("line".into(), line.into());
    o.insert("kind".into(), kind_name(e.kind()).into());
    o.insert("message".into(), e.to_string().into());
    if let Some(code) = e.trap_code() {
        o.insert("trap_code".into(), code.to_string().into());
    }
    if let Some(limit) = e.limit() {
        o.insert("limit".into(), limit.to_string().into());
    }
    if let Some(panic) = e.panic_message() {
        o.insert("panic".into(), panic.into());
    }
    if let Some(bt) = e.wasm_backtrace() {
        o.insert("backtrace".into(), bt.into());
    }
    serde_json::json!({ "error": o })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_as_words() {
        assert_eq!(kind_name(ErrorKind::WorkerCrashed), "worker-crashed");
        assert_eq!(kind_name(ErrorKind::Trap), "trap");
        assert_eq!(code(ErrorKind::Timeout), TIMEOUT);
        assert_eq!(code(ErrorKind::ArgumentMismatch), USAGE);
    }
}
