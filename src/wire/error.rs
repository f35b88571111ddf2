//! Errors as they cross the wire from a worker: classified once, in the
//! worker, and turned into the public [`Error`] on the host.

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Limit, TrapCode};

/// An error as it crosses the wire from a worker: already classified.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireError {
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
    pub(crate) trap_code: Option<TrapCode>,
    pub(crate) limit: Option<Limit>,
    pub(crate) panic_message: Option<String>,
    pub(crate) backtrace: Option<String>,
    /// For a [`ErrorKind::HostFunction`] error, the host's id of the host
    /// function's own error, to become the caller's error's source.
    pub(crate) host_error: Option<u64>,
}

impl WireError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> WireError {
        WireError {
            kind,
            message: message.into(),
            trap_code: None,
            limit: None,
            panic_message: None,
            backtrace: None,
            host_error: None,
        }
    }
}

impl From<WireError> for Error {
    fn from(w: WireError) -> Error {
        let WireError {
            kind,
            message,
            trap_code,
            limit,
            panic_message,
            backtrace,
            host_error: _,
        } = w;
        let mut e = Error::new(kind, message);
        e.inner_mut().trap_code = trap_code;
        e.inner_mut().limit = limit;
        e.inner_mut().panic_message = panic_message;
        e.inner_mut().backtrace = backtrace;
        e
    }
}

impl From<Error> for WireError {
    fn from(e: Error) -> WireError {
        let inner = e.into_inner();
        WireError {
            kind: inner.kind,
            message: inner.message,
            trap_code: inner.trap_code,
            limit: inner.limit,
            panic_message: inner.panic_message,
            backtrace: inner.backtrace,
            host_error: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, TrapCode};

    #[test]
    fn wire_round_trip_keeps_every_detail() {
        let mut w = WireError::new(ErrorKind::Trap, "wasm trap: boom");
        w.trap_code = Some(TrapCode::UnreachableCodeReached);
        w.panic_message = Some("boom".into());
        w.backtrace = Some("0: f".into());
        let bytes = rmp_serde::to_vec_named(&w).unwrap();
        let back: WireError = rmp_serde::from_slice(&bytes).unwrap();
        let e = Error::from(back);
        assert_eq!(e.kind(), ErrorKind::Trap);
        assert_eq!(e.trap_code(), Some(TrapCode::UnreachableCodeReached));
        assert_eq!(e.panic_message(), Some("boom"));
        assert_eq!(e.wasm_backtrace(), Some("0: f"));
        assert_eq!(e.to_string(), "wasm trap: boom");
    }

    #[test]
    fn display_appends_panic_message_once() {
        let mut w = WireError::new(ErrorKind::Trap, "wasm trap: unreachable");
        w.panic_message = Some("it broke".into());
        assert_eq!(
            Error::from(w).to_string(),
            "wasm trap: unreachable: it broke"
        );
    }
}
