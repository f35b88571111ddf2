//! wasmpool's integration tests, as one test binary.
//!
//! Each test binary links wasmtime anew, and in a release build that link
//! takes most of CI's time, so every test file is a module here instead of a
//! binary of its own (as wasmtime does in `crates/wasi/tests/all`). Modules
//! are named `<area>_<topic>`; helpers shared by several are in `common`.
//!
//! No test needs a binary of its own: none changes the environment, the
//! current directory or other process-wide state, and each test's files go in
//! a directory of its own (`common::temp_dir`). `host_exit` and
//! `stdout_inherit` need a process to themselves, for a host to SIGKILL and
//! for a stdout to read, and make one: they run this binary again with
//! `--exact` and their own name (`common::test_name`), which runs them alone.

mod async_exports;
mod async_lanes;
mod async_streams;
mod call_accounting;
mod call_basics;
mod command_programs;
mod common;
mod compile_cache;
// Compared with `wasmtime run` on Unix fixtures (permissions, symlinks,
// file times): Unix only.
#[cfg(unix)]
mod conformance_wasi;
mod dynamic_calls;
mod faults_traps;
mod host_exit;
mod host_functions;
mod http_allowlist;
mod instance_reuse;
mod introspection;
mod job_handles;
mod limits_timeouts;
mod map_stream;
mod memory_kinds;
mod payload_region;
mod payloads;
mod pool_lifecycle;
mod sessions_host_resources;
mod sessions_python;
mod sessions_resources;
mod sessions_state;
mod stdio_capture;
mod stdout_inherit;
mod sync_primitives;
mod tenants_shares;
mod thread_workers;
mod tracing_spans;
mod values_types;
mod wasi_config;
mod wasi_sandbox;
// The second wall: landlock and seccomp, Linux only.
#[cfg(target_os = "linux")]
mod worker_confinement;
// Its Windows counterpart: a Job Object that allows no other process.
#[cfg(windows)]
mod worker_confinement_windows;
mod worker_crash;
