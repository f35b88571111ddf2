//! A plugin that calls its host: every export goes through the
//! `host-api` imports, which wasmpool serves with host functions.

wit_bindgen::generate!({ path: "../../../wit/jobs", world: "plugin" });

use wasmpool::jobs::host_api as host;

struct Plugin;

impl Guest for Plugin {
    fn add(a: u64, b: u64) -> u64 {
        host::add(a, b)
    }

    fn add_many(n: u64) -> u64 {
        (0..n).fold(0u64, |sum, i| sum.wrapping_add(host::add(i, 1)))
    }

    fn noop() {
        host::noop()
    }

    fn noop_many(n: u64) {
        for _ in 0..n {
            host::noop();
        }
    }

    fn fail(how: String) -> u32 {
        host::fail(&how)
    }

    fn sleep(ms: u64) -> u64 {
        host::sleep_ms(ms)
    }

    fn tag() -> Option<String> {
        host::data_tag()
    }

    fn work(key: String, items: u32) -> u32 {
        let value = host::lookup(&key).unwrap_or_default();
        host::log(&format!("working on {items} items with {key}={value}"));
        for i in 0..items {
            host::progress(i + 1, items);
        }
        items
    }

    fn echo_point(v: Point) -> Point {
        host::echo_point(v)
    }

    fn echo_color(v: Color) -> Color {
        host::echo_color(v)
    }

    fn echo_permissions(v: Permissions) -> Permissions {
        host::echo_permissions(v)
    }

    fn echo_shape(v: Shape) -> Shape {
        host::echo_shape(&v)
    }

    fn echo_option(v: Option<String>) -> Option<String> {
        host::echo_option(v.as_deref())
    }

    fn echo_result(v: Result<u32, String>) -> Result<u32, String> {
        host::echo_result(v.as_ref().map(|x| *x).map_err(|e| e.as_str()))
    }

    fn echo_list(v: Vec<i64>) -> Vec<i64> {
        host::echo_list(&v)
    }

    fn echo_string(v: String) -> String {
        host::echo_string(&v)
    }

    fn echo_bytes(v: Vec<u8>) -> Vec<u8> {
        host::echo_bytes(&v)
    }

    fn echo_tuple(v: (u8, String, f64)) -> (u8, String, f64) {
        host::echo_tuple((v.0, &v.1, v.2))
    }
}

export!(Plugin);
