//! One function for each kind of fault a guest can raise.

wit_bindgen::generate!({ path: "../../../wit/jobs", world: "faults" });

struct Faults;

/// Recursion that keeps a value live across the call, so that it is neither
/// a loop nor a tail call, and uses the wasm stack rather than the shadow
/// stack in linear memory.
#[inline(never)]
fn deep(n: u64) -> u64 {
    if n == 0 {
        return 1;
    }
    let below = deep(n - 1);
    (below ^ (below >> 7)).wrapping_mul(n | 1)
}

impl Guest for Faults {
    fn flood(bytes: u64) -> u64 {
        let line = [b'x'; 63];
        let mut out = std::io::stdout().lock();
        let mut written = 0u64;
        while written < bytes {
            let n = (bytes - written).min(64) as usize;
            let mut chunk = line[..n - 1].to_vec();
            chunk.push(b'\n');
            std::io::Write::write_all(&mut out, &chunk)
                .unwrap_or_else(|e| panic!("writing to stdout: {e}"));
            written += n as u64;
        }
        std::io::Write::flush(&mut out).unwrap_or_else(|e| panic!("flushing stdout: {e}"));
        written
    }

    fn unreachable() {
        core::arch::wasm32::unreachable()
    }

    fn divide(a: i32, b: i32) -> i32 {
        // SAFETY: deliberately false when b = 0. Removing Rust's zero check
        // leaves the bare `i32.div_s`, which traps with "integer divide by
        // zero"; that trap is what this guest exists to raise.
        unsafe { core::hint::assert_unchecked(b != 0 && !(a == i32::MIN && b == -1)) };
        a / b
    }

    fn recurse(depth: u64) -> u64 {
        deep(depth)
    }

    fn out_of_bounds() -> u64 {
        // SAFETY: deliberately invalid. The address is past any linear
        // memory a 32-bit guest can have, so the load traps.
        unsafe { core::ptr::read_volatile(0xffff_fff0usize as *const u64) }
    }

    fn panic(message: String) {
        panic!("{message}");
    }

    fn alloc(bytes: u64) -> u64 {
        let mut v = vec![0u8; bytes as usize];
        // Touch every page so the memory is really used.
        for i in (0..v.len()).step_by(4096) {
            v[i] = 1;
        }
        v.iter().map(|&b| u64::from(b)).sum()
    }

    fn spin_forever() {
        let mut x: u64 = 0;
        loop {
            // SAFETY: `x` is a live local; the volatile access keeps the loop.
            unsafe { core::ptr::write_volatile(&mut x, x.wrapping_add(1)) };
        }
    }

    fn sleep(millis: u64) {
        std::thread::sleep(std::time::Duration::from_millis(millis));
    }
}

export!(Faults);
