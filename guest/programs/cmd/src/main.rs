//! A command program: what it does is named by its first argument.
//!
//! - `args`: prints each argument, `argv[0]` first, one per line;
//! - `env KEY`: prints the variable's value, or exits 2 if unset;
//! - `cat`: copies stdin to stdout;
//! - `sort`: reads one integer per line from stdin, prints them sorted;
//! - `lines`: answers each line of stdin as it comes, upper-cased;
//! - `exit N`: prints "bye" and calls `exit(N)`;
//! - `fail`: prints to stderr and returns an error from `main`;
//! - `panic`: writes "before" to stdout, then panics;
//! - `spin`: loops forever;
//! - `ls DIR`: prints the sorted names in a directory;
//! - `write PATH TEXT`: writes a file.
//!
//! With no argument it prints "hello" and returns.

use std::io::{Read, Write};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    match arg(1).as_str() {
        "" => println!("hello"),
        "args" => {
            for a in &args {
                println!("{a}");
            }
        }
        "env" => match std::env::var(arg(2)) {
            Ok(v) => println!("{v}"),
            Err(_) => std::process::exit(2),
        },
        "cat" => {
            let mut input = Vec::new();
            std::io::stdin().read_to_end(&mut input).map_err(|e| e.to_string())?;
            std::io::stdout().write_all(&input).map_err(|e| e.to_string())?;
        }
        "sort" => {
            let mut input = String::new();
            std::io::stdin().read_to_string(&mut input).map_err(|e| e.to_string())?;
            let mut numbers: Vec<i64> = input.lines().filter_map(|l| l.trim().parse().ok()).collect();
            numbers.sort_unstable();
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for n in numbers {
                writeln!(out, "{n}").map_err(|e| e.to_string())?;
            }
        }
        "lines" => {
            for line in std::io::stdin().lines() {
                // `println!` flushes at the newline: one answer a line.
                println!("{}", line.map_err(|e| e.to_string())?.to_uppercase());
            }
        }
        "exit" => {
            println!("bye");
            std::process::exit(arg(2).parse().unwrap_or(0));
        }
        "fail" => {
            eprintln!("failing on purpose");
            return Err("it failed".into());
        }
        "panic" => {
            println!("before");
            panic!("the command panicked");
        }
        "spin" => loop {
            std::hint::black_box(0u64);
        },
        "ls" => {
            let mut names: Vec<String> = std::fs::read_dir(arg(2))
                .map_err(|e| e.to_string())?
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect();
            names.sort();
            for n in names {
                println!("{n}");
            }
        }
        "write" => std::fs::write(arg(2), arg(3)).map_err(|e| e.to_string())?,
        other => return Err(format!("unknown command {other:?}")),
    }
    Ok(())
}
