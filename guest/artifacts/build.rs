//! Builds the guest components in `guest/programs` for `wasm32-wasip2` and
//! writes their paths into `$OUT_DIR/guests.rs`. The `P1_GUESTS` are built
//! a second time for `wasm32-wasip1`, as the core modules a WASI 0.1
//! toolchain makes, under the constant `<NAME>_P1`.
//!
//! This is the pattern of wasmtime's test-programs artifacts crate: a nested
//! `cargo build` with its own target directory (`$OUT_DIR/target`, or
//! `$WASMPOOL_GUESTS_TARGET_DIR` when set, which builds for several host
//! targets can share). The wasm targets are added
//! with rustup when the toolchain lacks them, since rustup does not install
//! the targets of `rust-toolchain.toml` when auto-install is off.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
/// The WASI 0.1 target, for the guests that are also built as core modules.
const P1_TARGET: &str = "wasm32-wasip1";
const GUESTS: &[&str] = &[
    "fib", "cpu", "echo", "types", "faults", "hello", "sandbox", "coop", "plugin", "greeter",
    "ticker", "heavy", "fetch", "config", "cmd", "wasitest", "session", "kvplugin", "asyncs",
    "cmd3",
];
/// Where the guests are built, when set: a target directory that builds
/// for other host targets, or other profiles, share. By default each build
/// has its own, under its `OUT_DIR`.
const SHARED_TARGET_DIR: &str = "WASMPOOL_GUESTS_TARGET_DIR";
/// Guests built for `P1_TARGET` too: plain binaries with no WIT of their own.
const P1_GUESTS: &[&str] = &["cmd"];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let programs = manifest_dir.join("../programs").canonicalize().unwrap();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    println!(
        "cargo:rerun-if-changed={}",
        programs.join("Cargo.toml").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        programs.join("Cargo.lock").display()
    );
    let wit = manifest_dir.join("../../wit").canonicalize().unwrap();
    println!("cargo:rerun-if-changed={}", wit.display());
    // The guest SDK, which guests such as `coop` depend on by path.
    let sdk = manifest_dir.join("../sdk").canonicalize().unwrap();
    println!("cargo:rerun-if-changed={}", sdk.display());
    for guest in GUESTS {
        println!("cargo:rerun-if-changed={}", programs.join(guest).display());
    }

    ensure_target(TARGET);
    ensure_target(P1_TARGET);

    // One guest build can serve the builds for several host targets (the
    // cross builds of `.ci/cross`, for one): they name the same directory.
    println!("cargo:rerun-if-env-changed={SHARED_TARGET_DIR}");
    let target_dir = match env::var_os(SHARED_TARGET_DIR) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => out_dir.join("target"),
    };
    build(&programs, &target_dir, TARGET, &[]);
    build(&programs, &target_dir, P1_TARGET, P1_GUESTS);

    let mut code = String::new();
    let mut all = String::new();
    for guest in GUESTS {
        let konst = guest.to_uppercase();
        writeln!(code, "/// Path of the `{guest}` guest component.").unwrap();
        let wasm = built(&target_dir, TARGET, guest);
        writeln!(code, "pub const {konst}: &str = {wasm:?};").unwrap();
        writeln!(all, "    ({guest:?}, {konst}),").unwrap();
    }
    for guest in P1_GUESTS {
        let konst = guest.to_uppercase();
        writeln!(
            code,
            "/// Path of the `{guest}` guest built for {P1_TARGET}: a core module."
        )
        .unwrap();
        let wasm = built(&target_dir, P1_TARGET, guest);
        writeln!(code, "pub const {konst}_P1: &str = {wasm:?};").unwrap();
    }
    writeln!(code, "/// Every guest component, by name.").unwrap();
    writeln!(code, "pub const ALL: &[(&str, &str)] = &[\n{all}];").unwrap();
    std::fs::write(out_dir.join("guests.rs"), code).unwrap();
}

/// The path of `guest` built for `target`, which must exist.
fn built(target_dir: &Path, target: &str, guest: &str) -> String {
    let wasm = target_dir
        .join(target)
        .join("release")
        .join(format!("{guest}.wasm"));
    assert!(wasm.exists(), "{} was not built", wasm.display());
    wasm.display().to_string()
}

/// Builds the guests workspace for `target`: the packages `only`, or all.
fn build(programs: &Path, target_dir: &Path, target: &str, only: &[&str]) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--target")
        .arg(target)
        .arg("--manifest-path")
        .arg(programs.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    for package in only {
        cmd.args(["--package", package]);
    }
    // The outer build's flags are for the host, not for wasm.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("failed to run cargo for the guests");
    assert!(
        status.success(),
        "building the guests for {target} failed: {status}"
    );
}

/// Adds a wasm target with rustup when the active toolchain lacks it.
fn ensure_target(target: &str) {
    if target_installed(target) {
        return;
    }
    let mut cmd = Command::new("rustup");
    if let Some(toolchain) = env::var_os("RUSTUP_TOOLCHAIN") {
        cmd.arg("+".to_string() + &toolchain.to_string_lossy());
    }
    cmd.args(["target", "add", target]);
    let status = cmd.status().unwrap_or_else(|e| {
        panic!("the {target} target is missing and rustup could not be run to add it: {e}")
    });
    assert!(
        status.success(),
        "`rustup target add {target}` failed: {status}"
    );
    assert!(
        target_installed(target),
        "{target} is still missing after `rustup target add`"
    );
}

fn target_installed(target: &str) -> bool {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(out) = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", target])
        .output()
    else {
        return false;
    };
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    out.status.success()
        && Path::new(&dir)
            .read_dir()
            .map(|mut d| {
                d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("libstd")))
            })
            .unwrap_or(false)
}
