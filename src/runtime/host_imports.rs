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
use wasmtime::{AsContextMut as _, Engine, StoreContextMut};

use super::store::State;
use crate::engine::is_builtin_import;
use crate::host::resources::DROP_FUNCTION;
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
    let ty = component.component_type();
    let imports: Vec<(&str, ComponentItem)> = ty
        .imports(engine)
        .filter(|(name, _)| !is_builtin_import(name))
        .map(|(name, import)| (name, import.ty))
        .collect();
    if imports.is_empty() {
        return Ok(None);
    }
    // The resource types the host serves, by name: each its own type, the
    // payload its place here. A name met twice is one type (a world's `use`
    // of an interface's resource imports it again, as the same type).
    let mut names: Vec<String> = Vec::new();
    for (name, item) in &imports {
        let mut add = |n: &str| {
            if !names.iter().any(|m| m == n) {
                names.push(n.to_string());
            }
        };
        match item {
            ComponentItem::ComponentInstance(instance) => {
                for (item, export) in instance.exports(engine) {
                    if let ComponentItem::Resource(_) = export.ty {
                        add(item);
                    }
                }
            }
            ComponentItem::Resource(_) => add(name),
            _ => {}
        }
    }
    let names: Arc<[String]> = names.into();
    let mut linker = base.clone();
    let resource = |li: &mut LinkerInstance<'_, State>, name: &str| {
        let n = names.iter().position(|m| m == name).unwrap_or_default();
        define_resource(li, name, host_type(n as u32))
    };
    for (name, item) in imports {
        match item {
            ComponentItem::ComponentInstance(instance) => {
                let mut li = linker.instance(name)?;
                for (item, export) in instance.exports(engine) {
                    match export.ty {
                        ComponentItem::ComponentFunc(f) => {
                            let function = format!("{name}#{item}");
                            define(&mut li, item, function, f.async_(), names.clone())?;
                        }
                        ComponentItem::Resource(_) => resource(&mut li, item)?,
                        _ => {}
                    }
                }
            }
            ComponentItem::ComponentFunc(f) => {
                let function = name.to_string();
                define(
                    &mut linker.root(),
                    name,
                    function,
                    f.async_(),
                    names.clone(),
                )?;
            }
            ComponentItem::Resource(_) => resource(&mut linker.root(), name)?,
            // Types, and what nothing can provide: instantiation says so.
            _ => {}
        }
    }
    Ok(Some(linker))
}

/// Defines `name` in `li` as a call of the host function `function`. An
/// `async func` import is defined as a concurrent host function, the only
/// kind wasmtime links to one: while it waits for the host's answer, the
/// guest's other tasks run.
fn define(
    li: &mut LinkerInstance<'_, State>,
    name: &str,
    function: String,
    is_async: bool,
    resources: Arc<[String]>,
) -> wasmtime::Result<()> {
    let function: Arc<str> = function.into();
    if is_async {
        return li.func_new_concurrent(name, move |accessor, ty, params, results| {
            let function = function.clone();
            let resources = resources.clone();
            Box::pin(async move {
                let (port, op) = accessor.with(|mut access| {
                    let mut store = access.as_context_mut();
                    let port = store.data().port.clone();
                    (
                        port,
                        host_op(&mut store, &function, &resources, &ty, params),
                    )
                });
                let answer = port.call_async(op).await?;
                accessor.with(|mut access| {
                    let mut store = access.as_context_mut();
                    host_result(&mut store, &function, &resources, &ty, answer, results)
                })
            })
        });
    }
    li.func_new_async(
        name,
        move |store: StoreContextMut<'_, State>, ty, params, results| {
            let function = function.clone();
            let resources = resources.clone();
            Box::new(async move { call(store, &function, &resources, &ty, params, results) })
        },
    )
}

/// Where the payloads of the host's resource types start: the `n`th
/// resource type a component imports is `host_dynamic(HOST_RESOURCES + n)`.
const HOST_RESOURCES: u32 = 0x5741_0000;

/// The `n`th resource type a component imports.
fn host_type(n: u32) -> ResourceType {
    ResourceType::host_dynamic(HOST_RESOURCES + n)
}

/// Defines resource type `name` in `li` as `ty`, a host value's: the
/// guest's handle is the host's, and its drop tells the host.
fn define_resource(
    li: &mut LinkerInstance<'_, State>,
    name: &str,
    ty: ResourceType,
) -> wasmtime::Result<()> {
    li.resource(name, ty, |store: StoreContextMut<'_, State>, rep: u32| {
        let op = GuestOp::Host {
            returns: None,
            function: DROP_FUNCTION.to_string(),
            args: ByteBuf::from(values::encode(&Value::Array(vec![Value::Int(rep.into())]))),
        };
        // A drop the host cannot hear of (no call in flight) leaves the
        // value to the end of its call or session.
        let _ = store.data().port.exchange(op, None);
        Ok(())
    })
}

/// A host call's resource handles: host values, by the handle the host
/// gave them.
struct HostHandles<'a, 'b> {
    store: &'a mut StoreContextMut<'b, State>,
    /// The component's imported resource types, in order.
    resources: &'a [String],
}

impl HostHandles<'_, '_> {
    /// The place among the imported resource types of `ty` (an `own` or a
    /// `borrow` of one).
    fn place(&self, ty: &Type) -> Option<u32> {
        let (Type::Own(rt) | Type::Borrow(rt)) = ty else {
            return None;
        };
        (0..self.resources.len() as u32).find(|n| host_type(*n) == *rt)
    }
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
        let Some(n) = self.place(ty) else {
            return Err(wit::Mismatch(format!(
                "{path}: {} is not a resource type the host serves",
                wit::type_name(ty)
            )));
        };
        let resource = match ty {
            Type::Borrow(_) => ResourceDynamic::new_borrow(rep, HOST_RESOURCES + n),
            _ => ResourceDynamic::new_own(rep, HOST_RESOURCES + n),
        };
        resource
            .try_into_resource_any(&mut *self.store)
            .map(Val::Resource)
            .map_err(|e| wit::Mismatch(format!("{path}: {e:#}")))
    }

    fn lift(&mut self, _: &Type, r: ResourceAny) -> Value {
        let dynamic = r.try_into_resource_dynamic(&mut *self.store).ok();
        let named = dynamic.and_then(|d| {
            let n = d.ty().checked_sub(HOST_RESOURCES)?;
            Some((d, self.resources.get(n as usize)?))
        });
        match named {
            Some((d, type_name)) => HandleRef {
                host: true,
                owner: 0,
                handle: d.rep().into(),
                type_name: type_name.clone(),
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
    resources: &[String],
    ty: &ComponentFunc,
    params: &[Val],
    results: &mut [Val],
) -> wasmtime::Result<()> {
    let port = store.data().port.clone();
    let op = host_op(&mut store, function, resources, ty, params);
    let answer = port.exchange(op, None)?;
    host_result(&mut store, function, resources, ty, answer, results)
}

/// The operation that calls the host function `function` with `params`.
fn host_op(
    store: &mut StoreContextMut<'_, State>,
    function: &str,
    resources: &[String],
    ty: &ComponentFunc,
    params: &[Val],
) -> GuestOp {
    let mut handles = HostHandles { store, resources };
    let args: Vec<Value> = ty
        .params()
        .zip(params)
        .map(|((_, t), v)| wit::from_val_in(&t, v.clone(), &mut handles))
        .collect();
    let returns = ty.results().next().and_then(|t| {
        wit::first_inside(&t, &|t| {
            let n = handles.place(t).filter(|_| matches!(t, Type::Own(_)))?;
            resources.get(n as usize).cloned()
        })
    });
    GuestOp::Host {
        returns,
        function: function.to_string(),
        args: ByteBuf::from(values::encode(&Value::Array(args))),
    }
}

/// The host's `answer` to a call of `function`, into `results`.
fn host_result(
    store: &mut StoreContextMut<'_, State>,
    function: &str,
    resources: &[String],
    ty: &ComponentFunc,
    answer: Answer,
    results: &mut [Val],
) -> wasmtime::Result<()> {
    let fail = |message: String| HostFailed {
        message: format!("host function {function}: {message}"),
        error: None,
    };
    match answer {
        Answer::Value(bytes) => {
            let value = values::decode(&bytes)
                .map_err(|e| fail(format!("result: not valid MessagePack: {e}")))?;
            if let (Some(t), Some(slot)) = (ty.results().next(), results.first_mut()) {
                let mut handles = HostHandles { store, resources };
                *slot = wit::to_val_in(&wit::Path::Root("result"), &t, value, &mut handles)
                    .map_err(|m| fail(m.0))?;
            }
            Ok(())
        }
        Answer::HostFailed { message, error } => Err(HostFailed { message, error }.into()),
        other => Err(fail(format!("unexpected answer {}", other.label())).into()),
    }
}
