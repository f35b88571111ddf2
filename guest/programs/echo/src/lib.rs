//! Echoes of bytes and strings.

wit_bindgen::generate!({ path: "../../../wit/jobs", world: "echo" });

struct Echo;

impl Guest for Echo {
    fn echo_bytes(data: Vec<u8>) -> Vec<u8> {
        data
    }

    fn echo_string(s: String) -> String {
        s
    }

    fn byte_len(data: Vec<u8>) -> u64 {
        data.len() as u64
    }

    fn noop() {}
}

export!(Echo);
