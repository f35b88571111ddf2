//! A session of a guest in another language: the `session` world in
//! Python, built here from `guest/python/session` with componentize-py
//! (see [`crate::common::componentize_py`]). Its state, its resources and its loss behave as
//! the Rust guest's do.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use wasmpool::{ErrorKind, Job, WorkerKind};

/// The Python `session` guest, built once per test run.
fn python_session() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| crate::common::componentize_py("session", "session"))
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
