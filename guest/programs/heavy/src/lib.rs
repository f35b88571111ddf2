//! A guest with a large initial memory: 4 MiB of data segments, as
//! componentize-py and componentize-js guests carry tens of megabytes.

wit_bindgen::generate!({ path: "../../../wit/jobs", world: "heavy" });

/// Non-zero, so that it is data in the initial memory image, not zeroed
/// memory.
static TABLE: [u8; 4 << 20] = [7; 4 << 20];

struct Heavy;

impl Guest for Heavy {
    fn sum_table(start: u32, len: u32) -> u64 {
        let table = std::hint::black_box(&TABLE);
        let start = (start as usize).min(table.len());
        let end = start.saturating_add(len as usize).min(table.len());
        table[start..end].iter().map(|&b| u64::from(b)).sum()
    }
}

export!(Heavy);
