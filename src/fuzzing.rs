//! Entry points for the fuzz targets in `fuzz/`, which can only see the
//! public API. Not part of wasmpool's API: built only with the `fuzzing`
//! feature, hidden, and free to change.
//!
//! Each reads its input the way the real code does, and panics where the
//! real code would go wrong; the targets add the checks that need no
//! internals.

use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasmtime::component::{Type, Val};

use crate::error::Error;
use crate::pool::compile;
use crate::values::{self, Value, wit};
use crate::wire::{
    CallFrame, CallRef, Control, ExportPath, FromWorker, GuestOp, Init, Payload, ToWorker,
    encode_frame, read_frame,
};

/// Reads `stream` as a worker reads its request pipe: an `Init` frame,
/// then `ToWorker` frames, to the end or the first error. Each frame read
/// must encode back to a frame that reads the same.
pub fn worker_reads_requests(mut stream: &[u8]) {
    let mut buf = Vec::new();
    let Ok(Some(init)) = read_frame::<_, Init>(&mut stream, &mut buf) else {
        return;
    };
    round_trip(&init);
    while let Ok(Some(frame)) = read_frame::<_, ToWorker>(&mut stream, &mut buf) {
        if let ToWorker::Call(req) = &frame {
            // The host sends calls borrowed: the bytes must be the same.
            let borrowed = encode_frame(&CallFrame::Call(CallRef::of(req))).expect("encodes");
            assert_eq!(borrowed, encode_frame(&frame).expect("encodes"));
        }
        round_trip(&frame);
    }
}

/// Reads `stream` as a worker reads its control socket.
pub fn worker_reads_control(mut stream: &[u8]) {
    let mut buf = Vec::new();
    while let Ok(Some(frame)) = read_frame::<_, Control>(&mut stream, &mut buf) {
        round_trip(&frame);
    }
}

/// Reads `stream` as the host reads a worker's reply pipe, to the end or
/// the first error, and makes of each frame what the host makes of it: the
/// errors, results and host-function arguments it carries.
pub fn host_reads_replies(mut stream: &[u8]) {
    let mut buf = Vec::new();
    while let Ok(Some(frame)) = read_frame::<_, FromWorker>(&mut stream, &mut buf) {
        round_trip(&frame);
        match frame {
            FromWorker::Done { outcomes, .. } => {
                for (result, report) in outcomes {
                    match result {
                        // The host reads a shared result only through
                        // `Region::read`, which checks its bounds.
                        Ok(Payload::InRegion { .. }) => {}
                        Ok(Payload::Inline(bytes)) => {
                            if let Ok(v) = values::decode(&bytes) {
                                let _ = values::from_value::<Value>(v, "result");
                            }
                        }
                        Err(e) => {
                            let _ = Error::from(e).to_string();
                        }
                    }
                    let _ = format!("{report:?}");
                }
            }
            FromWorker::Sync {
                op: GuestOp::Host { function, args, .. },
                ..
            } => {
                let _ = (function, values::decode(&args));
            }
            other => {
                let _ = format!("unexpected frame {other:?}");
            }
        }
    }
}

fn round_trip<T: Serialize + DeserializeOwned + Debug>(msg: &T) {
    let bytes = encode_frame(msg).expect("a decoded frame encodes");
    let back: T = read_frame(&bytes[..], &mut Vec::new())
        .expect("an encoded frame decodes")
        .expect("an encoded frame is a frame");
    assert_eq!(format!("{back:?}"), format!("{msg:?}"));
}

/// Decodes `msgpack` and converts it to a `Val` of type `ty`, as a worker
/// does with an argument. `Err` says why it does not fit; `None` is bytes
/// that are not MessagePack.
pub fn to_val(ty: &Type, msgpack: &[u8]) -> Option<Result<Val, String>> {
    let value = values::decode(msgpack).ok()?;
    Some(wit::to_val(&wit::Path::Root("arg"), ty, value).map_err(|m| m.0))
}

/// Converts a result `Val` of type `ty` to MessagePack, as a worker does.
pub fn from_val(ty: &Type, v: Val) -> Vec<u8> {
    values::encode(&wit::from_val(ty, v))
}

/// What in `ty` cannot cross a process boundary, if anything, and its WIT
/// spelling for error messages.
pub fn describe_type(ty: &Type) -> (Option<String>, String) {
    let what = if wit::resources_inside(ty) {
        Some("resource handles".to_string())
    } else {
        match wit::transmits(ty, false) {
            Ok(false) => None,
            Ok(true) => Some("streams or futures".to_string()),
            Err(why) => Some(why),
        }
    };
    (what, wit::type_name(ty))
}

/// Decodes `msgpack` and reads a `T` out of it, as the host does with a
/// result. `None` is bytes that are not MessagePack.
pub fn from_value<T: DeserializeOwned>(msgpack: &[u8]) -> Option<Result<T, String>> {
    let value = values::decode(msgpack).ok()?;
    Some(values::from_value(value, "result").map_err(|e| e.to_string()))
}

/// The index of the export of `exports` (instance, function) that `name`
/// names, as `pool.run(&job, name, ..)` resolves it.
pub fn find_export(exports: &[(Option<String>, String)], name: &str) -> Result<usize, String> {
    let funcs: Vec<(ExportPath, usize)> = exports
        .iter()
        .enumerate()
        .map(|(i, (instance, func))| {
            (
                ExportPath {
                    instance: instance.clone(),
                    func: func.clone(),
                },
                i,
            )
        })
        .collect();
    compile::find(&funcs, name)
        .map(|(_, i)| i)
        .map_err(|e| e.to_string())
}
