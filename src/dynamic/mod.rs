//! Calls whose types are known only at run time: arguments and results as
//! WAVE text or as `serde_json::Value`, checked and converted on the host
//! against the function's WIT types, then sent as any call is.
//!
//! WAVE (the WebAssembly Value Encoding) is the text `wasmtime run
//! --invoke` reads: `30`, `"hi"`, `circle(2.0)`, `{x: 1, y: 2}`,
//! `[1, 2, 3]`, `some(7)`, `ok("yes")`, `{read, write}`. JSON follows
//! wasmpool's value mapping (see the crate docs): a record is an object, a
//! variant case `{"circle": 2.0}` or `"empty"`, an enum case a string,
//! flags an array of names, `option` `null` or the value, `result`
//! `{"ok": ..}` or `{"err": ..}`, `list<u8>` an array of numbers.

mod json;

use std::fmt;

use wasmtime::component::wasm_wave;
use wasmtime::component::{Type, Val};

use crate::error::{Error, ErrorKind};
use crate::values::{Value, find_name, wit};

/// The arguments of a dynamic call ([`Pool::call_dynamic`]), as text or
/// JSON, typed against the function once the pool has read its
/// signature.
///
/// [`Pool::call_dynamic`]: crate::Pool::call_dynamic
///
/// # Examples
///
/// ```
/// use wasmpool::DynArgs;
/// // WAVE: the arguments as between the parentheses of `f(...)`.
/// let a = DynArgs::wave("circle(2.0)");
/// // Or one WAVE text per argument, as a command line has them.
/// let b = DynArgs::wave_each(["1", "\"two\""]);
/// // JSON: with one parameter, its value; with several, an array or an
/// // object by parameter name.
/// let c = DynArgs::json(serde_json::json!({"x": 1, "y": 2}));
/// let d = DynArgs::json_each(vec![serde_json::json!(1), serde_json::json!("two")]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct DynArgs(Repr);

#[derive(Debug, Clone, PartialEq)]
enum Repr {
    Wave(String),
    WaveEach(Vec<String>),
    Json(serde_json::Value),
    JsonEach(Vec<serde_json::Value>),
}

impl DynArgs {
    /// The arguments as WAVE, comma-separated, as between the parentheses
    /// of a call: `"30"`, `"1, \"two\""`, `""` for none. Trailing `option`
    /// arguments may be left out; they are `none`.
    pub fn wave(text: impl Into<String>) -> DynArgs {
        DynArgs(Repr::Wave(text.into()))
    }

    /// One WAVE text per argument: `["30"]`, `["1", "\"two\""]`.
    pub fn wave_each<I, S>(args: I) -> DynArgs
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        DynArgs(Repr::WaveEach(args.into_iter().map(Into::into).collect()))
    }

    /// The arguments as one JSON value: for a function of one parameter,
    /// that parameter's value; of none, `null` or `[]`; of several, an
    /// array in order or an object by parameter name.
    pub fn json(value: serde_json::Value) -> DynArgs {
        DynArgs(Repr::Json(value))
    }

    /// One JSON value per argument.
    pub fn json_each(args: Vec<serde_json::Value>) -> DynArgs {
        DynArgs(Repr::JsonEach(args))
    }

    /// Types the arguments against `sig` and encodes them as a call's
    /// MessagePack tuple.
    pub(crate) fn encode(self, sig: &Signature) -> Result<Vec<u8>, Error> {
        let vals = match self.0 {
            Repr::Wave(text) => wave_args(sig, &text)?,
            Repr::WaveEach(texts) => {
                sig.check_count(texts.len())?;
                sig.params
                    .iter()
                    .zip(&texts)
                    .enumerate()
                    .map(|(i, ((name, ty), text))| {
                        wasm_wave::from_str::<Val>(ty, text).map_err(|e| {
                            bad(format!(
                                "args[{i}] ({name}: {}): not valid WAVE for its type: {}",
                                wit::type_name(ty),
                                wave_error(&e, text, 0)
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            Repr::Json(value) => json_args(sig, json::spread(sig, value)?)?,
            Repr::JsonEach(values) => json_args(sig, values)?,
        };
        let tuple = Value::Array(
            sig.params
                .iter()
                .zip(vals)
                .map(|((_, ty), v)| wit::from_val(ty, v))
                .collect(),
        );
        rmp_serde::to_vec(&tuple).map_err(|e| bad(format!("args: cannot be encoded: {e}")))
    }
}

fn bad(message: String) -> Error {
    Error::new(ErrorKind::ArgumentMismatch, message)
}

/// What a dynamic call needs of its function: parameter names and types,
/// and the result type.
pub(crate) struct Signature {
    pub(crate) name: String,
    pub(crate) params: Vec<(String, Type)>,
    pub(crate) result: Option<Type>,
}

impl Signature {
    fn check_count(&self, got: usize) -> Result<(), Error> {
        if got == self.params.len() {
            return Ok(());
        }
        Err(bad(format!(
            "args: {} takes {} argument{} ({}), got {got}",
            self.name,
            self.params.len(),
            if self.params.len() == 1 { "" } else { "s" },
            self.describe_params()
        )))
    }

    /// `n: u64, s: string`
    fn describe_params(&self) -> String {
        self.params
            .iter()
            .map(|(n, t)| format!("{n}: {}", wit::type_name(t)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn wave_args(sig: &Signature, text: &str) -> Result<Vec<Val>, Error> {
    // WAVE parses argument lists as a call: `f(...)`.
    let call = format!("f({text})");
    let parsed = wasm_wave::untyped::UntypedFuncCall::parse(&call).map_err(|e| {
        bad(format!(
            "args: not valid WAVE: {}",
            wave_error(&e, &call, 2)
        ))
    })?;
    let types: Vec<Type> = sig.params.iter().map(|(_, t)| t.clone()).collect();
    parsed.to_wasm_params::<Val>(&types).map_err(|e| {
        bad(format!(
            "args: do not fit {}({}): {}",
            sig.name,
            sig.describe_params(),
            wave_error(&e, &call, 2)
        ))
    })
}

/// A WAVE error with the text it points at. `skip` bytes of `source` were
/// added around the caller's text.
fn wave_error(e: &wasm_wave::parser::ParserError, source: &str, skip: usize) -> String {
    let span = e.span();
    let what = match e.detail() {
        Some(d) => format!("{:?}: {d}", e.kind()),
        None => format!("{:?}", e.kind()),
    };
    let at = source
        .get(span.clone())
        .filter(|s| !s.is_empty())
        .map(|s| format!(" at `{s}`"))
        .unwrap_or_default();
    let start = span.start.saturating_sub(skip);
    format!("{what}{at} (byte {start})")
}

fn json_args(sig: &Signature, values: Vec<serde_json::Value>) -> Result<Vec<Val>, Error> {
    sig.check_count(values.len())?;
    let root = wit::Path::Root("args");
    sig.params
        .iter()
        .zip(values)
        .enumerate()
        .map(|(i, ((_, ty), v))| {
            wit::to_val(&wit::Path::Index(&root, i), ty, json::to_value(v)).map_err(|m| bad(m.0))
        })
        .collect()
}

/// The result of a dynamic call: prints as WAVE, converts to JSON.
///
/// ```no_run
/// # async fn demo(pool: wasmpool::Pool, job: wasmpool::Job) -> Result<(), wasmpool::Error> {
/// use wasmpool::DynArgs;
/// let v = pool.call_dynamic(&job, "fib", DynArgs::wave("30")).await?;
/// assert_eq!(v.to_string(), "832040");
/// assert_eq!(v.to_json(), serde_json::json!(832040));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct DynValue {
    /// `None` for a function without a result.
    val: Option<Val>,
    value: Value,
}

impl DynValue {
    /// Types a call's result `value` with the function's result type.
    pub(crate) fn new(value: Value, ty: Option<&Type>) -> Result<DynValue, Error> {
        let Some(ty) = ty else {
            return Ok(DynValue {
                val: None,
                value: Value::Nil,
            });
        };
        let val = wit::to_val(&wit::Path::Root("result"), ty, value.clone())
            .map_err(|m| Error::new(ErrorKind::ResultMismatch, m.0))?;
        Ok(DynValue {
            val: Some(val),
            value,
        })
    }

    /// Whether the function has no result.
    pub fn is_unit(&self) -> bool {
        self.val.is_none()
    }

    /// The result as WAVE text; empty for a function without a result.
    pub fn to_wave(&self) -> String {
        match &self.val {
            None => String::new(),
            Some(v) => wasm_wave::to_string(v).unwrap_or_else(|e| format!("<{e}>")),
        }
    }

    /// The result as JSON, in wasmpool's value mapping: `null` for a
    /// function without a result, `list<u8>` as an array of numbers, and
    /// floats that JSON cannot hold as the strings `"NaN"`, `"inf"` and
    /// `"-inf"` (which JSON arguments accept back).
    pub fn to_json(&self) -> serde_json::Value {
        json::from_value(&self.value)
    }
}

impl fmt::Display for DynValue {
    /// WAVE, as [`to_wave`](DynValue::to_wave).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_wave())
    }
}

/// Finds the parameter that object key `key` names.
fn param_index(sig: &Signature, key: &str) -> Option<usize> {
    let name = find_name(sig.params.iter().map(|(n, _)| n.as_str()), key)?;
    sig.params.iter().position(|(n, _)| n == name)
}
