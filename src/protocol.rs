//! The frames exchanged between the host and a worker process.
//!
//! Every frame is a little-endian `u32` length followed by that many bytes of
//! MessagePack (rmp-serde, structs as maps). A worker has three channels
//! (see `platform::Channels`):
//!
//! - the *request* pipe carries [`Init`] then [`ToWorker`] frames to the
//!   worker, which serves one request at a time;
//! - the *reply* pipe carries [`FromWorker`] frames back;
//! - the *control* socket carries [`Control`] frames to the worker while a
//!   request runs, so a cancel is seen even when the worker is busy. When
//!   it closes, the host is gone and the worker exits.
//!
//! While a guest runs, it may send `wasmpool:sync` operations
//! ([`FromWorker::Sync`]) on the reply pipe; the host answers each on the
//! request pipe ([`ToWorker::Answer`]), which the blocked guest's thread
//! reads itself.
//!
//! None is the worker's stdout, which is inherited from the host. A thread
//! worker uses the same [`CallRequest`] and outcomes, without the frames.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::engine::EngineSettings;
use crate::error::WireError;

/// Bumped whenever a frame changes shape.
pub(crate) const PROTOCOL_VERSION: u32 = 4;

/// The largest frame either side accepts: 1 GiB.
pub(crate) const MAX_FRAME: usize = 1 << 30;

/// The first frame, host to worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Init {
    pub(crate) version: u32,
    pub(crate) engine: EngineSettings,
    /// Keep a job's instance between calls ([`crate::PoolBuilder::reuse_instances`]).
    pub(crate) reuse_instances: bool,
}

/// Frames the host sends on the request pipe after [`Init`].
#[derive(Debug, Serialize, Deserialize)]
#[expect(
    clippy::large_enum_variant,
    reason = "frames live only while sent or read; a call is the usual one"
)]
pub(crate) enum ToWorker {
    Call(CallRequest),
    /// The answer to the guest's [`FromWorker::Sync`] operation `seq`.
    Answer {
        seq: u64,
        answer: crate::sync::Answer,
    },
}

/// Calls of one exported function: usually one, several for a batch from
/// [`crate::Pool::map`]. The worker runs them in order, each on its own
/// instance, and answers them together in one [`FromWorker::Done`]. A
/// cancel of `id` cancels the item running and every item after it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CallRequest {
    pub(crate) id: u64,
    pub(crate) artifact: Artifact,
    pub(crate) export: ExportPath,
    /// The arguments of each call: a MessagePack array with one element
    /// per parameter.
    pub(crate) items: Vec<serde_bytes::ByteBuf>,
    pub(crate) options: CallOptions,
}

/// How one call ended: its MessagePack-encoded result, or an error, and
/// what it reported.
pub(crate) type Outcome = (Result<serde_bytes::ByteBuf, WireError>, Report);

/// Per-call settings the worker enforces: limits and the WASI sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CallOptions {
    /// Interrupt the call (epoch) after this long.
    pub(crate) timeout: Option<std::time::Duration>,
    /// The most linear memory an instance may grow to, in bytes.
    pub(crate) max_memory: Option<u64>,
    /// Environment variables the guest sees.
    pub(crate) env: Vec<(String, String)>,
    /// Host directories the guest sees.
    pub(crate) preopens: Vec<Preopen>,
    /// The fuel budget; needs an engine with fuel turned on.
    pub(crate) fuel: Option<u64>,
    pub(crate) stdout: crate::stdio::Stdio,
    pub(crate) stderr: crate::stdio::Stdio,
    /// Seed for deterministic random numbers and clocks.
    pub(crate) deterministic: Option<u64>,
}

/// What a call reports besides its result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Report {
    pub(crate) fuel_consumed: Option<u64>,
    pub(crate) stdout: Option<serde_bytes::ByteBuf>,
    pub(crate) stderr: Option<serde_bytes::ByteBuf>,
}

/// A host directory mapped into the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Preopen {
    pub(crate) host: PathBuf,
    pub(crate) guest: String,
    pub(crate) read_only: bool,
}

/// A compiled component on disk, as the host's engine serialized it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Artifact {
    /// Content hash of the component and the engine's settings.
    pub(crate) key: String,
    pub(crate) path: PathBuf,
}

/// Where a function sits among a component's exports.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct ExportPath {
    /// The exported instance (interface), or `None` for a world-level
    /// function.
    pub(crate) instance: Option<String>,
    pub(crate) func: String,
}

impl std::fmt::Display for ExportPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.instance {
            Some(i) => write!(f, "{i}#{}", self.func),
            None => f.write_str(&self.func),
        }
    }
}

/// Frames the worker sends on the reply pipe.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromWorker {
    /// The answer to [`Init`]: the engine is up.
    Ready { version: u32, pid: u32 },
    /// The answer to [`Init`] when the engine could not be built.
    Failed { message: String },
    /// The outcomes of a request's calls, one per item, in order.
    Done { id: u64, outcomes: Vec<Outcome> },
    /// A `wasmpool:sync` operation of the running guest; answered with
    /// [`ToWorker::Answer`] of the same `seq`.
    Sync { seq: u64, op: crate::sync::GuestOp },
}

/// Frames the host sends on the control socket.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Control {
    /// Interrupt call `id`, if it is still running.
    Cancel { id: u64 },
}

/// Encodes `msg` as one frame and writes it with a single `write_all`.
pub(crate) fn write_frame<W: Write, T: Serialize>(mut w: W, msg: &T) -> io::Result<()> {
    let buf = encode_frame(msg)?;
    w.write_all(&buf)
}

/// Encodes `msg` as one frame: length prefix and body.
pub(crate) fn encode_frame<T: Serialize>(msg: &T) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(64);
    buf.extend_from_slice(&[0; 4]);
    rmp_serde::encode::write_named(&mut buf, msg)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let len = buf.len() - 4;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {len} bytes is over the {MAX_FRAME}-byte limit"),
        ));
    }
    buf[..4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(buf)
}

/// Reads one frame into `buf` and decodes it. `Ok(None)` is a clean end of
/// stream before the first byte of a frame; anything malformed is
/// `InvalidData`.
pub(crate) fn read_frame<R: Read, T: DeserializeOwned>(
    mut r: R,
    buf: &mut Vec<u8>,
) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame length {len} is over the limit"),
        ));
    }
    buf.clear();
    buf.resize(len, 0);
    r.read_exact(buf)?;
    rmp_serde::from_slice(buf)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let req = ToWorker::Call(CallRequest {
            id: 7,
            artifact: Artifact {
                key: "k".into(),
                path: "/tmp/x".into(),
            },
            export: ExportPath {
                instance: Some("a:b/c".into()),
                func: "f".into(),
            },
            items: vec![serde_bytes::ByteBuf::from(vec![0x91, 0x01])],
            options: CallOptions::default(),
        });
        let bytes = encode_frame(&req).unwrap();
        let mut buf = Vec::new();
        let back: ToWorker = read_frame(&bytes[..], &mut buf).unwrap().unwrap();
        let ToWorker::Call(c) = back else {
            panic!("not a call");
        };
        assert_eq!(c.id, 7);
        assert_eq!(c.export.to_string(), "a:b/c#f");
        assert_eq!(c.items[0].as_slice(), [0x91, 0x01]);
    }

    #[test]
    fn clean_eof_is_none_and_torn_frame_is_an_error() {
        let mut buf = Vec::new();
        let none: Option<Control> = read_frame(&[][..], &mut buf).unwrap();
        assert!(none.is_none());
        let bytes = encode_frame(&Control::Cancel { id: 1 }).unwrap();
        let torn = &bytes[..bytes.len() - 1];
        assert!(read_frame::<_, Control>(torn, &mut buf).is_err());
    }

    #[test]
    fn garbage_is_invalid_data() {
        let mut bytes = 3u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0xc1, 0xc1, 0xc1]);
        let mut buf = Vec::new();
        let err = read_frame::<_, Control>(&bytes[..], &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let huge = u32::MAX.to_le_bytes();
        let err = read_frame::<_, Control>(&huge[..], &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
