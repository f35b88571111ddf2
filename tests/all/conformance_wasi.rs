//! WASI conformance of command components: each scenario of the
//! `wasitest` guest runs twice, once through [`Pool::command`] in a worker
//! process and once through wasmtime's own `wasmtime_wasi` command runner
//! here in the test process (the reference, [`reference`]), with the same
//! arguments, environment, stdin and preopen. The two must end the same
//! (exit status, or a trap), print the same stdout and stderr, and leave
//! the same files behind (their names, kinds, sizes, modes, contents and
//! symlink targets), each in a fresh copy of the same fixture.
//!
//! A scenario's transcript prints only what is deterministic, so equal
//! runs print equal bytes; each test also checks a few lines of it, so
//! that two runs cannot agree by both being broken.
//!
//! Where wasmpool differs from the reference on purpose, the difference is
//! asserted in a test of its own, named for it, never hidden in a
//! comparison.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::bindings::Command as WasiCommand;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::common::{job, pool, temp_dir};
use wasmpool::{DirAccess, ErrorKind, Job, Limit, Pool, WorkerKind};

/// Where both runs see the fixture.
const GUEST_DIR: &str = "/data";

/// What the reference keeps of stdout and stderr: far more than any
/// scenario writes, as `wasmtime run`, which writes to its own stdout,
/// has no limit.
const OUTPUT_LIMIT: usize = 256 << 20;

/// A safety net against a run that hangs, never a measure of speed: long
/// enough for the slowest machine.
const NET: Duration = Duration::from_secs(600);

// ---- one run, two ways --------------------------------------------------

/// What a run is given.
#[derive(Debug, Clone, Default)]
struct Run {
    args: Vec<String>,
    arg0: Option<String>,
    env: Vec<(String, String)>,
    stdin: Vec<u8>,
    /// The fixture, preopened at [`GUEST_DIR`] with this access.
    dir: Option<DirAccess>,
}

impl Run {
    fn new<S: Into<String>>(args: impl IntoIterator<Item = S>) -> Run {
        Run {
            args: args.into_iter().map(Into::into).collect(),
            ..Run::default()
        }
    }

    fn env(mut self, k: &str, v: &str) -> Run {
        self.env.push((k.into(), v.into()));
        self
    }

    fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Run {
        self.stdin = bytes.into();
        self
    }

    fn dir(mut self, access: DirAccess) -> Run {
        self.dir = Some(access);
        self
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ended {
    Status(i32),
    /// Not an exit: a trap (a panic, for these programs). The pool's error
    /// carries no output, so a trap's stdout and stderr are not compared.
    Trap,
}

#[derive(Clone, PartialEq, Eq)]
struct Outcome {
    ended: Ended,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Outcome {
            ended,
            stdout,
            stderr,
        } = self;
        let text = |b: &[u8]| {
            if b.len() > 4096 {
                format!("<{} bytes>", b.len())
            } else {
                String::from_utf8_lossy(b).into_owned()
            }
        };
        f.debug_struct("Outcome")
            .field("ended", ended)
            .field("stdout", &text(stdout))
            .field("stderr", &text(stderr))
            .finish()
    }
}

impl Outcome {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Checks that each of `lines` is a line of stdout, or, ending in `*`,
    /// begins one.
    fn has(&self, lines: &[&str]) -> &Self {
        let out = self.stdout();
        for want in lines {
            let found = match want.strip_suffix('*') {
                Some(prefix) => out.lines().any(|l| l.starts_with(prefix)),
                None => out.lines().any(|l| l == *want),
            };
            assert!(found, "no line {want:?} in:\n{out}");
        }
        self
    }
}

/// The `wasitest` guest, for the pool.
fn wasitest() -> Job {
    job(wasmpool_guests::WASITEST)
}

/// `argv[0]` as the pool gives it by default, and `wasmtime run
/// wasitest.wasm` too: the component's file name.
fn default_arg0() -> String {
    Path::new(wasmpool_guests::WASITEST)
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a file name")
        .to_string()
}

async fn via_pool(pool: &Pool, job: &Job, run: &Run, data: &Path) -> Outcome {
    let mut command = pool.command(job).args(run.args.clone()).timeout(NET);
    if let Some(arg0) = &run.arg0 {
        command = command.arg0(arg0);
    }
    for (k, v) in &run.env {
        command = command.env(k, v);
    }
    if !run.stdin.is_empty() {
        command = command.stdin(run.stdin.clone());
    }
    if let Some(access) = run.dir {
        command = command.preopen_dir(data, GUEST_DIR, access);
    }
    match command.output().await {
        Ok(out) => Outcome {
            ended: Ended::Status(out.status),
            stdout: out.stdout,
            stderr: out.stderr,
        },
        Err(e) if e.kind() == ErrorKind::Trap => Outcome {
            ended: Ended::Trap,
            stdout: Vec::new(),
            stderr: Vec::new(),
        },
        Err(e) => panic!("the pool's run failed: {e:?}"),
    }
}

/// The reference: wasmtime's command runner, as `wasmtime run` uses it,
/// in this process. The engine is wasmtime's default; the component is
/// compiled once.
struct Reference {
    engine: Engine,
    linker: Linker<Host>,
    component: Component,
}

struct Host {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

fn reference() -> &'static Reference {
    static REFERENCE: OnceLock<Reference> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let engine = Engine::new(&Config::new()).expect("engine");
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("wasi links");
        let component =
            Component::from_file(&engine, wasmpool_guests::WASITEST).expect("wasitest compiles");
        Reference {
            engine,
            linker,
            component,
        }
    })
}

/// Runs `run` as `wasmtime run` would: status 0 when `run` returns `ok`,
/// 1 when it returns `err`, `n` for `exit(n)`; any other error is a trap.
async fn via_reference(run: &Run, data: &Path) -> Outcome {
    let r = reference();
    let stdout = MemoryOutputPipe::new(OUTPUT_LIMIT);
    let stderr = MemoryOutputPipe::new(OUTPUT_LIMIT);
    let mut b = WasiCtxBuilder::new();
    b.stdin(MemoryInputPipe::new(run.stdin.clone()))
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .arg(run.arg0.clone().unwrap_or_else(default_arg0))
        .args(&run.args);
    for (k, v) in &run.env {
        b.env(k, v);
    }
    if let Some(access) = run.dir {
        let perms = match access {
            DirAccess::ReadOnly => FsPerms::ReadOnly,
            DirAccess::ReadWrite => FsPerms::ReadWrite,
            other => panic!("no reference for {other:?}"),
        };
        b.preopened_dir(data, GUEST_DIR, perms).expect("preopen");
    }
    let mut store = Store::new(
        &r.engine,
        Host {
            ctx: b.build(),
            table: ResourceTable::new(),
        },
    );
    let command = WasiCommand::instantiate_async(&mut store, &r.component, &r.linker)
        .await
        .expect("wasitest instantiates");
    let ended = match command.wasi_cli_run().call_run(&mut store).await {
        Ok(Ok(())) => Ended::Status(0),
        Ok(Err(())) => Ended::Status(1),
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(exit) => Ended::Status(exit.0),
            None => Ended::Trap,
        },
    };
    drop(store);
    let (stdout, stderr) = match ended {
        Ended::Trap => (Vec::new(), Vec::new()),
        Ended::Status(_) => (stdout.contents().to_vec(), stderr.contents().to_vec()),
    };
    Outcome {
        ended,
        stdout,
        stderr,
    }
}

// ---- the fixture and what is left of it ---------------------------------

/// A fresh copy of the fixture the guest's module docs describe: `data/`
/// (preopened) and `outside.txt` beside it. Removed on drop.
struct Fixture {
    root: PathBuf,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let root = temp_dir(&format!("conformance-{name}"));
        let data = root.join("data");
        std::fs::create_dir_all(data.join("sub/deeper")).unwrap();
        std::fs::create_dir_all(data.join("full")).unwrap();
        std::fs::create_dir_all(data.join("emptydir")).unwrap();
        std::fs::write(data.join("hello.txt"), "hello, world\n").unwrap();
        std::fs::write(data.join("empty.txt"), "").unwrap();
        std::fs::write(data.join("sub/inner.txt"), "inner\n").unwrap();
        let leaf: Vec<u8> = (0..=255).collect();
        std::fs::write(data.join("sub/deeper/leaf.bin"), leaf).unwrap();
        std::fs::write(data.join("full/keep.txt"), "keep\n").unwrap();
        std::os::unix::fs::symlink("hello.txt", data.join("link-in")).unwrap();
        std::os::unix::fs::symlink("sub", data.join("link-dir-in")).unwrap();
        std::os::unix::fs::symlink("../outside.txt", data.join("link-up")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", data.join("link-out")).unwrap();
        std::fs::write(root.join("outside.txt"), "outside\n").unwrap();
        stamp(&root);
        Fixture { root }
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }
}

/// Gives `path` and everything under it, symlinks themselves included,
/// one fixed access and modification time. Scenarios on a read-only
/// preopen print the times they fail to change; the pool's fixture and
/// the reference's are made one after the other, and on a loaded machine
/// the clock can tick between them.
fn stamp(path: &Path) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            stamp(&entry.unwrap().path());
        }
    }
    let at = libc::timespec {
        tv_sec: 1_700_000_000,
        tv_nsec: 250_000_000,
    };
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path, and the array two timespecs
    // (access, then modification), as utimensat(2) asks.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            [at, at].as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(
        rc,
        0,
        "{}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// One file left behind: its path under the fixture's root, kind, size,
/// permission bits, content hash (FNV-1a) and, for a symlink, its target.
#[derive(Debug, PartialEq, Eq)]
struct Left {
    path: String,
    kind: &'static str,
    size: u64,
    mode: u32,
    hash: u64,
    target: Option<PathBuf>,
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h: u64, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Everything under `root`, the fixture's `outside.txt` included, in
/// path order.
fn walk(root: &Path) -> Vec<Left> {
    fn visit(root: &Path, dir: &Path, out: &mut Vec<Left>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let t = meta.file_type();
            let mut left = Left {
                path: rel,
                kind: "other",
                size: 0,
                mode: meta.permissions().mode() & 0o7777,
                hash: 0,
                target: None,
            };
            if t.is_symlink() {
                left.kind = "symlink";
                left.mode = 0;
                left.target = Some(std::fs::read_link(&path).unwrap());
                out.push(left);
            } else if t.is_dir() {
                left.kind = "dir";
                out.push(left);
                visit(root, &path, out);
            } else {
                left.kind = "file";
                left.size = meta.len();
                left.hash = fnv(&std::fs::read(&path).unwrap());
                left.mode = meta.mode() & 0o7777;
                out.push(left);
            }
        }
    }
    let mut out = Vec::new();
    visit(root, root, &mut out);
    out
}

/// Runs `run` through `pool` and through the reference, each on a fresh
/// fixture, and checks that they ended alike, printed alike and left the
/// same files behind. Returns the pool's outcome, for the test to check
/// the transcript.
async fn conforms(pool: &Pool, run: Run) -> Outcome {
    conforms_as(pool, &wasitest(), &default_arg0(), run).await
}

/// [`conforms`] for `job`, a copy of the guest, which `wasmtime run`
/// would give `argv[0]` `file_name`.
async fn conforms_as(pool: &Pool, job: &Job, file_name: &str, mut run: Run) -> Outcome {
    let name = run.args.first().cloned().unwrap_or_default();
    let ours = Fixture::new(&format!("{name}-pool"));
    let theirs = Fixture::new(&format!("{name}-reference"));
    let got = via_pool(pool, job, &run, &ours.data()).await;
    run.arg0 = run.arg0.or_else(|| Some(file_name.to_string()));
    let want = via_reference(&run, &theirs.data()).await;
    assert_eq!(
        got.ended, want.ended,
        "{run:?}: exit\npool: {got:?}\nreference: {want:?}"
    );
    assert!(
        got.stdout == want.stdout,
        "{run:?}: stdout\npool: {got:?}\nreference: {want:?}"
    );
    assert!(
        got.stderr == want.stderr,
        "{run:?}: stderr\npool: {got:?}\nreference: {want:?}"
    );
    assert_eq!(
        walk(&ours.root),
        walk(&theirs.root),
        "{run:?}: the files left behind"
    );
    got
}

// ---- arguments, environment, exit ---------------------------------------

#[tokio::test]
async fn arguments_match() {
    let pool = pool(1);
    let out = conforms(&pool, Run::new(["args"])).await;
    out.has(&[
        "argc: 2",
        &format!("argv[0]: {:?} (13 bytes)", default_arg0()),
        "argv[1]: \"args\" (4 bytes)",
        "args_os agrees: true",
    ]);
    let unicode = Run::new([
        "args",
        "",
        "with space",
        "ünïcödé",
        "日本語",
        "🦀",
        "",
        "a=b",
        "--flag",
        "-",
    ]);
    conforms(&pool, unicode).await.has(&[
        "argc: 11",
        "argv[2]: \"\" (0 bytes)",
        "argv[6]: \"🦀\" (4 bytes)",
    ]);
    let mut renamed = Run::new(["args", "x"]);
    renamed.arg0 = Some("prog name/ü".into());
    conforms(&pool, renamed)
        .await
        .has(&["argv[0]: \"prog name/ü\" (12 bytes)"]);
    let mut empty0 = Run::new(["args"]);
    empty0.arg0 = Some(String::new());
    conforms(&pool, empty0)
        .await
        .has(&["argv[0]: \"\" (0 bytes)"]);
    let many =
        Run::new(std::iter::once("args".to_string()).chain((0..1000).map(|i| format!("arg-{i}"))));
    conforms(&pool, many)
        .await
        .has(&["argc: 1002", "argv[1001]: \"arg-999\" (7 bytes)"]);
}

/// `wasmtime run` names `argv[0]` after the last component of the
/// component's path, whatever its extension, and so does the pool.
#[tokio::test]
async fn argv0_is_the_file_name_whatever_its_extension() {
    let pool = pool(1);
    let dir = temp_dir("conformance-argv0");
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["wasitest", "wasitest.component", "prog.v2.wasm", "ünï.wasm"] {
        std::fs::copy(wasmpool_guests::WASITEST, dir.join(name)).unwrap();
        let job = Job::from_file(dir.join(name)).unwrap();
        conforms_as(&pool, &job, name, Run::new(["args"]))
            .await
            .has(&[&format!("argv[0]: {name:?} ({} bytes)", name.len())]);
    }
    // A job made from bytes has no file name: wasmpool's own default.
    let bytes = Job::from_bytes(std::fs::read(wasmpool_guests::WASITEST).unwrap()).unwrap();
    via_pool(&pool, &bytes, &Run::new(["args"]), &dir)
        .await
        .has(&["argv[0]: \"main.wasm\" (9 bytes)"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn environment_matches() {
    let pool = pool(1);
    conforms(&pool, Run::new(["env", "HOME", "PATH"]))
        .await
        .has(&[
            "var HOME: None",
            "var PATH: None",
            "vars: 0",
            "var_os unset: None",
        ]);
    let run = Run::new(["env", "MODE", "EMPTY", "UNICODE", "EQ", "MISSING"])
        .env("MODE", "judge")
        .env("EMPTY", "")
        .env("UNICODE", "ünï 🦀")
        .env("EQ", "a=b=c")
        .env("lower_case", "x");
    conforms(&pool, run).await.has(&[
        "var MODE: Some(\"judge\")",
        "var EMPTY: Some(\"\")",
        "var UNICODE: Some(\"ünï 🦀\")",
        "var EQ: Some(\"a=b=c\")",
        "var MISSING: None",
        "vars: 5",
    ]);
    // The same name twice: both runs pass both on, as given.
    let run = Run::new(["env", "DUP"])
        .env("DUP", "first")
        .env("DUP", "second");
    conforms(&pool, run).await;
}

#[tokio::test]
async fn exit_statuses_match() {
    let pool = pool(1);
    let out = conforms(&pool, Run::new(["ok"])).await;
    assert_eq!(out.ended, Ended::Status(0));
    let out = conforms(&pool, Run::new(["fail"])).await;
    assert_eq!(out.ended, Ended::Status(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("failing on purpose") && stderr.contains("the scenario failed"),
        "{stderr}"
    );
    for (code, status) in [("0", 0), ("1", 1), ("3", 1), ("255", 1), ("-1", 1)] {
        let out = conforms(&pool, Run::new(["exit", code])).await;
        assert_eq!(out.ended, Ended::Status(status), "exit({code})");
        out.has(&[&format!("exiting with {code}")]);
    }
    let out = conforms(&pool, Run::new(["no-such-scenario"])).await;
    assert_eq!(out.ended, Ended::Status(1));
}

#[tokio::test]
async fn a_panic_is_a_trap_in_both() {
    let pool = pool(1);
    let out = conforms(&pool, Run::new(["panic"])).await;
    assert_eq!(out.ended, Ended::Trap);
    let e = pool
        .command(&wasitest())
        .arg("panic")
        .output()
        .await
        .unwrap_err();
    assert_eq!(e.panic_message(), Some("the scenario panicked"));
}

// ---- stdio --------------------------------------------------------------

#[tokio::test]
async fn stdin_matches() {
    let pool = pool(1);
    conforms(&pool, Run::new(["stdin"]))
        .await
        .has(&["read to end: Ok(0)", "read after end: Ok(0)"]);
    conforms(&pool, Run::new(["stdin"]).stdin(&b"one\ntwo\n\nthree"[..]))
        .await
        .has(&["read to end: Ok(14)", "lines: 3"]);
    // Larger than a pipe's buffer and a frame's inline payload.
    let big: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 253) as u8).collect();
    conforms(&pool, Run::new(["stdin"]).stdin(big))
        .await
        .has(&["read to end: Ok(3145728)"]);
}

#[tokio::test]
async fn stdout_and_stderr_match() {
    let pool = pool(1);
    for n in [0, 1, 4095, 3 << 20] {
        let out = conforms(&pool, Run::new(["output".to_string(), n.to_string()])).await;
        assert_eq!(out.stdout.len(), n);
    }
    conforms(&pool, Run::new(["stdio"])).await.has(&[
        "terminal stdin: false",
        "terminal stdout: false",
        "terminal stderr: false",
        "out 2",
        "stderr flush: Ok(())",
    ]);
}

// ---- clocks and random --------------------------------------------------

#[tokio::test]
async fn clocks_match() {
    let pool = pool(1);
    let host = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    conforms(&pool, Run::new(["clocks".to_string(), host.to_string()]))
        .await
        .has(&[
            "std monotonic non-decreasing: true",
            "wasi monotonic non-decreasing: true",
            "monotonic resolution > 0: true",
            "wall resolution > 0: true",
            "wall nanoseconds < 1e9: true",
            "wall after 2020: true",
            "wall within an hour of the host's: true",
            "wasi and std wall clocks within a minute: true",
            "sleep 20ms lasts at least 20ms: true",
            "subscribe-duration 5ms lasts at least 5ms: true",
            "an instant passed is ready at the second look: true",
        ]);
}

#[tokio::test]
async fn random_matches() {
    let pool = pool(1);
    conforms(&pool, Run::new(["random"])).await.has(&[
        "random bytes 0: length 0, not all zero true",
        "random bytes 65536: length 65536, not all zero true",
        "two random draws differ: true",
        "two random u64 differ: true",
        "insecure bytes 4096: length 4096, not all zero true",
        "two insecure draws differ: true",
        "insecure seed stable: true",
        "hash seeds differ: true",
    ]);
}

// ---- the filesystem -----------------------------------------------------

#[tokio::test]
async fn preopens_match() {
    let pool = pool(1);
    conforms(&pool, Run::new(["preopens"]))
        .await
        .has(&["preopens: []", "read /data/hello.txt: Err(*"]);
    for access in [DirAccess::ReadWrite, DirAccess::ReadOnly] {
        conforms(&pool, Run::new(["preopens"]).dir(access))
            .await
            .has(&["preopens: [\"/data\"]", "read /data/hello.txt: Ok(*"]);
    }
}

#[tokio::test]
async fn fs_open_matches() {
    let pool = pool(1);
    conforms(&pool, Run::new(["fs-open"]).dir(DirAccess::ReadWrite))
        .await
        .has(&[
            "open missing: Err(NotFound*",
            "create_new existing: Err(AlreadyExists*",
            "create_new fresh: Ok(())",
            "read new.txt: Ok(\"abc\")",
            "read new.txt: Ok(\"Xbc\")",
            "len new.txt: Ok(0)",
            "read log.txt: Ok(\"one two three and more!\")",
            "open a dir to write: Err(*",
        ]);
}

#[tokio::test]
async fn fs_escapes_fail_alike() {
    let pool = pool(1);
    let out = conforms(&pool, Run::new(["fs-escape"]).dir(DirAccess::ReadWrite)).await;
    out.has(&[
        "read ../outside.txt: Err(*",
        "read sub/../../outside.txt: Err(*",
        "read sub/deeper/../../../outside.txt: Err(*",
        "read link-dir-in/../../outside.txt: Err(*",
        "read link-up: Err(*",
        "read link-out: Err(*",
        "read /etc/passwd: Err(*",
        "create /data/../created.txt: Err(*",
        "write through link-up: Err(*",
        "write through link-out: Err(*",
        "rename hello.txt to ../stolen.txt: Err(*",
        "hard_link ../outside.txt in: Err(*",
        "remove ../outside.txt: Err(*",
        "open_at ../outside.txt: Err(*",
        "open_at /etc/passwd: Err(*",
        "read sym-up: Err(*",
        "read sub/../hello.txt: Ok(*",
    ]);
}

#[tokio::test]
async fn fs_rename_unlink_rmdir_match() {
    let pool = pool(1);
    conforms(&pool, Run::new(["fs-remove"]).dir(DirAccess::ReadWrite))
        .await
        .has(&[
            "rename a dir onto a nonempty dir: Err(Uncategorized/55)",
            "rename missing: Err(NotFound*",
            "remove_dir a nonempty dir: Err(Uncategorized/55)",
            "remove_dir a file: Err(NotADirectory*",
            "remove_file missing: Err(NotFound*",
            "rename a dir onto an empty dir: Ok(())",
        ]);
}

#[tokio::test]
async fn fs_directory_reads_match() {
    let pool = pool(1);
    conforms(&pool, Run::new(["fs-dir"]).dir(DirAccess::ReadWrite))
        .await
        .has(&[
            "read_dir /data: 9 entries",
            "  link-up: Ok(\"symlink\")",
            "  sub: Ok(\"dir\")",
            "  has . or ..: false",
            "read_dir a file: Err(*",
        ]);
}

#[tokio::test]
async fn fs_metadata_and_times_match() {
    let pool = pool(1);
    conforms(&pool, Run::new(["fs-meta"]).dir(DirAccess::ReadWrite))
        .await
        .has(&[
            "metadata hello.txt: Ok(\"file len 13\")",
            "symlink_metadata link-in: Ok(\"symlink len 9\")",
            "metadata link-up: Err(*",
            "modified: Ok(Some((1600000000, 123456789)))",
            "metadata hashes: same file equal, other differs: Ok((true, true))",
        ]);
}

#[tokio::test]
async fn fs_links_match() {
    let pool = pool(1);
    conforms(&pool, Run::new(["fs-link"]).dir(DirAccess::ReadWrite))
        .await
        .has(&[
            "hard_link hello.txt hl.txt: Ok(())",
            "link count hl.txt: Ok(2)",
            "hello.txt: Ok(\"hello, world\\nmore\\n\")",
            "read_link sym: Ok(\"hello.txt\")",
        ]);
}

#[tokio::test]
async fn fs_sizes_seeks_and_advice_match() {
    let pool = pool(1);
    conforms(&pool, Run::new(["fs-size"]).dir(DirAccess::ReadWrite))
        .await
        .has(&[
            "set_len 20: Ok(())",
            "sized.bin: Ok(\"0123\")",
            "read 2: Ok(\"cd\")",
            "read to end: Ok(\"ef\")",
            "pwrite XY at 1: Ok(2)",
            "advise Advice::Sequential: Ok(())",
        ]);
}

#[tokio::test]
async fn fs_read_only_preopens_match() {
    let pool = pool(1);
    conforms(&pool, Run::new(["fs-readonly"]).dir(DirAccess::ReadOnly))
        .await
        .has(&[
            "read hello.txt: Ok(*",
            "create: Err(*",
            "open existing to write: Err(*",
            "remove_file: Err(*",
            "rename: Err(*",
            "set_len: Err(*",
        ]);
    // Every other scenario on a read-only preopen: its writes fail alike.
    for scenario in [
        "fs-open",
        "fs-escape",
        "fs-remove",
        "fs-dir",
        "fs-meta",
        "fs-link",
        "fs-size",
    ] {
        let out = conforms(&pool, Run::new([scenario]).dir(DirAccess::ReadOnly)).await;
        if scenario == "fs-meta" {
            // The fixture's own times, which the scenario failed to change.
            out.has(&["modified hello.txt: Ok(Some((1700000000, 250000000)))"]);
        }
    }
}

#[tokio::test]
async fn network_access_matches() {
    let pool = pool(1);
    conforms(&pool, Run::new(["net"])).await;
}

/// Every scenario, as the tests above run them, for pools of other kinds.
fn every_scenario() -> Vec<Run> {
    let host = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut runs = vec![
        Run::new(["args", "", "ünï", "two words"]),
        Run::new(["env", "A", "B"]).env("A", "1").env("C", "3"),
        Run::new(["ok"]),
        Run::new(["fail"]),
        Run::new(["exit", "7"]),
        Run::new(["panic"]),
        Run::new(["stdin"]).stdin(&b"some input\n"[..]),
        Run::new(["output", "100000"]),
        Run::new(["stdio"]),
        Run::new(["clocks".to_string(), host.to_string()]),
        Run::new(["random"]),
        Run::new(["net"]),
        Run::new(["preopens"]).dir(DirAccess::ReadWrite),
        Run::new(["fs-readonly"]).dir(DirAccess::ReadOnly),
    ];
    for scenario in [
        "fs-open",
        "fs-escape",
        "fs-remove",
        "fs-dir",
        "fs-meta",
        "fs-link",
        "fs-size",
    ] {
        runs.push(Run::new([scenario]).dir(DirAccess::ReadWrite));
    }
    runs
}

/// Thread workers run guests in this process, with no second wall: the
/// same WASI as process workers.
#[tokio::test]
async fn thread_workers_conform_too() {
    let pool = Pool::builder()
        .workers(1)
        .worker_kind(WorkerKind::Thread)
        .build()
        .unwrap();
    for run in every_scenario() {
        conforms(&pool, run).await;
    }
}

// ---- where wasmpool differs on purpose ----------------------------------

/// This process's limit on open descriptors (the soft one).
fn open_files_limit() -> libc::rlim_t {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: the pointer is to a live rlimit, valid for writes.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(r, 0, "getrlimit");
    limit.rlim_cur
}

/// The number of files an `fs-many` run held open at once.
fn files_held(out: &Outcome) -> usize {
    let line = out.stdout().lines().next().unwrap_or_default().to_string();
    let n = line
        .strip_prefix("opened ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok());
    n.unwrap_or_else(|| panic!("no count in {line:?}"))
}

/// Difference: a confined worker process holds at most 4096 descriptors
/// (`MAX_OPEN_FILES`, the second wall), where `wasmtime run` holds as
/// many as its process may. Opening past it fails in the guest, which
/// goes on; closing files frees them again.
#[tokio::test]
async fn difference_a_confined_worker_holds_at_most_4096_files() {
    const N: usize = 5000;
    let run = Run::new(["fs-many".to_string(), N.to_string()]).dir(DirAccess::ReadOnly);
    let pool = pool(1);
    let ours = Fixture::new("fs-many-pool");
    let got = via_pool(&pool, &wasitest(), &run, &ours.data()).await;
    assert_eq!(got.ended, Ended::Status(0), "{got:?}");
    let held = files_held(&got);
    assert!((1000..4096).contains(&held), "{got:?}");
    got.has(&[
        &format!("opened {held} of {N} files, then Err(*"),
        "open after closing them: Ok(*",
    ]);
    // Where this process may hold more, the reference and an unconfined
    // worker hold them all.
    if open_files_limit() > N as libc::rlim_t + 512 {
        let theirs = Fixture::new("fs-many-reference");
        let mut reference_run = run.clone();
        reference_run.arg0 = Some(default_arg0());
        via_reference(&reference_run, &theirs.data()).await.has(&[
            &format!("opened {N} files"),
            "open after closing them: Ok(*",
        ]);
        let unconfined = Pool::builder().workers(1).confine(false).build().unwrap();
        let free = Fixture::new("fs-many-unconfined");
        via_pool(&unconfined, &wasitest(), &run, &free.data())
            .await
            .has(&[&format!("opened {N} files")]);
    }
}

/// Difference: the pool captures at most
/// [`CAPTURE_LIMIT`](wasmpool::CAPTURE_LIMIT) bytes of stdout (by
/// default; `max_output_bytes` sets it), where `wasmtime run` writes all
/// of it to its own stdout. A write past the limit fails in the guest: a
/// program that panics on it (Rust's `println!`) is a
/// [`Limit::Output`] error; one that goes on exits as it would, its
/// output cut short at the last write that fit.
#[tokio::test]
async fn difference_output_past_the_capture_limit_is_cut_short() {
    let n = wasmpool::CAPTURE_LIMIT + 1;
    let pool = pool(1);
    let fixture = Fixture::new("output-limit");
    let e = pool
        .command(&wasitest())
        .args(["output".to_string(), n.to_string()])
        .output()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ResourceLimit, "{e:?}");
    assert_eq!(e.limit(), Some(Limit::Output), "{e:?}");
    let mut run = Run::new(["output".to_string(), n.to_string()]);
    run.arg0 = Some(default_arg0());
    let want = via_reference(&run, &fixture.data()).await;
    assert_eq!(want.ended, Ended::Status(0));
    assert_eq!(want.stdout.len(), n);

    let run = Run::new(["output-lossy".to_string(), n.to_string()]);
    let got = via_pool(&pool, &wasitest(), &run, &fixture.data()).await;
    assert_eq!(got.ended, Ended::Status(0));
    assert!(got.stdout.len() <= wasmpool::CAPTURE_LIMIT, "{got:?}");
    assert!(
        got.stdout.len() > wasmpool::CAPTURE_LIMIT - (64 << 10),
        "{got:?}"
    );
    let stderr = String::from_utf8_lossy(&got.stderr);
    assert!(
        stderr.starts_with("failed writes: 1, the first Err("),
        "{stderr}"
    );
    let mut run = run;
    run.arg0 = Some(default_arg0());
    let want = via_reference(&run, &fixture.data()).await;
    assert_eq!(want.stdout.len(), n);
    assert!(
        String::from_utf8_lossy(&want.stderr).starts_with("failed writes: 0,"),
        "{want:?}"
    );
}
