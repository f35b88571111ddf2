//! A WASI conformance program: its first argument names a scenario, and
//! the scenario prints a transcript, one line per step, then exits with the
//! status the scenario defines (0 unless it says otherwise).
//!
//! Every line is deterministic: what depends on the time, the machine or
//! chance (clock readings, random bytes, inode numbers) is printed only as
//! a property that must hold (`monotonic non-decreasing: true`). Errors are
//! printed as `Err(Kind/errno)`, the `io::ErrorKind` and wasi-libc's errno,
//! or as the `wasi:filesystem` error code's name for calls made through the
//! `wasi` crate.
//!
//! The scenarios, and what they expect of the run:
//!
//! - `args ...`: prints every argument, `argv[0]` first;
//! - `env NAME...`: prints each variable asked for, then all of them;
//! - `ok`: prints and returns from `main` (status 0);
//! - `fail`: writes to stderr and returns an error from `main` (status 1);
//! - `exit N`: prints, then calls `exit(N)`;
//! - `panic`: panics (a trap);
//! - `stdin`: reads stdin to its end, prints a summary, echoes it;
//! - `output N`: writes N bytes to stdout in writes of many sizes, and a
//!   summary to stderr;
//! - `stdio`: terminals, and writes to stdout and stderr in turn;
//! - `clocks HOST_SECS`: properties of the clocks; `HOST_SECS` is the
//!   host's wall clock, in seconds since the epoch, when it started the run;
//! - `random`: properties of the random interfaces;
//! - `preopens`: the preopened directories and the working directory;
//! - `fs-open`, `fs-escape`, `fs-remove`, `fs-dir`, `fs-meta`, `fs-link`,
//!   `fs-size`: the filesystem, inside a read-write preopen at `/data`
//!   seeded with the test's fixture;
//! - `fs-readonly`: the same fixture, preopened read-only;
//! - `fs-many N`: holds `N` files open at once, or as many as it can;
//! - `output-lossy N`: writes N bytes to stdout in 64 KiB writes, going on
//!   past a failed write, and says on stderr how many failed;
//! - `net`: tries TCP, UDP and name lookup.
//!
//! The fixture (`tests/all/conformance_wasi.rs` makes it): next to the
//! preopened `data/` lies `outside.txt`, which nothing may reach.
//!
//! ```text
//! data/hello.txt          "hello, world\n"
//! data/empty.txt          ""
//! data/sub/inner.txt      "inner\n"
//! data/sub/deeper/leaf.bin  bytes 0..=255
//! data/full/keep.txt      "keep\n"
//! data/emptydir/
//! data/link-in     -> hello.txt
//! data/link-dir-in -> sub
//! data/link-up     -> ../outside.txt
//! data/link-out    -> /etc/passwd
//! outside.txt             "outside\n"
//! ```

mod fs_data;
mod fs_paths;
mod process;
mod transcript;

use std::io::{self, Write};

use fs_data::{fs_link, fs_meta, fs_readonly, fs_size};
use fs_paths::{fs_dir, fs_escape, fs_many, fs_open, fs_remove, preopens};
use process::{clocks, env, net, output, output_lossy, print_args, random, stdin, stdio};

/// Where the tests preopen the fixture.
const D: &str = "/data";

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let rest = args.get(2..).unwrap_or_default();
    match args.get(1).map(String::as_str).unwrap_or("") {
        "args" => print_args(&args),
        "env" => env(rest),
        "ok" => println!("returning from main"),
        "fail" => {
            println!("about to fail");
            eprintln!("failing on purpose");
            return Err("the scenario failed".into());
        }
        "exit" => {
            let code: i32 = rest.first().and_then(|c| c.parse().ok()).unwrap_or(0);
            println!("exiting with {code}");
            io::stdout().flush().map_err(|e| e.to_string())?;
            std::process::exit(code);
        }
        "panic" => {
            println!("about to panic");
            panic!("the scenario panicked");
        }
        "stdin" => stdin(),
        "output" => output(rest.first().and_then(|n| n.parse().ok()).unwrap_or(0)),
        "stdio" => stdio(),
        "clocks" => clocks(rest.first().and_then(|s| s.parse().ok()).unwrap_or(0)),
        "random" => random(),
        "preopens" => preopens(),
        "fs-open" => fs_open(),
        "fs-escape" => fs_escape(),
        "fs-remove" => fs_remove(),
        "fs-dir" => fs_dir(),
        "fs-meta" => fs_meta(),
        "fs-link" => fs_link(),
        "fs-size" => fs_size(),
        "fs-readonly" => fs_readonly(),
        "fs-many" => fs_many(rest.first().and_then(|n| n.parse().ok()).unwrap_or(0)),
        "output-lossy" => output_lossy(rest.first().and_then(|n| n.parse().ok()).unwrap_or(0)),
        "net" => net(),
        other => return Err(format!("unknown scenario {other:?}")),
    }
    Ok(())
}
