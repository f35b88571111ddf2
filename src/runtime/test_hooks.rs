//! What a worker process does instead of a call's guest when the call
//! carries a [`TestHook`]: what no guest can make it do (try to escape its
//! sandbox natively, stall outside wasm, scribble over its payload region).
//! Built only with the `test-hooks` feature, which the crate's own tests
//! turn on: no production worker has any of it.

use crate::platform::WorkerRegion;
use crate::values;
use crate::wire::{Payload, Report, TestHook, WireOutcome};

/// A call with a [`TestHook`]: one outcome per item. An escape's is the
/// list of `[attempt, how it ended]`; a stall's is nil; a scribble's is
/// what it claims.
pub(super) fn run(
    hook: &TestHook,
    items: usize,
    region: Option<&mut WorkerRegion>,
) -> Vec<WireOutcome> {
    let attempt = match hook {
        TestHook::Scribble { offset, len, fill } => {
            // A hostile worker: garbage over the region, and results that
            // point wherever it likes.
            if let Some(r) = region {
                r.scribble(*offset, *len, *fill);
            }
            return (0..items)
                .map(|_| {
                    (
                        Ok(Payload::InRegion {
                            offset: *offset,
                            len: *len,
                        }),
                        Report::default(),
                    )
                })
                .collect();
        }
        TestHook::Escape(attempt) => attempt,
        TestHook::Stall(how_long) => {
            std::thread::sleep(*how_long);
            let nil = values::encode(&values::Value::Nil);
            return (0..items)
                .map(|_| {
                    (
                        Ok(Payload::Inline(serde_bytes::ByteBuf::from(nil.clone()))),
                        Report::default(),
                    )
                })
                .collect();
        }
    };
    let tried = crate::platform::attempt_escape(
        &attempt.outside,
        attempt.readonly.as_deref(),
        attempt.exec,
    );
    let value = values::Value::Array(
        tried
            .into_iter()
            .map(|(what, how)| {
                values::Value::Array(vec![values::Value::Str(what), values::Value::Str(how)])
            })
            .collect(),
    );
    let bytes = values::encode(&value);
    (0..items)
        .map(|_| {
            (
                Ok(Payload::Inline(serde_bytes::ByteBuf::from(bytes.clone()))),
                Report::default(),
            )
        })
        .collect()
}
