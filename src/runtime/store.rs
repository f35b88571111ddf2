//! The store of one call: its WASI sandbox (nothing but what the call's
//! options grant), `wasi:http` (every request denied, or sent to the host
//! to check and make when the call may make some), its `wasi:config`, the
//! memory limit, and the guest's way to the registry.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, ResourceLimiter, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};
#[cfg(feature = "wasi-http")]
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

use super::port::Port;
use super::stdio::{Fd, GuestOutput};
use crate::error::{ErrorKind, Limit};
use crate::options::{DirAccess, Stdio};
use crate::wire::{CallOptions, WireError};

/// How much of a call's stderr is kept to find a panic message.
const STDERR_TAIL: usize = 8 * 1024;

/// The per-call store data: WASI, wasi:http (outgoing requests denied, or
/// forwarded to the host) and the limits.
pub(crate) struct State {
    wasi: WasiCtx,
    #[cfg(feature = "wasi-http")]
    http: WasiHttpCtx,
    #[cfg(feature = "wasi-http")]
    hooks: super::http::Outgoing,
    table: ResourceTable,
    /// What `wasi:config/store` answers: the call's config.
    config: WasiConfigVariables,
    pub(super) limits: Limits,
    pub(super) port: Arc<Port>,
}

impl State {
    /// Gives the guest the call's config, in place of the last call's.
    /// The config is set per call, not per store, so that an instance made
    /// ahead serves a call whatever its config.
    pub(super) fn set_config(&mut self, config: &BTreeMap<String, String>) {
        self.config = config
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
    }

    /// `wasi:config/store`'s view of the store.
    pub(super) fn config(&mut self) -> WasiConfig<'_> {
        WasiConfig::from(&self.config)
    }
}

thread_local! {
    /// The largest size a linear memory of this thread's stores has grown
    /// to since [`take_grown`]. Stores run on their executor's thread.
    static GROWN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The largest size a linear memory of this thread's stores grew to while
/// its guest ran, since the last call of this.
pub(super) fn take_grown() -> usize {
    GROWN.with(|g| g.replace(0))
}

/// Enforces a call's memory limit and remembers that it did; keeps the
/// store's linear memory size, and its peak, for the call's usage.
pub(super) struct Limits {
    max_memory: Option<u64>,
    /// The limit the call ran into, if any.
    pub(super) hit: Option<Limit>,
    /// The linear memory of the store's instances, summed over their
    /// memories, in bytes: their initial sizes and every growth known to
    /// have happened.
    memory: usize,
    /// The last growth granted, in bytes, until it is known to have
    /// happened: wasmtime may still refuse it after the limiter allowed it
    /// (past the memory's own maximum), and then says so in
    /// `memory_grow_failed`.
    granted: usize,
    /// The most `memory` has been since [`Limits::begin_call`].
    peak: usize,
}

impl Limits {
    /// Starts a call's peak at the memory its instance already has (its
    /// initial memory, when it was made ahead, or all a reused instance
    /// grew to).
    pub(super) fn begin_call(&mut self) {
        self.hit = None;
        self.settle();
        self.peak = self.memory;
    }

    /// The most linear memory the store held at once since
    /// [`Limits::begin_call`], in bytes.
    pub(super) fn peak(&mut self) -> u64 {
        self.settle();
        self.peak as u64
    }

    /// Counts the last growth granted: no failure followed it.
    fn settle(&mut self) {
        self.memory += std::mem::take(&mut self.granted);
        self.peak = self.peak.max(self.memory);
    }
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Growth while the guest runs, not its initial memory.
        if current > 0 {
            GROWN.with(|g| g.set(g.get().max(desired)));
        }
        match self.max_memory {
            Some(max) if desired as u64 > max => {
                self.hit = Some(Limit::Memory);
                Ok(false)
            }
            _ => {
                self.settle();
                self.granted = desired.saturating_sub(current);
                Ok(true)
            }
        }
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.granted = 0;
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

#[cfg(feature = "wasi-http")]
impl WasiHttpView for State {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            hooks: &mut self.hooks,
            table: &mut self.table,
            ctx: &mut self.http,
        }
    }
}

pub(super) type NewStore = (Store<State>, GuestOutput, GuestOutput, Arc<Mutex<Vec<u8>>>);

/// A store whose WASI context grants what `options` grants, and nothing
/// else.
pub(super) fn new_store(
    engine: &Engine,
    port: &Arc<Port>,
    options: &CallOptions,
) -> Result<NewStore, WireError> {
    let tail = Arc::new(Mutex::new(Vec::new()));
    let stdout = if options.stdio_channel {
        // Streamed, not captured: bounded only by `max_output_bytes`, as
        // inherited output is.
        GuestOutput::new(Fd::Stdout, Stdio::Inherit, options.max_output).into_channel(port.clone())
    } else {
        GuestOutput::new(Fd::Stdout, options.stdout, options.max_output)
    };
    let stderr = GuestOutput::new(Fd::Stderr, options.stderr, options.max_output)
        .with_tail(tail.clone(), STDERR_TAIL);
    let wasi = wasi_ctx(options, port, &stdout, &stderr)?;
    let mut store = Store::new(
        engine,
        State {
            wasi,
            #[cfg(feature = "wasi-http")]
            http: WasiHttpCtx::new(),
            #[cfg(feature = "wasi-http")]
            hooks: super::http::Outgoing::new(port, !options.http.is_empty()),
            table: ResourceTable::new(),
            config: WasiConfigVariables::new(),
            limits: Limits {
                max_memory: options.max_memory,
                hit: None,
                memory: 0,
                granted: 0,
                peak: 0,
            },
            port: port.clone(),
        },
    );
    store.limiter(|s| &mut s.limits);
    // What a result may cost the worker to lift out of the guest: bytes
    // through the typed API, about 32 bytes per element through the
    // dynamic one. wasmtime's default, 128 MiB, would fail a few MiB of
    // nested byte lists; a result must fit a 1 GiB frame anyway.
    store.set_hostcall_fuel(HOSTCALL_FUEL);
    Ok((store, stdout, stderr, tail))
}

/// The most a call's results may cost to lift, in wasmtime's hostcall
/// fuel: 4 GiB.
const HOSTCALL_FUEL: usize = 4 << 30;

/// The WASI context of one call: nothing but what `options` grants.
fn wasi_ctx(
    options: &CallOptions,
    port: &Arc<Port>,
    stdout: &GuestOutput,
    stderr: &GuestOutput,
) -> Result<WasiCtx, WireError> {
    let mut b = wasmtime_wasi::WasiCtxBuilder::new();
    b.stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    for (k, v) in &options.env {
        b.env(k, v);
    }
    b.args(&options.args);
    if options.stdio_channel {
        let first = options
            .stdin
            .as_ref()
            .map(|s| s.0.clone())
            .unwrap_or_default();
        b.stdin(super::stdio::ChannelStdin::new(port.clone(), first));
    } else if let Some(stdin) = &options.stdin {
        b.stdin(wasmtime_wasi::p2::pipe::MemoryInputPipe::new(
            stdin.0.clone(),
        ));
    }
    if let Some(seed) = options.deterministic {
        b.secure_random(wasmtime_wasi::Deterministic::new(seeded_bytes(seed)))
            .insecure_random(wasmtime_wasi::Deterministic::new(seeded_bytes(!seed)))
            .insecure_random_seed(u128::from(seed))
            .wall_clock(FixedWallClock)
            .monotonic_clock(SteppingClock(std::sync::atomic::AtomicU64::new(0)));
    }
    for p in &options.preopens {
        let perms = match p.access {
            DirAccess::ReadOnly => wasmtime_wasi::FsPerms::ReadOnly,
            DirAccess::ReadWrite => wasmtime_wasi::FsPerms::ReadWrite,
        };
        b.preopened_dir(&p.host, &p.guest, perms).map_err(|e| {
            WireError::new(
                ErrorKind::Io,
                format!("preopening {} as {}: {e:#}", p.host.display(), p.guest),
            )
        })?;
    }
    Ok(b.build())
}

/// 4 KiB of bytes from a seed (splitmix64), cycled by `Deterministic`.
fn seeded_bytes(seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..512)
        .flat_map(|_| {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)).to_le_bytes()
        })
        .collect()
}

/// A wall clock stopped at 2023-11-14T22:13:20Z.
struct FixedWallClock;

impl wasmtime_wasi::HostWallClock for FixedWallClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(1)
    }
    fn now(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1_700_000_000)
    }
}

/// A monotonic clock that advances 1 µs each time it is read.
struct SteppingClock(std::sync::atomic::AtomicU64);

impl wasmtime_wasi::HostMonotonicClock for SteppingClock {
    fn resolution(&self) -> u64 {
        1_000
    }
    fn now(&self) -> u64 {
        self.0.fetch_add(1_000, Ordering::Relaxed)
    }
}
