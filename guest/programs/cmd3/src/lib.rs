//! A WASI 0.3 command: `run` is an `async func`, and stdout a stream.
//!
//! Its first argument says what to do: `greet` writes its other arguments
//! and the variable `GREETING` to stdout, `fail` returns an error (exit
//! status 1), `exit` calls `exit(err)`, and `trap` traps.

wit_bindgen::generate!({
    path: "../../../wit/jobs",
    world: "cmd3",
    generate_all,
});

use exports::wasi::cli::run::Guest;
use wasi::cli::{environment, exit, stdout};

struct Cmd3;

/// Writes `text` to stdout through a stream, as WASI 0.3 does.
async fn print(text: String) -> Result<(), ()> {
    let (mut tx, rx) = wit_stream::new::<u8>();
    let done = stdout::write_via_stream(rx);
    let left = tx.write_all(text.into_bytes()).await;
    drop(tx);
    if !left.is_empty() {
        return Err(());
    }
    done.await.map_err(|_| ())
}

impl Guest for Cmd3 {
    async fn run() -> Result<(), ()> {
        let args = environment::get_arguments();
        let env = environment::get_environment();
        match args.get(1).map(String::as_str) {
            Some("greet") => {
                let greeting = env
                    .iter()
                    .find(|(k, _)| k == "GREETING")
                    .map_or("hello", |(_, v)| v.as_str());
                print(format!("{greeting}, {}\n", args[2..].join(" "))).await
            }
            Some("fail") => Err(()),
            Some("exit") => {
                exit::exit(Err(()));
                Ok(())
            }
            Some("trap") => std::process::abort(),
            _ => print(format!("usage: {} greet|fail|exit|trap\n", args[0])).await,
        }
    }
}

export!(Cmd3);
