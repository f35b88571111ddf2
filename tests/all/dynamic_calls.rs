//! `Pool::call_dynamic`: every WIT shape through a real guest, as WAVE and
//! as JSON, against the typed API's results; and errors that name the
//! argument and the path.

use std::future::IntoFuture;

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use wasmpool::{DynArgs, DynValue, ErrorKind};

use crate::common;

fn call(func: &str, args: DynArgs) -> Result<DynValue, wasmpool::Error> {
    let f = common::types_fixture();
    f.rt.block_on(f.pool.call_dynamic(&f.job, func, args).into_future())
}

fn typed<A: Serialize, R: serde::de::DeserializeOwned + Send + 'static>(func: &str, args: A) -> R {
    let f = common::types_fixture();
    f.rt.block_on(f.pool.run(&f.job, func, args)).unwrap()
}

/// A WAVE argument, echoed: the result prints as the same WAVE; its JSON,
/// sent back, gives the same JSON and WAVE again.
fn round_trip(func: &str, wave: &str) -> Json {
    let v = call(func, DynArgs::wave(wave)).unwrap();
    assert_eq!(v.to_wave(), wave, "{func} as WAVE");
    assert_eq!(v.to_string(), wave);
    let j = v.to_json();
    let again = call(func, DynArgs::json(j.clone())).unwrap();
    assert_eq!(again.to_json(), j, "{func} as JSON");
    assert_eq!(again.to_wave(), wave, "{func}: WAVE after JSON");
    // The typed path, with the same JSON as its serde value, agrees (bytes
    // and floats JSON cannot hold aside, which `serde_json::Value` cannot
    // take).
    let plain = !func.contains("bytes")
        && func != "echo-drawing"
        && !matches!(j.as_str(), Some("NaN" | "inf" | "-inf"));
    if plain {
        let typed: Json = typed(func, (j.clone(),));
        assert_eq!(typed, j, "{func}: the typed path");
    }
    j
}

#[test]
fn every_wit_shape_round_trips_as_wave_and_json() {
    let cases: &[(&str, &str, Json)] = &[
        ("echo-bool", "true", json!(true)),
        ("echo-s8", "-128", json!(-128)),
        ("echo-u8", "255", json!(255)),
        ("echo-s16", "-32768", json!(-32768)),
        ("echo-u16", "65535", json!(65535)),
        ("echo-s32", "-2147483648", json!(-2147483648i64)),
        ("echo-u32", "4294967295", json!(4294967295u64)),
        ("echo-s64", "-9223372036854775808", json!(i64::MIN)),
        ("echo-u64", "18446744073709551615", json!(u64::MAX)),
        ("echo-f32", "1.5", json!(1.5)),
        ("echo-f64", "-0.25", json!(-0.25)),
        ("echo-f64", "nan", json!("NaN")),
        ("echo-f64", "-inf", json!("-inf")),
        ("echo-char", "'🙂'", json!("🙂")),
        (
            "echo-string",
            r#""multi\nline \"quoted\" ünï""#,
            json!("multi\nline \"quoted\" ünï"),
        ),
        ("echo-bytes", "[0, 1, 255]", json!([0, 1, 255])),
        ("echo-bytes", "[]", json!([])),
        ("echo-list", "[-1, 2]", json!([-1, 2])),
        ("echo-strings", r#"["a", ""]"#, json!(["a", ""])),
        ("echo-tuple", r#"(7, "x", 2.5)"#, json!([7, "x", 2.5])),
        ("echo-point", "{x: -1, y: 2}", json!({"x": -1, "y": 2})),
        ("echo-color", "dark-blue", json!("dark-blue")),
        (
            "echo-permissions",
            "{read, exec-ute}",
            json!(["read", "exec-ute"]),
        ),
        ("echo-permissions", "{}", json!([])),
        ("echo-shape", "circle(1.5)", json!({"circle": 1.5})),
        (
            "echo-shape",
            "rectangle((1, 2.5))",
            json!({"rectangle": [1.0, 2.5]}),
        ),
        (
            "echo-shape",
            "polygon([{x: 0, y: 0}, {x: 3, y: 4}])",
            json!({"polygon": [{"x": 0, "y": 0}, {"x": 3, "y": 4}]}),
        ),
        ("echo-shape", "empty", json!("empty")),
        ("echo-option", r#"some("s")"#, json!("s")),
        ("echo-option", "none", json!(null)),
        ("echo-nested-option", "some(some(3))", json!(3)),
        ("echo-nested-option", "some(none)", json!([null])),
        ("echo-nested-option", "none", json!(null)),
        ("echo-result", "ok(1)", json!({"ok": 1})),
        ("echo-result", r#"err("bad")"#, json!({"err": "bad"})),
        ("echo-unit-result", "ok", json!({"ok": null})),
        ("echo-unit-result", "err", json!({"err": null})),
        (
            "echo-points",
            "[some({x: 1, y: 2}), none]",
            json!([{"x": 1, "y": 2}, null]),
        ),
        (
            "echo-drawing",
            r#"{name: "d", shapes: [circle(1), empty], fill: some(green), perms: {write}, origin: {x: 0, y: -3}, tags: ["t"], thumbnail: some([1, 2])}"#,
            json!({"name": "d", "shapes": [{"circle": 1.0}, "empty"], "fill": "green", "perms": ["write"],
                   "origin": {"x": 0, "y": -3}, "tags": ["t"], "thumbnail": [1, 2]}),
        ),
    ];
    for (func, wave, want) in cases {
        assert_eq!(&round_trip(func, wave), want, "{func}({wave})");
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(rename_all = "kebab-case")]
enum Shape {
    Circle(f64),
    Rectangle((f64, f64)),
    Polygon(Vec<Point>),
    Empty,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Point {
    x: i32,
    y: i32,
}

#[test]
fn dynamic_results_are_the_typed_results() {
    let shape = Shape::Polygon(vec![
        Point { x: 0, y: 0 },
        Point { x: 4, y: 0 },
        Point { x: 4, y: 4 },
    ]);
    let area: f64 = typed("area", (&shape,));
    let d = call("area", DynArgs::json(serde_json::to_value(&shape).unwrap())).unwrap();
    assert_eq!(d.to_json(), json!(area));
    assert_eq!(d.to_wave().parse::<f64>().unwrap(), area);
    let w = call(
        "area",
        DynArgs::wave("polygon([{x: 0, y: 0}, {x: 4, y: 0}, {x: 4, y: 4}])"),
    )
    .unwrap();
    assert_eq!(w.to_json(), json!(area));

    // Several parameters: WAVE in a row, JSON as an array, an object by
    // name, or one value each.
    let want: (u8, String, serde_bytes::ByteBuf, bool) =
        typed("mix", (9u8, "b", serde_bytes::Bytes::new(&[1, 2]), true));
    let want = serde_json::to_value(&want).unwrap();
    for args in [
        DynArgs::wave(r#"9, "b", [1, 2], true"#),
        DynArgs::wave_each(["9", r#""b""#, "[1, 2]", "true"]),
        DynArgs::json(json!([9, "b", [1, 2], true])),
        DynArgs::json(json!({"d": true, "c": [1, 2], "b": "b", "a": 9})),
        DynArgs::json_each(vec![json!(9), json!("b"), json!([1, 2]), json!(true)]),
    ] {
        let v = call("mix", args.clone()).unwrap();
        assert_eq!(v.to_json(), want, "{args:?}");
        assert_eq!(v.to_wave(), r#"(10, "B", [2, 1], false)"#);
    }

    // No parameters, no result.
    for args in [
        DynArgs::wave(""),
        DynArgs::json(Json::Null),
        DynArgs::json(json!([])),
    ] {
        let v = call("nothing", args).unwrap();
        assert!(v.is_unit());
        assert_eq!(v.to_wave(), "");
        assert_eq!(v.to_json(), Json::Null);
    }
    let only: Result<String, u8> = typed("only-red", ("green",));
    assert_eq!(only, Err(1));
    assert_eq!(
        call("only-red", DynArgs::wave("green")).unwrap().to_wave(),
        "err(1)"
    );
    // The world-level function and the interface's of the same name.
    assert_eq!(call("echo-u8", DynArgs::wave("7")).unwrap().to_wave(), "7");
    assert_eq!(
        call("wasmpool:jobs/types#echo-u8", DynArgs::wave("8"))
            .unwrap()
            .to_wave(),
        "8"
    );
}

#[test]
fn type_errors_name_the_argument_and_the_path() {
    let e = call(
        "echo-drawing",
        DynArgs::json(
            json!({"name": "d", "shapes": [{"circle": "big"}], "fill": null, "perms": [],
                             "origin": {"x": 0, "y": 0}, "tags": [], "thumbnail": null}),
        ),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ArgumentMismatch);
    assert!(e.to_string().contains("args[0].shapes[0]"), "{e}");
    assert!(e.to_string().contains("expected f64"), "{e}");

    let e = call("echo-point", DynArgs::json(json!({"x": 1, "y": "two"}))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ArgumentMismatch);
    assert!(e.to_string().contains("args[0].y: expected s32"), "{e}");

    let e = call("echo-u8", DynArgs::wave("256")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ArgumentMismatch);
    assert!(e.to_string().contains("echo-u8(v: u8)"), "{e}");
    assert!(e.to_string().contains("`256`"), "{e}");

    let e = call("echo-point", DynArgs::wave_each(["{x: 1}"])).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ArgumentMismatch);
    assert!(
        e.to_string()
            .contains("args[0] (v: record { x: s32, y: s32 })"),
        "{e}"
    );

    let e = call("echo-color", DynArgs::wave("purple")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ArgumentMismatch);
    assert!(e.to_string().contains("purple"), "{e}");

    let e = call("mix", DynArgs::json(json!([1, "b"]))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ArgumentMismatch);
    assert!(
        e.to_string()
            .contains("takes 4 arguments (a: u8, b: string, c: list<u8>, d: bool), got 2"),
        "{e}"
    );

    let e = call("mix", DynArgs::json(json!({"a": 1, "zz": 2}))).unwrap_err();
    assert!(e.to_string().contains("no parameter \"zz\""), "{e}");

    let e = call("echo-string", DynArgs::wave("\"unterminated")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ArgumentMismatch);

    let e = call("no-such", DynArgs::wave("")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoSuchFunction);
    assert!(e.to_string().contains("echo-point"), "{e}");

    // Resources cannot cross.
    let e = call("make-counter", DynArgs::wave("1")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
}

#[test]
fn dynamic_calls_take_call_options_and_report_traps() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pool = common::pool(1);
    let faults = common::job(wasmpool_guests::FAULTS);
    let e = rt
        .block_on(
            pool.call_dynamic(&faults, "spin-forever", DynArgs::wave(""))
                .timeout(std::time::Duration::from_millis(200))
                .into_future(),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    let e = rt
        .block_on(
            pool.call_dynamic(&faults, "panic", DynArgs::wave(r#""dynamic boom""#))
                .into_future(),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Trap);
    assert_eq!(e.panic_message(), Some("dynamic boom"));
    // The worker that trapped is replaced and the next call works.
    let v = rt
        .block_on(
            pool.call_dynamic(&faults, "divide", DynArgs::json(json!({"a": 7, "b": 2})))
                .into_future(),
        )
        .unwrap();
    assert_eq!(v.to_json(), json!(3));
    rt.block_on(pool.shutdown());
}
