//! Every WIT value type, both ways, through a real guest that echoes it.

use crate::common;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use wasmpool::ErrorKind;

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Point {
    x: i32,
    y: i32,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone, Copy)]
enum Color {
    Red,
    Green,
    DarkBlue,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
enum Shape {
    Circle(f64),
    Rectangle((f64, f64)),
    Polygon(Vec<Point>),
    Empty,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Drawing {
    name: String,
    shapes: Vec<Shape>,
    fill: Option<Color>,
    perms: Vec<String>,
    origin: Point,
    tags: Vec<String>,
    thumbnail: Option<ByteBuf>,
}

fn call<A: Serialize, R: serde::de::DeserializeOwned + Send>(
    func: &str,
    args: A,
) -> Result<R, wasmpool::Error> {
    let f = common::types_fixture();
    f.rt.block_on(f.pool.run(&f.job, func, args))
}

fn echo<T: Serialize + serde::de::DeserializeOwned + Send + Clone>(func: &str, v: &T) -> T {
    call(func, (v.clone(),)).unwrap_or_else(|e| panic!("{func}: {e}"))
}

fn point() -> impl Strategy<Value = Point> {
    (any::<i32>(), any::<i32>()).prop_map(|(x, y)| Point { x, y })
}

fn color() -> impl Strategy<Value = Color> {
    prop_oneof![Just(Color::Red), Just(Color::Green), Just(Color::DarkBlue)]
}

fn finite() -> impl Strategy<Value = f64> {
    prop::num::f64::NORMAL | prop::num::f64::ZERO | prop::num::f64::SUBNORMAL
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        finite().prop_map(Shape::Circle),
        (finite(), finite()).prop_map(Shape::Rectangle),
        prop::collection::vec(point(), 0..5).prop_map(Shape::Polygon),
        Just(Shape::Empty),
    ]
}

fn perms() -> impl Strategy<Value = Vec<String>> {
    prop::sample::subsequence(vec!["read", "write", "exec-ute"], 0..=3)
        .prop_map(|v| v.into_iter().map(String::from).collect())
}

fn drawing() -> impl Strategy<Value = Drawing> {
    (
        ".{0,20}",
        prop::collection::vec(shape(), 0..4),
        prop::option::of(color()),
        perms(),
        point(),
        prop::collection::vec("[a-z]{0,8}", 0..4),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..64).prop_map(ByteBuf::from)),
    )
        .prop_map(
            |(name, shapes, fill, perms, origin, tags, thumbnail)| Drawing {
                name,
                shapes,
                fill,
                perms,
                origin,
                tags,
                thumbnail,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn integers_round_trip(a: i8, b: u8, c: i16, d: u16, e: i32, f: u32, g: i64, h: u64) {
        prop_assert_eq!(echo("echo-s8", &a), a);
        prop_assert_eq!(echo("wasmpool:jobs/types#echo-u8", &b), b);
        prop_assert_eq!(echo("echo-s16", &c), c);
        prop_assert_eq!(echo("echo-u16", &d), d);
        prop_assert_eq!(echo("echo-s32", &e), e);
        prop_assert_eq!(echo("echo-u32", &f), f);
        prop_assert_eq!(echo("echo-s64", &g), g);
        prop_assert_eq!(echo("echo-u64", &h), h);
    }

    #[test]
    fn floats_bools_chars_strings_round_trip(x: f32, y: f64, b: bool, c: char, s: String) {
        let gx: f32 = echo("echo-f32", &x);
        prop_assert!(gx.to_bits() == x.to_bits() || (gx.is_nan() && x.is_nan()));
        let gy: f64 = echo("echo-f64", &y);
        prop_assert!(gy.to_bits() == y.to_bits() || (gy.is_nan() && y.is_nan()));
        prop_assert_eq!(echo("echo-bool", &b), b);
        prop_assert_eq!(echo("echo-char", &c), c);
        prop_assert_eq!(echo("wasmpool:jobs/types#echo-string", &s), s);
    }

    #[test]
    fn lists_bytes_and_tuples_round_trip(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        list in prop::collection::vec(any::<i64>(), 0..50),
        strings in prop::collection::vec(".{0,10}", 0..10),
        tuple in (any::<u8>(), ".{0,10}", finite()),
    ) {
        // list<u8> as bytes, and as a plain Vec<u8>, both ways.
        prop_assert_eq!(echo("echo-bytes", &ByteBuf::from(bytes.clone())).into_vec(), bytes.clone());
        prop_assert_eq!(echo("echo-bytes", &bytes), bytes);
        prop_assert_eq!(echo("echo-list", &list), list);
        prop_assert_eq!(echo("echo-strings", &strings), strings);
        prop_assert_eq!(echo("echo-tuple", &tuple), tuple);
    }

    #[test]
    fn records_variants_enums_flags_round_trip(p in point(), c in color(), s in shape(), f in perms()) {
        prop_assert_eq!(echo("echo-point", &p), p);
        prop_assert_eq!(echo("echo-color", &c), c);
        prop_assert_eq!(echo("echo-shape", &s), s);
        prop_assert_eq!(echo("echo-permissions", &f), f);
    }

    #[test]
    fn options_and_results_round_trip(
        o in prop::option::of(".{0,10}"),
        r in prop_oneof![any::<u32>().prop_map(Ok), ".{0,10}".prop_map(Err)],
        unit in prop_oneof![Just(Ok(())), Just(Err(()))],
        points in prop::collection::vec(prop::option::of(point()), 0..6),
    ) {
        prop_assert_eq!(echo("echo-option", &o), o);
        let got: Result<u32, String> = echo("echo-result", &r);
        prop_assert_eq!(got, r);
        let got: Result<(), ()> = echo("echo-unit-result", &unit);
        prop_assert_eq!(got, unit);
        prop_assert_eq!(echo("echo-points", &points), points);
    }

    #[test]
    fn nested_records_round_trip(d in drawing()) {
        prop_assert_eq!(echo("echo-drawing", &d), d);
    }
}

#[test]
fn nested_options_keep_what_messagepack_can_say() {
    assert_eq!(
        echo("echo-nested-option", &Some(Some(5u32))),
        Some(Some(5u32))
    );
    assert_eq!(
        echo::<Option<Option<u32>>>("echo-nested-option", &None),
        None
    );
}

#[test]
fn functions_over_records_and_variants() {
    let area: f64 = call("area", (Shape::Rectangle((2.0, 3.5)),)).unwrap();
    assert_eq!(area, 7.0);
    let square = Shape::Polygon(vec![
        Point { x: 0, y: 0 },
        Point { x: 4, y: 0 },
        Point { x: 4, y: 4 },
        Point { x: 0, y: 4 },
    ]);
    assert_eq!(call::<_, f64>("area", (square,)).unwrap(), 16.0);
    assert_eq!(call::<_, f64>("area", (Shape::Empty,)).unwrap(), 0.0);
    let d = Drawing {
        name: "sketch".into(),
        shapes: vec![Shape::Empty, Shape::Circle(1.0)],
        fill: Some(Color::DarkBlue),
        perms: vec!["read".into(), "exec-ute".into()],
        origin: Point { x: -1, y: 2 },
        tags: vec!["a".into(), "b".into()],
        thumbnail: Some(ByteBuf::from(vec![1, 2, 3])),
    };
    let s: String = call("describe", (d,)).unwrap();
    assert_eq!(
        s,
        "sketch: 2 shapes, fill dark-blue, r-x at (-1, 2), tags [a,b], thumbnail 3"
    );
    let mixed: (u8, String, ByteBuf, bool) =
        call("mix", (41u8, "abc", ByteBuf::from(vec![1, 2, 3]), false)).unwrap();
    assert_eq!(
        mixed,
        (42, "ABC".to_string(), ByteBuf::from(vec![3, 2, 1]), true)
    );
    let red: Result<String, u8> = call("only-red", (Color::Red,)).unwrap();
    assert_eq!(red, Ok("red".to_string()));
    let blue: Result<String, u8> = call("only-red", (Color::DarkBlue,)).unwrap();
    assert_eq!(blue, Err(2));
    call::<_, ()>("nothing", ()).unwrap();
}

#[test]
fn wit_names_match_any_case_and_records_accept_positional_arrays() {
    // Kebab-case names, as another language might send them.
    let c: Color = call("echo-color", ("dark-blue",)).unwrap();
    assert_eq!(c, Color::DarkBlue);
    let p: Point = call("echo-point", ((3i32, 4i32),)).unwrap();
    assert_eq!(p, Point { x: 3, y: 4 });
    let f: Vec<String> = call("echo-permissions", (vec!["EXEC_UTE", "read"],)).unwrap();
    assert_eq!(f, vec!["read", "exec-ute"]);
    // Results come back with WIT's names when read into a map.
    let m: std::collections::BTreeMap<String, i32> =
        call("echo-point", (Point { x: 1, y: 2 },)).unwrap();
    assert_eq!(
        m.into_iter().collect::<Vec<_>>(),
        vec![("x".into(), 1), ("y".into(), 2)]
    );
}

#[test]
fn mismatches_name_the_path_the_wit_type_and_what_came() {
    let bad = bad_drawing();
    let e = call::<_, Drawing>("echo-drawing", (bad,)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ArgumentMismatch);
    assert_eq!(
        e.to_string(),
        "args[0].shapes[1].polygon[2].x: expected s32, got string \"three\""
    );
    let e = call::<_, u8>("echo-u8", (256u32,)).unwrap_err();
    assert_eq!(e.to_string(), "args[0]: 256 is out of range for u8");
    let e = call::<_, Color>("echo-color", ("purple",)).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("args[0]: \"purple\" is not a case of enum { red, green, dark-blue }"),
        "{e}"
    );
    let e = call::<_, Vec<String>>("echo-permissions", (vec!["fly"],)).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("args[0][0]: \"fly\" is not a flag"),
        "{e}"
    );
    let e =
        call::<_, Point>("echo-point", (std::collections::HashMap::from([("x", 1)]),)).unwrap_err();
    assert_eq!(e.to_string(), "args[0].y: missing field of type s32");
    let e = call::<_, char>("echo-char", ("ab",)).unwrap_err();
    assert_eq!(e.to_string(), "args[0]: expected char, got string \"ab\"");
    // A result that does not fit the asked-for type names its path too.
    let e = call::<_, Vec<(i32, String)>>("echo-points", (vec![Some(Point { x: 1, y: 2 })],))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ResultMismatch);
    assert!(e.to_string().starts_with("result[0]"), "{e}");
}

/// A drawing whose third polygon point has a string coordinate.
fn bad_drawing() -> impl Serialize {
    #[derive(Serialize)]
    struct BadPoint {
        x: &'static str,
        y: i32,
    }
    #[derive(Serialize)]
    #[serde(untagged)]
    enum AnyPoint {
        Good(Point),
        Bad(BadPoint),
    }
    #[derive(Serialize)]
    enum BadShape {
        Empty,
        Polygon(Vec<AnyPoint>),
    }
    #[derive(Serialize)]
    struct BadDrawing {
        name: &'static str,
        shapes: Vec<BadShape>,
        fill: Option<Color>,
        perms: Vec<String>,
        origin: Point,
        tags: Vec<String>,
    }
    BadDrawing {
        name: "x",
        shapes: vec![
            BadShape::Empty,
            BadShape::Polygon(vec![
                AnyPoint::Good(Point { x: 1, y: 1 }),
                AnyPoint::Good(Point { x: 2, y: 2 }),
                AnyPoint::Bad(BadPoint { x: "three", y: 3 }),
            ]),
        ],
        fill: None,
        perms: vec![],
        origin: Point { x: 0, y: 0 },
        tags: vec![],
    }
}
