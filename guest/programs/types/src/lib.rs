//! Every WIT value type, echoed back, plus functions over records, variants,
//! enums, flags and options.

wit_bindgen::generate!({ path: "../../../wit/jobs", world: "all-types" });

use exports::wasmpool::jobs::types::{
    Color, Drawing, Guest as TypesGuest, GuestCounter, Permissions, Point, Shape,
};

struct Types;

struct Counter(u32);

impl GuestCounter for Counter {
    fn new(start: u32) -> Self {
        Counter(start)
    }

    fn get(&self) -> u32 {
        self.0
    }
}

impl Guest for Types {
    fn echo_u8(v: u8) -> u8 {
        v
    }
}

impl TypesGuest for Types {
    type Counter = Counter;

    fn echo_bool(v: bool) -> bool { v }
    fn echo_s8(v: i8) -> i8 { v }
    fn echo_u8(v: u8) -> u8 { v }
    fn echo_s16(v: i16) -> i16 { v }
    fn echo_u16(v: u16) -> u16 { v }
    fn echo_s32(v: i32) -> i32 { v }
    fn echo_u32(v: u32) -> u32 { v }
    fn echo_s64(v: i64) -> i64 { v }
    fn echo_u64(v: u64) -> u64 { v }
    fn echo_f32(v: f32) -> f32 { v }
    fn echo_f64(v: f64) -> f64 { v }
    fn echo_char(v: char) -> char { v }
    fn echo_string(v: String) -> String { v }
    fn echo_bytes(v: Vec<u8>) -> Vec<u8> { v }
    fn echo_list(v: Vec<i64>) -> Vec<i64> { v }
    fn echo_strings(v: Vec<String>) -> Vec<String> { v }
    fn echo_tuple(v: (u8, String, f64)) -> (u8, String, f64) { v }
    fn echo_point(v: Point) -> Point { v }
    fn echo_color(v: Color) -> Color { v }
    fn echo_permissions(v: Permissions) -> Permissions { v }
    fn echo_shape(v: Shape) -> Shape { v }
    fn echo_option(v: Option<String>) -> Option<String> { v }
    fn echo_nested_option(v: Option<Option<u32>>) -> Option<Option<u32>> { v }
    fn echo_result(v: Result<u32, String>) -> Result<u32, String> { v }
    fn echo_unit_result(v: Result<(), ()>) -> Result<(), ()> { v }
    fn echo_drawing(v: Drawing) -> Drawing { v }
    fn echo_points(v: Vec<Option<Point>>) -> Vec<Option<Point>> { v }

    fn area(s: Shape) -> f64 {
        match s {
            Shape::Circle(r) => std::f64::consts::PI * r * r,
            Shape::Rectangle((w, h)) => w * h,
            Shape::Polygon(points) => {
                // Shoelace formula.
                let n = points.len();
                let mut twice = 0i64;
                for i in 0..n {
                    let (a, b) = (&points[i], &points[(i + 1) % n]);
                    twice += i64::from(a.x) * i64::from(b.y) - i64::from(b.x) * i64::from(a.y);
                }
                twice.abs() as f64 / 2.0
            }
            Shape::Empty => 0.0,
        }
    }

    fn describe(d: Drawing) -> String {
        let fill = match d.fill {
            Some(Color::Red) => "red",
            Some(Color::Green) => "green",
            Some(Color::DarkBlue) => "dark-blue",
            None => "none",
        };
        let mut perms = String::new();
        for (flag, c) in [(Permissions::READ, 'r'), (Permissions::WRITE, 'w'), (Permissions::EXEC_UTE, 'x')] {
            perms.push(if d.perms.contains(flag) { c } else { '-' });
        }
        format!(
            "{}: {} shapes, fill {}, {} at ({}, {}), tags [{}], thumbnail {}",
            d.name,
            d.shapes.len(),
            fill,
            perms,
            d.origin.x,
            d.origin.y,
            d.tags.join(","),
            d.thumbnail.map_or(0, |t| t.len()),
        )
    }

    fn mix(a: u8, b: String, c: Vec<u8>, d: bool) -> (u8, String, Vec<u8>, bool) {
        (a.wrapping_add(1), b.to_uppercase(), c.into_iter().rev().collect(), !d)
    }

    fn only_red(c: Color) -> Result<String, u8> {
        match c {
            Color::Red => Ok("red".to_string()),
            other => Err(other as u8),
        }
    }

    fn nothing() {}

    fn make_counter(start: u32) -> exports::wasmpool::jobs::types::Counter {
        exports::wasmpool::jobs::types::Counter::new(Counter(start))
    }
}

export!(Types);
