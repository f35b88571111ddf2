//! A self-describing value tree: what MessagePack can say, nothing more.
//!
//! Arguments travel host to worker as MessagePack written straight from the
//! caller's `Serialize` value. The worker reads them into a [`Value`] and
//! converts that to wasmtime `Val`s guided by the function's WIT types
//! ([`wit`]). Results take the same road back, and the host turns the
//! [`Value`] into the caller's type with [`from_value`] (`to_rust`).

mod handles;
mod to_rust;
pub(crate) mod wit;

use std::fmt;

use serde::de::{Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

pub(crate) use handles::{HandleRef, Handles, NoHandles, RESOURCE_KEY, TransmitRef};
pub(crate) use to_rust::{Path, from_value};

/// One MessagePack value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Nil,
    Bool(bool),
    /// Every integer MessagePack can hold fits an `i128`.
    Int(i128),
    F32(f32),
    F64(f64),
    Str(String),
    Bin(Vec<u8>),
    Array(Vec<Value>),
    Map(Vec<(Value, Value)>),
}

impl Value {
    /// A short description of what this value is, for error messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Value::Nil => "nil".into(),
            Value::Bool(b) => format!("bool {b}"),
            Value::Int(i) => format!("integer {i}"),
            Value::F32(f) => format!("float {f}"),
            Value::F64(f) => format!("float {f}"),
            Value::Str(s) if s.len() <= 40 => format!("string {s:?}"),
            Value::Str(s) => format!("string of {} bytes", s.len()),
            Value::Bin(b) => format!("{} bytes", b.len()),
            Value::Array(a) => format!("array of {}", a.len()),
            Value::Map(m) => format!("map of {}", m.len()),
        }
    }
}

/// Names match when they are equal ignoring case, `-` and `_`: WIT's
/// `dark-blue` is Rust's `DarkBlue` and `dark_blue`.
pub(crate) fn names_match(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.chars()
            .filter(|c| *c != '-' && *c != '_')
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    a == b || norm(a) == norm(b)
}

/// The one of `names` that `name` stands for: the same name if there is
/// one, else the one of the same words (`dark-blue`, `dark_blue` and
/// `DarkBlue`), else one that [`names_match`]. A record may have both `a-b`
/// and `ab`, and a Rust struct both `a_b` and `ab`: each finds its own.
pub(crate) fn find_name<'a, I>(names: I, name: &str) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
    I::IntoIter: Clone,
{
    let names = names.into_iter();
    let words = words(name);
    names
        .clone()
        .find(|n| *n == name)
        .or_else(|| names.clone().find(|n| self::words(n) == words))
        .or_else(|| names.clone().find(|n| names_match(n, name)))
}

/// The lower-case words of a name: split at `-`, `_` and before each
/// capital.
fn words(name: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut word = String::new();
    for c in name.chars() {
        if c == '-' || c == '_' || c.is_uppercase() {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            if c == '-' || c == '_' {
                continue;
            }
        }
        word.extend(c.to_lowercase());
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Nil => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) if *i >= 0 => s.serialize_u64(*i as u64),
            Value::Int(i) => s.serialize_i64(*i as i64),
            Value::F32(f) => s.serialize_f32(*f),
            Value::F64(f) => s.serialize_f64(*f),
            Value::Str(v) => s.serialize_str(v),
            Value::Bin(b) => s.serialize_bytes(b),
            Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Value::Map(m) => {
                let mut map = s.serialize_map(Some(m.len()))?;
                for (k, v) in m {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any MessagePack value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_f32<E>(self, v: f32) -> Result<Value, E> {
        Ok(Value::F32(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::F64(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Bin(v.to_vec()))
    }
    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bin(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(a.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = a.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(a.size_hint().unwrap_or(0).min(4096));
        while let Some(kv) = a.next_entry()? {
            out.push(kv);
        }
        Ok(Value::Map(out))
    }
    fn visit_enum<A: EnumAccess<'de>>(self, a: A) -> Result<Value, A::Error> {
        // MessagePack has no enum marker; rmp-serde never calls this.
        let (name, variant): (Value, A::Variant) = a.variant()?;
        let payload: Value = variant.newtype_variant()?;
        Ok(Value::Map(vec![(name, payload)]))
    }
}

/// Decodes MessagePack into a [`Value`].
pub(crate) fn decode(bytes: &[u8]) -> Result<Value, rmp_serde::decode::Error> {
    rmp_serde::from_slice(bytes)
}

/// [`decode`], from bytes it may keep: a lone `bin` or `str` (a byte or
/// string result) becomes its [`Value`] in the same buffer, moved down
/// over its header, instead of a copy.
pub(crate) fn decode_owned(mut bytes: Vec<u8>) -> Result<Value, rmp_serde::decode::Error> {
    let Some((is_str, body)) = lone_bin_or_str(&bytes) else {
        return decode(&bytes);
    };
    let header = bytes.len() - body.len();
    bytes.drain(..header);
    if !is_str {
        return Ok(Value::Bin(bytes));
    }
    // As `decode` reads a `str` that is not UTF-8: as its bytes. A large
    // string result is checked once, here, in the host.
    Ok(match crate::platform::string_from_utf8(bytes) {
        Ok(s) => Value::Str(s),
        Err(bytes) => Value::Bin(bytes),
    })
}

/// The bytes of a MessagePack `bin` or `str` that is the whole of
/// `bytes`, and whether it is a `str`; `None` for anything else.
pub(crate) fn lone_bin_or_str(bytes: &[u8]) -> Option<(bool, &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let be = |n: usize| -> Option<(usize, &[u8])> {
        let head = rest.get(..n)?;
        let len = head
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        Some((len, &rest[n..]))
    };
    let (is_str, (len, body)) = match tag {
        0xc4 => (false, be(1)?),
        0xc5 => (false, be(2)?),
        0xc6 => (false, be(4)?),
        0xa0..=0xbf => (true, (usize::from(tag & 0x1f), rest)),
        0xd9 => (true, be(1)?),
        0xda => (true, be(2)?),
        0xdb => (true, be(4)?),
        _ => return None,
    };
    (body.len() == len).then_some((is_str, body))
}

/// Encodes a [`Value`] as MessagePack into `w`.
pub(crate) fn encode_into(
    w: &mut impl std::io::Write,
    value: &Value,
) -> Result<(), rmp_serde::encode::Error> {
    value.serialize(&mut rmp_serde::Serializer::new(w))
}

/// Encodes a [`Value`] as MessagePack.
pub(crate) fn encode(value: &Value) -> Vec<u8> {
    let mut out = crate::platform::BufferWriter::default();
    // Writing to a Vec cannot fail, and a Value has nothing unencodable.
    rmp_serde::encode::write(&mut out, value).expect("a Value always encodes");
    out.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Value {
        Value::Str(x.into())
    }

    #[test]
    fn decode_owned_reads_as_decode_does() {
        let mut samples: Vec<Vec<u8>> = Vec::new();
        for len in [0usize, 1, 31, 32, 255, 256, 65_535, 65_536] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            samples.push(rmp_serde::to_vec(&serde_bytes::ByteBuf::from(bytes)).unwrap());
            samples.push(rmp_serde::to_vec(&"ü".repeat(len / 2)).unwrap());
        }
        samples.push(rmp_serde::to_vec(&(1u8, "x")).unwrap());
        samples.push(vec![0xc4, 5, 1, 2]);
        samples.push(vec![0xd9, 2, 0xff, 0xfe]);
        // Long enough for vector-wide checks: a bad byte deep inside, and a
        // 4-byte character cut at the end.
        let text = "añ€𝄞".repeat(100);
        let mut bad = text.clone().into_bytes();
        bad[333] = 0xff;
        let mut cut = text.into_bytes();
        cut.truncate(cut.len() - 1);
        for body in [bad, cut] {
            let mut framed = vec![0xda, (body.len() >> 8) as u8, body.len() as u8];
            framed.extend(body);
            samples.push(framed);
        }
        samples.push(Vec::new());
        for s in samples {
            let a = decode(&s).map_err(|e| e.to_string());
            let b = decode_owned(s.clone()).map_err(|e| e.to_string());
            assert_eq!(a.is_ok(), b.is_ok(), "{s:?}");
            if let (Ok(a), Ok(b)) = (a, b) {
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn find_name_prefers_the_same_name_then_the_same_words() {
        let names = ["a-b", "ab", "dark-blue"];
        let find = |n| find_name(names.iter().copied(), n);
        assert_eq!(find("ab"), Some("ab"));
        assert_eq!(find("a-b"), Some("a-b"));
        assert_eq!(find("a_b"), Some("a-b"));
        assert_eq!(find("AB"), Some("a-b"));
        assert_eq!(find("Ab"), Some("ab"));
        assert_eq!(find("DarkBlue"), Some("dark-blue"));
        assert_eq!(find("DARKBLUE"), Some("dark-blue"));
        assert_eq!(find("c"), None);
    }

    #[test]
    fn msgpack_round_trip() {
        let v = Value::Array(vec![
            Value::Nil,
            Value::Bool(true),
            Value::Int(-5),
            Value::Int(u64::MAX.into()),
            Value::F32(1.5),
            Value::F64(-2.25),
            s("hé"),
            Value::Bin(vec![0, 255]),
            Value::Map(vec![(s("k"), Value::Array(vec![]))]),
        ]);
        assert_eq!(decode(&encode(&v)).unwrap(), v);
    }
}
