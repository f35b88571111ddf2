//! What runs inside a worker: the executor of calls, each call's store and
//! sandbox, the `wasmpool:sync` imports, and the worker process's entry
//! point. A worker thread runs the same [`Executor`] in the host process.
//!
//! Threads of a worker process:
//!
//! - the main thread reads [`ToWorker`] frames from the request pipe, runs
//!   each call on its [`Executor`] and writes the reply to the reply pipe;
//! - `wasmpool-control` reads [`Control`] frames. A cancel interrupts the
//!   call (see [`Interrupts`]). When the control socket closes, the host
//!   is gone and the process exits.
//! - `wasmpool-timer`, the executor's, enforces a call's timeout.
//!
//! A worker process reports through `tracing`. It starts before `main`, so
//! the host's subscriber is not there: when `RUST_LOG` is set, the worker
//! installs its own, which writes to its stderr (the host's stderr), with
//! the same filter syntax as `tracing-subscriber`'s `Targets`
//! (`wasmpool=debug`, `info`, ...).

mod answers;
mod call;
mod executor;
mod host_imports;
#[cfg(feature = "wasi-http")]
mod http;
mod imports;
mod interrupts;
mod lanes;
mod loaded;
mod meter;
mod port;
mod sessions;
mod stdio;
mod store;
#[cfg(feature = "test-hooks")]
mod test_hooks;
mod transmit;

use std::io::{self, PipeReader, PipeWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) use answers::{Answers, IdleSpin, Inbox, SPIN};
pub(crate) use executor::Executor;
pub(crate) use interrupts::Interrupts;
pub(crate) use port::OpSender;
pub(crate) use store::State;
pub(crate) use transmit::{RESULTS_FROM, WINDOW as STREAM_WINDOW};

use crate::idle::{self, Idler};
use crate::options::DirAccess;
use crate::platform;
use crate::wire::{
    CompileOrder, Control, FromWorker, Init, PROTOCOL_VERSION, Sandbox, ToWorker, read_frame,
    write_frame,
};

/// Runs the worker; returns the process exit code.
pub(crate) fn run() -> i32 {
    init_tracing();
    match serve() {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(pid = std::process::id(), error = %e, "worker failed");
            70
        }
    }
}

/// Installs a stderr subscriber when `RUST_LOG` asks for one.
fn init_tracing() {
    let Some(filter) = std::env::var("RUST_LOG").ok().filter(|f| !f.is_empty()) else {
        return;
    };
    let targets = filter
        .parse::<tracing_subscriber::filter::Targets>()
        .unwrap_or_else(|_| tracing_subscriber::filter::Targets::new());
    use tracing_subscriber::layer::SubscriberExt as _;
    let subscriber = tracing_subscriber::registry()
        .with(targets)
        .with(tracing_subscriber::fmt::layer().with_writer(io::stderr));
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// A worker that runs several calls at once (see [`lanes`]): its answers
/// come through an inbox, which a thread of its own fills from the request
/// pipe, and it neither keeps a payload region nor gives memory back when
/// idle (an idle one is retired whole).
fn serve_lanes(
    init: &Init,
    engine: wasmtime::Engine,
    requests: PipeReader,
    control: platform::ControlWorker,
    replies: PipeWriter,
) -> io::Result<()> {
    let inbox = Arc::new(Inbox::default());
    let answers = Arc::new(Answers::inbox(inbox.clone()));
    let replies = Arc::new(lanes::Replies::new(replies));
    let ops = replies.clone();
    // The executor's operations are those of the request it runs, which
    // may be any lane's: they are tagged with it.
    let running = Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
    let call = running.clone();
    let send: OpSender = Box::new(move |seq, op| {
        let call = call.load(std::sync::atomic::Ordering::SeqCst);
        ops.write(&FromWorker::CallSync { call, seq, op })
    });
    let executor = Executor::with_engine(&init.engine, engine, false, answers.clone(), send)
        .map_err(|message| {
            let _ = replies.write(&FromWorker::Failed {
                message: message.clone(),
            });
            io::Error::other(message)
        })?;
    let lanes = Arc::new(lanes::Lanes::new(
        executor.engine().clone(),
        answers,
        running,
    ));
    replies.write(&ready())?;
    tracing::debug!(pid = std::process::id(), lanes = init.lanes, "worker ready");
    let interrupts = executor.interrupts();
    let stops = lanes.clone();
    std::thread::Builder::new()
        .name("wasmpool-control".into())
        .spawn(move || control_loop(control, &interrupts, Some(&stops)))?;
    lanes::serve(executor, lanes, Arc::new(requests), inbox, replies)
}

/// The worker process's life: the handshake, then either one compile
/// ([`compile_child`]) or calls until the host closes the request pipe
/// ([`call_loop`]).
fn serve() -> io::Result<()> {
    // First thing, before the worker starts any thread.
    idle::keep_freed_memory();
    let platform::Channels {
        requests,
        control,
        replies,
    } = platform::inherited_channels()?;
    let mut buf = Vec::new();
    let Some(init) = read_frame::<_, Init>(&requests, &mut buf)? else {
        return Ok(());
    };
    match handshake(&init, &replies)? {
        Role::Compile(order) => compile_child(&init, order, &replies),
        Role::Serve {
            engine,
            region: _,
            idler: _,
        } if init.lanes > 1 => serve_lanes(&init, engine, requests, control, replies),
        Role::Serve {
            engine,
            region,
            idler,
        } => {
            let requests = Arc::new(requests);
            let answers = Arc::new(Answers::pipe(requests.clone(), platform::WakePipe::new()?));
            // Only the call loop's thread writes replies: the executor's
            // operations go out while it runs a call, its outcomes after.
            let ops = replies.try_clone()?;
            let send: OpSender =
                Box::new(move |seq, op| write_frame(&ops, &FromWorker::Sync { seq, op }));
            let mut executor =
                Executor::with_engine(&init.engine, engine, init.reuse_instances, answers, send)
                    .map_err(|message| fail(&replies, message))?;
            if let Some(region) = region {
                executor.set_region(region);
            }
            if cfg!(target_os = "linux")
                && !wasmtime::PoolingAllocationConfig::is_pagemap_scan_available()
            {
                tracing::warn!(
                    pid = std::process::id(),
                    "PAGEMAP_SCAN is not available (Linux 6.7 and later have it): each call's \
                     guest memory is reset by a slower path"
                );
            }
            write_frame(&replies, &ready())?;
            tracing::debug!(pid = std::process::id(), "worker ready");
            let interrupts = executor.interrupts();
            std::thread::Builder::new()
                .name("wasmpool-control".into())
                .spawn(move || control_loop(control, &interrupts, None))?;
            call_loop(&requests, &replies, &mut buf, executor, idler)
        }
    }
}

/// What the host started this process as, once it has shaken hands.
enum Role<'a> {
    /// A compile child: compile, answer, exit.
    Compile(&'a CompileOrder),
    /// A worker: serve calls with this engine, on the payload region if
    /// it has one, giving memory back when idle by `idler`.
    Serve {
        engine: wasmtime::Engine,
        region: Option<platform::WorkerRegion>,
        idler: Idler,
    },
}

/// Checks the host's [`Init`], then does what must be done before the
/// process confines itself (map the payload region, open what the idle
/// policy reads, make the engine), and confines it. A failure is said to
/// the host too, in a `Failed` frame.
fn handshake<'a>(init: &'a Init, replies: &PipeWriter) -> io::Result<Role<'a>> {
    if init.version != PROTOCOL_VERSION {
        return Err(fail(
            replies,
            format!(
                "protocol version {} from the host, {} here: the worker program is a different build",
                init.version, PROTOCOL_VERSION
            ),
        ));
    }
    // Mapped before the sandbox closes, like everything the worker opens.
    let region = match init.region {
        Some(len) => Some(
            platform::WorkerRegion::inherit(len, crate::wire::RESULTS_AT)
                .map_err(|e| fail(replies, format!("mapping the payload region: {e}")))?,
        ),
        None => None,
    };
    let role = match &init.compile {
        Some(order) => Role::Compile(order),
        None => Role::Serve {
            // Reads the worker's footprint, through `/proc`.
            idler: Idler::process(),
            // Made before the sandbox closes too: it opens
            // `/proc/self/pagemap` (see `crate::engine`). A compile child
            // needs none.
            engine: executor::worker_engine(&init.engine).map_err(|m| fail(replies, m))?,
            region,
        },
    };
    if let Some(sandbox) = &init.sandbox {
        confine(sandbox).map_err(|e| fail(replies, format!("confining the worker: {e}")))?;
    } else {
        tracing::debug!(pid = std::process::id(), "worker not confined");
    }
    Ok(role)
}

/// Says `message` to the host in a `Failed` frame, and returns it as the
/// error the worker exits with.
fn fail(replies: &PipeWriter, message: String) -> io::Error {
    let _ = write_frame(
        replies,
        &FromWorker::Failed {
            message: message.clone(),
        },
    );
    io::Error::other(message)
}

/// The answer to [`Init`] once the worker is ready.
fn ready() -> FromWorker {
    FromWorker::Ready {
        version: PROTOCOL_VERSION,
        pid: std::process::id(),
    }
}

/// A compile child: carries out `order`, and says how it went. It answers
/// twice: first [`ready`] as the handshake, by which the host tells a
/// program that is no worker from a component that does not compile,
/// then how the compile went.
fn compile_child(init: &Init, order: &CompileOrder, replies: &PipeWriter) -> io::Result<()> {
    write_frame(replies, &ready())?;
    match compile(init, order) {
        Ok(()) => write_frame(replies, &ready()),
        Err(message) => {
            let _ = write_frame(replies, &FromWorker::Failed { message });
            Ok(())
        }
    }
}

/// Serves calls until the host closes the request pipe: reads each
/// request, runs it on `executor` and writes its reply. Between calls it
/// spins a while for the next one, then sleeps, and gives memory back
/// when none comes for a while (see [`crate::idle`]).
fn call_loop(
    requests: &PipeReader,
    replies: &PipeWriter,
    buf: &mut Vec<u8>,
    mut executor: Executor,
    mut idler: Idler,
) -> io::Result<()> {
    let mut spin = IdleSpin::default();
    loop {
        // A request that follows within the spin arrives without a sleep
        // and a wake-up on either side.
        let idle = std::time::Instant::now();
        let arrived = platform::spin_until_readable(requests, spin.budget());
        if !arrived && let Some(wait) = idler.take_wait() {
            let (arrived, _) = platform::wait_readable(requests, requests, Some(wait))?;
            if !arrived {
                idler.give_back(&mut executor);
            }
        }
        let frame = read_frame::<_, ToWorker>(requests, buf)?;
        spin.waited(idle.elapsed());
        let req = match frame {
            Some(ToWorker::Call(req)) => req,
            // Left behind by a guest stopped while it waited.
            Some(ToWorker::Answer { .. }) => continue,
            // Streams cross only to workers with lanes.
            Some(ToWorker::Items { .. } | ToWorker::End { .. } | ToWorker::Credit { .. }) => {
                continue;
            }
            None => return Ok(()),
        };
        let id = req.id;
        executor.run(req, |outcomes| {
            write_frame(replies, &FromWorker::Done { id, outcomes })
        })?;
        idler.called();
    }
}

/// Carries out a [`CompileOrder`]: this process
/// exists only to compile, so that the host never holds the compiler's
/// memory.
fn compile(init: &Init, order: &CompileOrder) -> Result<(), String> {
    let engine = init
        .engine
        .host_engine()
        .map_err(|e| format!("creating the engine: {e:#}"))?;
    let dir = cap_std::fs::Dir::open_ambient_dir(&order.dir, cap_std::ambient_authority())
        .map_err(|e| format!("opening {}: {e}", order.dir.display()))?;
    let started = std::time::Instant::now();
    crate::engine::compile_artifact(&engine, &order.component, &order.origin, &dir, &order.name)?;
    tracing::debug!(
        pid = std::process::id(),
        took_ms = started.elapsed().as_millis() as u64,
        "compiled in a child process"
    );
    Ok(())
}

/// Puts the second wall up around this process, while it still has one
/// thread, before any guest is loaded.
fn confine(sandbox: &Sandbox) -> io::Result<()> {
    let read: Vec<&Path> = sandbox.read.iter().map(PathBuf::as_path).collect();
    let dirs: Vec<(&Path, DirAccess)> = sandbox
        .dirs
        .iter()
        .map(|g| (g.host.as_path(), g.access))
        .collect();
    let pid = std::process::id();
    match platform::confine_worker(platform::Walls {
        read: &read,
        dirs: &dirs,
    })? {
        platform::Landlock::Full => tracing::debug!(pid, "worker confined"),
        platform::Landlock::Partial => tracing::warn!(
            pid,
            "worker confined, but this kernel's landlock enforces only some of the filesystem rules"
        ),
        platform::Landlock::None if cfg!(windows) => tracing::debug!(
            pid,
            "worker confined: it can start no process; its filesystem is guarded by wasmtime's \
             sandbox alone"
        ),
        platform::Landlock::None => tracing::warn!(
            pid,
            "worker confined without a filesystem wall ({}): its filesystem is guarded by \
             wasmtime's sandbox alone",
            platform::NO_FS_WALL
        ),
    }
    Ok(())
}

fn control_loop(
    control: platform::ControlWorker,
    interrupts: &Interrupts,
    lanes: Option<&lanes::Lanes>,
) {
    let mut buf = Vec::new();
    loop {
        match read_frame::<_, Control>(&control, &mut buf) {
            Ok(Some(Control::Cancel { id })) => {
                // A call side by side, or (failing that) the executor's.
                if !lanes.is_some_and(|l| l.cancel(id)) {
                    interrupts.cancel(id);
                }
            }
            // The host is gone or broke the protocol: nothing left to serve.
            Ok(None) | Err(_) => {
                let _ = io::stdout().flush();
                std::process::exit(0);
            }
        }
    }
}
