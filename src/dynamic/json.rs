//! JSON <-> the value tree, in wasmpool's value mapping.

use serde_json::{Map, Number, Value as Json};

use super::{Signature, bad, param_index};
use crate::error::Error;
use crate::values::Value;

/// One JSON value for a whole argument list, spread into one per
/// parameter: the value itself for one parameter; `null` or `[]` for
/// none; an array in order or an object by name for several.
pub(super) fn spread(sig: &Signature, value: Json) -> Result<Vec<Json>, Error> {
    match (sig.params.len(), value) {
        (1, v) => Ok(vec![v]),
        (0, Json::Null) => Ok(Vec::new()),
        (_, Json::Array(items)) => Ok(items),
        (n, Json::Object(fields)) => {
            let mut slots: Vec<Option<Json>> = vec![None; n];
            for (key, v) in fields {
                let i = param_index(sig, &key).ok_or_else(|| {
                    bad(format!(
                        "args: {} has no parameter {key:?} ({})",
                        sig.name,
                        sig.describe_params()
                    ))
                })?;
                slots[i] = Some(v);
            }
            // A missing parameter is `null`: `none` for an option, an
            // error naming it for anything else.
            Ok(slots.into_iter().map(|s| s.unwrap_or(Json::Null)).collect())
        }
        (n, other) => Err(bad(format!(
            "args: {} takes {n} arguments ({}): give an array or an object by name, not {}",
            sig.name,
            sig.describe_params(),
            kind(&other)
        ))),
    }
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// JSON into the value tree: numbers stay integers when they are.
pub(super) fn to_value(v: Json) -> Value {
    match v {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(b),
        Json::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Value::Int(u.into()),
            (None, Some(i)) => Value::Int(i.into()),
            _ => Value::F64(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::Str(s),
        Json::Array(items) => Value::Array(items.into_iter().map(to_value).collect()),
        Json::Object(fields) => Value::Map(
            fields
                .into_iter()
                .map(|(k, v)| (Value::Str(k), to_value(v)))
                .collect(),
        ),
    }
}

/// The value tree as JSON. Bytes are an array of numbers; a map whose keys
/// are not all strings an array of `[key, value]` pairs; a float JSON
/// cannot hold the string `"NaN"`, `"inf"` or `"-inf"`.
pub(super) fn from_value(v: &Value) -> Json {
    match v {
        Value::Nil => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => u64::try_from(*i)
            .map(Number::from)
            .or_else(|_| i64::try_from(*i).map(Number::from))
            .map_or_else(|_| Json::String(i.to_string()), Json::Number),
        // An f32's shortest decimal, so that 0.1f32 reads 0.1.
        Value::F32(f) => float(f.to_string().parse().unwrap_or(f64::from(*f))),
        Value::F64(f) => float(*f),
        Value::Str(s) => Json::String(s.clone()),
        Value::Bin(b) => Json::Array(b.iter().map(|x| Json::from(*x)).collect()),
        Value::Array(items) => Json::Array(items.iter().map(from_value).collect()),
        Value::Map(entries) if entries.iter().all(|(k, _)| matches!(k, Value::Str(_))) => {
            let mut m = Map::with_capacity(entries.len());
            for (k, v) in entries {
                if let Value::Str(k) = k {
                    m.insert(k.clone(), from_value(v));
                }
            }
            Json::Object(m)
        }
        Value::Map(entries) => Json::Array(
            entries
                .iter()
                .map(|(k, v)| Json::Array(vec![from_value(k), from_value(v)]))
                .collect(),
        ),
    }
}

fn float(f: f64) -> Json {
    match Number::from_f64(f) {
        Some(n) => Json::Number(n),
        None if f.is_nan() => Json::String("NaN".into()),
        None if f > 0.0 => Json::String("inf".into()),
        None => Json::String("-inf".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_and_values_round_trip() {
        let j = json!({"a": [1, -2, 2.5, "x", null, true], "b": {"c": 18446744073709551615u64}});
        assert_eq!(from_value(&to_value(j.clone())), j);
        assert_eq!(from_value(&Value::F32(0.1)), json!(0.1));
        assert_eq!(from_value(&Value::F64(f64::NAN)), json!("NaN"));
        assert_eq!(from_value(&Value::F64(f64::NEG_INFINITY)), json!("-inf"));
        assert_eq!(from_value(&Value::Bin(vec![0, 255])), json!([0, 255]));
        assert_eq!(
            from_value(&Value::Map(vec![(Value::Int(1), Value::Bool(true))])),
            json!([[1, true]])
        );
    }
}
