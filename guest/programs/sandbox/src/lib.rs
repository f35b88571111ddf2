//! A guest that tries to reach outside its sandbox.

wit_bindgen::generate!({ path: "../../../wit/jobs", world: "sandbox" });

use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, OutgoingRequest, Scheme};

struct Sandbox;

impl Guest for Sandbox {
    fn http_get(url: String) -> Result<u16, String> {
        let (scheme, rest) = match url.split_once("://") {
            Some(("https", r)) => (Scheme::Https, r),
            Some(("http", r)) => (Scheme::Http, r),
            _ => return Err(format!("unsupported url {url}")),
        };
        let (authority, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
        let req = OutgoingRequest::new(Fields::new());
        req.set_scheme(Some(&scheme)).map_err(|()| "bad scheme".to_string())?;
        req.set_authority(Some(authority)).map_err(|()| "bad authority".to_string())?;
        req.set_path_with_query(Some(&path)).map_err(|()| "bad path".to_string())?;
        let future = outgoing_handler::handle(req, None).map_err(|e| format!("{e:?}"))?;
        future.subscribe().block();
        match future.get() {
            Some(Ok(Ok(resp))) => Ok(resp.status()),
            Some(Ok(Err(e))) => Err(format!("{e:?}")),
            Some(Err(())) => Err("response taken twice".into()),
            None => Err("no response".into()),
        }
    }

    fn read_file(path: String) -> Result<String, String> {
        std::fs::read_to_string(&path).map_err(|e| e.to_string())
    }

    fn write_file(path: String, contents: String) -> Result<(), String> {
        std::fs::write(&path, contents).map_err(|e| e.to_string())
    }

    fn env_var(name: String) -> Option<String> {
        std::env::var(&name).ok()
    }

    fn random_bytes(n: u32) -> Vec<u8> {
        wasi::random::random::get_random_bytes(u64::from(n))
    }

    fn clocks() -> (u64, u64) {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        (wall, wasi::clocks::monotonic_clock::now())
    }

    fn tcp_connect(addr: String) -> Result<(), String> {
        std::net::TcpStream::connect(&addr).map(drop).map_err(|e| e.to_string())
    }
}

export!(Sandbox);
