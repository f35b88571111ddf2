//! A plugin that uses a store the host provides as a resource, within one
//! call or kept across a session's calls.

wit_bindgen::generate!({ path: "../../../wit/jobs", world: "kv-plugin" });

use std::cell::RefCell;

use wasmpool::jobs::store;

thread_local! {
    static KEPT: RefCell<Option<Kv>> = const { RefCell::new(None) };
}

struct Plugin;

impl Guest for Plugin {
    fn roundtrip(name: String, key: String, value: String) -> Option<String> {
        let kv = Kv::new(&name);
        kv.set(&key, &value);
        kv.get(&key)
    }

    fn keep(name: String) {
        KEPT.with(|k| *k.borrow_mut() = Some(Kv::new(&name)));
    }

    fn get_kept(key: String) -> Option<String> {
        KEPT.with(|k| k.borrow().as_ref().and_then(|kv| kv.get(&key)))
    }

    fn set_kept(key: String, value: String) -> u32 {
        KEPT.with(|k| {
            let kept = k.borrow();
            let kv = kept.as_ref().expect("a kept store");
            kv.set(&key, &value);
            store::size(kv)
        })
    }

    fn release() {
        KEPT.with(|k| k.borrow_mut().take());
    }

    fn open_store(name: String) -> Kv {
        Kv::new(&name)
    }

    fn set_default(key: String, value: String) -> u32 {
        let kv = store::default_store();
        kv.set(&key, &value);
        store::size(&kv)
    }

    fn fail() {
        panic!("the plugin fails on purpose")
    }
}

export!(Plugin);
