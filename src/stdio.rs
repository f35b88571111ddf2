//! A guest's stderr: written through to the worker's (inherited) stderr,
//! with a bounded tail kept to find the guest's panic message.

use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// Tees a guest's stderr into the process's stderr and a tail buffer.
#[derive(Clone)]
pub(crate) struct TeeStderr {
    tail: Arc<Mutex<Vec<u8>>>,
    cap: usize,
}

impl TeeStderr {
    pub(crate) fn new(tail: Arc<Mutex<Vec<u8>>>, cap: usize) -> TeeStderr {
        TeeStderr { tail, cap }
    }

    fn write_bytes(&self, bytes: &[u8]) -> std::io::Result<()> {
        {
            let mut tail = self.tail.lock().expect("tail lock");
            tail.extend_from_slice(bytes);
            if tail.len() > self.cap {
                let cut = tail.len() - self.cap;
                tail.drain(..cut);
            }
        }
        std::io::stderr().write_all(bytes)
    }
}

impl IsTerminal for TeeStderr {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for TeeStderr {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for TeeStderr {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes)
            .map_err(|e| StreamError::LastOperationFailed(e.into()))
    }

    fn flush(&mut self) -> StreamResult<()> {
        std::io::stderr()
            .flush()
            .map_err(|e| StreamError::LastOperationFailed(e.into()))
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for TeeStderr {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for TeeStderr {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.write_bytes(buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(std::io::stderr().flush())
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
