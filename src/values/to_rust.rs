//! [`Value`] into the caller's type, for results on the host (and a host
//! function's arguments): a deserializer that matches WIT's kebab-case
//! names to Rust's snake_case fields and PascalCase variants, accepts bytes
//! where a sequence is asked for, and names the path of any mismatch.

use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

use super::{Value, find_name};

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
}
