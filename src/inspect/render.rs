//! WIT text for types: a type as it appears in a signature, and the
//! definition of a named type.

use std::fmt::Write as _;

use wit_parser::{
    Function, FunctionKind, Handle, Resolve, Type, TypeDefKind, TypeId, TypeOwner, WorldItem,
};

/// A type as a signature spells it: named types by name, others
/// structurally (`list<point>`, `result<u32, string>`).
pub(super) fn type_text(resolve: &Resolve, ty: &Type) -> String {
    let mut s = String::new();
    write_type(&mut s, resolve, ty);
    s
}

fn write_type(s: &mut String, resolve: &Resolve, ty: &Type) {
    let id = match ty {
        Type::Bool => return s.push_str("bool"),
        Type::U8 => return s.push_str("u8"),
        Type::U16 => return s.push_str("u16"),
        Type::U32 => return s.push_str("u32"),
        Type::U64 => return s.push_str("u64"),
        Type::S8 => return s.push_str("s8"),
        Type::S16 => return s.push_str("s16"),
        Type::S32 => return s.push_str("s32"),
        Type::S64 => return s.push_str("s64"),
        Type::F32 => return s.push_str("f32"),
        Type::F64 => return s.push_str("f64"),
        Type::Char => return s.push_str("char"),
        Type::String => return s.push_str("string"),
        Type::ErrorContext => return s.push_str("error-context"),
        Type::Id(id) => *id,
    };
    let def = &resolve.types[id];
    if let Some(name) = &def.name {
        return s.push_str(name);
    }
    write_kind(s, resolve, &def.kind);
}

/// The structure of an anonymous type, or the right-hand side of a named
/// alias.
fn write_kind(s: &mut String, resolve: &Resolve, kind: &TypeDefKind) {
    let generic = |s: &mut String, name: &str, args: &[&Type]| {
        s.push_str(name);
        s.push('<');
        for (i, t) in args.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            write_type(s, resolve, t);
        }
        s.push('>');
    };
    match kind {
        TypeDefKind::List(t) => generic(s, "list", &[t]),
        TypeDefKind::FixedLengthList(t, n) => {
            s.push_str("list<");
            write_type(s, resolve, t);
            let _ = write!(s, ", {n}>");
        }
        TypeDefKind::Map(k, v) => generic(s, "map", &[k, v]),
        TypeDefKind::Option(t) => generic(s, "option", &[t]),
        TypeDefKind::Tuple(t) => generic(s, "tuple", &t.types.iter().collect::<Vec<_>>()),
        TypeDefKind::Result(r) => match (&r.ok, &r.err) {
            (None, None) => s.push_str("result"),
            (Some(ok), None) => generic(s, "result", &[ok]),
            (None, Some(err)) => {
                s.push_str("result<_, ");
                write_type(s, resolve, err);
                s.push('>');
            }
            (Some(ok), Some(err)) => generic(s, "result", &[ok, err]),
        },
        TypeDefKind::Handle(Handle::Own(r)) => write_type(s, resolve, &Type::Id(*r)),
        TypeDefKind::Handle(Handle::Borrow(r)) => {
            s.push_str("borrow<");
            write_type(s, resolve, &Type::Id(*r));
            s.push('>');
        }
        TypeDefKind::Future(t) => match t {
            Some(t) => generic(s, "future", &[t]),
            None => s.push_str("future"),
        },
        TypeDefKind::Stream(t) => match t {
            Some(t) => generic(s, "stream", &[t]),
            None => s.push_str("stream"),
        },
        TypeDefKind::Type(t) => write_type(s, resolve, t),
        TypeDefKind::Record(_) => s.push_str("record"),
        TypeDefKind::Resource => s.push_str("resource"),
        TypeDefKind::Flags(_) => s.push_str("flags"),
        TypeDefKind::Variant(_) => s.push_str("variant"),
        TypeDefKind::Enum(_) => s.push_str("enum"),
        TypeDefKind::Unknown => s.push_str("unknown"),
    }
}

/// Adds to `out` each named type that `ty` uses, itself and inside, once,
/// each after the named types it uses.
pub(super) fn collect_named(resolve: &Resolve, ty: &Type, out: &mut Vec<TypeId>) {
    let Type::Id(id) = ty else { return };
    let id = *id;
    if out.contains(&id) {
        return;
    }
    let def = &resolve.types[id];
    let mut inner = |t: &Type| collect_named(resolve, t, out);
    match &def.kind {
        TypeDefKind::Record(r) => r.fields.iter().for_each(|f| inner(&f.ty)),
        TypeDefKind::Variant(v) => v.cases.iter().filter_map(|c| c.ty.as_ref()).for_each(inner),
        TypeDefKind::Tuple(t) => t.types.iter().for_each(inner),
        TypeDefKind::Option(t) | TypeDefKind::List(t) | TypeDefKind::FixedLengthList(t, _) => {
            inner(t)
        }
        TypeDefKind::Map(k, v) => {
            inner(k);
            inner(v);
        }
        TypeDefKind::Result(r) => r.ok.iter().chain(r.err.iter()).for_each(inner),
        TypeDefKind::Future(t) | TypeDefKind::Stream(t) => t.iter().for_each(inner),
        TypeDefKind::Type(t) => inner(t),
        TypeDefKind::Handle(Handle::Own(r) | Handle::Borrow(r)) => inner(&Type::Id(*r)),
        TypeDefKind::Resource | TypeDefKind::Flags(_) | TypeDefKind::Enum(_) => {}
        TypeDefKind::Unknown => {}
    }
    // `use iface.{point}` makes an alias of the same name: the definition
    // it stands for is enough.
    let same_name_alias = matches!(
        (&def.kind, &def.name),
        (TypeDefKind::Type(t), Some(name)) if type_text(resolve, t) == *name
    );
    if def.name.is_some() && !same_name_alias && !out.contains(&id) {
        out.push(id);
    }
}

/// The WIT definition of named type `id`, on one line:
/// `variant shape { circle(f64), empty }`.
pub(super) fn definition(resolve: &Resolve, id: TypeId) -> String {
    let def = &resolve.types[id];
    let name = def.name.as_deref().unwrap_or("_");
    let mut s = String::new();
    let list = |s: &mut String, kw: &str, items: Vec<String>| {
        let _ = write!(s, "{kw} {name} {{ {} }}", items.join(", "));
    };
    match &def.kind {
        TypeDefKind::Record(r) => list(
            &mut s,
            "record",
            r.fields
                .iter()
                .map(|f| format!("{}: {}", f.name, type_text(resolve, &f.ty)))
                .collect(),
        ),
        TypeDefKind::Variant(v) => list(
            &mut s,
            "variant",
            v.cases
                .iter()
                .map(|c| match &c.ty {
                    Some(t) => format!("{}({})", c.name, type_text(resolve, t)),
                    None => c.name.clone(),
                })
                .collect(),
        ),
        TypeDefKind::Enum(e) => list(
            &mut s,
            "enum",
            e.cases.iter().map(|c| c.name.clone()).collect(),
        ),
        TypeDefKind::Flags(f) => list(
            &mut s,
            "flags",
            f.flags.iter().map(|c| c.name.clone()).collect(),
        ),
        TypeDefKind::Resource => {
            let _ = write!(s, "resource {name}");
            let members = resource_members(resolve, id);
            if !members.is_empty() {
                let _ = write!(s, " {{ {}; }}", members.join("; "));
            }
        }
        other => {
            let _ = write!(s, "type {name} = ");
            write_kind(&mut s, resolve, other);
        }
    }
    s
}

/// The constructor, methods and static functions of resource `id`, as
/// WIT: `constructor(start: s64)`, `add: func(n: s64) -> s64`,
/// `sum: static func(a: borrow<counter>) -> counter`.
fn resource_members(resolve: &Resolve, id: TypeId) -> Vec<String> {
    let functions: Vec<&Function> = match resolve.types[id].owner {
        TypeOwner::Interface(i) => resolve.interfaces[i].functions.values().collect(),
        TypeOwner::World(w) => resolve.worlds[w]
            .exports
            .values()
            .chain(resolve.worlds[w].imports.values())
            .filter_map(|item| match item {
                WorldItem::Function(f) => Some(f),
                _ => None,
            })
            .collect(),
        TypeOwner::None => Vec::new(),
    };
    functions
        .into_iter()
        .filter(|f| f.kind.resource() == Some(id))
        .map(|f| {
            let skip = usize::from(matches!(
                f.kind,
                FunctionKind::Method(_) | FunctionKind::AsyncMethod(_)
            ));
            let params: Vec<String> = f.params[skip.min(f.params.len())..]
                .iter()
                .map(|p| format!("{}: {}", p.name, type_text(resolve, &p.ty)))
                .collect();
            let params = params.join(", ");
            let result = match (&f.kind, &f.result) {
                (FunctionKind::Constructor(_), _) | (_, None) => String::new(),
                (_, Some(t)) => format!(" -> {}", type_text(resolve, t)),
            };
            let name = f.item_name();
            match f.kind {
                FunctionKind::Constructor(_) => format!("constructor({params})"),
                FunctionKind::Static(_) => format!("{name}: static func({params}){result}"),
                FunctionKind::AsyncStatic(_) => {
                    format!("{name}: static async func({params}){result}")
                }
                FunctionKind::AsyncMethod(_) => format!("{name}: async func({params}){result}"),
                _ => format!("{name}: func({params}){result}"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_types_and_definitions_as_wit() {
        let mut resolve = Resolve::default();
        let pkg = resolve
            .push_str(
                "t.wit",
                "package a:b;
                 interface i {
                   record point { x: s32, y: s32 }
                   variant shape { circle(f64), polygon(list<point>), empty }
                   type alias = list<u8>;
                   f: func(a: list<option<point>>, b: result<_, string>, c: alias) -> tuple<shape, char>;
                 }",
            )
            .unwrap();
        let iface = resolve.packages[pkg].interfaces["i"];
        let f = &resolve.interfaces[iface].functions["f"];
        let texts: Vec<String> = f
            .params
            .iter()
            .map(|p| type_text(&resolve, &p.ty))
            .collect();
        assert_eq!(texts, ["list<option<point>>", "result<_, string>", "alias"]);
        assert_eq!(
            type_text(&resolve, f.result.as_ref().unwrap()),
            "tuple<shape, char>"
        );
        let mut named = Vec::new();
        for p in &f.params {
            collect_named(&resolve, &p.ty, &mut named);
        }
        collect_named(&resolve, f.result.as_ref().unwrap(), &mut named);
        let defs: Vec<String> = named.iter().map(|id| definition(&resolve, *id)).collect();
        assert_eq!(
            defs,
            [
                "record point { x: s32, y: s32 }",
                "type alias = list<u8>",
                "variant shape { circle(f64), polygon(list<point>), empty }",
            ]
        );
    }
}
