//! The host reading what a compromised worker sends on its reply pipe
//! (`FromWorker` frames), and making of each frame what the host does: its
//! errors, results and host-function arguments. Nothing may panic, and a
//! short input must not make it allocate much.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wasmpool::fuzzing::host_reads_replies(data);
});
