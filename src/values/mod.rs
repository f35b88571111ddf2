//! A self-describing value tree: what MessagePack can say, nothing more.
//!
//! Arguments travel host to worker as MessagePack written straight from the
//! caller's `Serialize` value. The worker reads them into a [`Value`] and
//! converts that to wasmtime `Val`s guided by the function's WIT types
//! ([`wit`]). Results take the same road back, and the host turns the
//! [`Value`] into the caller's type with [`from_value`], a deserializer that
//! matches WIT's kebab-case names to Rust's snake_case fields and PascalCase
//! variants, accepts bytes where a sequence is asked for, and names the path
//! of any mismatch.

pub(crate) mod wit;

use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

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
    // As `decode` reads a `str` that is not UTF-8: as its bytes.
    Ok(match string_from_utf8(bytes) {
        Ok(s) => Value::Str(s),
        Err(bytes) => Value::Bin(bytes),
    })
}

/// `String::from_utf8`, checked several times faster on multi-byte text
/// (a large string result is checked once, here, in the host).
#[allow(unsafe_code)]
fn string_from_utf8(bytes: Vec<u8>) -> Result<String, Vec<u8>> {
    if simdutf8::basic::from_utf8(&bytes).is_err() {
        return Err(bytes);
    }
    // SAFETY: `bytes` was just checked to be UTF-8.
    Ok(unsafe { String::from_utf8_unchecked(bytes) })
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
    // Writing to a Vec cannot fail, and a Value has nothing unencodable.
    rmp_serde::to_vec(value).expect("a Value always encodes")
}

// ---------------------------------------------------------------------------
// Value -> T, for results on the host.

/// A mismatch between a [`Value`] and the type it is read into, with the
/// path where it happened.
#[derive(Debug)]
pub(crate) struct FromValueError {
    path: Option<String>,
    message: String,
}

impl fmt::Display for FromValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{p}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for FromValueError {}

impl de::Error for FromValueError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        FromValueError {
            path: None,
            message: msg.to_string(),
        }
    }
}

/// A path into a value (`args[0].points[3].x`), built on the stack as a
/// conversion descends, for error messages.
#[derive(Clone, Copy)]
pub(crate) enum Path<'a> {
    Root(&'a str),
    Index(&'a Path<'a>, usize),
    Field(&'a Path<'a>, &'a str),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root(r) => f.write_str(r),
            Path::Index(p, i) => write!(f, "{p}[{i}]"),
            Path::Field(p, n) => write!(f, "{p}.{n}"),
        }
    }
}

fn at(path: &Path<'_>, mut e: FromValueError) -> FromValueError {
    if e.path.is_none() {
        e.path = Some(path.to_string());
    }
    e
}

/// Reads a `T` out of `value`; errors name their path under `root`.
pub(crate) fn from_value<T: serde::de::DeserializeOwned>(
    value: Value,
    root: &str,
) -> Result<T, FromValueError> {
    let path = Path::Root(root);
    T::deserialize(ValueDe { value, path: &path }).map_err(|e| at(&path, e))
}

struct ValueDe<'p> {
    value: Value,
    path: &'p Path<'p>,
}

impl ValueDe<'_> {
    fn invalid(&self, exp: &dyn de::Expected) -> FromValueError {
        let unexp = match &self.value {
            Value::Nil => de::Unexpected::Unit,
            Value::Bool(b) => de::Unexpected::Bool(*b),
            Value::Int(i) if *i >= 0 => de::Unexpected::Unsigned(*i as u64),
            Value::Int(i) => de::Unexpected::Signed(*i as i64),
            Value::F32(f) => de::Unexpected::Float(f64::from(*f)),
            Value::F64(f) => de::Unexpected::Float(*f),
            Value::Str(s) => de::Unexpected::Str(s),
            Value::Bin(b) => de::Unexpected::Bytes(b),
            Value::Array(_) => de::Unexpected::Seq,
            Value::Map(_) => de::Unexpected::Map,
        };
        de::Error::invalid_type(unexp, exp)
    }
}

macro_rules! forward_to_any {
    ($($m:ident)*) => {$(
        fn $m<V: Visitor<'de>>(self, v: V) -> Result<V::Value, FromValueError> {
            self.deserialize_any(v)
        }
    )*};
}

impl<'de, 'p> Deserializer<'de> for ValueDe<'p> {
    type Error = FromValueError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, FromValueError> {
        match self.value {
            Value::Nil => v.visit_unit(),
            Value::Bool(b) => v.visit_bool(b),
            Value::Int(i) => {
                if let Ok(u) = u64::try_from(i) {
                    v.visit_u64(u)
                } else if let Ok(s) = i64::try_from(i) {
                    v.visit_i64(s)
                } else {
                    v.visit_i128(i)
                }
            }
            Value::F32(f) => v.visit_f32(f),
            Value::F64(f) => v.visit_f64(f),
            Value::Str(s) => v.visit_string(s),
            Value::Bin(b) => v.visit_byte_buf(b),
            Value::Array(a) => visit_array(a, self.path, v),
            Value::Map(m) => v.visit_map(MapDe {
                iter: m.into_iter(),
                value: None,
                key: None,
                path: self.path,
                fields: None,
            }),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, FromValueError> {
        match self.value {
            Value::Nil => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, FromValueError> {
        match self.value {
            Value::Nil => v.visit_unit(),
            Value::Array(ref a) if a.is_empty() => v.visit_unit(),
            _ => Err(self.invalid(&"unit")),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, FromValueError> {
        self.deserialize_unit(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, FromValueError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, FromValueError> {
        match self.value {
            // `list<u8>` comes as bytes; a `Vec<u8>` asks for a sequence.
            Value::Bin(b) => visit_array(
                b.into_iter().map(|x| Value::Int(x.into())).collect(),
                self.path,
                v,
            ),
            Value::Array(a) => visit_array(a, self.path, v),
            _ => Err(self.invalid(&v)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        v: V,
    ) -> Result<V::Value, FromValueError> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        v: V,
    ) -> Result<V::Value, FromValueError> {
        self.deserialize_seq(v)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, FromValueError> {
        match self.value {
            Value::Map(m) => v.visit_map(MapDe {
                iter: m.into_iter(),
                value: None,
                key: None,
                path: self.path,
                fields: Some(fields),
            }),
            Value::Array(a) => visit_array(a, self.path, v),
            _ => Err(self.invalid(&v)),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, FromValueError> {
        let (name, payload) = match self.value {
            Value::Str(s) => (s, None),
            Value::Map(m) if m.len() == 1 => {
                let (k, val) = m.into_iter().next().expect("one entry");
                match k {
                    Value::Str(s) => (s, Some(val)),
                    other => {
                        return Err(de::Error::custom(format!(
                            "expected a variant name, found {}",
                            other.describe()
                        )));
                    }
                }
            }
            _ => {
                return Err(self.invalid(&"a variant: a name, or a map of one name to its payload"));
            }
        };
        let name = find_name(variants.iter().copied(), &name)
            .map(str::to_string)
            .unwrap_or(name);
        v.visit_enum(EnumDe {
            name,
            payload,
            path: self.path,
        })
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, FromValueError> {
        self.deserialize_any(v)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, FromValueError> {
        self.deserialize_any(v)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, FromValueError> {
        v.visit_unit()
    }

    forward_to_any! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_map deserialize_identifier
    }
}

fn visit_array<'de, V: Visitor<'de>>(
    a: Vec<Value>,
    path: &Path<'_>,
    v: V,
) -> Result<V::Value, FromValueError> {
    let len = a.len();
    let mut seq = SeqDe {
        iter: a.into_iter(),
        index: 0,
        path,
    };
    let out = v.visit_seq(&mut seq)?;
    if seq.iter.len() != 0 {
        return Err(de::Error::invalid_length(
            len,
            &format!("{} elements", seq.index).as_str(),
        ));
    }
    Ok(out)
}

struct SeqDe<'p> {
    iter: std::vec::IntoIter<Value>,
    index: usize,
    path: &'p Path<'p>,
}

impl<'de> SeqAccess<'de> for SeqDe<'_> {
    type Error = FromValueError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, FromValueError> {
        let Some(value) = self.iter.next() else {
            return Ok(None);
        };
        let path = Path::Index(self.path, self.index);
        self.index += 1;
        seed.deserialize(ValueDe { value, path: &path })
            .map(Some)
            .map_err(|e| at(&path, e))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct MapDe<'p> {
    iter: std::vec::IntoIter<(Value, Value)>,
    value: Option<Value>,
    key: Option<String>,
    path: &'p Path<'p>,
    /// The field names of the struct being read, to match WIT names to.
    fields: Option<&'static [&'static str]>,
}

impl<'de> MapAccess<'de> for MapDe<'_> {
    type Error = FromValueError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, FromValueError> {
        let Some((key, value)) = self.iter.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        let key = match (key, self.fields) {
            (Value::Str(s), Some(fields)) => Value::Str(
                find_name(fields.iter().copied(), &s)
                    .map(str::to_string)
                    .unwrap_or(s),
            ),
            (k, _) => k,
        };
        self.key = match &key {
            Value::Str(s) => Some(s.clone()),
            other => Some(other.describe()),
        };
        let path = Path::Field(self.path, "<key>");
        seed.deserialize(ValueDe {
            value: key,
            path: &path,
        })
        .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, FromValueError> {
        let value = self
            .value
            .take()
            .ok_or_else(|| <FromValueError as de::Error>::custom("value asked for before key"))?;
        let key = self.key.take().unwrap_or_default();
        let path = Path::Field(self.path, &key);
        seed.deserialize(ValueDe { value, path: &path })
            .map_err(|e| at(&path, e))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct EnumDe<'p> {
    name: String,
    payload: Option<Value>,
    path: &'p Path<'p>,
}

impl<'de, 'p> EnumAccess<'de> for EnumDe<'p> {
    type Error = FromValueError;
    type Variant = VariantDe<'p>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, VariantDe<'p>), FromValueError> {
        let name: de::value::StringDeserializer<FromValueError> =
            self.name.clone().into_deserializer();
        let tag = seed.deserialize(name)?;
        Ok((
            tag,
            VariantDe {
                name: self.name,
                payload: self.payload,
                path: self.path,
            },
        ))
    }
}

struct VariantDe<'p> {
    name: String,
    payload: Option<Value>,
    path: &'p Path<'p>,
}

impl<'de> VariantAccess<'de> for VariantDe<'_> {
    type Error = FromValueError;

    fn unit_variant(self) -> Result<(), FromValueError> {
        match self.payload {
            None | Some(Value::Nil) => Ok(()),
            Some(other) => Err(de::Error::custom(format!(
                "variant {} has no payload, found {}",
                self.name,
                other.describe()
            ))),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, FromValueError> {
        let path = Path::Field(self.path, &self.name);
        seed.deserialize(ValueDe {
            value: self.payload.unwrap_or(Value::Nil),
            path: &path,
        })
        .map_err(|e| at(&path, e))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, FromValueError> {
        let path = Path::Field(self.path, &self.name);
        ValueDe {
            value: self.payload.unwrap_or(Value::Nil),
            path: &path,
        }
        .deserialize_tuple(len, v)
        .map_err(|e| at(&path, e))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, FromValueError> {
        let path = Path::Field(self.path, &self.name);
        ValueDe {
            value: self.payload.unwrap_or(Value::Nil),
            path: &path,
        }
        .deserialize_struct("", fields, v)
        .map_err(|e| at(&path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Point {
        x: i32,
        y_coord: i32,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    enum Shape {
        Circle(f64),
        DarkSquare { side: u8 },
        Empty,
    }

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
    fn kebab_names_reach_rust_fields_and_variants() {
        let v = Value::Map(vec![
            (s("x"), Value::Int(1)),
            (s("y-coord"), Value::Int(-2)),
        ]);
        assert_eq!(
            from_value::<Point>(v, "result").unwrap(),
            Point { x: 1, y_coord: -2 }
        );
        let v = Value::Map(vec![(
            s("dark-square"),
            Value::Map(vec![(s("side"), Value::Int(3))]),
        )]);
        assert_eq!(
            from_value::<Shape>(v, "result").unwrap(),
            Shape::DarkSquare { side: 3 }
        );
        assert_eq!(
            from_value::<Shape>(s("empty"), "result").unwrap(),
            Shape::Empty
        );
        let v = Value::Map(vec![(s("circle"), Value::F64(1.5))]);
        assert_eq!(
            from_value::<Shape>(v, "result").unwrap(),
            Shape::Circle(1.5)
        );
    }

    /// Found by the `from_value` fuzz target: `ab` was read into the
    /// first field it matched ignoring `_`, `a_b`, which it then had twice.
    #[test]
    fn names_that_differ_only_in_separators_or_case_find_their_own() {
        #[derive(Debug, Deserialize, PartialEq)]
        struct Close {
            a_b: u8,
            ab: u8,
        }
        #[derive(Debug, Deserialize, PartialEq)]
        enum CloseEnum {
            AB,
            Ab(u8),
        }
        let v = Value::Map(vec![(s("a_b"), Value::Int(1)), (s("ab"), Value::Int(2))]);
        assert_eq!(
            from_value::<Close>(v, "result").unwrap(),
            Close { a_b: 1, ab: 2 }
        );
        // WIT's names, as a worker sends them.
        let v = Value::Map(vec![(s("ab"), Value::Int(2)), (s("a-b"), Value::Int(1))]);
        assert_eq!(
            from_value::<Close>(v, "result").unwrap(),
            Close { a_b: 1, ab: 2 }
        );
        let v = Value::Array(vec![
            s("AB"),
            Value::Map(vec![(s("Ab"), Value::Int(3))]),
            s("a-b"),
            Value::Map(vec![(s("ab"), Value::Int(4))]),
        ]);
        assert_eq!(
            from_value::<Vec<CloseEnum>>(v, "result").unwrap(),
            vec![
                CloseEnum::AB,
                CloseEnum::Ab(3),
                CloseEnum::AB,
                CloseEnum::Ab(4)
            ]
        );
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
    fn bytes_read_as_vec_of_u8() {
        let v: Vec<u8> = from_value(Value::Bin(vec![1, 2, 3]), "result").unwrap();
        assert_eq!(v, vec![1, 2, 3]);
        let v: serde_bytes::ByteBuf = from_value(Value::Bin(vec![4]), "result").unwrap();
        assert_eq!(v.into_vec(), vec![4]);
    }

    #[test]
    fn mismatch_names_the_path() {
        let points = Value::Array(vec![
            Value::Map(vec![(s("x"), Value::Int(1)), (s("y-coord"), Value::Int(1))]),
            Value::Map(vec![(s("x"), s("no")), (s("y-coord"), Value::Int(1))]),
        ]);
        let err = from_value::<Vec<Point>>(points, "result")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("result[1].x: invalid type: string \"no\""),
            "{err}"
        );
        let err = from_value::<u8>(Value::Int(300), "result")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("result: invalid value: integer `300`"),
            "{err}"
        );
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
