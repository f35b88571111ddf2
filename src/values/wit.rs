//! The serde <-> WIT value mapping (DESIGN §2), between [`Value`] and
//! wasmtime's `component::Val`, guided by the function's WIT types.
//!
//! | WIT | from the host | to the host |
//! | --- | --- | --- |
//! | `bool`, integers, floats | the primitive; integers range-checked | the primitive |
//! | `char` | a one-character string | a string |
//! | `string` | a string | a string |
//! | `list<u8>` | bytes, or an array of integers | bytes |
//! | `list<T>`, `tuple<..>` | an array | an array |
//! | `record` | a map by field name, or an array in field order | a map by WIT field name |
//! | `variant` | a case name, or a map of one case name to its payload | the same |
//! | `enum` | a case name | a case name |
//! | `option<T>` | nil or the value (`some(none)` of an `option<option<T>>` is `[nil]`) | the same |
//! | `result<T, E>` | a map `{"ok": T}` or `{"err": E}` | the same |
//! | `flags` | an array of flag names | an array of flag names |
//! | `own<T>`, `borrow<T>` | a [`crate::Resource`]: a guest's in a session (a plain call refuses them), a host's in any call | the same |
//! | `stream<T>`, `future<T>` (`T` a primitive, `char` or `string`) | a [`crate::StreamReader`] or [`crate::FutureReader`], as a whole parameter of a plain call on a worker that runs several async calls at once | the same, anywhere in the result |
//! | `error-context` | refused | refused |
//!
//! Names compare ignoring case, `-` and `_`.

use std::fmt::Write as _;

use wasmtime::component::{Type, Val};

pub(crate) use super::Path;
use super::{Handles, NoHandles, Value, find_name, names_match};

/// The WIT spelling of a type, for error messages.
pub(crate) fn type_name(ty: &Type) -> String {
    let mut s = String::new();
    write_type(&mut s, ty, 0);
    s
}

fn write_type(s: &mut String, ty: &Type, depth: usize) {
    if depth > 3 {
        s.push_str("..");
        return;
    }
    let d = depth + 1;
    match ty {
        Type::Bool => s.push_str("bool"),
        Type::S8 => s.push_str("s8"),
        Type::U8 => s.push_str("u8"),
        Type::S16 => s.push_str("s16"),
        Type::U16 => s.push_str("u16"),
        Type::S32 => s.push_str("s32"),
        Type::U32 => s.push_str("u32"),
        Type::S64 => s.push_str("s64"),
        Type::U64 => s.push_str("u64"),
        Type::Float32 => s.push_str("f32"),
        Type::Float64 => s.push_str("f64"),
        Type::Char => s.push_str("char"),
        Type::String => s.push_str("string"),
        Type::List(l) => {
            s.push_str("list<");
            write_type(s, &l.ty(), d);
            s.push('>');
        }
        Type::FixedLengthList(l) => {
            s.push_str("list<");
            write_type(s, &l.ty(), d);
            let _ = write!(s, ", {}>", l.len());
        }
        Type::Map(m) => {
            s.push_str("map<");
            write_type(s, &m.key(), d);
            s.push_str(", ");
            write_type(s, &m.value(), d);
            s.push('>');
        }
        Type::Record(r) => {
            s.push_str("record { ");
            for (i, f) in r.fields().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                let _ = write!(s, "{}: ", f.name);
                write_type(s, &f.ty, d);
            }
            s.push_str(" }");
        }
        Type::Tuple(t) => {
            s.push_str("tuple<");
            for (i, t) in t.types().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                write_type(s, &t, d);
            }
            s.push('>');
        }
        Type::Variant(v) => {
            s.push_str("variant { ");
            for (i, c) in v.cases().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                s.push_str(c.name);
                if let Some(t) = &c.ty {
                    s.push('(');
                    write_type(s, t, d);
                    s.push(')');
                }
            }
            s.push_str(" }");
        }
        Type::Enum(e) => {
            let _ = write!(s, "enum {{ {} }}", e.names().collect::<Vec<_>>().join(", "));
        }
        Type::Flags(f) => {
            let _ = write!(
                s,
                "flags {{ {} }}",
                f.names().collect::<Vec<_>>().join(", ")
            );
        }
        Type::Option(o) => {
            s.push_str("option<");
            write_type(s, &o.ty(), d);
            s.push('>');
        }
        Type::Result(r) => {
            s.push_str("result<");
            match r.ok() {
                Some(t) => write_type(s, &t, d),
                None => s.push('_'),
            }
            s.push_str(", ");
            match r.err() {
                Some(t) => write_type(s, &t, d),
                None => s.push('_'),
            }
            s.push('>');
        }
        Type::Own(_) => s.push_str("own<resource>"),
        Type::Borrow(_) => s.push_str("borrow<resource>"),
        Type::Future(f) => write_payload(s, "future", f.ty(), d),
        Type::Stream(t) => write_payload(s, "stream", t.ty(), d),
        Type::ErrorContext => s.push_str("error-context"),
    }
}

fn write_payload(s: &mut String, what: &str, ty: Option<Type>, d: usize) {
    s.push_str(what);
    if let Some(t) = ty {
        s.push('<');
        write_type(s, &t, d);
        s.push('>');
    }
}

/// Whether a stream or a future of `payload` can cross: its items must be
/// of a type the worker knows by name (wasmtime types a host's end of a
/// stream statically).
pub(crate) fn transmit_payload_ok(payload: Option<&Type>) -> bool {
    matches!(
        payload,
        Some(
            Type::Bool
                | Type::S8
                | Type::U8
                | Type::S16
                | Type::U16
                | Type::S32
                | Type::U32
                | Type::S64
                | Type::U64
                | Type::Float32
                | Type::Float64
                | Type::Char
                | Type::String
        )
    )
}

/// Whether a function's parameter or result of type `ty` carries streams
/// or futures, or why it cannot: a parameter may be one as a whole (not
/// inside another type), a result may hold them anywhere; each of a
/// payload [`transmit_payload_ok`] allows.
pub(crate) fn transmits(ty: &Type, param: bool) -> Result<bool, String> {
    if let Type::Future(_) | Type::Stream(_) = ty
        && param
    {
        return payload_ok(ty).map(|()| true);
    }
    let carries = std::cell::Cell::new(false);
    let refused = first_inside(ty, &|t| match t {
        Type::Future(_) | Type::Stream(_) if param => Some(format!(
            "{}, which crosses only as a whole parameter, not inside another type",
            type_name(t)
        )),
        Type::Future(_) | Type::Stream(_) => {
            carries.set(true);
            payload_ok(t).err()
        }
        Type::ErrorContext => Some("error-context, which cannot cross".into()),
        _ => None,
    });
    match refused {
        None => Ok(carries.get()),
        Some(why) => Err(why),
    }
}

fn payload_ok(ty: &Type) -> Result<(), String> {
    let payload = match ty {
        Type::Future(f) => f.ty(),
        Type::Stream(s) => s.ty(),
        _ => None,
    };
    if transmit_payload_ok(payload.as_ref()) {
        Ok(())
    } else {
        Err(format!(
            "{}, whose items cannot cross: a stream's or future's items must be a bool, an \
             integer, a float, a char or a string",
            type_name(ty)
        ))
    }
}

/// Whether `ty` holds resource handles, which cross only in a session.
pub(crate) fn resources_inside(ty: &Type) -> bool {
    first_inside(ty, &|t| {
        matches!(t, Type::Own(_) | Type::Borrow(_)).then(String::new)
    })
    .is_some()
}

/// The first type inside `ty` that not even a session can carry across
/// a process boundary, if any.
pub(crate) fn unsupported_in_session(ty: &Type) -> Option<String> {
    first_inside(ty, &async_type)
}

fn async_type(ty: &Type) -> Option<String> {
    matches!(ty, Type::Future(_) | Type::Stream(_) | Type::ErrorContext)
        .then(|| "async types (future, stream, error-context)".into())
}

/// What `f` says of the first type inside `ty` (itself included) it
/// says anything of.
pub(crate) fn first_inside(ty: &Type, f: &dyn Fn(&Type) -> Option<String>) -> Option<String> {
    if let Some(found) = f(ty) {
        return Some(found);
    }
    let inner = |t: &Type| first_inside(t, f);
    match ty {
        Type::List(l) => inner(&l.ty()),
        Type::FixedLengthList(l) => inner(&l.ty()),
        Type::Map(m) => inner(&m.key()).or_else(|| inner(&m.value())),
        Type::Option(o) => inner(&o.ty()),
        Type::Record(r) => r.fields().find_map(|f| inner(&f.ty)),
        Type::Tuple(t) => t.types().find_map(|t| inner(&t)),
        Type::Variant(v) => v.cases().find_map(|c| c.ty.as_ref().and_then(inner)),
        Type::Result(r) => r
            .ok()
            .and_then(|t| inner(&t))
            .or_else(|| r.err().and_then(|t| inner(&t))),
        _ => None,
    }
}

/// A value that does not fit its WIT type.
pub(crate) struct Mismatch(pub(crate) String);

fn mismatch(path: &Path<'_>, ty: &Type, got: &Value) -> Mismatch {
    Mismatch(format!(
        "{path}: expected {}, got {}",
        type_name(ty),
        got.describe()
    ))
}

fn int(path: &Path<'_>, ty: &Type, v: &Value, min: i128, max: i128) -> Result<i128, Mismatch> {
    match v {
        Value::Int(i) if (min..=max).contains(i) => Ok(*i),
        Value::Int(i) => Err(Mismatch(format!(
            "{path}: {i} is out of range for {}",
            type_name(ty)
        ))),
        other => Err(mismatch(path, ty, other)),
    }
}

fn float(path: &Path<'_>, ty: &Type, v: &Value) -> Result<f64, Mismatch> {
    match v {
        Value::F32(f) => Ok(f64::from(*f)),
        Value::F64(f) => Ok(*f),
        Value::Int(i) => Ok(*i as f64),
        // What JSON cannot say as a number.
        Value::Str(s) => match s.as_str() {
            "NaN" | "nan" => Ok(f64::NAN),
            "inf" | "Infinity" | "+inf" => Ok(f64::INFINITY),
            "-inf" | "-Infinity" => Ok(f64::NEG_INFINITY),
            _ => Err(mismatch(path, ty, v)),
        },
        other => Err(mismatch(path, ty, other)),
    }
}

/// Converts one [`Value`] into a `Val` of type `ty`.
pub(crate) fn to_val(path: &Path<'_>, ty: &Type, v: Value) -> Result<Val, Mismatch> {
    to_val_in(path, ty, v, &mut NoHandles)
}

/// [`to_val`], with resource handles found through `cx`.
pub(crate) fn to_val_in(
    path: &Path<'_>,
    ty: &Type,
    v: Value,
    cx: &mut dyn Handles,
) -> Result<Val, Mismatch> {
    Ok(match ty {
        Type::Bool => match v {
            Value::Bool(b) => Val::Bool(b),
            other => return Err(mismatch(path, ty, &other)),
        },
        Type::S8 => Val::S8(int(path, ty, &v, i8::MIN.into(), i8::MAX.into())? as i8),
        Type::U8 => Val::U8(int(path, ty, &v, 0, u8::MAX.into())? as u8),
        Type::S16 => Val::S16(int(path, ty, &v, i16::MIN.into(), i16::MAX.into())? as i16),
        Type::U16 => Val::U16(int(path, ty, &v, 0, u16::MAX.into())? as u16),
        Type::S32 => Val::S32(int(path, ty, &v, i32::MIN.into(), i32::MAX.into())? as i32),
        Type::U32 => Val::U32(int(path, ty, &v, 0, u32::MAX.into())? as u32),
        Type::S64 => Val::S64(int(path, ty, &v, i64::MIN.into(), i64::MAX.into())? as i64),
        Type::U64 => Val::U64(int(path, ty, &v, 0, u64::MAX.into())? as u64),
        Type::Float32 => match v {
            Value::F32(f) => Val::Float32(f),
            other => Val::Float32(float(path, ty, &other)? as f32),
        },
        Type::Float64 => Val::Float64(float(path, ty, &v)?),
        Type::Char => character(path, ty, v)?,
        Type::String => match v {
            Value::Str(s) => Val::String(s),
            other => return Err(mismatch(path, ty, &other)),
        },
        Type::List(l) => {
            let elem = l.ty();
            match (v, &elem) {
                (Value::Bin(b), Type::U8) => Val::List(b.into_iter().map(Val::U8).collect()),
                (Value::Array(a), _) => Val::List(list(path, &elem, a, cx)?),
                (other, _) => return Err(mismatch(path, ty, &other)),
            }
        }
        Type::FixedLengthList(l) => fixed_list(path, ty, l, v, cx)?,
        Type::Map(m) => map(path, ty, m, v, cx)?,
        Type::Tuple(t) => tuple(path, ty, t, v, cx)?,
        Type::Record(r) => record(path, ty, r, v, cx)?,
        Type::Variant(var) => variant(path, ty, var, v, cx)?,
        Type::Enum(e) => enumeration(path, ty, e, v)?,
        Type::Option(o) => match v {
            Value::Nil => Val::Option(None),
            // `some(none)` of an option of an option, which nil cannot say.
            Value::Array(a)
                if matches!(o.ty(), Type::Option(_)) && matches!(a.as_slice(), [Value::Nil]) =>
            {
                Val::Option(Some(Box::new(Val::Option(None))))
            }
            v => Val::Option(Some(Box::new(to_val_in(path, &o.ty(), v, cx)?))),
        },
        Type::Result(r) => result(path, ty, r, v, cx)?,
        Type::Flags(f) => flags(path, ty, f, v)?,
        Type::Own(_) | Type::Borrow(_) => cx.lower(path, ty, v)?,
        Type::Future(_) | Type::Stream(_) => cx.lower_transmit(path, ty, v)?,
        Type::ErrorContext => {
            return Err(Mismatch(format!(
                "{path}: {} cannot be passed to a worker process",
                type_name(ty)
            )));
        }
    })
}

fn fixed_list(
    path: &Path<'_>,
    ty: &Type,
    l: &wasmtime::component::types::FixedLengthList,
    v: Value,
    cx: &mut dyn Handles,
) -> Result<Val, Mismatch> {
    let elem = l.ty();
    let items = match v {
        Value::Bin(b) if matches!(elem, Type::U8) => {
            b.into_iter().map(|x| Value::Int(x.into())).collect()
        }
        Value::Array(a) => a,
        other => return Err(mismatch(path, ty, &other)),
    };
    if items.len() != l.len() as usize {
        return Err(Mismatch(format!(
            "{path}: expected {} elements, got {}",
            l.len(),
            items.len()
        )));
    }
    Ok(Val::FixedLengthList(list(path, &elem, items, cx)?))
}

fn map(
    path: &Path<'_>,
    ty: &Type,
    m: &wasmtime::component::types::Map,
    v: Value,
    cx: &mut dyn Handles,
) -> Result<Val, Mismatch> {
    let (kt, vt) = (m.key(), m.value());
    let Value::Map(entries) = v else {
        return Err(mismatch(path, ty, &v));
    };
    let mut out = Vec::with_capacity(entries.len());
    for (i, (k, val)) in entries.into_iter().enumerate() {
        let p = Path::Index(path, i);
        out.push((to_val_in(&p, &kt, k, cx)?, to_val_in(&p, &vt, val, cx)?));
    }
    Ok(Val::Map(out))
}

fn tuple(
    path: &Path<'_>,
    ty: &Type,
    t: &wasmtime::component::types::Tuple,
    v: Value,
    cx: &mut dyn Handles,
) -> Result<Val, Mismatch> {
    let types: Vec<Type> = t.types().collect();
    let Value::Array(items) = v else {
        return Err(mismatch(path, ty, &v));
    };
    if items.len() != types.len() {
        return Err(Mismatch(format!(
            "{path}: expected a tuple of {}, got an array of {}",
            types.len(),
            items.len()
        )));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, (t, item)) in types.iter().zip(items).enumerate() {
        out.push(to_val_in(&Path::Index(path, i), t, item, cx)?);
    }
    Ok(Val::Tuple(out))
}

fn variant(
    path: &Path<'_>,
    ty: &Type,
    var: &wasmtime::component::types::Variant,
    v: Value,
    cx: &mut dyn Handles,
) -> Result<Val, Mismatch> {
    let (name, payload) = tagged(path, ty, v)?;
    let cases: Vec<_> = var.cases().collect();
    let found = find_name(cases.iter().map(|c| c.name), &name);
    let Some(case) = cases.into_iter().find(|c| Some(c.name) == found) else {
        return Err(Mismatch(format!(
            "{path}: {name:?} is not a case of {}",
            type_name(ty)
        )));
    };
    let payload = match (&case.ty, payload) {
        (None, None | Some(Value::Nil)) => None,
        (None, Some(p)) => {
            return Err(Mismatch(format!(
                "{path}: case {} has no payload, got {}",
                case.name,
                p.describe()
            )));
        }
        (Some(t), p) => Some(Box::new(to_val_in(
            &Path::Field(path, case.name),
            t,
            p.unwrap_or(Value::Nil),
            cx,
        )?)),
    };
    Ok(Val::Variant(case.name.to_string(), payload))
}

fn enumeration(
    path: &Path<'_>,
    ty: &Type,
    e: &wasmtime::component::types::Enum,
    v: Value,
) -> Result<Val, Mismatch> {
    let (name, payload) = tagged(path, ty, v)?;
    if payload.is_some_and(|p| p != Value::Nil) {
        return Err(Mismatch(format!("{path}: enum cases have no payload")));
    }
    let names: Vec<&str> = e.names().collect();
    match find_name(names, &name) {
        Some(n) => Ok(Val::Enum(n.to_string())),
        None => Err(Mismatch(format!(
            "{path}: {name:?} is not a case of {}",
            type_name(ty)
        ))),
    }
}

fn result(
    path: &Path<'_>,
    ty: &Type,
    r: &wasmtime::component::types::ResultType,
    v: Value,
    cx: &mut dyn Handles,
) -> Result<Val, Mismatch> {
    let (name, payload) = tagged(path, ty, v)?;
    let (is_ok, t) = if names_match(&name, "ok") {
        (true, r.ok())
    } else if names_match(&name, "err") {
        (false, r.err())
    } else {
        return Err(Mismatch(format!(
            "{path}: expected `ok` or `err` for {}, got {name:?}",
            type_name(ty)
        )));
    };
    let p = Path::Field(path, if is_ok { "ok" } else { "err" });
    let inner = match (t, payload) {
        (None, None | Some(Value::Nil)) => None,
        (None, Some(other)) => {
            return Err(Mismatch(format!(
                "{p}: this case has no payload, got {}",
                other.describe()
            )));
        }
        (Some(t), payload) => Some(Box::new(to_val_in(
            &p,
            &t,
            payload.unwrap_or(Value::Nil),
            cx,
        )?)),
    };
    Ok(Val::Result(if is_ok { Ok(inner) } else { Err(inner) }))
}

fn flags(
    path: &Path<'_>,
    ty: &Type,
    f: &wasmtime::component::types::Flags,
    v: Value,
) -> Result<Val, Mismatch> {
    let Value::Array(items) = v else {
        return Err(mismatch(path, ty, &v));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Value::Str(name) = item else {
            return Err(mismatch(&Path::Index(path, i), ty, &item));
        };
        match find_name(f.names().collect::<Vec<_>>(), &name) {
            Some(n) => out.push(n.to_string()),
            None => {
                return Err(Mismatch(format!(
                    "{}: {name:?} is not a flag of {}",
                    Path::Index(path, i),
                    type_name(ty)
                )));
            }
        }
    }
    Ok(Val::Flags(out))
}

fn character(path: &Path<'_>, ty: &Type, v: Value) -> Result<Val, Mismatch> {
    match v {
        Value::Str(ref s) => {
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Ok(Val::Char(c)),
                _ => Err(mismatch(path, ty, &v)),
            }
        }
        Value::Int(i) => match u32::try_from(i).ok().and_then(char::from_u32) {
            Some(c) => Ok(Val::Char(c)),
            None => Err(mismatch(path, ty, &v)),
        },
        other => Err(mismatch(path, ty, &other)),
    }
}

fn list(
    path: &Path<'_>,
    elem: &Type,
    items: Vec<Value>,
    cx: &mut dyn Handles,
) -> Result<Vec<Val>, Mismatch> {
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        out.push(to_val_in(&Path::Index(path, i), elem, item, cx)?);
    }
    Ok(out)
}

/// Reads a variant-like value: a bare name, or a map of one name to its
/// payload.
fn tagged(path: &Path<'_>, ty: &Type, v: Value) -> Result<(String, Option<Value>), Mismatch> {
    match v {
        Value::Str(s) => Ok((s, None)),
        Value::Map(m) if m.len() == 1 => {
            let (k, payload) = m.into_iter().next().expect("one entry");
            match k {
                Value::Str(s) => Ok((s, Some(payload))),
                other => Err(mismatch(path, ty, &other)),
            }
        }
        other => Err(mismatch(path, ty, &other)),
    }
}

fn record(
    path: &Path<'_>,
    ty: &Type,
    r: &wasmtime::component::types::Record,
    v: Value,
    cx: &mut dyn Handles,
) -> Result<Val, Mismatch> {
    let fields: Vec<_> = r.fields().collect();
    match v {
        Value::Map(entries) => {
            let mut slots: Vec<Option<Value>> = (0..fields.len()).map(|_| None).collect();
            for (k, val) in entries {
                let Value::Str(name) = k else {
                    return Err(Mismatch(format!(
                        "{path}: record keys must be field names, got {}",
                        k.describe()
                    )));
                };
                let found = find_name(fields.iter().map(|f| f.name), &name);
                let Some(i) = fields.iter().position(|f| Some(f.name) == found) else {
                    return Err(Mismatch(format!(
                        "{path}: {name:?} is not a field of {}",
                        type_name(ty)
                    )));
                };
                slots[i] = Some(val);
            }
            let mut out = Vec::with_capacity(fields.len());
            for (f, slot) in fields.iter().zip(slots) {
                let p = Path::Field(path, f.name);
                let val = match (slot, &f.ty) {
                    (Some(v), t) => to_val_in(&p, t, v, cx)?,
                    // An absent optional field is `none`.
                    (None, Type::Option(_)) => Val::Option(None),
                    (None, t) => {
                        return Err(Mismatch(format!(
                            "{p}: missing field of type {}",
                            type_name(t)
                        )));
                    }
                };
                out.push((f.name.to_string(), val));
            }
            Ok(Val::Record(out))
        }
        Value::Array(items) if items.len() == fields.len() => {
            let mut out = Vec::with_capacity(fields.len());
            for (f, item) in fields.iter().zip(items) {
                out.push((
                    f.name.to_string(),
                    to_val_in(&Path::Field(path, f.name), &f.ty, item, cx)?,
                ));
            }
            Ok(Val::Record(out))
        }
        other => Err(mismatch(path, ty, &other)),
    }
}

/// Converts a result `Val` of type `ty` into a [`Value`] for the host.
pub(crate) fn from_val(ty: &Type, v: Val) -> Value {
    from_val_in(ty, v, &mut NoHandles)
}

/// [`from_val`], with resource handles kept through `cx`.
pub(crate) fn from_val_in(ty: &Type, v: Val, cx: &mut dyn Handles) -> Value {
    match v {
        Val::Bool(b) => Value::Bool(b),
        Val::S8(i) => Value::Int(i.into()),
        Val::U8(i) => Value::Int(i.into()),
        Val::S16(i) => Value::Int(i.into()),
        Val::U16(i) => Value::Int(i.into()),
        Val::S32(i) => Value::Int(i.into()),
        Val::U32(i) => Value::Int(i.into()),
        Val::S64(i) => Value::Int(i.into()),
        Val::U64(i) => Value::Int(i.into()),
        Val::Float32(f) => Value::F32(f),
        Val::Float64(f) => Value::F64(f),
        Val::Char(c) => Value::Str(c.to_string()),
        Val::String(s) => Value::Str(s),
        Val::List(items) | Val::FixedLengthList(items) => {
            let elem = match ty {
                Type::List(l) => l.ty(),
                Type::FixedLengthList(l) => l.ty(),
                _ => Type::Bool,
            };
            if matches!(elem, Type::U8) {
                Value::Bin(
                    items
                        .into_iter()
                        .map(|v| if let Val::U8(b) = v { b } else { 0 })
                        .collect(),
                )
            } else {
                Value::Array(
                    items
                        .into_iter()
                        .map(|v| from_val_in(&elem, v, cx))
                        .collect(),
                )
            }
        }
        Val::Map(entries) => {
            let (kt, vt) = match ty {
                Type::Map(m) => (m.key(), m.value()),
                _ => (Type::Bool, Type::Bool),
            };
            Value::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| (from_val_in(&kt, k, cx), from_val_in(&vt, v, cx)))
                    .collect(),
            )
        }
        Val::Record(fields) => {
            let types: Vec<Type> = match ty {
                Type::Record(r) => r.fields().map(|f| f.ty).collect(),
                _ => Vec::new(),
            };
            Value::Map(
                fields
                    .into_iter()
                    .enumerate()
                    .map(|(i, (name, v))| {
                        let t = types.get(i).cloned().unwrap_or(Type::Bool);
                        (Value::Str(name), from_val_in(&t, v, cx))
                    })
                    .collect(),
            )
        }
        Val::Tuple(items) => {
            let types: Vec<Type> = match ty {
                Type::Tuple(t) => t.types().collect(),
                _ => Vec::new(),
            };
            Value::Array(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| from_val_in(types.get(i).unwrap_or(&Type::Bool), v, cx))
                    .collect(),
            )
        }
        Val::Variant(name, payload) => match payload {
            None => Value::Str(name),
            Some(p) => {
                let t = match ty {
                    Type::Variant(var) => var
                        .cases()
                        .find(|c| c.name == name)
                        .and_then(|c| c.ty)
                        .unwrap_or(Type::Bool),
                    _ => Type::Bool,
                };
                Value::Map(vec![(Value::Str(name), from_val_in(&t, *p, cx))])
            }
        },
        Val::Enum(name) => Value::Str(name),
        Val::Option(None) => Value::Nil,
        Val::Option(Some(v)) if matches!(*v, Val::Option(None)) => Value::Array(vec![Value::Nil]),
        Val::Option(Some(v)) => {
            let t = match ty {
                Type::Option(o) => o.ty(),
                _ => Type::Bool,
            };
            from_val_in(&t, *v, cx)
        }
        Val::Result(r) => {
            let (ok_t, err_t) = match ty {
                Type::Result(rt) => (rt.ok(), rt.err()),
                _ => (None, None),
            };
            let (name, t, payload) = match r {
                Ok(p) => ("ok", ok_t, p),
                Err(p) => ("err", err_t, p),
            };
            let payload = match (payload, t) {
                (Some(p), Some(t)) => from_val_in(&t, *p, cx),
                (Some(p), None) => from_val_in(&Type::Bool, *p, cx),
                (None, _) => Value::Nil,
            };
            Value::Map(vec![(Value::Str(name.into()), payload)])
        }
        Val::Flags(names) => Value::Array(names.into_iter().map(Value::Str).collect()),
        Val::Resource(r) => cx.lift(ty, r),
        v @ (Val::Future(_) | Val::Stream(_)) => cx.lift_transmit(ty, v),
        // Functions returning these are refused before they are called.
        Val::ErrorContext(_) => Value::Nil,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::component::Component;
    use wasmtime::component::types::ComponentItem;

    /// The types a component exports, by name.
    fn exported_types(binary: &[u8]) -> Vec<(String, Type)> {
        let engine = wasmtime::Engine::default();
        let component = Component::new(&engine, binary).expect("a valid component");
        component
            .component_type()
            .exports(&engine)
            .filter_map(|(name, item)| match item.ty {
                ComponentItem::Type(t) => Some((name.to_string(), t)),
                _ => None,
            })
            .collect()
    }

    /// Found by the `wit_transcode` fuzz target: of two names that differ
    /// only in `-`, the second was never reached, as `ab` read as `a-b`.
    #[test]
    fn names_that_differ_only_in_dashes_find_their_own() {
        #[rustfmt::skip]
        let binary = [
            0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00,
            // (type (enum "a-b" "ab"))
            // (type (record (field "a-b" u8) (field "ab" u8)))
            // (type (flags "a-b" "ab"))
            // (type (variant (case "a-b") (case "ab" u8)))
            0x07, 0x2c, 0x04,
            0x6d, 0x02, 0x03, b'a', b'-', b'b', 0x02, b'a', b'b',
            0x72, 0x02, 0x03, b'a', b'-', b'b', 0x7d, 0x02, b'a', b'b', 0x7d,
            0x6e, 0x02, 0x03, b'a', b'-', b'b', 0x02, b'a', b'b',
            0x71, 0x02, 0x03, b'a', b'-', b'b', 0x00, 0x00, 0x02, b'a', b'b', 0x01, 0x7d, 0x00,
            // (export "e" (type 0)) (export "r" (type 1)) ...
            0x0b, 0x19, 0x04,
            0x00, 0x01, b'e', 0x03, 0x00, 0x00,
            0x00, 0x01, b'r', 0x03, 0x01, 0x00,
            0x00, 0x01, b'f', 0x03, 0x02, 0x00,
            0x00, 0x01, b'v', 0x03, 0x03, 0x00,
        ];
        let types = exported_types(&binary);
        let ty = |n: &str| types.iter().find(|(name, _)| name == n).unwrap().1.clone();
        let s = |x: &str| Value::Str(x.into());
        let root = Path::Root("arg");
        let to = |t: &Type, v: Value| to_val(&root, t, v).unwrap_or_else(|m| panic!("{}", m.0));

        let e = ty("e");
        assert_eq!(to(&e, s("ab")), Val::Enum("ab".into()));
        assert_eq!(to(&e, s("a-b")), Val::Enum("a-b".into()));
        assert_eq!(to(&e, s("a_b")), Val::Enum("a-b".into()));

        let r = ty("r");
        let v = Value::Map(vec![(s("ab"), Value::Int(2)), (s("a-b"), Value::Int(1))]);
        assert_eq!(
            to(&r, v),
            Val::Record(vec![("a-b".into(), Val::U8(1)), ("ab".into(), Val::U8(2))])
        );

        let f = ty("f");
        let v = Value::Array(vec![s("ab")]);
        assert_eq!(to(&f, v), Val::Flags(vec!["ab".into()]));

        let v = ty("v");
        let payload = Value::Map(vec![(s("ab"), Value::Int(7))]);
        assert_eq!(
            to(&v, payload),
            Val::Variant("ab".into(), Some(Box::new(Val::U8(7))))
        );
        assert_eq!(to(&v, s("a-b")), Val::Variant("a-b".into(), None));
        // And back: what a worker sends reads as the same.
        for (t, val) in [
            (&e, Val::Enum("ab".into())),
            (&v, Val::Variant("ab".into(), Some(Box::new(Val::U8(7))))),
        ] {
            assert_eq!(to(t, from_val(t, val.clone())), val);
        }
    }
}
