//! Compiling a [`Job`] once per pool, the on-disk artifact cache, and
//! resolving function names against the component's exports.

use crate::locks::Locked as _;
use std::collections::HashMap;
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::{ComponentFunc, ComponentItem};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use tokio::sync::OnceCell;

use crate::dynamic::Signature;
use crate::engine::is_builtin_import;
use crate::engine::{EngineKind, EngineSettings};
use crate::error::{Error, ErrorKind};
use crate::host::HostFns;
use crate::job::{Job, hex};
use crate::values::wit;
use crate::wire::{Artifact, CompileOrder, ExportPath};

/// Compiles jobs for one pool: each once, and only once on disk across
/// runs.
pub(crate) struct Compiler {
    /// The host's engines, one for each [`EngineKind`] (see
    /// [`Compiler::engine`]). A job is compiled by, and its workers run,
    /// the one of its kind.
    engines: [Engine; 4],
    /// The pool's engine settings, but for the kind of engine.
    settings: EngineSettings,
    /// The memory kind the pool asked for, or `None`: by each job's
    /// initial memory ([`AUTO_COW_AT`]).
    memory_cow: Option<bool>,
    cache_dir: PathBuf,
    cache_limit: u64,
    child: Option<InChild>,
    compiled: Mutex<HashMap<String, Arc<OnceCell<Arc<Compiled>>>>>,
}

/// With the memory kind left to wasmpool, a job whose data segments (its
/// initial memory image) hold at least this much maps them copy-on-write.
/// componentize-py and componentize-js guests carry 10–20 MB; Rust guests
/// tens of KB.
pub(crate) const AUTO_COW_AT: u64 = 1 << 20;

/// How often a pool marks an artifact it uses as used, and checks that it
/// is still there.
const KEEP_EVERY: Duration = Duration::from_secs(1);

/// Artifacts used this recently are never evicted: far longer than
/// [`KEEP_EVERY`], so that an artifact in use is never removed between a
/// pool's check and a worker's load.
const PROTECT: Duration = Duration::from_secs(600);

/// Temporary files older than this are left from a compile that died.
const STALE_TMP: Duration = Duration::from_secs(3600);

/// How a compile runs in a child process: which program, and whether it
/// confines itself.
#[derive(Debug, Clone)]
pub(crate) struct InChild {
    pub(crate) program: PathBuf,
    pub(crate) confine: bool,
}

impl Compiler {
    /// Test only: panics while holding the compiler's lock, which poisons it.
    #[cfg(feature = "test-hooks")]
    pub(crate) fn poison(&self) {
        let _held = self.compiled.locked();
        panic!("a test poisons the compiler's lock on purpose");
    }

    /// A compiler that runs each compile in a child process (`child`), or
    /// in this one.
    pub(crate) fn new(
        settings: EngineSettings,
        memory_cow: Option<bool>,
        cache_dir: PathBuf,
        cache_limit: u64,
        child: Option<InChild>,
    ) -> Result<Compiler, Error> {
        let engine = |i: usize| {
            EngineSettings {
                kind: Self::kind_at(i),
                ..settings.clone()
            }
            .host_engine()
            .map_err(|e| Error::new(ErrorKind::Config, format!("creating the engine: {e:#}")))
        };
        Ok(Compiler {
            engines: [engine(0)?, engine(1)?, engine(2)?, engine(3)?],
            settings,
            memory_cow,
            cache_dir,
            cache_limit,
            child,
            compiled: Mutex::default(),
        })
    }

    /// The engine settings workers must use, but for the kind of engine.
    pub(crate) fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// The kind of workers started before any job asks: the pool's memory
    /// kind (copying when that is left to each job), without async.
    pub(crate) fn default_kind(&self) -> EngineKind {
        EngineKind {
            memory_cow: self.memory_cow.unwrap_or(false),
            concurrent: false,
        }
    }

    /// The kind of engine `job` runs on. It maps its initial memory
    /// copy-on-write as the pool says, or when its data segments hold at
    /// least [`AUTO_COW_AT`]; it has the component model's async when it
    /// uses it.
    fn kind_for(&self, job: &Job) -> EngineKind {
        EngineKind {
            memory_cow: self
                .memory_cow
                .unwrap_or_else(|| job.initial_memory() >= AUTO_COW_AT),
            concurrent: job.is_async(),
        }
    }

    /// [`Compiler::engines`]' order.
    fn kind_at(i: usize) -> EngineKind {
        EngineKind {
            memory_cow: i & 1 != 0,
            concurrent: i & 2 != 0,
        }
    }

    fn engine(&self, kind: EngineKind) -> &Engine {
        &self.engines[usize::from(kind.memory_cow) | usize::from(kind.concurrent) << 1]
    }

    /// Compiles `job` once for this pool, off the async threads.
    ///
    /// The compile runs in a spawned task, so a caller that gives up (its
    /// call is dropped) does not throw away a compile that may take many
    /// seconds: the next caller finds it done or joins it.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the compile running; a later call joins
    /// it.
    pub(crate) async fn compiled(&self, job: &Job) -> Result<Arc<Compiled>, Error> {
        let cell = self
            .compiled
            .locked()
            .entry(job.hash().to_string())
            .or_default()
            .clone();
        if let Some(done) = cell.get() {
            done.keep(&self.cache_dir).await;
            return Ok(done.clone());
        }
        let kind = self.kind_for(job);
        let engine = self.engine(kind).clone();
        let settings = EngineSettings {
            kind,
            ..self.settings.clone()
        };
        // A component that uses async in a way `Job::is_async` missed fails
        // to compile without it: it is compiled again with it.
        let with_async = (!kind.concurrent).then(|| {
            let kind = EngineKind {
                concurrent: true,
                ..kind
            };
            let settings = EngineSettings {
                kind,
                ..self.settings.clone()
            };
            (self.engine(kind).clone(), settings)
        });
        let dir = self.cache_dir.clone();
        let limit = self.cache_limit;
        let child = self.child.clone();
        let job = job.clone();
        tokio::spawn(async move {
            cell.get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || {
                    let first = compile(&engine, &settings, &dir, &job, child.as_ref(), limit);
                    match (first, with_async) {
                        // Its error, if it fails again, is the one that tells.
                        (Err(e), Some((engine, settings)))
                            if e.kind() == ErrorKind::InvalidComponent
                                && e.to_string().contains("requires the component model") =>
                        {
                            compile(&engine, &settings, &dir, &job, child.as_ref(), limit)
                        }
                        (first, _) => first,
                    }
                })
                .await
                .map_err(|e| {
                    Error::new(
                        ErrorKind::InvalidComponent,
                        format!("compiling panicked: {e}"),
                    )
                })?
                .map(Arc::new)
            })
            .await
            .cloned()
        })
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::InvalidComponent,
                format!("compiling failed: {e}"),
            )
        })?
    }
}

/// A job compiled by a pool's engine, with its artifact on disk.
pub(crate) struct Compiled {
    pub(crate) component: Component,
    pub(crate) artifact: Artifact,
    /// The engine that compiled and loaded it; workers of its kind run it.
    engine: Engine,
    kind: EngineKind,
    funcs: Mutex<HashMap<String, Arc<Resolved>>>,
    /// The imports nothing provides, found once: the pool's host functions
    /// do not change.
    missing: OnceLock<Unserved>,
    /// When the artifact was last marked used and found on disk.
    kept: Mutex<Instant>,
}

/// A function, resolved and checked on the host before anything is sent.
pub(crate) struct Resolved {
    pub(crate) export: ExportPath,
    pub(crate) params: usize,
    /// Why only a session can call it: its signature holds resource
    /// handles.
    pub(crate) session_only: Option<String>,
    /// Its parameters or its result carry streams or futures, which a
    /// session cannot.
    pub(crate) transmits: bool,
}

/// Where compiled artifacts go when no cache directory is configured: the
/// platform's per-user cache directory (see
/// [`PoolBuilder::cache_dir`](crate::PoolBuilder::cache_dir)).
pub(crate) fn default_cache_dir() -> PathBuf {
    crate::platform::default_cache_home()
}

/// Feeds `Hash` output into SHA-256.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// The artifact's key: the component's hash, the engine's compatibility
/// hash and the engine settings.
fn artifact_key(engine: &Engine, job: &Job, settings: &EngineSettings) -> String {
    let mut h = ShaHasher(Sha256::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut h);
    std::hash::Hash::hash(settings, &mut h);
    h.0.update(job.hash().as_bytes());
    hex(&h.0.finalize()[..20])
}

/// Compiles `job` (in a child process, with `child`), or loads its
/// artifact from `cache_dir`. Blocking: call it off the async threads.
///
/// The cache's files are reached through a `cap_std` directory handle
/// confined to `cache_dir`: a symlink planted in a shared cache cannot
/// redirect a read or a write outside it. The host reads an artifact
/// rather than mapping its file, so that a file changed in place under it
/// cannot bring it down with SIGBUS (a worker maps it: it can afford to).
pub(crate) fn compile(
    engine: &Engine,
    settings: &EngineSettings,
    cache_dir: &Path,
    job: &Job,
    child: Option<&InChild>,
    limit: u64,
) -> Result<Compiled, Error> {
    let io_err = |e| {
        Error::io(
            format_args!("preparing cache directory {}", cache_dir.display()),
            e,
        )
    };
    crate::platform::create_private_dir(cache_dir).map_err(io_err)?;
    let dir = Dir::open_ambient_dir(cache_dir, ambient_authority()).map_err(io_err)?;
    let key = artifact_key(engine, job, settings);
    let name = format!("{key}.cwasm");
    let artifact = Artifact {
        key,
        path: cache_dir.join(&name),
    };
    if let Ok(bytes) = dir.read(&name) {
        // A stale file fails wasmtime's header checks and is recompiled.
        match crate::platform::load_artifact_bytes(engine, &bytes) {
            Ok(component) => {
                tracing::debug!(job = %short(job), "compile cache hit");
                if let Err(e) = touch(&artifact.path) {
                    tracing::debug!(error = %e, "could not mark an artifact used");
                }
                return Ok(Compiled::new(component, artifact, engine, settings));
            }
            Err(e) => tracing::debug!(job = %short(job), error = %e, "stale artifact; recompiling"),
        }
    }
    tracing::debug!(job = %short(job), "compile cache miss; compiling");
    let started = std::time::Instant::now();
    match child {
        Some(child) => {
            let order = CompileOrder {
                component: serde_bytes::ByteBuf::from(job.bytes().to_vec()),
                origin: job.origin().to_string(),
                dir: cache_dir.to_path_buf(),
                name: name.clone(),
            };
            crate::worker::compile_in_child(&child.program, settings.clone(), child.confine, order)?
        }
        None => crate::engine::compile_artifact(engine, job.bytes(), job.origin(), &dir, &name)
            .map_err(|message| Error::new(ErrorKind::InvalidComponent, message))?,
    }
    let bytes = dir.read(&name).map_err(|e| {
        Error::io(
            format_args!("reading artifact {}", artifact.path.display()),
            e,
        )
    })?;
    let component = crate::platform::load_artifact_bytes(engine, &bytes).map_err(|e| {
        Error::new(
            ErrorKind::InvalidComponent,
            format!("loading artifact {}: {e:#}", artifact.path.display()),
        )
    })?;
    drop(bytes);
    tracing::info!(job = %short(job), took_ms = started.elapsed().as_millis() as u64, "compiled");
    evict(&dir, limit, &name);
    Ok(Compiled::new(component, artifact, engine, settings))
}

/// Marks the file at `path` used now (its modification time).
fn touch(path: &Path) -> std::io::Result<()> {
    // Windows sets times only through a handle opened for writing.
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .set_modified(SystemTime::now())
}

/// Removes the least recently used artifacts of the cache `dir` until it
/// holds at most `limit` bytes, sparing `keep` and any used within
/// [`PROTECT`], and temporary files a dead compile left. Safe beside other
/// processes doing the same: a file is only ever removed whole, and one
/// already loaded stays loaded.
fn evict(dir: &Dir, limit: u64, keep: &str) {
    let Ok(entries) = dir.entries() else {
        return;
    };
    let now = SystemTime::now();
    let age = |m: &cap_std::fs::Metadata| {
        m.modified()
            .ok()
            .and_then(|t| now.duration_since(t.into_std()).ok())
            .unwrap_or(Duration::ZERO)
    };
    let mut artifacts = Vec::new();
    let mut total = 0u64;
    for entry in entries.flatten() {
        let (Ok(name), Ok(meta)) = (entry.file_name().into_string(), entry.metadata()) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        if name.starts_with('.') && name.ends_with(".tmp") {
            if age(&meta) > STALE_TMP {
                let _ = dir.remove_file(&name);
            }
        } else if name.ends_with(".cwasm") {
            total += meta.len();
            artifacts.push((age(&meta), name, meta.len()));
        }
    }
    if total <= limit {
        return;
    }
    // Oldest first.
    artifacts.sort_by_key(|a| std::cmp::Reverse(a.0));
    let (mut removed, mut freed) = (0u64, 0u64);
    for (age, name, len) in artifacts {
        if total <= limit || age < PROTECT {
            break;
        }
        if name != keep && dir.remove_file(&name).is_ok() {
            total -= len;
            removed += 1;
            freed += len;
        }
    }
    tracing::info!(
        removed,
        freed,
        left = total,
        limit,
        "compile cache over its limit: removed the least recently used artifacts"
    );
}

/// The start of a job's hash, to name it in traces.
pub(crate) fn short(job: &Job) -> &str {
    &job.hash()[..12.min(job.hash().len())]
}

impl Compiled {
    fn new(
        component: Component,
        artifact: Artifact,
        engine: &Engine,
        settings: &EngineSettings,
    ) -> Compiled {
        Compiled {
            component,
            artifact,
            engine: engine.clone(),
            kind: settings.kind,
            funcs: Mutex::new(HashMap::new()),
            missing: OnceLock::new(),
            kept: Mutex::new(Instant::now()),
        }
    }

    /// At most once per [`KEEP_EVERY`]: marks the artifact used, so that
    /// no cache eviction takes it while this pool uses it, and writes it
    /// again from the loaded component if it is gone (evicted while the
    /// pool was idle, or the cache was cleared), so that a worker always
    /// finds it.
    async fn keep(self: &Arc<Self>, cache_dir: &Path) {
        {
            let mut kept = self.kept.locked();
            if kept.elapsed() < KEEP_EVERY {
                return;
            }
            *kept = Instant::now();
        }
        match touch(&self.artifact.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let this = self.clone();
                let dir = cache_dir.to_path_buf();
                let restored = tokio::task::spawn_blocking(move || this.restore(&dir)).await;
                match restored {
                    Ok(Ok(())) => tracing::info!(
                        artifact = %self.artifact.path.display(),
                        "an artifact in use was gone from the cache: written again"
                    ),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "could not write a missing artifact again")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not write a missing artifact again")
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "could not mark an artifact used"),
        }
    }

    /// Writes the artifact again from the loaded component.
    fn restore(&self, cache_dir: &Path) -> Result<(), String> {
        let bytes = self.component.serialize().map_err(|e| format!("{e:#}"))?;
        crate::platform::create_private_dir(cache_dir).map_err(|e| e.to_string())?;
        let dir =
            Dir::open_ambient_dir(cache_dir, ambient_authority()).map_err(|e| e.to_string())?;
        let name = self
            .artifact
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or("an artifact path without a file name")?;
        crate::engine::store_artifact(&dir, name, &bytes).map_err(|e| e.to_string())
    }

    /// Checks that every import is provided: by wasmpool (WASI, `wasi:http`,
    /// `wasmpool:sync`) or by one of `host_fns`.
    pub(crate) fn check_imports(&self, host_fns: &HostFns) -> Result<(), Error> {
        let Unserved {
            missing,
            unsupported,
        } = self
            .missing
            .get_or_init(|| missing_imports(&self.engine, &self.component, host_fns));
        if let Some(why) = unsupported {
            return Err(Error::new(ErrorKind::Unsupported, why.clone()));
        }
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::InvalidComponent,
            format!(
                "the component imports what nothing provides (neither WASI, wasi:http, \
                 wasmpool:sync nor a host function): {}",
                missing.join(", ")
            ),
        ))
    }

    /// Whether the component imports resource types, which host functions
    /// serve.
    #[cfg(feature = "cluster")]
    pub(crate) fn imports_resources(&self) -> bool {
        let ty = self.component.component_type();
        ty.imports(&self.engine)
            .filter(|(name, _)| !is_builtin_import(name))
            .any(|(_, import)| match import.ty {
                ComponentItem::Resource(_) => true,
                ComponentItem::ComponentInstance(instance) => instance
                    .exports(&self.engine)
                    .any(|(_, e)| matches!(e.ty, ComponentItem::Resource(_))),
                _ => false,
            })
    }

    /// Resolves `name` to one exported function, checking that its types
    /// can cross a process boundary outside a session: no resource
    /// handles. Cached per name.
    pub(crate) fn resolve(&self, name: &str) -> Result<Arc<Resolved>, Error> {
        let resolved = self.resolve_any(name)?;
        match &resolved.session_only {
            Some(why) => Err(Error::new(ErrorKind::Unsupported, why.clone())),
            None => Ok(resolved),
        }
    }

    /// [`resolve`](Compiled::resolve) for a session's call, which may pass
    /// and return resource handles.
    pub(crate) fn resolve_in_session(&self, name: &str) -> Result<Arc<Resolved>, Error> {
        let resolved = self.resolve_any(name)?;
        if resolved.transmits {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "{}: streams and futures cross only in a plain call, not a session's",
                    resolved.export
                ),
            ));
        }
        Ok(resolved)
    }

    fn resolve_any(&self, name: &str) -> Result<Arc<Resolved>, Error> {
        if let Some(r) = self.funcs.locked().get(name) {
            return Ok(r.clone());
        }
        let resolved = Arc::new(self.resolve_uncached(name)?);
        self.funcs
            .locked()
            .insert(name.to_string(), resolved.clone());
        Ok(resolved)
    }

    /// The parameter and result types of function `name`.
    #[cfg(feature = "unstable-bench")]
    pub(crate) fn signature(
        &self,
        name: &str,
    ) -> Result<
        (
            Vec<wasmtime::component::Type>,
            Vec<wasmtime::component::Type>,
        ),
        Error,
    > {
        let funcs = exported_funcs(&self.engine, &self.component);
        let (_, ty) = find(&funcs, name)?;
        Ok((
            ty.params().map(|(_, t)| t).collect(),
            ty.results().collect(),
        ))
    }

    /// Function `name`'s parameter names and types and its result type,
    /// for a dynamic call: checked as [`resolve`](Compiled::resolve)
    /// checks it.
    pub(crate) fn dynamic_signature(&self, name: &str) -> Result<Signature, Error> {
        self.resolve(name)?;
        let funcs = exported_funcs(&self.engine, &self.component);
        let (path, ty) = find(&funcs, name)?;
        Ok(Signature {
            name: path.to_string(),
            params: ty.params().map(|(n, t)| (n.to_string(), t)).collect(),
            result: ty.results().next(),
        })
    }

    /// The kind of the workers that run it.
    pub(crate) fn kind(&self) -> EngineKind {
        self.kind
    }

    fn resolve_uncached(&self, name: &str) -> Result<Resolved, Error> {
        let funcs = exported_funcs(&self.engine, &self.component);
        let (path, ty) = find(&funcs, name)?;
        let mut session_only = None;
        let mut transmits = false;
        for (i, (pname, pty)) in ty.params().enumerate() {
            transmits |= wit::transmits(&pty, true).map_err(|what| {
                Error::new(
                    ErrorKind::Unsupported,
                    format!("{path}: parameter {i} ({pname}) is or carries {what}"),
                )
            })?;
            if session_only.is_none() && wit::resources_inside(&pty) {
                session_only = Some(format!("parameter {i} ({pname})"));
            }
        }
        for rty in ty.results() {
            transmits |= wit::transmits(&rty, false).map_err(|what| {
                Error::new(
                    ErrorKind::Unsupported,
                    format!("{path}: the result carries {what}"),
                )
            })?;
            if session_only.is_none() && wit::resources_inside(&rty) {
                session_only = Some("the result".into());
            }
        }
        let session_only = session_only.map(|what| {
            format!(
                "{path}: {what} carries resource handles, which live in an instance kept \
                 across calls: call it on a session (Pool::session)"
            )
        });
        Ok(Resolved {
            params: ty.params().len(),
            export: path,
            session_only,
            transmits,
        })
    }
}

/// Every exported function: world-level ones, then those of exported
/// instances.
fn exported_funcs(engine: &Engine, component: &Component) -> Vec<(ExportPath, ComponentFunc)> {
    let mut out = Vec::new();
    for (name, ext) in component.component_type().exports(engine) {
        match ext.ty {
            ComponentItem::ComponentFunc(f) => out.push((
                ExportPath {
                    instance: None,
                    func: name.to_string(),
                },
                f,
            )),
            ComponentItem::ComponentInstance(inst) => {
                for (fname, fext) in inst.exports(engine) {
                    if let ComponentItem::ComponentFunc(f) = fext.ty {
                        out.push((
                            ExportPath {
                                instance: Some(name.to_string()),
                                func: fname.to_string(),
                            },
                            f,
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Each import of `component` that nothing provides, fully qualified.
/// The imports of a component that the pool does not serve.
#[derive(Default)]
struct Unserved {
    /// Those nothing provides, each by name.
    missing: Vec<String>,
    /// Why a host function cannot serve one that it provides: its
    /// signature carries streams or futures, which cannot cross to the
    /// host (yet).
    unsupported: Option<String>,
}

fn missing_imports(engine: &Engine, component: &Component, host_fns: &HostFns) -> Unserved {
    let mut missing = Vec::new();
    let mut unsupported = None;
    let mut check = |qualified: &str, f: &ComponentFunc| {
        let types = f.params().map(|(_, t)| t).chain(f.results());
        if let Some(why) = types.filter_map(|t| wit::unsupported_in_session(&t)).next() {
            unsupported.get_or_insert_with(|| {
                format!(
                    "the host function {qualified} carries {why}, which cannot cross to \
                     the host yet"
                )
            });
        }
    };
    for (name, import) in component.component_type().imports(engine) {
        if is_builtin_import(name) {
            continue;
        }
        match import.ty {
            ComponentItem::ComponentInstance(instance) => {
                for (func, export) in instance.exports(engine) {
                    let qualified = format!("{name}#{func}");
                    match export.ty {
                        ComponentItem::ComponentFunc(f) if host_fns.provides(&qualified) => {
                            check(&qualified, &f)
                        }
                        ComponentItem::ComponentFunc(_) => missing.push(qualified),
                        // Types need nothing; a resource type is the host's
                        // values, served through its functions.
                        ComponentItem::Type(_) | ComponentItem::Resource(_) => {}
                        _ => missing.push(format!("{qualified} (not a function)")),
                    }
                }
            }
            ComponentItem::ComponentFunc(f) if host_fns.provides(name) => check(name, &f),
            ComponentItem::ComponentFunc(_) => missing.push(name.to_string()),
            ComponentItem::Type(_) | ComponentItem::Resource(_) => {}
            _ => missing.push(format!("{name} (not a function)")),
        }
    }
    Unserved {
        missing,
        unsupported,
    }
}

/// `ns:pkg/iface@1.2.3` without its version.
fn unversioned(instance: &str) -> &str {
    instance.split_once('@').map_or(instance, |(base, _)| base)
}

/// Whether an exported instance is a WIT interface (`ns:pkg/iface`), as
/// opposed to a plain name such as componentize-py's `exports`.
fn is_interface(instance: &str) -> bool {
    instance.contains(':') && instance.contains('/')
}

/// The one function of `funcs` that `name` names: `func` for a world-level
/// function or, failing that, one of an interface; `instance#func`; or
/// `ns:pkg/iface#func` for the one version of `ns:pkg/iface@x.y.z` exported.
/// Generic in what rides with each name, so the fuzz targets can call it
/// without a component.
pub(crate) fn find<F: Clone>(
    funcs: &[(ExportPath, F)],
    name: &str,
) -> Result<(ExportPath, F), Error> {
    let matches: Vec<&(ExportPath, F)> = if let Some((iface, func)) = name.rsplit_once('#') {
        let exact: Vec<_> = funcs
            .iter()
            .filter(|(p, _)| p.instance.as_deref() == Some(iface) && p.func == func)
            .collect();
        if exact.is_empty() && !iface.contains('@') {
            // `ns:pkg/iface#f` names `ns:pkg/iface@x.y.z#f` when only one
            // version is exported.
            funcs
                .iter()
                .filter(|(p, _)| {
                    p.instance.as_deref().map(unversioned) == Some(iface) && p.func == func
                })
                .collect()
        } else {
            exact
        }
    } else {
        let world: Vec<_> = funcs
            .iter()
            .filter(|(p, _)| p.instance.is_none() && p.func == name)
            .collect();
        if world.is_empty() {
            funcs
                .iter()
                .filter(|(p, _)| p.instance.as_deref().is_some_and(is_interface) && p.func == name)
                .collect()
        } else {
            world
        }
    };
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => {
            let known: Vec<String> = funcs.iter().map(|(p, _)| p.to_string()).collect();
            Err(Error::new(
                ErrorKind::NoSuchFunction,
                format!(
                    "the component exports no function {name:?}; it exports: {}",
                    if known.is_empty() {
                        "nothing callable".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            ))
        }
        many => Err(Error::new(
            ErrorKind::NoSuchFunction,
            format!(
                "{name:?} is ambiguous; name one of: {}",
                many.iter()
                    .map(|(p, _)| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// Counts the top-level elements of MessagePack-encoded arguments: the
/// arguments must be a tuple (an array), or `()` (nil) for none.
pub(crate) fn arg_count(args: &[u8]) -> Option<usize> {
    match *args.first()? {
        0xc0 => Some(0),
        b @ 0x90..=0x9f => Some(usize::from(b & 0x0f)),
        0xdc => Some(usize::from(u16::from_be_bytes([
            *args.get(1)?,
            *args.get(2)?,
        ]))),
        0xdd => {
            Some(
                u32::from_be_bytes([*args.get(1)?, *args.get(2)?, *args.get(3)?, *args.get(4)?])
                    as usize,
            )
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arg_count_reads_array_headers() {
        assert_eq!(arg_count(&rmp_serde::to_vec(&()).unwrap()), Some(0));
        assert_eq!(arg_count(&rmp_serde::to_vec(&(1u8,)).unwrap()), Some(1));
        assert_eq!(
            arg_count(&rmp_serde::to_vec(&(1u8, "a", 2.5f64)).unwrap()),
            Some(3)
        );
        let big: Vec<u8> = vec![0; 70_000];
        assert_eq!(arg_count(&rmp_serde::to_vec(&big).unwrap()), Some(70_000));
        assert_eq!(arg_count(&rmp_serde::to_vec(&17u32).unwrap()), None);
    }

    #[test]
    fn unversioned_strips_the_version() {
        assert_eq!(unversioned("a:b/c@0.1.0"), "a:b/c");
        assert_eq!(unversioned("a:b/c"), "a:b/c");
        assert!(is_interface("wasi:http/incoming-handler@0.2.0"));
        assert!(!is_interface("exports"));
    }
}
