//! `wasmpool serve`: a worker node of a cluster, running the calls that
//! cluster pools publish on a NATS JetStream server.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args as ClapArgs;
use wasmpool::Pool;
use wasmpool::cluster::Node;

use crate::exit::Failure;
use crate::options::parse_duration;

pub const AFTER_HELP: &str = "\
Examples:
  wasmpool serve --nats nats://127.0.0.1:4222
  wasmpool serve --nats nats://queue.internal:4222 --workers 8 --cache-dir /var/cache/wasmpool
  wasmpool serve --nats nats://127.0.0.1:4222 --ack-wait 10s

Callers use `Pool::builder().nats(URL)`. The server needs JetStream
(`nats-server -js`). Calls are run at least once: the calls of a node that
dies go to another after the ack wait. Ctrl-C or SIGTERM stops the node
gracefully: its running calls are interrupted and handed back at once.";

#[derive(ClapArgs, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// The NATS server of the cluster, with JetStream.
    #[arg(long, value_name = "URL")]
    nats: String,
    /// How many worker processes, and so how many calls at once (default:
    /// one per core).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Where compiled components are cached (default:
    /// `$XDG_CACHE_HOME/wasmpool`).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// How long the server waits for a node's ack before it gives the call
    /// to another node: `30s`, `5s`. The cluster's setting; the last node
    /// started sets it.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", default_value = "30s")]
    ack_wait: Duration,
}

pub async fn main(args: Args) -> Result<u8, Failure> {
    let mut pool = Pool::builder();
    if let Some(n) = args.workers {
        if n == 0 {
            return Err(Failure::usage("--workers must be at least 1"));
        }
        pool = pool.workers(n);
    }
    if let Some(dir) = &args.cache_dir {
        pool = pool.cache_dir(dir);
    }
    let node = Node::new(&args.nats).pool(pool).ack_wait(args.ack_wait);
    eprintln!(
        "wasmpool node: serving calls from {} (pid {})",
        args.nats,
        std::process::id()
    );
    node.serve_until(stopped()).await.map_err(Failure::from)?;
    eprintln!("wasmpool node: stopped; its running calls were handed back to the cluster");
    Ok(0)
}

/// Ctrl-C or SIGTERM.
async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                () = crate::interrupted() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    crate::interrupted().await
}
