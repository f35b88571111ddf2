//! The serde deserializer that reads a result's value tree into the
//! caller's type (`values::from_value`), on arbitrary MessagePack and a
//! range of Rust shapes: structs (by name or in order), enums of every
//! kind, options, sequences, bytes, maps, tuples, chars, newtypes, units.
//!
//! Nothing may panic; whatever it reads, written back with rmp-serde as
//! the host writes arguments, reads back the same; and so does an
//! arbitrary value of each shape.

#![no_main]

use std::collections::BTreeMap;
use std::fmt::Debug;

use arbitrary::{Arbitrary, Result, Unstructured};
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

/// Names that differ only in `_` or case: each must find its own.
#[derive(Debug, Serialize, Deserialize)]
struct Close {
    a_b: u8,
    ab: u8,
    #[serde(rename = "A-B")]
    kebab: Option<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
enum CloseEnum {
    AB,
    Ab(u8),
    #[serde(rename = "a-b")]
    Kebab {
        x: i8,
    },
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

// By hand: arbitrary's `derive` feature would rebuild Cranelift.
impl<'a> Arbitrary<'a> for Point {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Point {
            x: u.arbitrary()?,
            y_coord: u.arbitrary()?,
        })
    }
}

impl<'a> Arbitrary<'a> for Shape {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u.int_in_range(0..=3)? {
            0 => Shape::Circle(u.arbitrary()?),
            1 => Shape::DarkSquare {
                side: u.arbitrary()?,
                label: u.arbitrary()?,
            },
            2 => Shape::Pair(u.arbitrary()?, u.arbitrary()?),
            _ => Shape::Empty,
        })
    }
}

impl<'a> Arbitrary<'a> for Tagged {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(if u.arbitrary()? {
            Tagged::A { n: u.arbitrary()? }
        } else {
            Tagged::B
        })
    }
}

impl<'a> Arbitrary<'a> for Close {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Close {
            a_b: u.arbitrary()?,
            ab: u.arbitrary()?,
            kebab: u.arbitrary()?,
        })
    }
}

impl<'a> Arbitrary<'a> for CloseEnum {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u.int_in_range(0..=2)? {
            0 => CloseEnum::AB,
            1 => CloseEnum::Ab(u.arbitrary()?),
            _ => CloseEnum::Kebab { x: u.arbitrary()? },
        })
    }
}

impl<'a> Arbitrary<'a> for All {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(All {
            points: u.arbitrary()?,
            shape: u.arbitrary()?,
            pair: u.arbitrary()?,
            map: u.arbitrary()?,
            bytes: Bytes(u.arbitrary()?),
            list: u.arbitrary()?,
            unit: Unit,
            float: u.arbitrary()?,
            tagged: u.arbitrary()?,
            missing: u.arbitrary()?,
        })
    }
}

/// Reads a `T` out of `data`, and if that works, checks the round trip.
fn check<T: Serialize + DeserializeOwned + Debug>(data: &[u8]) {
    if let Some(Ok(t)) = wasmpool::fuzzing::from_value::<T>(data) {
        round_trip(&t);
    }
}

/// Writes `t` as the host writes arguments, and reads it back.
fn round_trip<T: Serialize + DeserializeOwned + Debug>(t: &T) {
    let bytes = rmp_serde::to_vec_named(t).expect("encodes");
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

/// Reads a `T` out of `data` as a fuzzer's value, and checks its round trip.
fn arbitrary<T: Serialize + DeserializeOwned + Debug + for<'a> Arbitrary<'a>>(data: &[u8]) {
    if let Ok(t) = T::arbitrary(&mut Unstructured::new(data)) {
        round_trip(&t);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        check::<Point>(data);
        check::<Shape>(data);
        check::<Tagged>(data);
        check::<Close>(data);
        check::<Vec<CloseEnum>>(data);
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
    } else {
        arbitrary::<Close>(data);
        arbitrary::<Vec<CloseEnum>>(data);
        arbitrary::<All>(data);
        arbitrary::<Vec<Shape>>(data);
        arbitrary::<(u8, String, Option<i16>)>(data);
        arbitrary::<Option<Vec<char>>>(data);
        arbitrary::<i64>(data);
    }
});
