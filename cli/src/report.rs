//! What a call cost (`wasmpool run --report`): as JSON beside the value,
//! or as one line of text on stderr.

use wasmpool::{DynValue, Output, Usage};

/// The figures as a JSON object. Times are whole nanoseconds and sizes
/// bytes, so that scripts need no unit parsing; `cpu_*` are null where the
/// OS does not count a thread's CPU time, `fuel` where the call was not
/// metered.
pub fn to_json(out: &Output<DynValue>) -> serde_json::Value {
    let mut o = usage_json(&out.usage);
    o.insert("fuel".into(), out.fuel_consumed.into());
    o.into()
}

/// [`to_json`]'s figures of `u`, all but the fuel.
pub fn usage_json(u: &Usage) -> serde_json::Map<String, serde_json::Value> {
    let ns = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let mut o = serde_json::Map::new();
    o.insert("wall_ns".into(), ns(u.wall).into());
    o.insert("cpu_ns".into(), u.cpu.map(|c| ns(c.total())).into());
    o.insert("cpu_user_ns".into(), u.cpu.map(|c| ns(c.user)).into());
    o.insert("cpu_system_ns".into(), u.cpu.map(|c| ns(c.system)).into());
    o.insert("peak_memory_bytes".into(), u.peak_memory.into());
    o.insert("bytes_in".into(), u.bytes_in.into());
    o.insert("bytes_out".into(), u.bytes_out.into());
    o
}

/// The figures as one line for a person.
pub fn to_text(out: &Output<DynValue>) -> String {
    usage_text(&out.usage, out.fuel_consumed)
}

/// A program's `usage` as one line for a person: as [`usage_text`], but
/// without the bytes of the call of `run`, which are not its stdin and
/// stdout.
pub fn program_usage_text(u: &Usage, fuel: Option<u64>) -> String {
    usage_line(u, fuel, false)
}

/// `usage` (and the fuel burned, if metered) as one line for a person.
pub fn usage_text(u: &Usage, fuel: Option<u64>) -> String {
    usage_line(u, fuel, true)
}

/// The line of [`usage_text`], with or without the bytes in and out.
fn usage_line(u: &Usage, fuel: Option<u64>, bytes: bool) -> String {
    let mut line = format!("wall {:?}", u.wall);
    if let Some(c) = u.cpu {
        line += &format!(
            ", cpu {:?} (user {:?}, system {:?})",
            c.total(),
            c.user,
            c.system
        );
    }
    line += &format!(", peak memory {} bytes", u.peak_memory);
    if bytes {
        line += &format!(", {} bytes in, {} bytes out", u.bytes_in, u.bytes_out);
    }
    if let Some(fuel) = fuel {
        line += &format!(", fuel {fuel}");
    }
    line
}
