//! A second plugin for the plugin-host example: greets users whose names it
//! looks up on the host, logging and reporting progress as it goes.

wit_bindgen::generate!({ path: "../../../wit/jobs", world: "greeter" });

use wasmpool::jobs::host_api as host;

struct Greeter;

impl Guest for Greeter {
    fn greet(users: Vec<String>) -> Vec<String> {
        let total = users.len() as u32;
        let mut out = Vec::with_capacity(users.len());
        for (i, user) in users.iter().enumerate() {
            let name = host::lookup(user).unwrap_or_else(|| "stranger".into());
            host::log(&format!("greeting {user}"));
            out.push(format!("hello, {name}"));
            host::progress(i as u32 + 1, total);
        }
        out
    }
}

export!(Greeter);
