//! Command components: programs with a `main`, run through
//! `Pool::command` with arguments and stdin, to an exit status and their
//! captured output. The guest is `guest/programs/cmd`, a plain Rust
//! binary built for `wasm32-wasip2`.

use std::time::Duration;

use crate::common::{job, pool, temp_dir};
use wasmpool::{DirAccess, ErrorKind, Pool, WorkerKind};

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("utf-8 output")
}

#[tokio::test]
async fn a_program_runs_to_its_exit_with_its_output() {
    let pool = pool(1);
    let cmd = job(wasmpool_guests::CMD);
    let out = pool.command(&cmd).output().await.unwrap();
    assert_eq!(out.status, 0);
    assert!(out.success());
    assert_eq!(text(&out.stdout), "hello\n");
    assert!(out.stderr.is_empty());
    assert!(out.usage.wall > Duration::ZERO);
    assert!(out.usage.cpu.is_some());
}

#[tokio::test]
async fn arguments_come_after_argv0_the_file_name() {
    let pool = pool(1);
    let cmd = job(wasmpool_guests::CMD);
    let out = pool
        .command(&cmd)
        .arg("args")
        .args(["-n", "3", "with space"])
        .output()
        .await
        .unwrap();
    assert_eq!(text(&out.stdout), "cmd.wasm\nargs\n-n\n3\nwith space\n");
    let out = pool
        .command(&cmd)
        .arg0("sorter")
        .arg("args")
        .output()
        .await
        .unwrap();
    assert_eq!(text(&out.stdout), "sorter\nargs\n");
}

#[tokio::test]
async fn stdin_is_read_to_its_end() {
    let pool = pool(1);
    let cmd = job(wasmpool_guests::CMD);
    // Larger than a frame's inline payload and than a pipe's buffer.
    let input: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    let out = pool
        .command(&cmd)
        .arg("cat")
        .stdin(input.clone())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status, 0);
    assert!(out.stdout == input, "stdout differs from stdin");
    // No stdin: end of file at once.
    let out = pool.command(&cmd).arg("cat").output().await.unwrap();
    assert_eq!((out.status, out.stdout.len()), (0, 0));
    let out = pool
        .command(&cmd)
        .arg("sort")
        .stdin(&b"30\n-2\n7\n"[..])
        .output()
        .await
        .unwrap();
    assert_eq!(text(&out.stdout), "-2\n7\n30\n");
}

#[tokio::test]
async fn an_exit_is_a_status_not_an_error() {
    let pool = pool(1);
    let cmd = job(wasmpool_guests::CMD);
    let out = pool
        .command(&cmd)
        .args(["exit", "0"])
        .output()
        .await
        .unwrap();
    assert_eq!((out.status, text(&out.stdout)), (0, "bye\n"));
    // WASI 0.2's exit carries only success or failure, as under
    // `wasmtime run`: exit(3) is 1.
    let out = pool
        .command(&cmd)
        .args(["exit", "3"])
        .output()
        .await
        .unwrap();
    assert_eq!((out.status, text(&out.stdout)), (1, "bye\n"));
    // `main` returning an error: status 1, its message on stderr.
    let out = pool.command(&cmd).arg("fail").output().await.unwrap();
    assert_eq!(out.status, 1);
    assert!(!out.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("failing on purpose"), "{stderr}");
    assert!(stderr.contains("it failed"), "{stderr}");
    // The worker that saw these exits serves the next run.
    let out = pool.command(&cmd).output().await.unwrap();
    assert_eq!(out.status, 0);
    let stats = pool.statistics();
    assert_eq!((stats.spawned, stats.crashed), (1, 0), "{stats:?}");
}

#[tokio::test]
async fn traps_and_timeouts_stay_errors() {
    let pool = pool(1);
    let cmd = job(wasmpool_guests::CMD);
    let e = pool.command(&cmd).arg("panic").output().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Trap, "{e:?}");
    assert_eq!(e.panic_message(), Some("the command panicked"));
    // What it wrote before the trap comes back with the error.
    assert_eq!(e.stdout(), Some(&b"before\n"[..]));
    let stderr = String::from_utf8_lossy(e.stderr().unwrap());
    assert!(stderr.contains("the command panicked"), "{stderr}");
    let e = pool
        .command(&cmd)
        .arg("spin")
        .timeout(Duration::from_millis(100))
        .output()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    let out = pool.command(&cmd).output().await.unwrap();
    assert_eq!(out.status, 0);
    assert_eq!(pool.statistics().spawned, 1);
}

#[tokio::test]
async fn a_program_sees_its_env_and_preopens_only() {
    let pool = pool(1);
    let cmd = job(wasmpool_guests::CMD);
    let out = pool
        .command(&cmd)
        .args(["env", "MODE"])
        .env("MODE", "judge")
        .output()
        .await
        .unwrap();
    assert_eq!((out.status, text(&out.stdout)), (0, "judge\n"));
    // Unset: the program exits 2, which WASI 0.2 carries as failure.
    let out = pool
        .command(&cmd)
        .args(["env", "HOME"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status, 1);

    let dir = temp_dir("command-preopen");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("b.txt"), "b").unwrap();
    std::fs::write(dir.join("a.txt"), "a").unwrap();
    let out = pool
        .command(&cmd)
        .args(["write", "/data/out.txt", "written"])
        .preopen_dir(&dir, "/data", DirAccess::ReadWrite)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status, 0, "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(dir.join("out.txt")).unwrap(),
        "written"
    );
    let out = pool
        .command(&cmd)
        .args(["ls", "/data"])
        .preopen_dir(&dir, "/data", DirAccess::ReadOnly)
        .output()
        .await
        .unwrap();
    assert_eq!(text(&out.stdout), "a.txt\nb.txt\nout.txt\n");
    // Without the preopen, nothing is there.
    let out = pool
        .command(&cmd)
        .args(["ls", "/data"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status, 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn thread_workers_run_programs_too() {
    let pool = Pool::builder()
        .workers(1)
        .worker_kind(WorkerKind::Thread)
        .build()
        .unwrap();
    let cmd = job(wasmpool_guests::CMD);
    let out = pool
        .command(&cmd)
        .arg("sort")
        .stdin(&b"2\n1\n"[..])
        .output()
        .await
        .unwrap();
    assert_eq!((out.status, text(&out.stdout)), (0, "1\n2\n"));
    let out = pool
        .command(&cmd)
        .args(["exit", "1"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status, 1);
    // Streams go through a thread worker's inbox instead of a pipe.
    let run = pool.command(&cmd).arg("lines").spawn();
    run.write_stdin(b"thread\n".to_vec()).await.unwrap();
    assert_eq!(run.read_stdout().await.unwrap().unwrap(), b"THREAD\n");
    run.close_stdin();
    assert_eq!(run.await.unwrap().status, 0);
}

#[tokio::test]
async fn a_component_that_is_not_a_command_is_refused_clearly() {
    let pool = pool(1);
    let fib = job(wasmpool_guests::FIB);
    let e = pool.command(&fib).output().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoSuchFunction, "{e:?}");
    assert!(e.to_string().contains("is not a command component"), "{e}");
}

#[tokio::test]
async fn a_wasi_p1_program_runs_as_the_same_program_built_for_p2() {
    // `cmd` built for wasm32-wasip1 is a core module; the job wraps it with
    // the preview1 adapter.
    let pool = pool(1);
    let p1 = job(wasmpool_guests::CMD_P1);
    let p2 = job(wasmpool_guests::CMD);
    let dir = temp_dir("command-p1");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("seen.txt"), "x").unwrap();
    let runs: &[(&[&str], &[u8])] = &[
        (&["args", "-n", "3", "ünï cødé"], b""),
        (&["sort"], b"5\n-1\n3\n"),
        (&["env", "MODE"], b""),
        (&["ls", "/data"], b""),
        (&["write", "/data/p.txt", "written"], b""),
        (&["fail"], b""),
        (&["exit", "0"], b""),
    ];
    for (args, stdin) in runs {
        let run = |job| {
            pool.command(job)
                .arg0("cmd")
                .args(args.iter().copied())
                .stdin(stdin.to_vec())
                .env("MODE", "judge")
                .preopen_dir(&dir, "/data", DirAccess::ReadWrite)
                .output()
        };
        let (a, b) = (run(&p1).await.unwrap(), run(&p2).await.unwrap());
        assert_eq!(
            (a.status, text(&a.stdout)),
            (b.status, text(&b.stdout)),
            "{args:?}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("p.txt")).unwrap(),
        "written"
    );
    // A trap is the same error, with the output before it.
    let e = pool.command(&p1).arg("panic").output().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Trap, "{e:?}");
    assert_eq!(e.stdout(), Some(&b"before\n"[..]));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_wasi_p1_exit_code_is_kept() {
    // WASI 0.1's proc_exit carries the whole code, as `wasmtime run` gives
    // it for a core module; 0.2's exit carries only success or failure.
    let pool = pool(1);
    let p1 = job(wasmpool_guests::CMD_P1);
    let out = pool
        .command(&p1)
        .args(["exit", "3"])
        .output()
        .await
        .unwrap();
    assert_eq!((out.status, text(&out.stdout)), (3, "bye\n"));
    let out = pool
        .command(&p1)
        .args(["env", "HOME"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status, 2);
}

#[tokio::test]
async fn a_spawned_command_streams_its_stdin_and_stdout() {
    let pool = pool(1);
    let cmd = job(wasmpool_guests::CMD);
    let run = pool.command(&cmd).arg("cat").spawn();
    // Far more chunks than the channel holds each way, written and read at
    // once, as through a pipe; and more than the capture limit, which
    // bounds captured output, not a stream.
    let chunks: Vec<Vec<u8>> = (0..340u32)
        .map(|i| (0..(64 << 10)).map(|j| ((i + j) % 251) as u8).collect())
        .collect();
    assert!(chunks.len() * (64 << 10) > wasmpool::CAPTURE_LIMIT);
    let expected: Vec<u8> = chunks.concat();
    let write = async {
        for chunk in &chunks {
            run.write_stdin(chunk.clone()).await.unwrap();
        }
        run.close_stdin();
    };
    let read = async {
        let mut got = Vec::new();
        while let Some(chunk) = run.read_stdout().await.unwrap() {
            got.extend(chunk);
        }
        got
    };
    let ((), got) = tokio::join!(write, read);
    assert!(
        got == expected,
        "{} bytes back of {}",
        got.len(),
        expected.len()
    );
    let out = run.await.unwrap();
    assert_eq!(out.status, 0);
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn a_spawned_program_is_talked_to_line_by_line() {
    let pool = pool(1);
    let cmd = job(wasmpool_guests::CMD);
    let run = pool.command(&cmd).arg("lines").spawn();
    // Each answer comes before the next question is written: nothing waits
    // for the end of the input.
    for word in ["one", "two", "three"] {
        run.write_stdin(format!("{word}\n")).await.unwrap();
        let answer = run.read_stdout().await.unwrap().unwrap();
        assert_eq!(text(&answer), format!("{}\n", word.to_uppercase()));
    }
    run.close_stdin();
    assert_eq!(run.read_stdout().await.unwrap(), None);
    assert_eq!(run.await.unwrap().status, 0);
}

#[tokio::test]
async fn a_spawned_program_waiting_on_stdin_is_cancelled_and_timed_out() {
    let pool = pool(1);
    let cmd = job(wasmpool_guests::CMD);
    // Cancelled while it waits for input that never comes.
    let run = pool.command(&cmd).arg("lines").spawn();
    run.write_stdin(b"partial\n".to_vec()).await.unwrap();
    assert_eq!(run.read_stdout().await.unwrap().unwrap(), b"PARTIAL\n");
    run.cancel();
    let e = run.await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled, "{e:?}");
    // A timeout reaches a guest blocked on stdin too.
    let run = pool
        .command(&cmd)
        .arg("cat")
        .timeout(Duration::from_millis(200))
        .spawn();
    let e = run.await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    // The worker was interrupted, not killed, and serves the next run.
    let out = pool
        .command(&cmd)
        .arg("cat")
        .stdin(&b"next"[..])
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout, b"next");
    let stats = pool.statistics();
    assert_eq!((stats.spawned, stats.crashed), (1, 0), "{stats:?}");
}

#[tokio::test]
async fn a_spawned_program_gets_its_preset_stdin_first_and_refuses_input_once_ended() {
    let pool = pool(1);
    let cmd = job(wasmpool_guests::CMD);
    let run = pool
        .command(&cmd)
        .arg("lines")
        .stdin(&b"first\n"[..])
        .spawn();
    assert_eq!(run.read_stdout().await.unwrap().unwrap(), b"FIRST\n");
    run.write_stdin(b"second\n".to_vec()).await.unwrap();
    assert_eq!(run.read_stdout().await.unwrap().unwrap(), b"SECOND\n");
    run.close_stdin();
    assert_eq!(run.read_stdout().await.unwrap(), None);
    // The program has ended: its stdin takes nothing more.
    let e = run.write_stdin(b"late\n".to_vec()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Closed, "{e:?}");
    assert_eq!(run.await.unwrap().status, 0);
}

#[tokio::test]
async fn a_spawned_program_whose_output_nobody_reads_waits_and_can_be_ended() {
    let pool = pool(1);
    let cmd = job(wasmpool_guests::CMD);
    // 5 MiB of output into a channel of 64 chunks that nobody reads: the
    // program waits, and its timeout ends it.
    let input = vec![b'x'; 5 << 20];
    let run = pool
        .command(&cmd)
        .arg("cat")
        .timeout(Duration::from_millis(300))
        .spawn();
    run.write_stdin(input.clone()).await.unwrap();
    run.close_stdin();
    let e = run.await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e:?}");
    // Dropped while it waits the same way: the run is cancelled.
    let run = pool.command(&cmd).arg("cat").spawn();
    run.write_stdin(input).await.unwrap();
    run.close_stdin();
    assert!(run.read_stdout().await.unwrap().is_some());
    drop(run);
    // Either way the worker was interrupted, not killed, and runs the next.
    let out = pool.command(&cmd).output().await.unwrap();
    assert_eq!(out.stdout, b"hello\n");
    let stats = pool.statistics();
    assert_eq!((stats.spawned, stats.crashed), (1, 0), "{stats:?}");
}

#[tokio::test]
async fn a_metered_run_reports_its_fuel() {
    let pool = Pool::builder().workers(1).fuel(u64::MAX).build().unwrap();
    let cmd = job(wasmpool_guests::CMD);
    let out = pool
        .command(&cmd)
        .arg("sort")
        .stdin(&b"3\n1\n2\n"[..])
        .output()
        .await
        .unwrap();
    assert_eq!(text(&out.stdout), "1\n2\n3\n");
    assert!(out.fuel_consumed.unwrap() > 1_000, "{out:?}");
    // Unmetered: none.
    let out = crate::common::pool(1).command(&cmd).output().await.unwrap();
    assert_eq!(out.fuel_consumed, None);
    pool.shutdown().await;
}
