//! The serde deserializer that reads a result's value tree into the
//! caller's type (`values::from_value`), on arbitrary MessagePack and a
//! range of Rust shapes: structs (by name or in order), enums of every
//! kind, options, sequences, bytes, maps, tuples, chars, newtypes, units.
//!
//! Nothing may panic; and whatever it reads, written back with rmp-serde
//! as the host writes arguments, reads back the same.

#![no_main]

use std::collections::BTreeMap;
use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Point {
    x: i32,
    y_coord: Option<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
enum Shape {
    Circle(f64),
    DarkSquare { side: u8, label: String },
    Pair(u16, char),
    Empty,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind")]
enum Tagged {
    A { n: i64 },
    B,
}

#[derive(Debug, Serialize, Deserialize)]
struct Bytes(#[serde(with = "serde_bytes")] Vec<u8>);

#[derive(Debug, Serialize, Deserialize)]
struct Unit;

#[derive(Debug, Serialize, Deserialize)]
struct All {
    points: Vec<Point>,
    shape: Option<Shape>,
    pair: (bool, char),
    map: BTreeMap<String, u64>,
    bytes: Bytes,
    list: Vec<u8>,
    unit: Unit,
    float: f32,
    tagged: Tagged,
    #[serde(default)]
    missing: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
#[allow(dead_code)]
enum Untagged {
    Int(i64),
    Text(String),
    Point(Point),
    List(Vec<Untagged>),
}

/// Reads a `T` out of `data`, and if that works, checks the round trip.
fn check<T: Serialize + DeserializeOwned + Debug>(data: &[u8]) {
    let Some(Ok(t)) = wasmpool::fuzzing::from_value::<T>(data) else {
        return;
    };
    let bytes = rmp_serde::to_vec_named(&t).expect("encodes");
    let back = match wasmpool::fuzzing::from_value::<T>(&bytes) {
        Some(Ok(back)) => back,
        other => panic!("{t:?} wrote {bytes:x?}, read back as {other:?}"),
    };
    assert_eq!(
        rmp_serde::to_vec_named(&back).expect("encodes"),
        bytes,
        "{t:?} read back as {back:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    check::<Point>(data);
    check::<Shape>(data);
    check::<Tagged>(data);
    check::<All>(data);
    check::<Vec<Shape>>(data);
    check::<(u8, String, Option<i16>)>(data);
    check::<BTreeMap<String, Vec<u32>>>(data);
    check::<Option<Vec<char>>>(data);
    check::<Bytes>(data);
    check::<u64>(data);
    check::<f64>(data);
    check::<String>(data);
    check::<()>(data);
    let _ = wasmpool::fuzzing::from_value::<Untagged>(data);
    let _ = wasmpool::fuzzing::from_value::<serde::de::IgnoredAny>(data);
});
