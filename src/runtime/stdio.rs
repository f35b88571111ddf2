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
use wasmtime_wasi::cli::{IsTerminal, StdinStream, StdoutStream};
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError, StreamResult};

use super::port::Port;
use crate::options::{CAPTURE_LIMIT, Stdio};
use crate::wire::{Answer, GuestOp};

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
    /// Writes go to the call's job channel instead
    /// ([`CallOptions::stdio_channel`](crate::wire::CallOptions)).
    channel: Option<Arc<Port>>,
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
            channel: None,
        }
    }

    /// Sends what the guest writes to its job channel, as raw bytes, each
    /// write waiting until the channel has room: a command's stdout
    /// streamed to its [`CommandHandle`](crate::CommandHandle).
    pub(crate) fn into_channel(mut self, port: Arc<Port>) -> GuestOutput {
        self.channel = Some(port);
        self
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
        self.count(bytes.len())?;
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

    /// Counts `len` more bytes against the limit: an error past it.
    fn count(&self, len: usize) -> std::io::Result<()> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let total = self.written.fetch_add(len, Ordering::Relaxed) + len;
        if total <= limit {
            return Ok(());
        }
        self.over.store(true, Ordering::Relaxed);
        let stream = match self.fd {
            Fd::Stdout => "stdout",
            Fd::Stderr => "stderr",
        };
        Err(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            format!("{stream} is over its limit of {limit} bytes (max_output_bytes)"),
        ))
    }

    /// A write to the job channel, once the limit allows it: waits until
    /// the channel has room; an interrupt while it waits ends the call.
    fn send(&self, port: &Port, bytes: Bytes) -> StreamResult<()> {
        self.count(bytes.len())
            .map_err(|e| StreamError::LastOperationFailed(e.into()))?;
        let value = serde_bytes::ByteBuf::from(Vec::from(bytes));
        match port.call(GuestOp::Emit { value }, None) {
            Ok(Answer::Done) => Ok(()),
            Ok(Answer::Closed) => Err(StreamError::LastOperationFailed(
                std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "the command's handle is gone",
                )
                .into(),
            )),
            Ok(other) => Err(StreamError::LastOperationFailed(wasmtime::Error::msg(
                format!("writing to the job channel: unexpected answer {other:?}"),
            ))),
            Err(e) => Err(StreamError::Trap(e)),
        }
    }

    fn flush_host(&self) -> std::io::Result<()> {
        if self.channel.is_some() {
            return Ok(());
        }
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
        if let Some(port) = &self.channel {
            return self.send(port, bytes);
        }
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
        let written = match &self.channel {
            Some(port) => self
                .send(port, Bytes::copy_from_slice(buf))
                .map_err(|e| std::io::Error::other(e.to_string())),
            None => self.write_bytes(buf),
        };
        Poll::Ready(written.map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(self.flush_host())
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A command's stdin read from its job channel
/// ([`CallOptions::stdio_channel`](crate::wire::CallOptions)): each value
/// the handle writes is a chunk of raw bytes, and the channel's close is
/// the end of the input. A read with nothing buffered waits for the next
/// chunk (and wakes when the call is interrupted).
///
/// Every stream the guest opens on stdin shares one state, so that they
/// all move through the input together, as `StdinStream` requires.
#[derive(Clone)]
pub(crate) struct ChannelStdin {
    state: Arc<Mutex<ChannelInput>>,
}

struct ChannelInput {
    port: Arc<Port>,
    /// What the last chunk still holds.
    buffered: Bytes,
    /// The channel is closed and drained.
    ended: bool,
}

impl ChannelStdin {
    /// Stdin from `port`'s job channel, after `first`.
    pub(crate) fn new(port: Arc<Port>, first: Bytes) -> ChannelStdin {
        ChannelStdin {
            state: Arc::new(Mutex::new(ChannelInput {
                port,
                buffered: first,
                ended: false,
            })),
        }
    }

    /// Waits for the next chunk unless one is buffered or the input has
    /// ended (and wakes when the call is interrupted).
    fn wait(&self) -> StreamResult<()> {
        let mut input = self.state.locked();
        while input.buffered.is_empty() && !input.ended {
            match input.port.call(GuestOp::Recv, None) {
                Ok(Answer::Value(chunk)) => input.buffered = Bytes::from(chunk.into_vec()),
                Ok(Answer::Nothing | Answer::Closed) => input.ended = true,
                Ok(other) => {
                    return Err(StreamError::LastOperationFailed(wasmtime::Error::msg(
                        format!("reading the job channel: unexpected answer {other:?}"),
                    )));
                }
                // Interrupted while it waited: the call is over.
                Err(e) => return Err(StreamError::Trap(e)),
            }
        }
        Ok(())
    }

    /// Up to `size` bytes of what is buffered, without waiting: empty when
    /// nothing is, as a pipe's non-blocking read.
    fn read_buffered(&self, size: usize) -> StreamResult<Bytes> {
        let mut input = self.state.locked();
        if input.buffered.is_empty() && input.ended && size > 0 {
            return Err(StreamError::Closed);
        }
        let n = size.min(input.buffered.len());
        Ok(input.buffered.split_to(n))
    }
}

impl IsTerminal for ChannelStdin {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdinStream for ChannelStdin {
    fn p2_stream(&self) -> Box<dyn InputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncRead + Send + Sync> {
        Box::new(self.clone())
    }
}

impl InputStream for ChannelStdin {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        self.read_buffered(size)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for ChannelStdin {
    // Ready once a chunk is buffered or the input has ended. The wait
    // holds the guest's thread, as a blocking read of a pipe does, so a
    // poll of stdin beside a timer wakes for input or the end of the
    // call, not for the timer.
    async fn ready(&mut self) {
        // An error is for the read that follows to report.
        let _ = self.wait();
    }
}

impl tokio::io::AsyncRead for ChannelStdin {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self
            .wait()
            .and_then(|()| self.read_buffered(buf.remaining()))
        {
            Ok(bytes) => {
                buf.put_slice(&bytes);
                Poll::Ready(Ok(()))
            }
            Err(StreamError::Closed) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(std::io::Error::other(e.to_string()))),
        }
    }
}
