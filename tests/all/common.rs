//! Helpers shared by the integration tests.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmpool::{Job, Pool};

pub fn job(path: &str) -> Job {
    Job::from_file(path).expect("guest component loads")
}

/// A pool whose grace period is long enough that a slow machine never
/// turns an interrupt into a kill; tests that count kills rely on it.
pub fn pool(workers: usize) -> Pool {
    Pool::builder()
        .workers(workers)
        .grace(Duration::from_secs(30))
        .build()
        .expect("pool builds")
}

/// A runtime, a one-worker pool and the `types` guest, shared by the
/// tests that call its echo functions.
pub struct TypesFixture {
    pub rt: tokio::runtime::Runtime,
    pub pool: Pool,
    pub job: Job,
}

pub fn types_fixture() -> &'static TypesFixture {
    static F: OnceLock<TypesFixture> = OnceLock::new();
    F.get_or_init(|| TypesFixture {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        pool: pool(1),
        job: job(wasmpool_guests::TYPES),
    })
}

/// Whether a process with this pid exists (zombies count as gone).
#[cfg(unix)]
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state follows the parenthesised command name.
            let state = stat
                .rsplit_once(')')
                .map(|(_, r)| r.trim_start())
                .unwrap_or("");
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

/// Polls `cond` every 5 ms for up to 20 s; generous so a slow machine never
/// fails a test, while a real hang still does.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// CPU time process `pid` has used, user and system, in clock ticks; 0
/// once it is gone.
#[cfg(unix)]
pub fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the parenthesised command name: state is the 3rd field
    // of the line, utime and stime the 14th and 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// Kills process `pid` from outside, as `kill -9` does.
#[cfg(unix)]
pub fn sigkill(pid: u32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

#[cfg(windows)]
pub use self::windows::{alive, cpu_ticks, sigkill};

/// The same helpers on Windows, through process handles.
#[cfg(windows)]
mod windows {
    use windows_sys::Win32::Foundation::{CloseHandle, FILETIME, HANDLE, WAIT_TIMEOUT};
    use windows_sys::Win32::System::Threading::{
        GetProcessTimes, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE,
        PROCESS_TERMINATE, TerminateProcess, WaitForSingleObject,
    };

    /// Runs `f` on a handle to process `pid`, opened with `access`;
    /// `None` if there is no such process.
    fn with_process<T>(pid: u32, access: u32, f: impl FnOnce(HANDLE) -> T) -> Option<T> {
        // SAFETY: OpenProcess takes plain values; the handle is closed below.
        let h = unsafe { OpenProcess(access, 0, pid) };
        if h.is_null() {
            return None;
        }
        let out = f(h);
        // SAFETY: `h` was opened above and is closed once.
        unsafe { CloseHandle(h) };
        Some(out)
    }

    /// Whether process `pid` exists and has not exited.
    pub fn alive(pid: u32) -> bool {
        // SAFETY: a live process handle.
        with_process(pid, PROCESS_SYNCHRONIZE, |h| unsafe {
            WaitForSingleObject(h, 0) == WAIT_TIMEOUT
        })
        .unwrap_or(false)
    }

    /// CPU time process `pid` has used, user and kernel, in 10 ms ticks;
    /// 0 once it is gone.
    pub fn cpu_ticks(pid: u32) -> u64 {
        with_process(pid, PROCESS_QUERY_LIMITED_INFORMATION, |h| {
            let zero = FILETIME {
                dwLowDateTime: 0,
                dwHighDateTime: 0,
            };
            let (mut a, mut b, mut kernel, mut user) = (zero, zero, zero, zero);
            // SAFETY: a live process handle and four live FILETIMEs.
            if unsafe { GetProcessTimes(h, &mut a, &mut b, &mut kernel, &mut user) } == 0 {
                return 0;
            }
            let t = |f: FILETIME| (u64::from(f.dwHighDateTime) << 32) | u64::from(f.dwLowDateTime);
            (t(kernel) + t(user)) / 100_000
        })
        .unwrap_or(0)
    }

    /// Terminates process `pid` from outside, with exit code 9.
    pub fn sigkill(pid: u32) {
        // SAFETY: a live process handle with terminate access.
        with_process(pid, PROCESS_TERMINATE, |h| unsafe {
            TerminateProcess(h, 9)
        });
    }
}

/// A path for one test's files that no other test in this process uses,
/// under the system temp directory; it does not exist yet. Tests share one
/// process, so the pid alone does not keep them apart: a counter does.
pub fn temp_dir(name: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("wasmpool-test-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The name libtest lists test `name` under, for re-running it alone with
/// `--exact`: its module path (pass `module_path!()`) without the crate's
/// name, then `name`. Right whether the test is in a module of `all` or at
/// the top of a test binary of its own.
pub fn test_name(module_path: &str, name: &str) -> String {
    match module_path.split_once("::") {
        Some((_crate, module)) => format!("{module}::{name}"),
        None => name.to_string(),
    }
}

/// Echoes `data` through `pool`'s `echo` guest and checks that every byte
/// came back.
pub async fn echoes(pool: &Pool, echo: &Job, data: &[u8]) {
    let back: serde_bytes::ByteBuf = pool
        .run(echo, "echo-bytes", (serde_bytes::Bytes::new(data),))
        .await
        .unwrap();
    assert!(
        back.as_slice() == data,
        "{} bytes came back changed",
        data.len()
    );
}

/// The componentize-py version the Python guests are built with.
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// Builds the Python guest `guest/python/<dir>` for `world` of
/// `wit/jobs` with componentize-py, installed once under the target
/// directory from PyPI (or taken from `$COMPONENTIZE_PY`), and returns
/// the component's path (`python-<dir>.wasm` in `$WASMPOOL_PYTHON_GUESTS`
/// instead, if that is set: components built before). Callers keep the path in a `OnceLock`, to build
/// each guest once per test run.
pub fn componentize_py(dir: &str, world: &str) -> PathBuf {
    use std::process::Command;
    use std::sync::Mutex;
    // One install at a time, for guests built by tests in parallel.
    static INSTALL: Mutex<()> = Mutex::new(());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    // Built elsewhere: under Wine, where no Linux python3 can be started,
    // the guests the Linux run built (`.ci/cross`).
    if let Some(built) = std::env::var_os("WASMPOOL_PYTHON_GUESTS") {
        return PathBuf::from(built).join(format!("python-{dir}.wasm"));
    }
    let (program, pythonpath) = match std::env::var_os("COMPONENTIZE_PY") {
        Some(p) => (PathBuf::from(p), None),
        None => {
            let dir = tmp.join("componentize-py-0.25.1");
            let script = dir.join("bin").join("componentize-py");
            let _one = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
            if !script.is_file() {
                let status = Command::new("python3")
                    .args(["-m", "pip", "install", "--quiet"])
                    .args(["--disable-pip-version-check", "--target"])
                    .arg(&dir)
                    .arg(COMPONENTIZE_PY)
                    .status()
                    .expect("python3 to install componentize-py (or set COMPONENTIZE_PY)");
                assert!(
                    status.success() && script.is_file(),
                    "could not install {COMPONENTIZE_PY} from PyPI into {}",
                    dir.display()
                );
            }
            (script, Some(dir))
        }
    };
    let out = tmp.join(format!("python-{dir}.wasm"));
    let mut cmd = match &pythonpath {
        // The script of a `--target` install runs on python3 with its
        // directory on the path.
        Some(path) => {
            let mut c = Command::new("python3");
            c.arg(&program).env("PYTHONPATH", path);
            c
        }
        None => Command::new(&program),
    };
    let status = cmd
        .arg("-d")
        .arg(root.join("wit/jobs"))
        .args(["-w", world, "componentize", "-p"])
        .arg(root.join("guest/python").join(dir))
        .arg("app")
        .arg("-o")
        .arg(&out)
        // No `__pycache__` in the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .status()
        .expect("componentize-py runs");
    assert!(status.success(), "componentize-py built guest/python/{dir}");
    out
}
