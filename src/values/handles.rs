//! Resource handles as values: how a handle travels between host and
//! worker ([`HandleRef`], a one-entry map under a key no WIT name can
//! spell), and how a conversion finds and keeps the handles it meets
//! ([`Handles`]).

use wasmtime::component::{ResourceAny, Type, Val};

use super::Value;
use super::wit::{Mismatch, Path, type_name};

/// The key of the one-entry map a handle travels as. It starts with a
/// control character, which no WIT name (and so no record field) has.
pub(crate) const RESOURCE_KEY: &str = "\u{1}wasmpool:resource";

/// A resource handle as it travels: whose it is, its number there, and
/// its type's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HandleRef {
    /// A value the host serves (a host function made it), rather than a
    /// handle a session's worker holds.
    pub(crate) host: bool,
    /// The session that holds it (0 for a host value).
    pub(crate) owner: u64,
    pub(crate) handle: u64,
    pub(crate) type_name: String,
}

impl HandleRef {
    pub(crate) fn to_value(&self) -> Value {
        let HandleRef {
            host,
            owner,
            handle,
            type_name,
        } = self;
        Value::Map(vec![(
            Value::Str(RESOURCE_KEY.into()),
            Value::Array(vec![
                Value::Bool(*host),
                Value::Int((*owner).into()),
                Value::Int((*handle).into()),
                Value::Str(type_name.clone()),
            ]),
        )])
    }

    /// The handle `v` is, if it is one.
    pub(crate) fn from_value(v: &Value) -> Option<HandleRef> {
        let Value::Map(m) = v else { return None };
        let [(Value::Str(k), Value::Array(fields))] = m.as_slice() else {
            return None;
        };
        if k != RESOURCE_KEY {
            return None;
        }
        match fields.as_slice() {
            [
                Value::Bool(host),
                Value::Int(owner),
                Value::Int(handle),
                Value::Str(type_name),
            ] => Some(HandleRef {
                host: *host,
                owner: u64::try_from(*owner).ok()?,
                handle: u64::try_from(*handle).ok()?,
                type_name: type_name.clone(),
            }),
            _ => None,
        }
    }
}

/// The key of the one-entry map a stream or a future travels as, beside
/// [`RESOURCE_KEY`].
pub(crate) const TRANSMIT_KEY: &str = "\u{1}wasmpool:stream";

/// A stream or a future as it travels: which of its call's, by number.
/// Its items travel after it, in frames of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TransmitRef {
    pub(crate) future: bool,
    pub(crate) index: u32,
}

impl TransmitRef {
    pub(crate) fn to_value(self) -> Value {
        Value::Map(vec![(
            Value::Str(TRANSMIT_KEY.into()),
            Value::Array(vec![
                Value::Bool(self.future),
                Value::Int(self.index.into()),
            ]),
        )])
    }

    /// The stream or future `v` is, if it is one.
    pub(crate) fn from_value(v: &Value) -> Option<TransmitRef> {
        let Value::Map(m) = v else { return None };
        let [(Value::Str(k), Value::Array(fields))] = m.as_slice() else {
            return None;
        };
        match (k == TRANSMIT_KEY, fields.as_slice()) {
            (true, [Value::Bool(future), Value::Int(index)]) => Some(TransmitRef {
                future: *future,
                index: u32::try_from(*index).ok()?,
            }),
            _ => None,
        }
    }
}

/// Where a conversion finds the resources that handles stand for, and
/// keeps those it lifts; and the streams and futures, for a call that
/// can carry them.
pub(crate) trait Handles {
    /// The resource that `v`, a handle, stands for, as a `ty` (an `own` or
    /// a `borrow`).
    fn lower(&mut self, path: &Path<'_>, ty: &Type, v: Value) -> Result<Val, Mismatch>;
    /// Keeps `r`, of type `ty`, and returns its handle.
    fn lift(&mut self, ty: &Type, r: ResourceAny) -> Value;

    /// What stands for the stream or future `v` (a [`TransmitRef`]) of
    /// type `ty` until the call has a store to make it in.
    fn lower_transmit(&mut self, path: &Path<'_>, ty: &Type, _: Value) -> Result<Val, Mismatch> {
        Err(Mismatch(format!(
            "{path}: {} cannot be passed here: streams and futures cross only as a plain call's \
             parameters and results, on process workers that run several async calls at once \
             (PoolBuilder::async_calls)",
            type_name(ty)
        )))
    }

    /// Makes, in the call's `store`, the streams and futures that
    /// [`lower_transmit`](Handles::lower_transmit) left placeholders for
    /// in `params`.
    fn bind_transmits(
        &mut self,
        _store: &mut wasmtime::Store<crate::runtime::State>,
        _params: &mut [Val],
    ) -> wasmtime::Result<()> {
        Ok(())
    }

    /// Keeps the stream or future `v`, of type `ty`, to carry its items
    /// to the host, and returns its [`TransmitRef`].
    fn lift_transmit(&mut self, _: &Type, _: Val) -> Value {
        // Functions returning these are refused where none can be kept.
        Value::Nil
    }
}

/// No handles: outside a session, a resource cannot cross.
pub(crate) struct NoHandles;

impl Handles for NoHandles {
    fn lower(&mut self, path: &Path<'_>, ty: &Type, _: Value) -> Result<Val, Mismatch> {
        Err(Mismatch(format!(
            "{path}: {} cannot be passed outside a session (open one with Pool::session)",
            type_name(ty)
        )))
    }

    fn lift(&mut self, _: &Type, _: ResourceAny) -> Value {
        // Functions that return one are called on sessions only.
        Value::Nil
    }
}
