//! Reads its configuration through `wasi:config/store`, as a plain
//! `wit-bindgen` guest does: what the pool and the call set
//! (`PoolBuilder::config`, `Call::config`).

// `generate_all`: the bindings of the imported `wasi:config/store` too.
wit_bindgen::generate!({ path: "../../../wit/jobs", world: "config", generate_all });

use wasi::config::store;

struct Config;

impl Guest for Config {
    fn get(key: String) -> Option<String> {
        store::get(&key).unwrap_or_else(|e| panic!("wasi:config/store get: {e:?}"))
    }

    fn get_all() -> Vec<(String, String)> {
        let mut all = store::get_all().unwrap_or_else(|e| panic!("wasi:config/store get-all: {e:?}"));
        all.sort();
        all
    }
}

export!(Config);
