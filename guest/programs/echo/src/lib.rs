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

    fn echo_chunks(chunks: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        chunks
    }

    fn echo_after(data: Vec<u8>, millis: u64) -> Vec<u8> {
        std::thread::sleep(std::time::Duration::from_millis(millis));
        data
    }
}

export!(Echo);
