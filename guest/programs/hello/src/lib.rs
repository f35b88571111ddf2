//! Prints, to show that a guest's stdout reaches the host's stdout.

wit_bindgen::generate!({ path: "../../../wit/jobs", world: "hello" });

struct Hello;

impl Guest for Hello {
    fn hello(name: String) -> String {
        println!("hello from wasm, {name}!");
        eprintln!("a note on stderr for {name}");
        format!("greeted {name}")
    }
}

export!(Hello);
