//! A session of a guest in another language: the `session` world in
//! Python, built here from `guest/python/session` with componentize-py
//! (installed once under the target directory from PyPI, or taken from
//! `$COMPONENTIZE_PY`). Its state, its resources and its loss behave as
//! the Rust guest's do.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use wasmpool::{ErrorKind, Job, WorkerKind};

/// The componentize-py version the guest is built with.
const COMPONENTIZE_PY: &str = "componentize-py==0.25.0";

/// The Python `session` guest, built once per test run.
fn python_session() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let (program, pythonpath) = match std::env::var_os("COMPONENTIZE_PY") {
            Some(p) => (PathBuf::from(p), None),
            None => {
                let dir = tmp.join("componentize-py");
                let script = dir.join("bin").join("componentize-py");
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
        let out = tmp.join("python-session.wasm");
        let mut cmd = match &pythonpath {
            // The script of a `--target` install runs on python3 with its
            // directory on the path.
            Some(dir) => {
                let mut c = Command::new("python3");
                c.arg(&program).env("PYTHONPATH", dir);
                c
            }
            None => Command::new(&program),
        };
        let status = cmd
            .arg("-d")
            .arg(root.join("wit/jobs"))
            .args(["-w", "session", "componentize", "-p"])
            .arg(root.join("guest/python/session"))
            .arg("app")
            .arg("-o")
            .arg(&out)
            .status()
            .expect("componentize-py runs");
        assert!(status.success(), "componentize-py built the Python guest");
        out
    })
}

#[tokio::test]
async fn a_python_guest_keeps_state_and_exports_resources() {
    let job = Job::from_file(python_session()).unwrap();
    crate::sessions_resources::whole_life(&job, WorkerKind::Process, false).await;

    let pool = crate::common::pool(1);
    let s = pool.session(&job).await.unwrap();
    let other = pool.session(&job).await.unwrap();
    for want in 1..=3u64 {
        assert_eq!(s.run::<u64>("bump", ()).await.unwrap(), want);
    }
    assert_eq!(other.run::<u64>("bump", ()).await.unwrap(), 1);
    let err = s.run::<()>("fail", ()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Trap, "{err}");
    let err = s.run::<u64>("bump", ()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SessionLost, "{err}");
    assert_eq!(other.run::<u64>("bump", ()).await.unwrap(), 2);
}
