//! [`Job`]: a component to call, validated up front and compiled once per
//! pool.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind};
use crate::inspect::{Function, Import};

/// A WebAssembly component whose exported functions a [`Pool`](crate::Pool)
/// calls.
///
/// A `Job` is a cheap, cloneable handle to the component's bytes. It is
/// validated when created; it is compiled the first time a pool uses it (or
/// by [`Pool::prepare`](crate::Pool::prepare)) and never again by that pool,
/// its workers or later calls. Compiled artifacts are also cached on disk.
///
/// Any component works: plain `wit-bindgen`, `cargo component`,
/// componentize-py and componentize-js components need no wasmpool SDK.
///
/// A WASI 0.1 program, the core module that `wasm32-wasip1` toolchains make
/// (one that exports `_start` and imports only `wasi_snapshot_preview1`),
/// works too: it is wrapped into a command component with wasmtime's
/// preview1 adapter when the `Job` is made, as `wasm-tools component new
/// --adapt` does, and then runs with [`Pool::command`](crate::Pool::command)
/// like any program. [`bytes`](Job::bytes) and [`hash`](Job::hash) are then
/// the wrapped component's.
///
/// # Examples
///
/// ```no_run
/// # fn main() -> Result<(), wasmpool::Error> {
/// let job = wasmpool::Job::from_file("fib.wasm")?;
/// let same = job.clone(); // shares the bytes
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Job {
    inner: Arc<JobInner>,
}

struct JobInner {
    bytes: Vec<u8>,
    /// Hex SHA-256 of `bytes`.
    hash: String,
    /// Where it came from, for messages.
    origin: String,
    /// The last component of the path it was read from, when that is
    /// UTF-8: a command's default `argv[0]`, as `wasmtime run` names it.
    file_name: Option<String>,
    /// The bytes of its core modules' data segments, once counted.
    initial_memory: std::sync::OnceLock<u64>,
    /// Whether it uses the component model's async, once looked.
    is_async: std::sync::OnceLock<bool>,
}

impl Job {
    /// Reads and validates a component from a file.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] if the file cannot be read, and
    /// [`ErrorKind::InvalidComponent`] if it is neither a valid component
    /// nor a WASI 0.1 command module.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Job, Error> {
        let path = path.as_ref();
        let bytes = std::fs::read(path)
            .map_err(|e| Error::io(format_args!("reading {}", path.display()), e))?;
        let file_name = path.file_name().and_then(|n| n.to_str()).map(str::to_owned);
        Job::new(bytes, path.display().to_string(), file_name)
    }

    /// Validates a component held in memory.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidComponent`] if the bytes are neither a valid
    /// WebAssembly component nor a WASI 0.1 command module.
    ///
    /// ```
    /// let err = wasmpool::Job::from_bytes(b"not wasm".to_vec()).unwrap_err();
    /// assert_eq!(err.kind(), wasmpool::ErrorKind::InvalidComponent);
    /// ```
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Result<Job, Error> {
        Job::new(bytes.into(), "<bytes>".into(), None)
    }

    fn new(bytes: Vec<u8>, origin: String, file_name: Option<String>) -> Result<Job, Error> {
        let bytes = if wasmparser::Parser::is_core_wasm(&bytes) {
            adapt_command(&bytes).map_err(|m| {
                Error::new(
                    ErrorKind::InvalidComponent,
                    format!("{origin} is a core module that cannot be run: {m}"),
                )
            })?
        } else {
            bytes
        };
        validate(&bytes).map_err(|m| {
            Error::new(
                ErrorKind::InvalidComponent,
                format!("{origin} is not a valid component: {m}"),
            )
        })?;
        let hash = hex(&Sha256::digest(&bytes));
        Ok(Job {
            inner: Arc::new(JobInner {
                bytes,
                hash,
                origin,
                file_name,
                initial_memory: std::sync::OnceLock::new(),
                is_async: std::sync::OnceLock::new(),
            }),
        })
    }

    /// The component's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.inner.bytes
    }

    /// Hex SHA-256 of the component's bytes: its identity in caches.
    pub fn hash(&self) -> &str {
        &self.inner.hash
    }

    pub(crate) fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// The name of the file it was read from ([`Job::from_file`]), if
    /// that is UTF-8; `None` for a job made from bytes.
    pub(crate) fn file_name(&self) -> Option<&str> {
        self.inner.file_name.as_deref()
    }

    /// How many bytes its core modules' data segments hold: the initial
    /// memory each instance starts from, copied in or mapped.
    pub(crate) fn initial_memory(&self) -> u64 {
        *self.inner.initial_memory.get_or_init(|| {
            let mut total = 0u64;
            for payload in wasmparser::Parser::new(0).parse_all(self.bytes()) {
                if let Ok(wasmparser::Payload::DataSection(reader)) = payload {
                    for data in reader.into_iter().flatten() {
                        total += data.data.len() as u64;
                    }
                }
            }
            total
        })
    }

    /// Whether the component uses the component model's async: an `async
    /// func`, a `stream` or `future` type, an async lift or lower, or a
    /// builtin other than the resource ones (`task.return`,
    /// `waitable-set.wait`, `stream.read`, …). Such a component runs on
    /// workers whose engine has wasmtime's concurrency support; others
    /// keep the faster sync path. Read from the component's sections, as
    /// [`Job::initial_memory`] is, without validating its code.
    pub(crate) fn is_async(&self) -> bool {
        *self.inner.is_async.get_or_init(|| uses_async(self.bytes()))
    }

    /// The functions the component exports, with their WIT signatures:
    /// world-level functions first, then those of exported interfaces.
    /// Each [`Function::name`] is what [`Pool::run`](crate::Pool::run)
    /// accepts. Read from the component's bytes: it needs no pool and
    /// compiles nothing.
    ///
    /// A resource's constructor, methods and static functions are listed
    /// under their canonical names (`[constructor]counter`,
    /// `[method]counter.add`, `[static]counter.sum`), and the resource's
    /// definition, in [`Function::types`], lists them all. Functions whose
    /// signatures hold resources are called on a
    /// [`Session`](crate::Session).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidComponent`] if the component's types cannot be
    /// read.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn main() -> Result<(), wasmpool::Error> {
    /// let job = wasmpool::Job::from_file("fib.wasm")?;
    /// let fib = job.exports()?.into_iter().find(|f| f.func == "fib").unwrap();
    /// assert_eq!(fib.signature(), "func(n: u64) -> u64");
    /// # Ok(()) }
    /// ```
    pub fn exports(&self) -> Result<Vec<Function>, Error> {
        crate::inspect::exports(self.bytes(), self.origin())
    }

    /// The functions the component imports, each with what in wasmpool
    /// provides it ([`Import::provided_by`]): WASI, `wasi:http` (with
    /// every request denied unless the call allows it), `wasmpool:sync`,
    /// or nothing, when a [host
    /// function](crate::PoolBuilder::host_fn) must. A plugin host can
    /// check a component with it before running it. Compiles nothing.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidComponent`] if the component's types cannot be
    /// read.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn main() -> Result<(), wasmpool::Error> {
    /// let job = wasmpool::Job::from_file("plugin.wasm")?;
    /// for import in job.imports()? {
    ///     if import.provided_by.is_none() {
    ///         println!("needs a host function: {}", import.function);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn imports(&self) -> Result<Vec<Import>, Error> {
        crate::inspect::imports(self.bytes(), self.origin())
    }

    /// The component's world as WIT text, as `wasm-tools component wit`
    /// prints it: its world, then the packages of the interfaces it
    /// exports and imports (WASI's too), so that every type is defined and
    /// the text parses back as WIT. Compiles nothing.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidComponent`] if the component's types cannot be
    /// read.
    pub fn wit(&self) -> Result<String, Error> {
        crate::inspect::wit(self.bytes(), self.origin())
    }
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let JobInner {
            bytes,
            hash,
            origin,
            file_name: _,
            initial_memory: _,
            is_async: _,
        } = &*self.inner;
        f.debug_struct("Job")
            .field("origin", origin)
            .field("len", &bytes.len())
            .field("hash", &&hash[..16])
            .finish()
    }
}

/// Checks the header and validates the whole component.
fn validate(bytes: &[u8]) -> Result<(), String> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err("missing the `\\0asm` header".into());
    }
    if !wasmparser::Parser::is_component(bytes) {
        return Err("unknown binary version or layer".into());
    }
    let mut validator = wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all());
    validator
        .validate_all(bytes)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Wraps a WASI 0.1 command module into a command component with the
/// preview1 adapter, as `wasm-tools component new --adapt` does.
///
/// Only commands are wrapped: a module's other exports have no WIT types
/// to give them, so a library module must be built as a component.
fn adapt_command(module: &[u8]) -> Result<Vec<u8>, String> {
    use wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER;

    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(module)
        .map_err(|e| e.to_string())?;
    let module = exit_with_code(module)?;
    wit_component::ComponentEncoder::default()
        .module(&module)
        .and_then(|e| e.adapter(PREVIEW1, WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER))
        .and_then(|e| e.validate(true).encode())
        .map_err(|e| format!("{e:#}"))
}

/// The module every import of a WASI 0.1 program is from.
const PREVIEW1: &str =
    wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME;

/// The interface a wrapped program's `proc_exit` is imported from.
const EXIT: &str = "wasi:cli/exit@0.2.12";

/// `EXIT`'s WIT: only the function `proc_exit` becomes.
const EXIT_WIT: &str = "
package wasi:cli@0.2.12;
@since(version = 0.2.0)
interface exit {
    @since(version = 0.2.12)
    exit-with-code: func(status-code: u8);
}
world proc-exit {
    import exit;
}
";

/// Points a WASI 0.1 module's `proc_exit` at `wasi:cli/exit`'s
/// `exit-with-code`, which has the same core signature, in the same pass
/// that checks it is a WASI 0.1 program: it imports only from `PREVIEW1`
/// and exports `_start`.
///
/// The preview1 adapter's own `proc_exit` calls `exit`, which carries only
/// success or failure, so `proc_exit(33)` would end with status 1; run
/// natively, as `wasmtime run` runs a core module, it ends with 33. With
/// this import the whole code reaches the host (which takes it modulo 256,
/// as a Unix exit status is).
fn exit_with_code(module: &[u8]) -> Result<Vec<u8>, String> {
    use wasm_encoder::reencode::{Reencode as _, RoundtripReencoder};

    let mut out = wasm_encoder::Module::new();
    let mut renamed = false;
    let mut start = false;
    let said = |e: &dyn std::fmt::Display| format!("{e:#}");
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        match payload.map_err(|e| said(&e))? {
            wasmparser::Payload::ImportSection(reader) => {
                let mut imports = wasm_encoder::ImportSection::new();
                for import in reader.into_imports() {
                    let import = import.map_err(|e| said(&e))?;
                    if import.module != PREVIEW1 {
                        return Err(format!(
                            "it imports `{}::{}`; a WASI 0.1 program imports only \
                             from `{PREVIEW1}`",
                            import.module, import.name
                        ));
                    }
                    let ty = RoundtripReencoder
                        .entity_type(import.ty)
                        .map_err(|e| said(&e))?;
                    if import.name == "proc_exit" {
                        imports.import(EXIT, "exit-with-code", ty);
                        renamed = true;
                    } else {
                        imports.import(import.module, import.name, ty);
                    }
                }
                out.section(&imports);
            }
            payload => {
                if let wasmparser::Payload::ExportSection(reader) = &payload {
                    for export in reader.clone() {
                        start |= export.map_err(|e| said(&e))?.name == "_start";
                    }
                }
                if let Some((id, range)) = payload.as_section() {
                    out.section(&wasm_encoder::RawSection {
                        id,
                        data: &module[range],
                    });
                }
            }
        }
    }
    if !start {
        return Err("it exports no `_start`, so it is not a WASI 0.1 program; \
                    build a library for a component target (wasm32-wasip2)"
            .into());
    }
    let mut bytes = out.finish();
    if renamed {
        let mut resolve = wit_parser::Resolve::default();
        let package = resolve
            .push_source("exit.wit", EXIT_WIT)
            .map_err(|e| said(&e))?;
        let world = resolve
            .select_world(&[package], Some("proc-exit"))
            .map_err(|e| said(&e))?;
        wit_component::embed_component_metadata(
            &mut bytes,
            &resolve,
            world,
            wit_component::StringEncoding::UTF8,
        )
        .map_err(|e| said(&e))?;
    }
    Ok(bytes)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Whether `bytes`, a component, uses the component model's async (see
/// [`Job::is_async`]).
fn uses_async(bytes: &[u8]) -> bool {
    use wasmparser::{
        CanonicalFunction as F, CanonicalOption as O, ComponentDefinedType as D,
        ComponentType as T, ComponentTypeDeclaration as C, InstanceTypeDeclaration as I, Payload,
    };
    fn in_type(t: &T<'_>) -> bool {
        match t {
            T::Func(f) => f.async_,
            T::Defined(D::Stream(_) | D::Future(_)) => true,
            T::Component(decls) => decls.iter().any(|d| matches!(d, C::Type(t) if in_type(t))),
            T::Instance(decls) => decls.iter().any(|d| matches!(d, I::Type(t) if in_type(t))),
            _ => false,
        }
    }
    let is_async = |f: &F| match f {
        F::Lift { options, .. } | F::Lower { options, .. } => options
            .iter()
            .any(|o| matches!(o, O::Async | O::Callback(_))),
        F::ResourceNew { .. } | F::ResourceDrop { .. } | F::ResourceRep { .. } => false,
        _ => true,
    };
    wasmparser::Parser::new(0)
        .parse_all(bytes)
        .any(|payload| match payload {
            Ok(Payload::ComponentTypeSection(reader)) => {
                reader.into_iter().flatten().any(|t| in_type(&t))
            }
            Ok(Payload::ComponentCanonicalSection(reader)) => {
                reader.into_iter().flatten().any(|f| is_async(&f))
            }
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage_and_core_modules_that_are_not_programs() {
        let e = Job::from_bytes(b"hello world".to_vec()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidComponent);
        // The smallest core module: header and version 1.
        let e = Job::from_bytes(b"\0asm\x01\0\0\0".to_vec()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidComponent);
        assert!(e.to_string().contains("core module"), "{e}");
        assert!(e.to_string().contains("_start"), "{e}");
    }

    #[test]
    fn only_components_that_use_async_are_async() {
        assert!(Job::from_file(wasmpool_guests::ASYNCS).unwrap().is_async());
        for sync in [
            wasmpool_guests::FIB,
            wasmpool_guests::SESSION,
            wasmpool_guests::KVPLUGIN,
        ] {
            assert!(!Job::from_file(sync).unwrap().is_async(), "{sync}");
        }
    }

    #[test]
    fn a_wasi_p1_program_is_wrapped_into_a_command_component() {
        let module = std::fs::read(wasmpool_guests::CMD_P1).unwrap();
        assert!(wasmparser::Parser::is_core_wasm(&module));
        let job = Job::from_bytes(module.clone()).unwrap();
        assert!(wasmparser::Parser::is_component(job.bytes()));
        let names: Vec<String> = job.exports().unwrap().into_iter().map(|f| f.name).collect();
        assert!(
            names
                .iter()
                .any(|n| n.starts_with("wasi:cli/run") && n.ends_with("#run")),
            "{names:?}"
        );
        // The wrapping is deterministic, so the compile cache keeps working.
        assert_eq!(job.hash(), Job::from_bytes(module).unwrap().hash());
    }

    #[test]
    fn a_core_module_with_other_imports_is_refused_by_name() {
        let mut module = std::fs::read(wasmpool_guests::CMD_P1).unwrap();
        // Rename the import module in place: same length, another name.
        let at = module
            .windows(22)
            .position(|w| w == b"wasi_snapshot_preview1")
            .unwrap();
        module[at..at + 22].copy_from_slice(b"wasi_snapshot_preview9");
        let e = Job::from_bytes(module).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidComponent);
        assert!(e.to_string().contains("wasi_snapshot_preview9"), "{e}");
    }

    #[test]
    fn initial_memory_counts_data_segments() {
        let heavy = Job::from_file(wasmpool_guests::HEAVY).unwrap();
        assert!(
            heavy.initial_memory() >= 4 << 20,
            "{}",
            heavy.initial_memory()
        );
        let fib = Job::from_file(wasmpool_guests::FIB).unwrap();
        assert!(fib.initial_memory() < 1 << 20, "{}", fib.initial_memory());
    }

    #[test]
    fn missing_file_is_io() {
        let e = Job::from_file("/nonexistent/x.wasm").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
    }

    #[test]
    fn truncated_component_is_invalid() {
        let bytes = std::fs::read(wasmpool_guests::FIB).unwrap();
        let e = Job::from_bytes(bytes[..bytes.len() / 2].to_vec()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidComponent);
        let job = Job::from_bytes(bytes).unwrap();
        assert_eq!(job.hash().len(), 64);
    }
}
