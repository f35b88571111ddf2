//! What a component exports and imports, read from its bytes: no engine,
//! no compile. [`Job::exports`](crate::Job::exports),
//! [`Job::imports`](crate::Job::imports) and [`Job::wit`](crate::Job::wit)
//! are built on it.
//!
//! The component's WIT is decoded with `wit-parser`, the decoder of
//! `wasm-tools component wit`, so names and types read as the WIT they
//! were written in.

mod render;

use std::fmt;

use wit_parser::decoding::DecodedWasm;
use wit_parser::{FunctionKind, Resolve, WorldId, WorldItem, WorldKey};

use crate::error::{Error, ErrorKind};

/// A function a component exports or imports, with its WIT signature.
///
/// # Examples
///
/// ```no_run
/// # fn main() -> Result<(), wasmpool::Error> {
/// let job = wasmpool::Job::from_file("fib.wasm")?;
/// for f in job.exports()? {
///     // `fib: func(n: u64) -> u64`, and `f.name` is what `Pool::run` takes.
///     println!("{f}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Function {
    /// The name [`Pool::run`](crate::Pool::run) accepts: `fib` for a
    /// world-level function, `ns:pkg/iface@1.0.0#fib` for one of an
    /// interface.
    pub name: String,
    /// The interface it belongs to (`ns:pkg/iface@1.0.0`, or a plain name
    /// for an inline one), or `None` at world level.
    pub interface: Option<String>,
    /// Its name inside its interface: `fib`. A resource's method reads
    /// `[method]counter.get`, as in the binary.
    pub func: String,
    /// The parameters, with their types as WIT text.
    pub params: Vec<Param>,
    /// The result type as WIT text, if it has one.
    pub result: Option<String>,
    /// The definitions of the named types its signature uses, as WIT:
    /// `record point { x: s32, y: s32 }`.
    pub types: Vec<String>,
    /// Whether it is an `async func`.
    pub is_async: bool,
    /// Its documentation comment, when the component kept it.
    pub docs: Option<String>,
}

/// A parameter of a [`Function`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Param {
    /// Its WIT name.
    pub name: String,
    /// Its type as WIT text: `list<point>`.
    pub ty: String,
}

impl Function {
    /// The signature as WIT text: `func(n: u64) -> u64`.
    pub fn signature(&self) -> String {
        let mut s = String::new();
        if self.is_async {
            s.push_str("async ");
        }
        s.push_str("func(");
        for (i, p) in self.params.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(&p.name);
            s.push_str(": ");
            s.push_str(&p.ty);
        }
        s.push(')');
        if let Some(r) = &self.result {
            s.push_str(" -> ");
            s.push_str(r);
        }
        s
    }
}

impl fmt::Display for Function {
    /// `name: func(...) -> ...`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.signature())
    }
}

/// A function a component imports, and what provides it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Import {
    /// The imported function.
    pub function: Function,
    /// What in wasmpool provides it, or `None` when nothing does: then a
    /// [host function](crate::PoolBuilder::host_fn) of that name must, or
    /// the component cannot run.
    pub provided_by: Option<Provider>,
}

/// What provides an import, without a host function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Provider {
    /// WASI 0.2 (`wasi:cli`, `wasi:filesystem`, `wasi:clocks`, ...), within
    /// the call's sandbox: its preopens, environment and limits.
    Wasi,
    /// `wasi:http`, linked so that components importing it run; every
    /// outgoing request is denied, unless the call allows its destination
    /// ([`allow_http`](crate::Call::allow_http)).
    WasiHttpDenied,
    /// `wasi:config`: the pool's and the call's config
    /// ([`Call::config`](crate::Call::config)).
    WasiConfig,
    /// `wasmpool:sync`: the pool's queues, locks and channels.
    WasmpoolSync,
}

impl Provider {
    /// What provides imports of `interface`, if wasmpool does.
    pub(crate) fn of(interface: &str) -> Option<Provider> {
        if interface.starts_with("wasmpool:sync/") {
            Some(Provider::WasmpoolSync)
        } else if interface.starts_with("wasi:http/") {
            cfg!(feature = "wasi-http").then_some(Provider::WasiHttpDenied)
        } else if interface.starts_with("wasi:config/") {
            Some(Provider::WasiConfig)
        } else if interface.starts_with("wasi:") {
            Some(Provider::Wasi)
        } else {
            None
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Provider::Wasi => "WASI",
            Provider::WasiHttpDenied => "wasi:http (denied unless allow_http allows it)",
            Provider::WasiConfig => "wasi:config (the pool's and the call's config)",
            Provider::WasmpoolSync => "wasmpool:sync",
        })
    }
}

/// A component's decoded WIT.
struct Decoded {
    resolve: Resolve,
    world: WorldId,
}

fn decode(bytes: &[u8], origin: &str) -> Result<Decoded, Error> {
    match wit_parser::decoding::decode(bytes) {
        Ok(DecodedWasm::Component(resolve, world)) => Ok(Decoded { resolve, world }),
        Ok(DecodedWasm::WitPackage(..)) => Err(Error::new(
            ErrorKind::InvalidComponent,
            format!("{origin} is a WIT package, not a component"),
        )),
        Err(e) => Err(Error::new(
            ErrorKind::InvalidComponent,
            format!("{origin}: cannot read its WIT: {e:#}"),
        )),
    }
}

/// The functions a component exports, world-level ones first, in the
/// order it lists them. A resource's constructor, methods and static
/// functions are there under their canonical names
/// (`[method]counter.add`): a [`Session`](crate::Session) calls them.
pub(crate) fn exports(bytes: &[u8], origin: &str) -> Result<Vec<Function>, Error> {
    let d = decode(bytes, origin)?;
    let world = &d.resolve.worlds[d.world];
    let mut out = functions(&d.resolve, world.exports.iter());
    // World-level functions first, as `Pool::run` prefers them.
    out.sort_by_key(|f| f.interface.is_some());
    Ok(out)
}

/// The functions a component imports, with what provides each.
pub(crate) fn imports(bytes: &[u8], origin: &str) -> Result<Vec<Import>, Error> {
    let d = decode(bytes, origin)?;
    let world = &d.resolve.worlds[d.world];
    Ok(functions(&d.resolve, world.imports.iter())
        .into_iter()
        .map(|function| Import {
            provided_by: function.interface.as_deref().and_then(Provider::of),
            function,
        })
        .collect())
}

/// The component's world as WIT text, followed by the packages of the
/// interfaces it exports and imports, so that the text is whole WIT that
/// parses back.
pub(crate) fn wit(bytes: &[u8], origin: &str) -> Result<String, Error> {
    let d = decode(bytes, origin)?;
    let world = &d.resolve.worlds[d.world];
    let Some(root) = world.package else {
        return Err(Error::new(
            ErrorKind::InvalidComponent,
            format!("{origin}: its world belongs to no package"),
        ));
    };
    let nested: Vec<_> = d
        .resolve
        .packages
        .iter()
        .map(|(id, _)| id)
        .filter(|id| *id != root)
        .collect();
    let mut printer = wit_component::WitPrinter::default();
    printer.print(&d.resolve, root, &nested).map_err(|e| {
        Error::new(
            ErrorKind::InvalidComponent,
            format!("{origin}: cannot print its WIT: {e:#}"),
        )
    })?;
    Ok(printer.output.to_string())
}

/// The functions of `items`: world-level functions and those of each
/// interface.
fn functions<'a>(
    resolve: &Resolve,
    items: impl Iterator<Item = (&'a WorldKey, &'a WorldItem)>,
) -> Vec<Function> {
    let mut out = Vec::new();
    for (key, item) in items {
        match item {
            WorldItem::Function(f) => out.push(function(resolve, None, f)),
            WorldItem::Interface { id, .. } => {
                let iface = resolve.name_world_key(key);
                for f in resolve.interfaces[*id].functions.values() {
                    out.push(function(resolve, Some(&iface), f));
                }
            }
            _ => {}
        }
    }
    out
}

fn function(resolve: &Resolve, interface: Option<&str>, f: &wit_parser::Function) -> Function {
    let mut named = Vec::new();
    let params = f
        .params
        .iter()
        .map(|p| {
            render::collect_named(resolve, &p.ty, &mut named);
            Param {
                name: p.name.clone(),
                ty: render::type_text(resolve, &p.ty),
            }
        })
        .collect();
    if let Some(r) = &f.result {
        render::collect_named(resolve, r, &mut named);
    }
    Function {
        name: match interface {
            Some(i) => format!("{i}#{}", f.name),
            None => f.name.clone(),
        },
        interface: interface.map(str::to_string),
        func: f.name.clone(),
        params,
        result: f.result.as_ref().map(|r| render::type_text(resolve, r)),
        types: named
            .into_iter()
            .map(|id| render::definition(resolve, id))
            .collect(),
        is_async: matches!(
            f.kind,
            FunctionKind::AsyncFreestanding
                | FunctionKind::AsyncMethod(_)
                | FunctionKind::AsyncStatic(_)
        ),
        docs: f.docs.contents.clone(),
    }
}
