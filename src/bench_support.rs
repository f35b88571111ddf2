//! Entry points for the criterion micro-benchmarks in `benches/`, which
//! can only see the public API. Not part of wasmpool's API: built only with
//! the `unstable-bench` feature, hidden, and free to change.

use std::path::Path;

use crate::engine::EngineSettings;
use crate::error::Error;
use crate::job::Job;
use crate::pool::compile::{self, Compiled};
use crate::runtime::{Answers, Executor};
use crate::values::{self as value, wit};
use crate::wire::{
    CallOptions, CallRequest, ExportPath, FromWorker, Payload, Report, ToWorker, encode_frame,
    read_frame,
};

/// Encodes a call request carrying `args` as the host does, then decodes it
/// as a worker does. Returns the frame's size.
pub fn call_frame_roundtrip(args: &[u8]) -> usize {
    let req = ToWorker::Call(CallRequest {
        id: 7,
        artifact: crate::wire::Artifact {
            key: "0123456789abcdef0123456789abcdef01234567".into(),
            path: "/home/user/.cache/wasmpool/0123456789abcdef.cwasm".into(),
        },
        export: ExportPath {
            instance: Some("wasmpool:jobs/math@0.1.0".into()),
            func: "fib".into(),
        },
        items: vec![Payload::Inline(serde_bytes::ByteBuf::from(args.to_vec()))],
        options: CallOptions::default(),
        session: None,
        pending: Default::default(),
    });
    let frame = encode_frame(&req).expect("encodes");
    let mut buf = Vec::new();
    let back: Option<ToWorker> = read_frame(&frame[..], &mut buf).expect("decodes");
    assert!(back.is_some());
    frame.len()
}

/// Encodes a reply carrying `result` as a worker does, and decodes it as
/// the host does. Returns the frame's size.
pub fn reply_frame_roundtrip(result: &[u8]) -> usize {
    let done = FromWorker::Done {
        id: 7,
        outcomes: vec![(
            Ok(Payload::Inline(serde_bytes::ByteBuf::from(result.to_vec()))),
            Report::default(),
        )],
    };
    let frame = encode_frame(&done).expect("encodes");
    let mut buf = Vec::new();
    let back: Option<FromWorker> = read_frame(&frame[..], &mut buf).expect("decodes");
    assert!(back.is_some());
    frame.len()
}

/// A job compiled into a private cache directory, for the benchmarks.
fn compiled(path: &Path, cache: &Path, settings: &EngineSettings) -> Result<Compiled, Error> {
    let job = Job::from_file(path)?;
    let engine = settings
        .host_engine()
        .map_err(|e| Error::new(crate::ErrorKind::Config, format!("{e:#}")))?;
    compile::compile(&engine, settings, cache, &job, None, u64::MAX)
}

/// Turns MessagePack arguments into wasmtime values for one function's
/// parameters and back: the value transcoding a call does at each end.
pub struct Transcoder {
    params: Vec<wasmtime::component::Type>,
}

impl std::fmt::Debug for Transcoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcoder").finish_non_exhaustive()
    }
}

impl Transcoder {
    /// For function `func` of the component at `path`.
    pub fn new(path: &Path, cache: &Path, func: &str) -> Result<Transcoder, Error> {
        let compiled = compiled(path, cache, &EngineSettings::default())?;
        let (params, _) = compiled.signature(func)?;
        Ok(Transcoder { params })
    }

    /// MessagePack → `Val` for each parameter → MessagePack. Returns the
    /// re-encoded bytes.
    pub fn roundtrip(&self, args: &[u8]) -> Vec<u8> {
        let Ok(value::Value::Array(items)) = value::decode(args) else {
            panic!("args are a tuple");
        };
        let root = wit::Path::Root("args");
        let back: Vec<value::Value> = self
            .params
            .iter()
            .zip(items)
            .enumerate()
            .map(|(i, (ty, v))| {
                let val = match wit::to_val(&wit::Path::Index(&root, i), ty, v) {
                    Ok(val) => val,
                    Err(m) => panic!("{}", m.0),
                };
                wit::from_val(ty, val)
            })
            .collect();
        value::encode(&value::Value::Array(back))
    }
}

/// A worker's executor in this thread: each call builds a store, an
/// instance (or reuses one), and runs.
pub struct Runner {
    executor: Executor,
    compiled: Compiled,
    next: u64,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").finish_non_exhaustive()
    }
}

impl Runner {
    /// For the component at `path`, compiled into `cache`.
    pub fn new(path: &Path, cache: &Path, reuse: bool) -> Result<Runner, Error> {
        let settings = EngineSettings::default();
        let compiled = compiled(path, cache, &settings)?;
        let executor = Executor::new(
            &settings,
            reuse,
            std::sync::Arc::new(Answers::inbox(std::sync::Arc::default())),
            Box::new(|_, _| Err(std::io::Error::other("no registry in a benchmark"))),
        )
        .map_err(|e| Error::new(crate::ErrorKind::Spawn, e))?;
        Ok(Runner {
            executor,
            compiled,
            next: 0,
        })
    }

    /// Calls `func` with MessagePack `args`; returns the MessagePack
    /// result.
    pub fn call(&mut self, func: &str, args: &[u8]) -> Result<Vec<u8>, Error> {
        let resolved = self.compiled.resolve(func)?;
        self.next += 1;
        let req = CallRequest {
            id: self.next,
            artifact: self.compiled.artifact.clone(),
            export: resolved.export.clone(),
            items: vec![Payload::Inline(serde_bytes::ByteBuf::from(args.to_vec()))],
            options: CallOptions::default(),
            session: None,
            pending: Default::default(),
        };
        let mut out = None;
        let () = self
            .executor
            .run(req, |mut outcomes| {
                out = outcomes.pop().map(|(o, _)| o);
                Ok::<(), ()>(())
            })
            .expect("the reply closure never fails");
        match out.expect("run replies") {
            Ok(Payload::Inline(bytes)) => Ok(bytes.into_vec()),
            Ok(Payload::InRegion { .. }) => {
                unreachable!("an executor without a region answers inline")
            }
            Err(e) => Err(Error::from(e)),
        }
    }
}
