//! A worker reading what a hostile host sends: its request pipe (`Init`,
//! then `ToWorker` frames) and its control socket (`Control` frames).
//! Nothing may panic, and a short input must not make it allocate much.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wasmpool::fuzzing::worker_reads_requests(data);
    wasmpool::fuzzing::worker_reads_control(data);
});
