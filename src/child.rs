//! The worker process: serves calls from its host, one at a time.
//!
//! Threads of a worker:
//!
//! - the main thread reads [`ToWorker`] frames from the request pipe, runs
//!   each call on its [`Executor`] and writes the reply to the reply pipe;
//! - `wasmpool-control` reads [`Control`] frames. A cancel interrupts the
//!   call (see [`Interrupts`]). When the control socket closes, the host
//!   is gone and the process exits.
//! - `wasmpool-timer`, the executor's, enforces a call's timeout.

use std::io::{self, Write as _};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use crate::exec::{Executor, Interrupts};
use crate::imports::Answers;
use crate::protocol::{
    Control, FromWorker, Init, PROTOCOL_VERSION, ToWorker, read_frame, write_frame,
};

/// Runs the worker; returns the process exit code.
pub(crate) fn run() -> i32 {
    match serve() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("wasmpool worker {}: {e}", std::process::id());
            70
        }
    }
}

fn serve() -> io::Result<()> {
    crate::platform::keep_freed_memory();
    let crate::platform::Channels {
        requests,
        control,
        replies,
    } = crate::platform::inherited_channels()?;
    let mut buf = Vec::new();
    let Some(init) = read_frame::<_, Init>(&requests, &mut buf)? else {
        return Ok(());
    };
    let fail = |message: String| {
        let _ = write_frame(
            &replies,
            &FromWorker::Failed {
                message: message.clone(),
            },
        );
        io::Error::other(message)
    };
    if init.version != PROTOCOL_VERSION {
        return Err(fail(format!(
            "protocol version {} from the host, {} here: the worker program is a different build",
            init.version, PROTOCOL_VERSION
        )));
    }
    let requests = Arc::new(requests);
    let answers = Arc::new(Answers::Pipe {
        requests: requests.clone(),
        wake: crate::platform::WakePipe::new()?,
    });
    // Only this thread writes replies: the executor's operations go out
    // while it runs a call, its outcomes after.
    let ops = replies.try_clone()?;
    let send: crate::sync::OpSender =
        Box::new(move |seq, op| write_frame(&ops, &FromWorker::Sync { seq, op }));
    let mut executor =
        Executor::new(&init.engine, init.reuse_instances, answers, send).map_err(fail)?;
    write_frame(
        &replies,
        &FromWorker::Ready {
            version: PROTOCOL_VERSION,
            pid: std::process::id(),
        },
    )?;
    let interrupts = executor.interrupts();
    std::thread::Builder::new()
        .name("wasmpool-control".into())
        .spawn(move || control_loop(control, &interrupts))?;

    loop {
        // A request that follows within the spin arrives without a sleep
        // and a wake-up on either side.
        crate::platform::spin_until_readable(&*requests, crate::exec::SPIN);
        let req = match read_frame::<_, ToWorker>(&*requests, &mut buf)? {
            Some(ToWorker::Call(req)) => req,
            // Left behind by a guest stopped while it waited.
            Some(ToWorker::Answer { .. }) => continue,
            None => return Ok(()),
        };
        let id = req.id;
        executor.run(req, |outcomes| {
            write_frame(&replies, &FromWorker::Done { id, outcomes })
        })?;
    }
}

fn control_loop(control: UnixStream, interrupts: &Interrupts) {
    let mut buf = Vec::new();
    loop {
        match read_frame::<_, Control>(&control, &mut buf) {
            Ok(Some(Control::Cancel { id })) => interrupts.cancel(id),
            // The host is gone or broke the protocol: nothing left to serve.
            Ok(None) | Err(_) => {
                let _ = io::stdout().flush();
                std::process::exit(0);
            }
        }
    }
}
