//! One wasmtime `Config` for host and worker, so that the artifacts the host
//! compiles always load in the workers, and the one rule both use for which
//! imports wasmpool itself provides.

use serde::{Deserialize, Serialize};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Default size of the wasm stack: 1 MiB.
pub(crate) const DEFAULT_MAX_WASM_STACK: usize = 1 << 20;

/// How many freed instance slots a worker decommits at once.
const DECOMMIT_BATCH: usize = 8;

/// What a worker's engine is made for beyond the pool's settings: a job is
/// compiled for one kind, and runs only on workers of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct EngineKind {
    /// Guests' initial memory is mapped copy-on-write
    /// ([`crate::PoolBuilder::copy_on_write_memory`]).
    pub(crate) memory_cow: bool,
    /// The component model's async (`async func`, streams, futures, the
    /// task builtins): for the components that use it
    /// ([`crate::Job`]'s `is_async`). Off otherwise, since with it every
    /// call goes through wasmtime's concurrent path, about a fifth slower
    /// for a small call.
    pub(crate) concurrent: bool,
}

/// Everything that shapes an engine. Sent to each worker in the `Init` frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct EngineSettings {
    pub(crate) max_wasm_stack: usize,
    /// Fuel metering: deterministic, but about 20% slower, so only when a
    /// pool asks for it.
    pub(crate) consume_fuel: bool,
    /// The job's kind of engine.
    pub(crate) kind: EngineKind,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            max_wasm_stack: DEFAULT_MAX_WASM_STACK,
            consume_fuel: false,
            kind: EngineKind::default(),
        }
    }
}

impl EngineSettings {
    /// The `Config` shared by host and worker. Only the instance allocator
    /// differs: a worker runs one call at a time, so it gets a small pooling
    /// allocator; the host only compiles and never instantiates.
    fn config(&self, pooling: bool) -> Config {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.consume_fuel(self.consume_fuel);
        config.wasm_component_model(true);
        config.max_wasm_stack(self.max_wasm_stack);
        // The fiber stack must hold the wasm stack plus host frames.
        config.async_stack_size(self.max_wasm_stack + (1 << 20));
        config.wasm_backtrace_max_frames(std::num::NonZeroUsize::new(32));
        config.parallel_compilation(!pooling);
        // With copy-on-write memory images, instantiating maps the data
        // segments instead of copying them: much faster for guests with
        // megabytes of data. But the guest's first write to each of those
        // pages is a copy-on-write fault, which flushes the TLB of every
        // core the process runs on by inter-processor interrupt: for a
        // small guest, most of a call's cost. Off unless a pool asks.
        config.memory_init_cow(self.kind.memory_cow);
        config.concurrency_support(self.kind.concurrent);
        if pooling {
            let mut p = PoolingAllocationConfig::new();
            // One call at a time, but slots are only address space: with
            // spare ones, freed slots are decommitted in batches, one
            // `madvise` (and one TLB shoot-down across cores) per batch
            // instead of per call.
            p.total_component_instances(DECOMMIT_BATCH as u32 * 2);
            p.total_stacks(DECOMMIT_BATCH as u32 * 2);
            p.decommit_batch_size(DECOMMIT_BATCH);
            // Large guests (componentize-py, componentize-js) hold dozens of
            // core instances, memories and tables.
            p.max_core_instances_per_component(64);
            p.total_core_instances(128);
            p.max_memories_per_component(16);
            p.total_memories(64);
            p.max_tables_per_component(32);
            p.total_tables(128);
            p.table_elements(1 << 20);
            p.max_core_instance_size(16 << 20);
            p.max_component_instance_size(16 << 20);
            p.max_unused_warm_slots(4);
            // A freed instance's memory is reset in place, the pages it
            // wrote and no more (found by `PAGEMAP_SCAN`, Linux 6.7), and
            // stays resident up to `KEEP_RESIDENT`: the next call takes no
            // page faults for them. An idle worker gives back what this
            // keeps (see `crate::idle`).
            p.pagemap_scan(wasmtime::Enabled::Auto);
            p.linear_memory_keep_resident(crate::idle::KEEP_RESIDENT);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(p));
        }
        config
    }

    /// The engine a host uses to compile components and read their types.
    pub(crate) fn host_engine(&self) -> wasmtime::Result<Engine> {
        Engine::new(&self.config(false))
    }

    /// The engine of a worker process.
    pub(crate) fn worker_engine(&self) -> wasmtime::Result<Engine> {
        Engine::new(&self.config(true))
    }
}

/// Whether wasmpool itself provides the import `name` (an instance or a
/// world-level function), so that no host function is needed for it.
pub(crate) fn is_builtin_import(name: &str) -> bool {
    let wasi = name.starts_with("wasi:");
    #[cfg(not(feature = "wasi-http"))]
    let wasi = wasi && !name.starts_with("wasi:http/");
    wasi || name.starts_with("wasmpool:sync/")
}

/// Compiles a component with the host's engine and writes its artifact to
/// `dir/name` atomically. Blocking, and as hungry for memory as Cranelift
/// is: the host runs it in a child process (see [`crate::wire::CompileOrder`]).
pub(crate) fn compile_artifact(
    engine: &Engine,
    component: &[u8],
    origin: &str,
    dir: &cap_std::fs::Dir,
    name: &str,
) -> Result<(), String> {
    let compiled = wasmtime::component::Component::new(engine, component)
        .map_err(|e| format!("{origin} failed to compile: {e:#}"))?;
    let bytes = compiled
        .serialize()
        .map_err(|e| format!("{origin} could not be serialized: {e:#}"))?;
    store_artifact(dir, name, &bytes).map_err(|e| format!("writing artifact {name}: {e}"))
}

/// Writes an artifact atomically: a temporary file, then a rename, both
/// inside `dir`, so that a reader never sees half of one.
pub(crate) fn store_artifact(
    dir: &cap_std::fs::Dir,
    name: &str,
    bytes: &[u8],
) -> std::io::Result<()> {
    let tmp = format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        crate::platform::unique()
    );
    dir.write(&tmp, bytes)
        .and_then(|()| match dir.rename(&tmp, dir, name) {
            // Windows cannot replace a file that another process has open
            // or mapped ("Access denied"): when a worker stored the same
            // artifact first (its name is its hash) and loads it now,
            // that one serves.
            Err(_) if dir.is_file(name) => {
                let _ = dir.remove_file(&tmp);
                Ok(())
            }
            r => r,
        })
        .inspect_err(|_| {
            let _ = dir.remove_file(&tmp);
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_imports_are_wasi_and_sync() {
        assert!(is_builtin_import("wasi:cli/environment@0.2.0"));
        assert!(is_builtin_import("wasmpool:sync/primitives@0.1.0"));
        assert!(!is_builtin_import("my:app/api@1.0.0"));
        assert!(!is_builtin_import("log"));
    }
}
