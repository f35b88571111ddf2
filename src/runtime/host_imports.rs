//! The guest's imports that the pool's host functions serve: every import
//! that is neither WASI nor `wasmpool:sync` becomes a call to the host,
//! typed by the import's own signature, on the path `wasmpool:sync`
//! operations take.

use std::sync::Arc;

use serde_bytes::ByteBuf;
use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{
    Component, Linker, LinkerInstance, ResourceAny, ResourceDynamic, ResourceType, Type, Val,
};
use wasmtime::{Engine, StoreContextMut};

use super::store::State;
use crate::engine::is_builtin_import;
use crate::host::resources::{DROP_FUNCTION, resource_of};
use crate::values::{self, HandleRef, Handles, Value, wit};
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
                for (item, export) in instance.exports(engine) {
                    match export.ty {
                        ComponentItem::ComponentFunc(_) => {
                            define(&mut li, item, format!("{name}#{item}"))?;
                        }
                        ComponentItem::Resource(_) => define_resource(&mut li, item)?,
                        _ => {}
                    }
                }
            }
            ComponentItem::ComponentFunc(_) => define(&mut linker.root(), name, name.to_string())?,
            ComponentItem::Resource(_) => define_resource(&mut linker.root(), name)?,
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
            let function = function.clone();
            Box::new(async move { call(store, &function, &ty, params, results) })
        },
    )
}

/// The type every resource a host function serves has: one for all, since
/// the host tells its values apart by their handles and their Rust types.
const HOST_RESOURCE: u32 = 0x5741_5350;

/// Defines resource type `name` in `li` as a host value's: the guest's
/// handle is the host's, and its drop tells the host.
fn define_resource(li: &mut LinkerInstance<'_, State>, name: &str) -> wasmtime::Result<()> {
    li.resource(
        name,
        ResourceType::host_dynamic(HOST_RESOURCE),
        |store: StoreContextMut<'_, State>, rep: u32| {
            let op = GuestOp::Host {
                function: DROP_FUNCTION.to_string(),
                args: ByteBuf::from(values::encode(&Value::Array(vec![Value::Int(rep.into())]))),
            };
            // A drop the host cannot hear of (no call in flight) leaves the
            // value to the end of its call or session.
            let _ = store.data().port.exchange(op, None);
            Ok(())
        },
    )
}

/// A host call's resource handles: host values, by the handle the host
/// gave them.
struct HostHandles<'a, 'b> {
    store: &'a mut StoreContextMut<'b, State>,
    function: &'a str,
}

impl Handles for HostHandles<'_, '_> {
    fn lower(&mut self, path: &wit::Path<'_>, ty: &Type, v: Value) -> Result<Val, wit::Mismatch> {
        let handle = HandleRef::from_value(&v)
            .filter(|h| h.host)
            .and_then(|h| u32::try_from(h.handle).ok());
        let Some(rep) = handle else {
            return Err(wit::Mismatch(format!(
                "{path}: expected a {} made by HostContext::new_resource, got {}",
                wit::type_name(ty),
                v.describe()
            )));
        };
        let resource = match ty {
            Type::Borrow(_) => ResourceDynamic::new_borrow(rep, HOST_RESOURCE),
            _ => ResourceDynamic::new_own(rep, HOST_RESOURCE),
        };
        resource
            .try_into_resource_any(&mut *self.store)
            .map(Val::Resource)
            .map_err(|e| wit::Mismatch(format!("{path}: {e:#}")))
    }

    fn lift(&mut self, _: &Type, r: ResourceAny) -> Value {
        match r.try_into_resource_dynamic(&mut *self.store) {
            Ok(d) if d.ty() == HOST_RESOURCE => HandleRef {
                host: true,
                owner: 0,
                handle: d.rep().into(),
                type_name: resource_of(self.function).unwrap_or("resource").to_string(),
            }
            .to_value(),
            // The guest's own resources do not go to the host.
            _ => Value::Nil,
        }
    }
}

/// One host call: the arguments out as MessagePack, the guest blocked until
/// the answer, the result in.
fn call(
    mut store: StoreContextMut<'_, State>,
    function: &str,
    ty: &ComponentFunc,
    params: &[Val],
    results: &mut [Val],
) -> wasmtime::Result<()> {
    let port = store.data().port.clone();
    let mut handles = HostHandles {
        store: &mut store,
        function,
    };
    let args: Vec<Value> = ty
        .params()
        .zip(params)
        .map(|((_, t), v)| wit::from_val_in(&t, v.clone(), &mut handles))
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
                *slot = wit::to_val_in(&wit::Path::Root("result"), &t, value, &mut handles)
                    .map_err(|m| fail(m.0))?;
            }
            Ok(())
        }
        Answer::HostFailed { message, error } => Err(HostFailed { message, error }.into()),
        other => Err(fail(format!("unexpected answer {}", other.label())).into()),
    }
}
