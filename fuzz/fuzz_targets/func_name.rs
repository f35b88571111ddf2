//! Resolving the name given to `pool.run(&job, name, ..)` against a
//! component's exports: world-level functions, `iface#func`,
//! `ns:pkg/iface@ver#func` and `ns:pkg/iface#func` for the one version
//! exported.
//!
//! Checks that a match is a function of that name in an instance the name
//! allows, and that every export that is alone of its kind is reached by
//! its full name.

#![no_main]

use arbitrary::{Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;

const NAMESPACES: &[&str] = &["a:b", "wasi:http", "my-ns:pkg"];
const INTERFACES: &[&str] = &["c", "incoming-handler", "api"];
const VERSIONS: &[&str] = &["", "@0.1.0", "@0.2.0", "@1.0.0-rc.1"];
const PLAIN: &[&str] = &["exports", "c", "a:b"];
const FUNCS: &[&str] = &["f", "g", "run", "c", "handle"];

fn piece(u: &mut Unstructured<'_>, from: &[&str]) -> Result<String> {
    // Mostly the names real components export; now and then anything.
    if u.ratio(1, 8)? {
        String::arbitrary(u)
    } else {
        Ok(u.choose(from)?.to_string())
    }
}

/// An export: its instance, if any, and its function.
type Export = (Option<String>, String);

fn export(u: &mut Unstructured<'_>) -> Result<Export> {
    let instance = match u.int_in_range(0..=2)? {
        0 => None,
        1 => Some(format!(
            "{}/{}{}",
            piece(u, NAMESPACES)?,
            piece(u, INTERFACES)?,
            piece(u, VERSIONS)?
        )),
        _ => Some(piece(u, PLAIN)?),
    };
    Ok((instance, piece(u, FUNCS)?))
}

fn unversioned(instance: &str) -> &str {
    instance.split_once('@').map_or(instance, |(base, _)| base)
}

fn input(u: &mut Unstructured<'_>) -> Result<(Vec<Export>, String)> {
    let n = u.int_in_range(0..=10)?;
    let exports = (0..n).map(|_| export(u)).collect::<Result<Vec<_>>>()?;
    // A name made from an export, the way callers write them, or anything.
    let name = match (u.int_in_range(0..=4)?, exports.is_empty()) {
        (0, _) | (_, true) => String::arbitrary(u)?,
        (k, false) => {
            let (instance, func) = u.choose(&exports)?.clone();
            match (k, instance) {
                (1, Some(i)) => format!("{i}#{func}"),
                (2, Some(i)) => format!("{}#{func}", unversioned(&i)),
                (3, Some(i)) => format!("{i}#{}", piece(u, FUNCS)?),
                _ => func,
            }
        }
    };
    Ok((exports, name))
}

fuzz_target!(|data: &[u8]| {
    let Ok((exports, name)) = input(&mut Unstructured::new(data)) else {
        return;
    };
    if let Ok(i) = wasmpool::fuzzing::find_export(&exports, &name) {
        let (instance, func) = &exports[i];
        match (name.rsplit_once('#'), instance) {
            (Some((iface, f)), Some(inst)) => {
                assert_eq!(f, func, "{name:?} found {exports:?}[{i}]");
                assert!(
                    inst == iface || (!iface.contains('@') && unversioned(inst) == iface),
                    "{name:?} found {exports:?}[{i}]"
                );
            }
            (None, None) => assert_eq!(&name, func),
            (None, Some(inst)) => {
                assert_eq!(&name, func);
                assert!(
                    inst.contains(':') && inst.contains('/'),
                    "{name:?} found {exports:?}[{i}]"
                );
                assert!(
                    !exports.iter().any(|(i, f)| i.is_none() && f == &name),
                    "{name:?} found {exports:?}[{i}] over a world-level function"
                );
            }
            (Some(_), None) => panic!("{name:?} found world-level {exports:?}[{i}]"),
        }
    }
    // An export alone of its kind is reached by its full name (function
    // names have no `#`: WIT names cannot).
    for (i, (instance, func)) in exports.iter().enumerate() {
        if func.contains('#') || exports.iter().filter(|e| *e == &exports[i]).count() > 1 {
            continue;
        }
        let full = match instance {
            Some(inst) => format!("{inst}#{func}"),
            None => func.clone(),
        };
        assert_eq!(
            wasmpool::fuzzing::find_export(&exports, &full),
            Ok(i),
            "{full:?} in {exports:?}"
        );
    }
});
