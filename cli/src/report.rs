//! What a call cost (`wasmpool run --report`): as JSON beside the value,
//! or as one line of text on stderr.

use serde_json::json;
use wasmpool::{DynValue, Output, Usage};

/// The figures as a JSON object. Times are whole nanoseconds and sizes
/// bytes, so that scripts need no unit parsing; `cpu_*` are null where the
/// OS does not count a thread's CPU time, `fuel` where the call was not
/// metered.
pub fn to_json(out: &Output<DynValue>) -> serde_json::Value {
    let u = &out.usage;
    let ns = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    json!({
        "wall_ns": ns(u.wall),
        "cpu_ns": u.cpu.map(|c| ns(c.total())),
        "cpu_user_ns": u.cpu.map(|c| ns(c.user)),
        "cpu_system_ns": u.cpu.map(|c| ns(c.system)),
        "peak_memory_bytes": u.peak_memory,
        "bytes_in": u.bytes_in,
        "bytes_out": u.bytes_out,
        "fuel": out.fuel_consumed,
    })
}

/// The figures as one line for a person.
pub fn to_text(out: &Output<DynValue>) -> String {
    usage_text(&out.usage, out.fuel_consumed)
}

/// `usage` (and the fuel burned, if metered) as one line for a person.
pub fn usage_text(u: &Usage, fuel: Option<u64>) -> String {
    let mut line = format!("wall {:?}", u.wall);
    if let Some(c) = u.cpu {
        line += &format!(
            ", cpu {:?} (user {:?}, system {:?})",
            c.total(),
            c.user,
            c.system
        );
    }
    line += &format!(
        ", peak memory {} bytes, {} bytes in, {} bytes out",
        u.peak_memory, u.bytes_in, u.bytes_out
    );
    if let Some(fuel) = fuel {
        line += &format!(", fuel {fuel}");
    }
    line
}
