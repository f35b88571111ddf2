//! The guest's imports that the pool's host functions serve: every import
//! that is neither WASI nor `wasmpool:sync` becomes a call to the host,
//! typed by the import's own signature, on the path `wasmpool:sync`
//! operations take.

use std::sync::Arc;

use serde_bytes::ByteBuf;
use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{Component, Linker, LinkerInstance, Val};
use wasmtime::{Engine, StoreContextMut};

use super::port::Port;
use super::store::State;
use crate::engine::is_builtin_import;
use crate::values::{self, Value, wit};
use crate::wire::{Answer, GuestOp};

/// A host function failed, or its values did not fit: the guest traps with
/// this, classified as `ErrorKind::HostFunction`.
#[derive(Debug)]
pub(super) struct HostFailed {
    pub(super) message: String,
    /// The host's id of the function's own error.
    pub(super) error: Option<u64>,
}

impl std::fmt::Display for HostFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HostFailed {}

/// `base` with every import of `component` that wasmpool does not provide
/// defined as a host call; `None` when the component has none.
pub(super) fn link(
    engine: &Engine,
    base: &Linker<State>,
    component: &Component,
) -> wasmtime::Result<Option<Linker<State>>> {
    let mut linker: Option<Linker<State>> = None;
    for (name, import) in component.component_type().imports(engine) {
        if is_builtin_import(name) {
            continue;
        }
        let linker = linker.get_or_insert_with(|| base.clone());
        match import.ty {
            ComponentItem::ComponentInstance(instance) => {
                let mut li = linker.instance(name)?;
                for (func, export) in instance.exports(engine) {
                    if let ComponentItem::ComponentFunc(_) = export.ty {
                        define(&mut li, func, format!("{name}#{func}"))?;
                    }
                }
            }
            ComponentItem::ComponentFunc(_) => define(&mut linker.root(), name, name.to_string())?,
            // Types, and what nothing can provide: instantiation says so.
            _ => {}
        }
    }
    Ok(linker)
}

/// Defines `name` in `li` as a call of the host function `function`.
fn define(
    li: &mut LinkerInstance<'_, State>,
    name: &str,
    function: String,
) -> wasmtime::Result<()> {
    let function: Arc<str> = function.into();
    li.func_new_async(
        name,
        move |store: StoreContextMut<'_, State>, ty, params, results| {
            let port = store.data().port.clone();
            let function = function.clone();
            Box::new(async move { call(&port, &function, &ty, params, results) })
        },
    )
}

/// One host call: the arguments out as MessagePack, the guest blocked until
/// the answer, the result in.
fn call(
    port: &Port,
    function: &str,
    ty: &ComponentFunc,
    params: &[Val],
    results: &mut [Val],
) -> wasmtime::Result<()> {
    let args: Vec<Value> = ty
        .params()
        .zip(params)
        .map(|((_, t), v)| wit::from_val(&t, v.clone()))
        .collect();
    let op = GuestOp::Host {
        function: function.to_string(),
        args: ByteBuf::from(values::encode(&Value::Array(args))),
    };
    let fail = |message: String| HostFailed {
        message: format!("host function {function}: {message}"),
        error: None,
    };
    match port.exchange(op, None)? {
        Answer::Value(bytes) => {
            let value = values::decode(&bytes)
                .map_err(|e| fail(format!("result: not valid MessagePack: {e}")))?;
            if let (Some(t), Some(slot)) = (ty.results().next(), results.first_mut()) {
                *slot =
                    wit::to_val(&wit::Path::Root("result"), &t, value).map_err(|m| fail(m.0))?;
            }
            Ok(())
        }
        Answer::HostFailed { message, error } => Err(HostFailed { message, error }.into()),
        other => Err(fail(format!("unexpected answer {}", other.label())).into()),
    }
}
