//! `Job::exports`, `Job::imports` and `Job::wit` on every example guest,
//! checked against the WIT the guests are built from (`wit/jobs`), with
//! types rendered by `wit-component`'s printer, not ours.

use std::collections::BTreeMap;
use std::path::Path;

use wasmpool::{ErrorKind, Job, Provider};
use wit_parser::{Resolve, Type, WorldItem};

/// Each guest and the world of `wit/jobs` it is built for.
const GUESTS: &[(&str, &str)] = &[
    (wasmpool_guests::FIB, "fib"),
    (wasmpool_guests::CPU, "cpu"),
    (wasmpool_guests::ECHO, "echo"),
    (wasmpool_guests::TYPES, "all-types"),
    (wasmpool_guests::FAULTS, "faults"),
    (wasmpool_guests::HELLO, "hello"),
    (wasmpool_guests::SANDBOX, "sandbox"),
    (wasmpool_guests::COOP, "coop"),
    (wasmpool_guests::PLUGIN, "plugin"),
    (wasmpool_guests::GREETER, "greeter"),
    (wasmpool_guests::TICKER, "ticker"),
    (wasmpool_guests::HEAVY, "heavy"),
    (wasmpool_guests::CONFIG, "config"),
    (wasmpool_guests::SESSION, "session"),
    (wasmpool_guests::KVPLUGIN, "kv-plugin"),
];

fn source() -> Resolve {
    let mut resolve = Resolve::default();
    let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("wit/jobs");
    resolve.push_dir(&wit).unwrap();
    resolve
}

fn type_text(resolve: &Resolve, ty: &Type) -> String {
    let mut p = wit_component::WitPrinter::default();
    p.print_type_name(resolve, ty).unwrap();
    p.output.to_string()
}

/// `name -> signature` of each freestanding function of `items`, from the
/// source WIT.
fn expected<'a>(
    resolve: &Resolve,
    items: impl Iterator<Item = (&'a wit_parser::WorldKey, &'a WorldItem)>,
) -> BTreeMap<String, String> {
    let sig = |f: &wit_parser::Function| {
        let params: Vec<String> = f
            .params
            .iter()
            .map(|p| format!("{}: {}", p.name, type_text(resolve, &p.ty)))
            .collect();
        let result = f
            .result
            .as_ref()
            .map(|r| format!(" -> {}", type_text(resolve, r)))
            .unwrap_or_default();
        format!("func({}){result}", params.join(", "))
    };
    let mut out = BTreeMap::new();
    for (key, item) in items {
        match item {
            WorldItem::Function(f) => {
                out.insert(f.name.clone(), sig(f));
            }
            WorldItem::Interface { id, .. } => {
                let iface = resolve.name_world_key(key);
                // Resources' constructors, methods and static functions
                // too, under their canonical names.
                for f in resolve.interfaces[*id].functions.values() {
                    out.insert(format!("{iface}#{}", f.name), sig(f));
                }
            }
            _ => {}
        }
    }
    out
}

#[test]
fn exports_match_the_wit_of_every_guest() {
    let resolve = source();
    let pkg = resolve
        .packages
        .iter()
        .find(|(_, p)| p.name.name == "jobs")
        .unwrap()
        .0;
    for (path, world) in GUESTS {
        let world = &resolve.worlds[resolve.packages[pkg].worlds[*world]];
        let want = expected(&resolve, world.exports.iter());
        let job = Job::from_file(path).unwrap();
        let got: BTreeMap<String, String> = job
            .exports()
            .unwrap()
            .into_iter()
            .map(|f| (f.name.clone(), f.signature()))
            .collect();
        assert_eq!(got, want, "exports of {path}");
    }
}

#[test]
fn exports_carry_names_for_run_types_and_docs() {
    let job = Job::from_file(wasmpool_guests::TYPES).unwrap();
    let exports = job.exports().unwrap();
    // World-level functions come first.
    assert_eq!(exports[0].name, "echo-u8");
    assert_eq!(exports[0].interface, None);
    let area = exports.iter().find(|f| f.func == "area").unwrap();
    assert_eq!(area.name, "wasmpool:jobs/types@0.1.0#area");
    assert_eq!(area.interface.as_deref(), Some("wasmpool:jobs/types@0.1.0"));
    assert_eq!(
        area.to_string(),
        format!("{}: func(s: shape) -> f64", area.name)
    );
    assert_eq!(area.params[0].name, "s");
    assert_eq!(area.params[0].ty, "shape");
    assert_eq!(
        area.types,
        [
            "record point { x: s32, y: s32 }",
            "variant shape { circle(f64), rectangle(tuple<f64, f64>), polygon(list<point>), empty }",
        ]
    );
    let drawing = exports.iter().find(|f| f.func == "describe").unwrap();
    assert_eq!(drawing.types.len(), 5, "{:?}", drawing.types);
    assert!(
        drawing
            .types
            .last()
            .unwrap()
            .starts_with("record drawing { name: string, shapes: list<shape>, fill: option<color>")
    );
    // Resource methods are listed under their canonical names.
    assert!(exports.iter().any(|f| f.func.starts_with("[method]")));
    let make = exports.iter().find(|f| f.func == "make-counter").unwrap();
    assert_eq!(make.result.as_deref(), Some("counter"));
}

#[test]
fn imports_say_what_provides_them() {
    // The plugin imports its host's API (nothing in wasmpool provides it)
    // and WASI.
    let job = Job::from_file(wasmpool_guests::PLUGIN).unwrap();
    let imports = job.imports().unwrap();
    let host: Vec<_> = imports
        .iter()
        .filter(|i| i.provided_by.is_none())
        .map(|i| i.function.name.as_str())
        .collect();
    assert!(
        host.contains(&"wasmpool:jobs/host-api@0.1.0#add"),
        "{host:?}"
    );
    assert!(
        host.iter()
            .all(|n| n.starts_with("wasmpool:jobs/host-api@0.1.0#")),
        "{host:?}"
    );
    let add = imports.iter().find(|i| i.function.func == "add").unwrap();
    assert_eq!(add.function.signature(), "func(a: u64, b: u64) -> u64");
    assert!(
        imports
            .iter()
            .any(|i| i.provided_by == Some(Provider::Wasi)
                && i.function.name.starts_with("wasi:cli/")),
        "{imports:?}"
    );

    // Every imported host-api function has the source WIT's signature.
    let resolve = source();
    let iface = resolve
        .interfaces
        .iter()
        .find(|(_, i)| i.name.as_deref() == Some("host-api"))
        .unwrap()
        .1;
    for import in imports.iter().filter(|i| i.provided_by.is_none()) {
        let f = &iface.functions[&import.function.func];
        let params: Vec<String> = f
            .params
            .iter()
            .map(|p| format!("{}: {}", p.name, type_text(&resolve, &p.ty)))
            .collect();
        let result = f
            .result
            .as_ref()
            .map(|r| format!(" -> {}", type_text(&resolve, r)))
            .unwrap_or_default();
        assert_eq!(
            import.function.signature(),
            format!("func({}){result}", params.join(", "))
        );
    }

    // `coop` cooperates through wasmpool:sync.
    let coop = Job::from_file(wasmpool_guests::COOP).unwrap();
    let sync: Vec<_> = coop
        .imports()
        .unwrap()
        .into_iter()
        .filter(|i| i.provided_by == Some(Provider::WasmpoolSync))
        .collect();
    assert!(!sync.is_empty());
    assert!(
        sync.iter()
            .all(|i| i.function.name.starts_with("wasmpool:sync/"))
    );

    // A component that needs no host function needs only what wasmpool has.
    let fib = Job::from_file(wasmpool_guests::FIB).unwrap();
    assert!(
        fib.imports()
            .unwrap()
            .iter()
            .all(|i| i.provided_by.is_some())
    );
}

#[test]
fn wit_prints_the_world_and_the_types_it_uses() {
    let job = Job::from_file(wasmpool_guests::TYPES).unwrap();
    let wit = job.wit().unwrap();
    assert!(wit.contains("world root"), "{wit}");
    assert!(wit.contains("export wasmpool:jobs/types@0.1.0;"), "{wit}");
    assert!(wit.contains("variant shape {"), "{wit}");
    // What it prints is WIT that parses back.
    let mut resolve = Resolve::default();
    resolve.push_str("printed.wit", &wit).unwrap();
}

#[test]
fn names_from_exports_are_accepted_by_run() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pool = crate::common::pool(1);
    let job = Job::from_file(wasmpool_guests::FIB).unwrap();
    for f in job.exports().unwrap() {
        let n: u64 = rt.block_on(pool.run(&job, &f.name, (10u64,))).unwrap();
        assert_eq!(n, 55, "{}", f.name);
    }
    rt.block_on(pool.shutdown());
}

#[test]
fn garbage_cannot_be_inspected() {
    let e = Job::from_bytes(b"garbage".to_vec()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidComponent);
}

#[test]
fn resources_show_with_their_members() {
    let job = Job::from_file(wasmpool_guests::SESSION).unwrap();
    let exports = job.exports().unwrap();
    let add = exports
        .iter()
        .find(|f| f.func == "[method]counter.add")
        .expect("a method is listed");
    assert_eq!(
        add.signature(),
        "func(self: borrow<counter>, n: s64) -> s64"
    );
    let counter = add
        .types
        .iter()
        .find(|t| t.starts_with("resource counter"))
        .expect("its resource's definition");
    for member in [
        "constructor(start: s64)",
        "add: func(n: s64) -> s64",
        "fork: func() -> counter",
        "sum: static func(a: borrow<counter>, b: borrow<counter>) -> counter",
    ] {
        assert!(counter.contains(member), "{member} in {counter}");
    }
    let wit = job.wit().unwrap();
    assert!(wit.contains("resource counter {"), "{wit}");
    // An imported resource, served by host functions, shows as an import.
    let kv = Job::from_file(wasmpool_guests::KVPLUGIN).unwrap();
    let imports = kv.imports().unwrap();
    assert!(
        imports
            .iter()
            .any(|i| i.function.func == "[method]kv.get" && i.provided_by.is_none()),
        "{imports:?}"
    );
}
