//! A job as an executor holds it: the artifact mapped from the cache, its
//! `InstancePre`, and each function resolved once, with the shape of its
//! fast path through wasmtime's typed API.

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::Engine;
use wasmtime::Store;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{
    ComponentExportIndex, Instance, InstancePre, Linker, ResourceType, Type, Val,
};

use super::store::State;
use crate::error::ErrorKind;
use crate::values::Value;
use crate::wire::{Artifact, ExportPath, WireError};

/// A job loaded in this executor: its instance-pre and resolved functions.
pub(super) struct Loaded {
    /// Where it was loaded from, to load it again into a new engine.
    pub(super) artifact: Artifact,
    component: wasmtime::component::Component,
    pub(super) pre: InstancePre<State>,
    funcs: HashMap<ExportPath, Arc<Func>>,
    /// The resource types it exports and imports, by name: read once,
    /// when a session first needs them.
    names: Option<Arc<ResourceNames>>,
}

/// A component's resource types and their names (`counter`), as its
/// functions' types refer to them.
pub(super) type ResourceNames = Vec<(ResourceType, String)>;

/// An exported function, resolved in a loaded job.
pub(super) struct Func {
    pub(super) index: ComponentExportIndex,
    pub(super) params: Vec<Type>,
    pub(super) results: Vec<Type>,
    /// Set when the signature can be called through wasmtime's typed API.
    pub(super) typed: Option<TypedOut>,
}

/// Functions of one `list<u8>` or `string` parameter, whose result is one
/// of these, are called through wasmtime's typed API. It copies bytes and
/// strings across with `memcpy`, where the dynamic [`Val`] API holds a
/// byte list as one `Val` per byte (about 0.1 µs per byte, both ways): for
/// a 1 MiB payload that is 1 ms against 100.
#[derive(Clone, Copy, Debug)]
pub(super) enum TypedOut {
    Unit,
    Bytes,
    Str,
    Bool,
    U32,
    S32,
    U64,
    S64,
    F64,
}

/// A call's arguments: for the dynamic API, or one payload for the typed,
/// borrowed from the request (or the payload region) as it arrived, so
/// that it is copied once, into the guest.
pub(super) enum Params<'a> {
    Dynamic(Vec<Val>),
    Bytes(&'a [u8]),
    Str(&'a str),
}

/// The one element of a MessagePack array of one `bin` or `str`: whether
/// it is a `str`, and its bytes, borrowed.
pub(super) fn single_payload(args: &[u8]) -> Option<(bool, &[u8])> {
    let (&0x91, rest) = args.split_first()? else {
        return None;
    };
    crate::values::lone_bin_or_str(rest)
}

fn typed_shape(params: &[Type], results: &[Type]) -> Option<TypedOut> {
    let is_bytes = |t: &Type| matches!(t, Type::List(l) if matches!(l.ty(), Type::U8));
    match params {
        [p] if is_bytes(p) || matches!(p, Type::String) => {}
        _ => return None,
    }
    Some(match results {
        [] => TypedOut::Unit,
        [r] if is_bytes(r) => TypedOut::Bytes,
        [Type::String] => TypedOut::Str,
        [Type::Bool] => TypedOut::Bool,
        [Type::U32] => TypedOut::U32,
        [Type::S32] => TypedOut::S32,
        [Type::U64] => TypedOut::U64,
        [Type::S64] => TypedOut::S64,
        [Type::Float64] => TypedOut::F64,
        _ => return None,
    })
}

/// Calls a function with a [`TypedOut`] shape through the typed API.
pub(super) async fn call_typed(
    store: &mut Store<State>,
    instance: &Instance,
    index: ComponentExportIndex,
    params: &Params<'_>,
    out: TypedOut,
) -> wasmtime::Result<Value> {
    macro_rules! call {
        ($arg:expr, $R:ty, $wrap:expr) => {{
            let f = instance.get_typed_func::<(_,), ($R,)>(&mut *store, index)?;
            let (r,) = f.call_async(&mut *store, ($arg,)).await?;
            $wrap(r)
        }};
    }
    macro_rules! by_result {
        ($arg:expr) => {
            match out {
                TypedOut::Unit => {
                    let f = instance.get_typed_func::<(_,), ()>(&mut *store, index)?;
                    f.call_async(&mut *store, ($arg,)).await?;
                    Value::Nil
                }
                TypedOut::Bytes => call!($arg, Vec<u8>, Value::Bin),
                TypedOut::Str => call!($arg, String, Value::Str),
                TypedOut::Bool => call!($arg, bool, Value::Bool),
                TypedOut::U32 => call!($arg, u32, |x: u32| Value::Int(x.into())),
                TypedOut::S32 => call!($arg, i32, |x: i32| Value::Int(x.into())),
                TypedOut::U64 => call!($arg, u64, |x: u64| Value::Int(x.into())),
                TypedOut::S64 => call!($arg, i64, |x: i64| Value::Int(x.into())),
                TypedOut::F64 => call!($arg, f64, Value::F64),
            }
        };
    }
    Ok(match params {
        Params::Bytes(b) => by_result!(*b),
        Params::Str(s) => by_result!(*s),
        Params::Dynamic(_) => unreachable!("only typed payloads come here"),
    })
}

pub(super) fn load(
    engine: &Engine,
    linker: &Linker<State>,
    artifact: &Artifact,
) -> Result<Loaded, WireError> {
    let component = crate::platform::load_artifact(engine, &artifact.path).map_err(|e| {
        WireError::new(
            ErrorKind::InvalidComponent,
            format!("loading artifact {}: {e:#}", artifact.path.display()),
        )
    })?;
    let invalid = |e: wasmtime::Error| {
        WireError::new(
            ErrorKind::InvalidComponent,
            format!("the component needs imports wasmpool does not provide: {e:#}"),
        )
    };
    let with_host = super::host_imports::link(engine, linker, &component).map_err(invalid)?;
    let pre = with_host
        .as_ref()
        .unwrap_or(linker)
        .instantiate_pre(&component)
        .map_err(invalid)?;
    Ok(Loaded {
        artifact: artifact.clone(),
        component,
        pre,
        funcs: HashMap::new(),
        names: None,
    })
}

impl Loaded {
    /// The resource types of the component, by name.
    pub(super) fn resource_names(&mut self) -> Arc<ResourceNames> {
        let component = &self.component;
        self.names
            .get_or_insert_with(|| {
                let engine = component.engine();
                let ty = component.component_type();
                let mut names = Vec::new();
                let mut add = |name: &str, item: ComponentItem| match item {
                    ComponentItem::Resource(rt) => names.push((rt, name.to_string())),
                    ComponentItem::ComponentInstance(instance) => {
                        for (n, export) in instance.exports(engine) {
                            if let ComponentItem::Resource(rt) = export.ty {
                                names.push((rt, n.to_string()));
                            }
                        }
                    }
                    _ => {}
                };
                for (name, export) in ty.exports(engine) {
                    add(name, export.ty);
                }
                for (name, import) in ty.imports(engine) {
                    add(name, import.ty);
                }
                Arc::new(names)
            })
            .clone()
    }

    pub(super) fn func(&mut self, path: &ExportPath) -> Result<Arc<Func>, WireError> {
        if let Some(f) = self.funcs.get(path) {
            return Ok(f.clone());
        }
        let missing = || WireError::new(ErrorKind::NoSuchFunction, format!("no export {path}"));
        let parent = match &path.instance {
            Some(i) => Some(
                self.component
                    .get_export_index(None, i)
                    .ok_or_else(missing)?,
            ),
            None => None,
        };
        let (item, index) = self
            .component
            .get_export(parent.as_ref(), &path.func)
            .ok_or_else(missing)?;
        let wasmtime::component::types::ComponentItem::ComponentFunc(ty) = item else {
            return Err(missing());
        };
        let params: Vec<Type> = ty.params().map(|(_, t)| t).collect();
        let results: Vec<Type> = ty.results().collect();
        let f = Arc::new(Func {
            index,
            typed: typed_shape(&params, &results),
            params,
            results,
        });
        self.funcs.insert(path.clone(), f.clone());
        Ok(f)
    }
}
