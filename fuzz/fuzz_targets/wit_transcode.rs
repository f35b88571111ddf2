//! MessagePack -> `Val` -> MessagePack against arbitrary WIT types.
//!
//! Each input makes a WIT type (bool, integers, floats, char, string, list,
//! option, result, tuple, record, variant, enum, flags; nested a few deep),
//! a component whose one export takes and returns it, and the wasmtime
//! `Type`s of that export's parameter and result. Then:
//!
//! - arbitrary MessagePack bytes go through `to_val` as an argument does:
//!   nothing may panic, and a value that fits, sent back by `from_val` as a
//!   result is, fits again as the same `Val`;
//! - an arbitrary `Val` of the type goes through `from_val` and back with
//!   `to_val`, and must come back the same.
//!
//! Compiled types are cached by WIT text.

#![no_main]

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Type, Val};
use wasmtime::{Config, Engine};

/// Names to pick from: some differ only in `-`, which the mapping
/// ignores; some are the mapping's own words.
const NAMES: &[&str] = &["a", "b", "a-b", "ab", "ok", "err", "x1", "some"];

/// A WIT type, as the fuzzer makes it.
#[derive(Debug)]
enum Ty {
    Bool,
    S8,
    U8,
    S16,
    U16,
    S32,
    U32,
    S64,
    U64,
    F32,
    F64,
    Char,
    String,
    List(Box<Ty>),
    Option(Box<Ty>),
    Result(Option<Box<Ty>>, Option<Box<Ty>>),
    Tuple(Vec<Ty>),
    Record(Vec<(&'static str, Ty)>),
    Variant(Vec<(&'static str, Option<Ty>)>),
    Enum(Vec<&'static str>),
    Flags(Vec<&'static str>),
}

/// One to four distinct names.
fn names(u: &mut Unstructured<'_>) -> Result<Vec<&'static str>> {
    let mut out: Vec<&'static str> = Vec::new();
    for _ in 0..u.int_in_range(1..=4)? {
        let n = *u.choose(NAMES)?;
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

impl Ty {
    fn arbitrary(u: &mut Unstructured<'_>, depth: u32) -> Result<Ty> {
        let leaf = depth == 0 || u.is_empty();
        let n = if leaf { 12 } else { 20 };
        let inner = |u: &mut Unstructured<'_>| Ty::arbitrary(u, depth - 1).map(Box::new);
        Ok(match u.int_in_range(0..=n)? {
            0 => Ty::Bool,
            1 => Ty::S8,
            2 => Ty::U8,
            3 => Ty::S16,
            4 => Ty::U16,
            5 => Ty::S32,
            6 => Ty::U32,
            7 => Ty::S64,
            8 => Ty::U64,
            9 => Ty::F32,
            10 => Ty::F64,
            11 => Ty::Char,
            12 => Ty::String,
            13 => Ty::List(inner(u)?),
            14 => Ty::Option(inner(u)?),
            15 => Ty::Result(
                if u.arbitrary()? {
                    Some(inner(u)?)
                } else {
                    None
                },
                if u.arbitrary()? {
                    Some(inner(u)?)
                } else {
                    None
                },
            ),
            16 => Ty::Tuple(
                (0..u.int_in_range(1..=3)?)
                    .map(|_| Ty::arbitrary(u, depth - 1))
                    .collect::<Result<_>>()?,
            ),
            17 => Ty::Record(
                names(u)?
                    .into_iter()
                    .map(|n| Ok((n, Ty::arbitrary(u, depth - 1)?)))
                    .collect::<Result<_>>()?,
            ),
            18 => Ty::Variant(
                names(u)?
                    .into_iter()
                    .map(|n| {
                        let payload = if u.arbitrary()? {
                            Some(Ty::arbitrary(u, depth - 1)?)
                        } else {
                            None
                        };
                        Ok((n, payload))
                    })
                    .collect::<Result<_>>()?,
            ),
            19 => Ty::Enum(names(u)?),
            _ => Ty::Flags(names(u)?),
        })
    }

    /// The WIT spelling; named types go to `defs`.
    fn wit(&self, defs: &mut String, next: &mut usize) -> String {
        let def = |body: String, defs: &mut String, next: &mut usize| {
            let name = format!("t{next}");
            *next += 1;
            let _ = writeln!(defs, "  {body}", body = body.replacen("NAME", &name, 1));
            name
        };
        let id = |n: &str| format!("%{n}");
        match self {
            Ty::Bool => "bool".into(),
            Ty::S8 => "s8".into(),
            Ty::U8 => "u8".into(),
            Ty::S16 => "s16".into(),
            Ty::U16 => "u16".into(),
            Ty::S32 => "s32".into(),
            Ty::U32 => "u32".into(),
            Ty::S64 => "s64".into(),
            Ty::U64 => "u64".into(),
            Ty::F32 => "f32".into(),
            Ty::F64 => "f64".into(),
            Ty::Char => "char".into(),
            Ty::String => "string".into(),
            Ty::List(t) => format!("list<{}>", t.wit(defs, next)),
            Ty::Option(t) => format!("option<{}>", t.wit(defs, next)),
            Ty::Result(ok, err) => {
                let ok = ok.as_ref().map_or("_".into(), |t| t.wit(defs, next));
                let err = err.as_ref().map(|t| t.wit(defs, next));
                match err {
                    Some(err) => format!("result<{ok}, {err}>"),
                    None if ok == "_" => "result".into(),
                    None => format!("result<{ok}>"),
                }
            }
            Ty::Tuple(ts) => {
                let ts: Vec<String> = ts.iter().map(|t| t.wit(defs, next)).collect();
                format!("tuple<{}>", ts.join(", "))
            }
            Ty::Record(fields) => {
                let fields: Vec<String> = fields
                    .iter()
                    .map(|(n, t)| format!("{}: {}", id(n), t.wit(defs, next)))
                    .collect();
                def(
                    format!("record NAME {{ {} }}", fields.join(", ")),
                    defs,
                    next,
                )
            }
            Ty::Variant(cases) => {
                let cases: Vec<String> = cases
                    .iter()
                    .map(|(n, t)| match t {
                        Some(t) => format!("{}({})", id(n), t.wit(defs, next)),
                        None => id(n),
                    })
                    .collect();
                def(
                    format!("variant NAME {{ {} }}", cases.join(", ")),
                    defs,
                    next,
                )
            }
            Ty::Enum(names) => {
                let names: Vec<String> = names.iter().map(|n| id(n)).collect();
                def(format!("enum NAME {{ {} }}", names.join(", ")), defs, next)
            }
            Ty::Flags(names) => {
                let names: Vec<String> = names.iter().map(|n| id(n)).collect();
                def(format!("flags NAME {{ {} }}", names.join(", ")), defs, next)
            }
        }
    }
}

/// A package whose interface `t` exports `f: func(x: T) -> T`.
fn package(ty: &Ty) -> String {
    let mut defs = String::new();
    let t = ty.wit(&mut defs, &mut 0);
    format!(
        "package fuzz:types;\n\ninterface t {{\n{defs}  f: func(x: {t}) -> {t};\n}}\n\n\
         world w {{\n  export t;\n}}\n"
    )
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.cranelift_opt_level(wasmtime::OptLevel::None);
        Engine::new(&config).expect("engine")
    })
}

/// The parameter and result types of `f` in a component built from `wit`.
fn types_of(wit: &str) -> (Type, Type) {
    let mut resolve = wit_parser::Resolve::default();
    let pkg = resolve
        .push_str("fuzz.wit", wit)
        .unwrap_or_else(|e| panic!("bad WIT from the fuzzer: {e:#}\n{wit}"));
    let world = resolve.select_world(&[pkg], Some("w")).expect("world");
    let mut module =
        wit_component::dummy_module(&resolve, world, wit_parser::ManglingAndAbi::Standard32);
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .expect("metadata");
    let bytes = wit_component::ComponentEncoder::default()
        .module(&module)
        .expect("module")
        .validate(true)
        .encode()
        .expect("component");
    let component = Component::new(engine(), &bytes).expect("compiles");
    for (_, item) in component.component_type().exports(engine()) {
        let ComponentItem::ComponentInstance(inst) = item.ty else {
            continue;
        };
        for (_, item) in inst.exports(engine()) {
            if let ComponentItem::ComponentFunc(f) = item.ty {
                let param = f.params().next().expect("one parameter").1;
                let result = f.results().next().expect("one result");
                return (param, result);
            }
        }
    }
    panic!("no function in\n{wit}");
}

thread_local! {
    static TYPES: RefCell<HashMap<String, (Type, Type)>> = RefCell::new(HashMap::new());
}

fn cached_types(wit: String) -> (Type, Type) {
    TYPES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(t) = cache.get(&wit) {
            return t.clone();
        }
        // Each entry holds a component's types: keep a bounded few.
        if cache.len() >= 512 {
            cache.clear();
        }
        let t = types_of(&wit);
        cache.insert(wit, t.clone());
        t
    })
}

/// An arbitrary `Val` of type `ty`. `some` asks for anything but `none`:
/// the mapping writes `some(none)` as nil, which reads back as `none`.
fn val(u: &mut Unstructured<'_>, ty: &Type, some: bool) -> Result<Val> {
    Ok(match ty {
        Type::Bool => Val::Bool(u.arbitrary()?),
        Type::S8 => Val::S8(u.arbitrary()?),
        Type::U8 => Val::U8(u.arbitrary()?),
        Type::S16 => Val::S16(u.arbitrary()?),
        Type::U16 => Val::U16(u.arbitrary()?),
        Type::S32 => Val::S32(u.arbitrary()?),
        Type::U32 => Val::U32(u.arbitrary()?),
        Type::S64 => Val::S64(u.arbitrary()?),
        Type::U64 => Val::U64(u.arbitrary()?),
        Type::Float32 => Val::Float32(u.arbitrary()?),
        Type::Float64 => Val::Float64(u.arbitrary()?),
        Type::Char => Val::Char(u.arbitrary()?),
        Type::String => Val::String(u.arbitrary()?),
        Type::List(l) => {
            let elem = l.ty();
            let n = u.int_in_range(0..=4)?;
            Val::List(
                (0..n)
                    .map(|_| val(u, &elem, false))
                    .collect::<Result<_>>()?,
            )
        }
        Type::Option(o) => {
            let inner = o.ty();
            if !some && u.arbitrary()? {
                Val::Option(None)
            } else {
                let nested = matches!(inner, Type::Option(_));
                Val::Option(Some(Box::new(val(u, &inner, nested)?)))
            }
        }
        Type::Result(r) => {
            let ok: bool = u.arbitrary()?;
            let t = if ok { r.ok() } else { r.err() };
            let payload = match t {
                Some(t) => Some(Box::new(val(u, &t, false)?)),
                None => None,
            };
            Val::Result(if ok { Ok(payload) } else { Err(payload) })
        }
        Type::Tuple(t) => Val::Tuple(
            t.types()
                .map(|t| val(u, &t, false))
                .collect::<Result<_>>()?,
        ),
        Type::Record(r) => Val::Record(
            r.fields()
                .map(|f| Ok((f.name.to_string(), val(u, &f.ty, false)?)))
                .collect::<Result<_>>()?,
        ),
        Type::Variant(v) => {
            let cases: Vec<_> = v.cases().collect();
            let case = u.choose(&cases)?;
            let payload = match &case.ty {
                Some(t) => Some(Box::new(val(u, t, false)?)),
                None => None,
            };
            Val::Variant(case.name.to_string(), payload)
        }
        Type::Enum(e) => {
            let names: Vec<_> = e.names().collect();
            Val::Enum(u.choose(&names)?.to_string())
        }
        Type::Flags(f) => {
            let mut set = Vec::new();
            for n in f.names() {
                if u.arbitrary()? {
                    set.push(n.to_string());
                }
            }
            Val::Flags(set)
        }
        other => panic!("the fuzzer makes no {other:?}"),
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(ty) = Ty::arbitrary(&mut u, 3) else {
        return;
    };
    let (param, result) = cached_types(package(&ty));
    let (unsupported, _name) = wasmpool::fuzzing::describe_type(&param);
    assert_eq!(unsupported, None);

    // An arbitrary Val of the type, out as a result and back as an argument.
    let from_u = u.arbitrary::<bool>().unwrap_or(false);
    if from_u {
        if let Ok(v) = val(&mut u, &result, false) {
            let bytes = wasmpool::fuzzing::from_val(&result, v.clone());
            match wasmpool::fuzzing::to_val(&param, &bytes) {
                Some(Ok(back)) => assert_eq!(back, v, "{ty:?}: {bytes:x?}"),
                other => panic!("{ty:?}: {v:?} wrote {bytes:x?}, read back as {other:?}"),
            }
        }
    } else {
        // Arbitrary MessagePack as an argument.
        let bytes: &[u8] = u.take_rest();
        if let Some(Ok(v)) = wasmpool::fuzzing::to_val(&param, bytes) {
            let out = wasmpool::fuzzing::from_val(&result, v.clone());
            match wasmpool::fuzzing::to_val(&param, &out) {
                Some(Ok(back)) => assert_eq!(back, v, "{ty:?}: {bytes:x?} -> {out:x?}"),
                other => panic!("{ty:?}: {v:?} wrote {out:x?}, read back as {other:?}"),
            }
        }
    }
});
