//! The scenarios of the process around the program: arguments,
//! environment, stdio, clocks, random and the network.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::transcript::{fnv, io_err, show, step, unit};

pub(crate) fn print_args(args: &[String]) {
    println!("argc: {}", args.len());
    for (i, a) in args.iter().enumerate() {
        println!("argv[{i}]: {a:?} ({} bytes)", a.len());
    }
    let os: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    println!("args_os agrees: {}", os == args);
}

pub(crate) fn env(names: &[String]) {
    for name in names {
        println!("var {name}: {:?}", std::env::var(name).ok());
    }
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    vars.sort();
    println!("vars: {}", vars.len());
    for (k, v) in vars {
        println!("  {k}={v:?}");
    }
    println!(
        "var_os unset: {:?}",
        std::env::var_os("WASITEST_SURELY_UNSET")
    );
}

pub(crate) fn stdin() {
    let mut input = Vec::new();
    step("read to end", show(io::stdin().read_to_end(&mut input)));
    println!("stdin fnv: {}", fnv(&input));
    println!(
        "lines: {}",
        input
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count()
    );
    let mut more = [0u8; 16];
    step("read after end", show(io::stdin().read(&mut more)));
    io::stdout().write_all(&input).expect("echo");
}

/// `n` bytes of a pattern, written in writes of sizes 1, 7, 4096, 65536
/// and 1 MiB in turn; its summary on stderr.
pub(crate) fn output(n: usize) {
    let data: Vec<u8> = (0..n)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8)
        .collect();
    let sizes = [1, 7, 4096, 65536, 1 << 20];
    let mut out = io::stdout().lock();
    let (mut at, mut writes) = (0, 0);
    while at < n {
        let len = sizes[writes % sizes.len()].min(n - at);
        out.write_all(&data[at..at + len]).expect("stdout write");
        at += len;
        writes += 1;
    }
    out.flush().expect("stdout flush");
    eprintln!("wrote {n} bytes in {writes} writes");
    eprintln!("fnv {}", fnv(&data));
}

/// As `output`, in 64 KiB writes, going on past a write that fails.
pub(crate) fn output_lossy(n: usize) {
    let chunk = vec![b'x'; 64 << 10];
    let mut out = io::stdout().lock();
    let (mut at, mut failed, mut first) = (0, 0, None);
    while at < n {
        let len = chunk.len().min(n - at);
        // Flushed each time, so that a failure is this write's, never
        // held back in std's buffer.
        if let Err(e) = out.write_all(&chunk[..len]).and_then(|()| out.flush()) {
            failed += 1;
            first.get_or_insert_with(|| io_err(&e));
        }
        at += len;
    }
    let flushed = show(out.flush());
    drop(out);
    eprintln!(
        "failed writes: {failed}, the first {}",
        first.unwrap_or_default()
    );
    eprintln!("flush: {flushed}");
}

pub(crate) fn stdio() {
    use wasi::cli::{terminal_stderr, terminal_stdin, terminal_stdout};
    println!(
        "terminal stdin: {}",
        terminal_stdin::get_terminal_stdin().is_some()
    );
    println!(
        "terminal stdout: {}",
        terminal_stdout::get_terminal_stdout().is_some()
    );
    println!(
        "terminal stderr: {}",
        terminal_stderr::get_terminal_stderr().is_some()
    );
    for i in 0..3 {
        println!("out {i}");
        eprintln!("err {i}");
    }
    // No newline at the end, and an empty write.
    print!("no newline");
    eprint!("");
    io::stdout().flush().expect("flush");
    step("\nstderr flush", show(io::stderr().flush()));
}

pub(crate) fn clocks(host_secs: u64) {
    use wasi::clocks::{monotonic_clock, wall_clock};
    let mut last = Instant::now();
    let mut ordered = true;
    for _ in 0..10_000 {
        let now = Instant::now();
        ordered &= now >= last;
        last = now;
    }
    println!("std monotonic non-decreasing: {ordered}");
    let mut last = monotonic_clock::now();
    let mut ordered = true;
    for _ in 0..10_000 {
        let now = monotonic_clock::now();
        ordered &= now >= last;
        last = now;
    }
    println!("wasi monotonic non-decreasing: {ordered}");
    println!(
        "monotonic resolution > 0: {}",
        monotonic_clock::resolution() > 0
    );
    let res = wall_clock::resolution();
    println!(
        "wall resolution > 0: {}",
        res.seconds > 0 || res.nanoseconds > 0
    );
    let wall = wall_clock::now();
    println!(
        "wall nanoseconds < 1e9: {}",
        wall.nanoseconds < 1_000_000_000
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch");
    println!("wall after 2020: {}", now.as_secs() > 1_577_836_800);
    println!(
        "wall within an hour of the host's: {}",
        now.as_secs().abs_diff(host_secs) < 3600
    );
    println!(
        "wasi and std wall clocks within a minute: {}",
        now.as_secs().abs_diff(wall.seconds) < 60
    );
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(20));
    println!(
        "sleep 20ms lasts at least 20ms: {}",
        start.elapsed() >= Duration::from_millis(20)
    );
    let before = monotonic_clock::now();
    monotonic_clock::subscribe_duration(5_000_000).block();
    println!(
        "subscribe-duration 5ms lasts at least 5ms: {}",
        monotonic_clock::now() - before >= 5_000_000
    );
    // wasmtime answers the first look at a deadline already passed with
    // "not ready", having yielded to its executor once.
    let past = monotonic_clock::subscribe_instant(before);
    println!(
        "an instant passed is ready at the first look: {}",
        past.ready()
    );
    println!(
        "an instant passed is ready at the second look: {}",
        past.ready()
    );
    monotonic_clock::subscribe_duration(0).block();
    println!("a zero duration returns: true");
}

pub(crate) fn random() {
    use wasi::random::{insecure, insecure_seed, random};
    for n in [0u64, 1, 16, 1000, 65536] {
        let bytes = random::get_random_bytes(n);
        let nonzero = n < 16 || bytes.iter().any(|b| *b != 0);
        println!(
            "random bytes {n}: length {}, not all zero {nonzero}",
            bytes.len()
        );
    }
    println!(
        "two random draws differ: {}",
        random::get_random_bytes(32) != random::get_random_bytes(32)
    );
    println!(
        "two random u64 differ: {}",
        random::get_random_u64() != random::get_random_u64()
    );
    for n in [0u64, 16, 4096] {
        let bytes = insecure::get_insecure_random_bytes(n);
        let nonzero = n < 16 || bytes.iter().any(|b| *b != 0);
        println!(
            "insecure bytes {n}: length {}, not all zero {nonzero}",
            bytes.len()
        );
    }
    println!(
        "two insecure draws differ: {}",
        insecure::get_insecure_random_bytes(32) != insecure::get_insecure_random_bytes(32)
    );
    println!(
        "insecure seed stable: {}",
        insecure_seed::insecure_seed() == insecure_seed::insecure_seed()
    );
    let a = std::collections::hash_map::RandomState::new();
    let b = std::collections::hash_map::RandomState::new();
    use std::hash::BuildHasher;
    println!("hash seeds differ: {}", a.hash_one(1u8) != b.hash_one(1u8));
}

pub(crate) fn net() {
    use std::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
    use wasi::sockets::network::IpAddressFamily;
    use wasi::sockets::{tcp_create_socket, udp_create_socket};
    step(
        "tcp bind 127.0.0.1:0",
        show(unit(TcpListener::bind("127.0.0.1:0"))),
    );
    step(
        "tcp connect 127.0.0.1:9",
        show(unit(TcpStream::connect("127.0.0.1:9"))),
    );
    step(
        "udp bind 127.0.0.1:0",
        show(unit(UdpSocket::bind("127.0.0.1:0"))),
    );
    step(
        "lookup localhost",
        show(("localhost", 80).to_socket_addrs().map(|a| a.count())),
    );
    let name = |e: wasi::sockets::network::ErrorCode| format!("Err({})", e.name());
    let tcp = tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4);
    step(
        "create-tcp-socket",
        tcp.as_ref()
            .map(|_| "Ok".to_string())
            .unwrap_or_else(|e| name(*e)),
    );
    let udp = udp_create_socket::create_udp_socket(IpAddressFamily::Ipv4);
    step(
        "create-udp-socket",
        udp.as_ref()
            .map(|_| "Ok".to_string())
            .unwrap_or_else(|e| name(*e)),
    );
}
