//! A guest's stdout and stderr: inherited (written through to the worker's
//! own, which are the host's), captured into a buffer returned with the
//! result, or discarded. Stderr also keeps a bounded tail in every mode, to
//! find the guest's panic message.

use crate::locks::Locked as _;
use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use crate::options::{CAPTURE_LIMIT, Stdio};

#[derive(Clone, Copy)]
pub(crate) enum Fd {
    Stdout,
    Stderr,
}

/// One of a guest's output streams.
#[derive(Clone)]
pub(crate) struct GuestOutput {
    fd: Fd,
    mode: Stdio,
    captured: Arc<Mutex<Vec<u8>>>,
    /// The last `tail_cap` bytes, whatever the mode.
    tail: Option<(Arc<Mutex<Vec<u8>>>, usize)>,
    /// The most the call may write, if anything bounds it.
    limit: Option<usize>,
    /// What the call has written (or tried to), and whether it went past
    /// `limit`.
    written: Arc<AtomicUsize>,
    over: Arc<AtomicBool>,
}

impl GuestOutput {
    /// A stream in `mode`, bounded by `max` bytes per call: by default, a
    /// captured one by [`CAPTURE_LIMIT`], an inherited one not at all.
    pub(crate) fn new(fd: Fd, mode: Stdio, max: Option<u64>) -> GuestOutput {
        let max = max.map(|m| usize::try_from(m).unwrap_or(usize::MAX));
        let limit = match mode {
            Stdio::Capture => Some(max.unwrap_or(CAPTURE_LIMIT)),
            Stdio::Inherit => max,
            Stdio::Discard => None,
        };
        GuestOutput {
            fd,
            mode,
            captured: Arc::default(),
            tail: None,
            limit,
            written: Arc::default(),
            over: Arc::default(),
        }
    }

    /// Starts counting a new call's output.
    pub(crate) fn begin_call(&self) {
        self.written.store(0, Ordering::Relaxed);
        self.over.store(false, Ordering::Relaxed);
    }

    /// Whether the call tried to write past its limit.
    pub(crate) fn went_over(&self) -> bool {
        self.over.load(Ordering::Relaxed)
    }

    /// The limit, for messages.
    pub(crate) fn limit(&self) -> Option<usize> {
        self.limit
    }

    /// Also keep the last `cap` bytes in `tail`.
    pub(crate) fn with_tail(mut self, tail: Arc<Mutex<Vec<u8>>>, cap: usize) -> GuestOutput {
        self.tail = Some((tail, cap));
        self
    }

    /// What was captured, in [`Stdio::Capture`] mode.
    pub(crate) fn take_captured(&self) -> Option<Vec<u8>> {
        (self.mode == Stdio::Capture).then(|| std::mem::take(&mut *self.captured.locked()))
    }

    fn write_bytes(&self, bytes: &[u8]) -> std::io::Result<()> {
        if let Some((tail, cap)) = &self.tail {
            let mut tail = tail.locked();
            tail.extend_from_slice(bytes);
            if tail.len() > *cap {
                let cut = tail.len() - cap;
                tail.drain(..cut);
            }
        }
        if let Some(limit) = self.limit {
            let total = self.written.fetch_add(bytes.len(), Ordering::Relaxed) + bytes.len();
            if total > limit {
                self.over.store(true, Ordering::Relaxed);
                let stream = match self.fd {
                    Fd::Stdout => "stdout",
                    Fd::Stderr => "stderr",
                };
                return Err(std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    format!("{stream} is over its limit of {limit} bytes (max_output_bytes)"),
                ));
            }
        }
        match self.mode {
            Stdio::Inherit => match self.fd {
                Fd::Stdout => std::io::stdout().write_all(bytes),
                Fd::Stderr => std::io::stderr().write_all(bytes),
            },
            Stdio::Capture => {
                self.captured.locked().extend_from_slice(bytes);
                Ok(())
            }
            Stdio::Discard => Ok(()),
        }
    }

    fn flush_host(&self) -> std::io::Result<()> {
        match (self.mode, self.fd) {
            (Stdio::Inherit, Fd::Stdout) => std::io::stdout().flush(),
            (Stdio::Inherit, Fd::Stderr) => std::io::stderr().flush(),
            _ => Ok(()),
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes)
            .map_err(|e| StreamError::LastOperationFailed(e.into()))
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.flush_host()
            .map_err(|e| StreamError::LastOperationFailed(e.into()))
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.write_bytes(buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(self.flush_host())
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
