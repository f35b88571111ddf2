//! `wasmpool inspect`: a component's exports and imports, as WIT.

use std::path::PathBuf;

use serde_json::json;
use wasmpool::{Function, Import};

use crate::exit::Failure;
use crate::options::load;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  wasmpool inspect fib.wasm          # exports, the types they use, imports
  wasmpool inspect --wit fib.wasm    # the whole world as WIT text
  wasmpool inspect --json fib.wasm | jq '.exports[].name'")]
pub struct Args {
    /// The component.
    component: PathBuf,
    /// Print the component's whole world as WIT text instead.
    #[arg(long, conflicts_with = "json")]
    wit: bool,
    /// Print JSON instead.
    #[arg(long)]
    json: bool,
}

pub fn main(args: Args) -> Result<u8, Failure> {
    let job = load(&args.component)?;
    if args.wit {
        print!("{}", job.wit()?);
        return Ok(0);
    }
    let exports = job.exports()?;
    let imports = job.imports()?;
    if args.json {
        println!("{:#}", to_json(&exports, &imports, job.hash()));
    } else {
        print!("{}", text(&args.component, &exports, &imports));
    }
    Ok(0)
}

fn text(path: &std::path::Path, exports: &[Function], imports: &[Import]) -> String {
    let mut s = format!("{}\n\nexports:\n", path.display());
    if exports.is_empty() {
        s.push_str("  (no functions)\n");
    }
    let mut types: Vec<&str> = Vec::new();
    for f in exports {
        s.push_str(&format!("  {f}\n"));
        for t in &f.types {
            if !types.contains(&t.as_str()) {
                types.push(t);
            }
        }
    }
    if !types.is_empty() {
        s.push_str("\ntypes:\n");
        for t in types {
            s.push_str(&format!("  {t}\n"));
        }
    }
    s.push_str("\nimports:\n");
    if imports.is_empty() {
        s.push_str("  (none)\n");
    }
    // One line per interface: what provides it, and its functions.
    let mut groups: Vec<(String, String, Vec<&str>)> = Vec::new();
    for i in imports {
        let iface = i
            .function
            .interface
            .clone()
            .unwrap_or_else(|| "(world)".to_string());
        let by = match i.provided_by {
            Some(p) => format!("provided: {p}"),
            None => "NOT PROVIDED: needs a host function".to_string(),
        };
        match groups.iter_mut().find(|(n, b, _)| *n == iface && *b == by) {
            Some(g) => g.2.push(&i.function.func),
            None => groups.push((iface, by, vec![&i.function.func])),
        }
    }
    for (iface, by, funcs) in &groups {
        s.push_str(&format!("  {iface}  ({by})\n"));
        if by.starts_with("NOT") {
            // The signatures a host must provide.
            for f in imports
                .iter()
                .filter(|i| i.provided_by.is_none() && i.function.interface.as_ref() == Some(iface))
            {
                s.push_str(&format!(
                    "    {}: {}\n",
                    f.function.func,
                    f.function.signature()
                ));
            }
        } else {
            s.push_str(&format!("    {}\n", funcs.join(", ")));
        }
    }
    s
}

fn to_json(exports: &[Function], imports: &[Import], hash: &str) -> serde_json::Value {
    let func = |f: &Function| {
        json!({
            "name": f.name,
            "interface": f.interface,
            "func": f.func,
            "signature": f.signature(),
            "params": f.params.iter().map(|p| json!({"name": p.name, "type": p.ty})).collect::<Vec<_>>(),
            "result": f.result,
            "types": f.types,
            "docs": f.docs,
        })
    };
    json!({
        "sha256": hash,
        "exports": exports.iter().map(func).collect::<Vec<_>>(),
        "imports": imports.iter().map(|i| {
            let mut v = func(&i.function);
            v["provided_by"] = match i.provided_by {
                Some(p) => json!(p.to_string()),
                None => serde_json::Value::Null,
            };
            v
        }).collect::<Vec<_>>(),
    })
}
