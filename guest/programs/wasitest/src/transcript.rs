//! How a step is printed, and the helpers every scenario uses.

use std::fmt::Debug;
use std::fs;
use std::io;

use wasi::filesystem::types::{Descriptor, ErrorCode};

use crate::D;

/// `Ok(value)` or `Err(Kind/errno)`.
pub(crate) fn show<T: Debug>(r: io::Result<T>) -> String {
    match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => io_err(&e),
    }
}

pub(crate) fn io_err(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => format!("Err({:?}/{n})", e.kind()),
        None => format!("Err({:?})", e.kind()),
    }
}

/// `Ok(value)` or `Err(code-name)`, for the `wasi` crate's calls.
pub(crate) fn wshow<T: Debug>(r: Result<T, ErrorCode>) -> String {
    match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => format!("Err({})", e.name()),
    }
}

/// Prints one step: its label and how it went.
pub(crate) fn step(label: &str, outcome: String) {
    println!("{label}: {outcome}");
}

/// Drops what an `Ok` holds, for steps whose value is not deterministic
/// or not printable.
pub(crate) fn unit<T>(r: io::Result<T>) -> io::Result<()> {
    r.map(|_| ())
}

pub(crate) fn wunit<T>(r: Result<T, ErrorCode>) -> Result<(), ErrorCode> {
    r.map(|_| ())
}

/// FNV-1a, 64 bits: a content hash without a crate.
pub(crate) fn fnv(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

pub(crate) fn read(path: &str) -> io::Result<String> {
    fs::read(path).map(|b| format!("{} bytes fnv {}", b.len(), fnv(&b)))
}

pub(crate) fn read_text(path: &str) -> io::Result<String> {
    fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned())
}

pub(crate) fn p(rel: &str) -> String {
    format!("{D}/{rel}")
}

/// The preopen at `/data`, as a `wasi:filesystem` descriptor.
pub(crate) fn data_dir() -> Descriptor {
    wasi::filesystem::preopens::get_directories()
        .into_iter()
        .find(|(_, name)| name == D)
        .map(|(d, _)| d)
        .expect("/data is preopened")
}

pub(crate) fn kind(t: fs::FileType) -> &'static str {
    if t.is_symlink() {
        "symlink"
    } else if t.is_dir() {
        "dir"
    } else if t.is_file() {
        "file"
    } else {
        "other"
    }
}

/// Prints a directory's entries, sorted, with their types.
pub(crate) fn list(label: &str, path: &str) {
    match fs::read_dir(path) {
        Ok(it) => {
            let mut all: Vec<String> = Vec::new();
            for e in it {
                match e {
                    Ok(e) => {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let t = e.file_type().map(kind);
                        all.push(format!("{name}: {}", show(t)));
                    }
                    Err(e) => all.push(format!("entry {}", io_err(&e))),
                }
            }
            all.sort();
            println!("{label}: {} entries", all.len());
            for a in all {
                println!("  {a}");
            }
        }
        Err(e) => println!("{label}: {}", io_err(&e)),
    }
}
