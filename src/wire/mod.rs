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
//!
//! A guest's outgoing `wasi:http` request travels the same way
//! ([`GuestOp::Http`], answered by [`Answer::Http`]): the host, not the
//! worker, checks it and makes it.
//!
//! The module is the one place the protocol is written down: a change to any
//! type here (or in [`ops`] for `wasmpool:sync` operations) changes the
//! frames, and must bump [`PROTOCOL_VERSION`].

mod error;
mod http;
mod messages;
mod ops;

use std::io::{self, Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) use error::WireError;
pub(crate) use http::{
    HttpFailure, HttpGrant, HttpRequest, HttpResponse, MAX_REQUEST_BODY, MAX_RESPONSE_LIMIT,
};
pub(crate) use messages::{
    Artifact, CallFrame, CallOptions, CallRef, CallRequest, Chunk, CompileOrder, Control,
    ExportPath, FromWorker, Grant, INLINE_MAX, Init, Measured, Outcome, Payload, PayloadRef,
    Pending, Preopen, REGION_SIZE, RESULTS_AT, Report, Sandbox, SessionOp, Stdin, ToWorker,
    WireOutcome,
};
#[cfg(feature = "test-hooks")]
pub(crate) use messages::{EscapeAttempt, TestHook};
pub(crate) use ops::{Answer, GuestOp, Kind};

/// Bumped whenever a frame changes shape.
pub(crate) const PROTOCOL_VERSION: u32 = 20;

/// The largest frame either side accepts: 1 GiB.
pub(crate) const MAX_FRAME: usize = 1 << 30;

/// How much of a frame [`read_frame`] makes room for before its bytes
/// arrive.
const READ_AHEAD: usize = 1 << 16;

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
    // The buffer grows with the bytes that arrive, not with what the prefix
    // claims: a hostile peer's five bytes must not make this side allocate
    // and zero a gigabyte.
    buf.clear();
    buf.reserve(len.min(READ_AHEAD));
    if r.by_ref().take(len as u64).read_to_end(buf)? < len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
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
            items: vec![Payload::Inline(serde_bytes::ByteBuf::from(vec![
                0x91, 0x01,
            ]))],
            options: CallOptions::default(),
            session: None,
            pending: Pending::default(),
        });
        let bytes = encode_frame(&req).unwrap();
        let mut buf = Vec::new();
        let back: ToWorker = read_frame(&bytes[..], &mut buf).unwrap().unwrap();
        let ToWorker::Call(c) = back else {
            panic!("not a call");
        };
        assert_eq!(c.id, 7);
        assert_eq!(c.export.to_string(), "a:b/c#f");
        assert_eq!(
            c.items[0],
            Payload::Inline(serde_bytes::ByteBuf::from(vec![0x91, 0x01]))
        );
    }

    #[test]
    fn a_borrowed_call_encodes_as_the_call() {
        let req = CallRequest {
            id: 3,
            artifact: Artifact {
                key: "k".into(),
                path: "/tmp/x".into(),
            },
            export: ExportPath {
                instance: None,
                func: "f".into(),
            },
            items: vec![
                Payload::Inline(serde_bytes::ByteBuf::from(vec![0x91, 0x02])),
                Payload::InRegion { offset: 8, len: 9 },
            ],
            options: CallOptions::default(),
            session: None,
            pending: Pending::default(),
        };
        let borrowed = encode_frame(&CallFrame::Call(CallRef::of(&req))).unwrap();
        assert_eq!(borrowed, encode_frame(&ToWorker::Call(req)).unwrap());
        // A session's request, with what the host let go of.
        let req = CallRequest {
            id: 4,
            artifact: Artifact {
                key: "k".into(),
                path: "/tmp/x".into(),
            },
            export: ExportPath {
                instance: None,
                func: "f".into(),
            },
            items: vec![Payload::Inline(serde_bytes::ByteBuf::from(vec![0x90]))],
            options: CallOptions::default(),
            session: Some(SessionOp::Call(9)),
            pending: Pending {
                closes: vec![3],
                drops: vec![(9, 1), (5, 2)],
            },
        };
        let borrowed = encode_frame(&CallFrame::Call(CallRef::of(&req))).unwrap();
        let owned = encode_frame(&ToWorker::Call(req)).unwrap();
        assert_eq!(borrowed, owned);
        let mut buf = Vec::new();
        let Some(ToWorker::Call(back)) = read_frame(&owned[..], &mut buf).unwrap() else {
            panic!("not a call");
        };
        assert_eq!(back.session, Some(SessionOp::Call(9)));
        assert_eq!(back.pending.drops, [(9, 1), (5, 2)]);
        assert_eq!(back.pending.closes, [3]);
    }

    #[test]
    fn a_report_carries_its_figures_as_a_short_array() {
        let measured = Measured {
            wall_ns: 12_345,
            cpu_ns: Some((7_000, 3_000)),
            peak_memory: 1 << 20,
            bytes_in: 2,
            bytes_out: 1,
        };
        let alone = rmp_serde::to_vec_named(&measured).unwrap();
        assert!(alone.len() <= 20, "{} bytes", alone.len());
        let report = Report {
            measured,
            ..Report::default()
        };
        let back: Report =
            rmp_serde::from_slice(&rmp_serde::to_vec_named(&report).unwrap()).unwrap();
        assert_eq!(back.measured, measured);
        // A report from a node of the last version, without the figures.
        #[derive(Serialize)]
        struct Old {
            fuel_consumed: Option<u64>,
            stdout: Option<serde_bytes::ByteBuf>,
            stderr: Option<serde_bytes::ByteBuf>,
        }
        let old = Old {
            fuel_consumed: Some(5),
            stdout: None,
            stderr: None,
        };
        let back: Report = rmp_serde::from_slice(&rmp_serde::to_vec_named(&old).unwrap()).unwrap();
        assert_eq!(
            (back.fuel_consumed, back.measured),
            (Some(5), Measured::default())
        );
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

    /// Found by the `frame_to_worker` and `frame_from_worker` fuzz targets:
    /// a length prefix of nearly `MAX_FRAME` and no body made the reader
    /// allocate and zero the whole gigabyte before finding the body absent.
    #[test]
    fn a_hostile_length_prefix_allocates_only_what_arrives() {
        let mut bytes = ((MAX_FRAME - 1) as u32).to_le_bytes().to_vec();
        bytes.push(0x00);
        let mut buf = Vec::new();
        let err = read_frame::<_, ToWorker>(&bytes[..], &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(buf.capacity() <= 2 * READ_AHEAD, "{}", buf.capacity());
        let err = read_frame::<_, FromWorker>(&bytes[..], &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(buf.capacity() <= 2 * READ_AHEAD, "{}", buf.capacity());
    }

    #[test]
    fn a_frame_larger_than_the_read_ahead_arrives_whole() {
        let req = Control::Cancel { id: 9 };
        let small = encode_frame(&req).unwrap();
        let item = serde_bytes::ByteBuf::from(vec![7u8; 3 * READ_AHEAD]);
        let big = encode_frame(&FromWorker::Sync {
            seq: 1,
            op: GuestOp::Emit { value: item },
        })
        .unwrap();
        let mut stream = big.clone();
        stream.extend_from_slice(&small);
        let mut r = &stream[..];
        let mut buf = Vec::new();
        let Some(FromWorker::Sync {
            op: GuestOp::Emit { value },
            ..
        }) = read_frame(&mut r, &mut buf).unwrap()
        else {
            panic!("not the emit");
        };
        assert_eq!(value.len(), 3 * READ_AHEAD);
        let back: Option<Control> = read_frame(&mut r, &mut buf).unwrap();
        assert!(matches!(back, Some(Control::Cancel { id: 9 })));
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
