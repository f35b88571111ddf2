//! Large byte and string payloads, which take wasmtime's typed call path,
//! and what happens when their arguments do not fit.

use crate::common::{job, pool};
use serde_bytes::ByteBuf;
use wasmpool::ErrorKind;

#[tokio::test]
async fn a_mebibyte_crosses_both_ways_intact() {
    let pool = pool(1);
    let echo = job(wasmpool_guests::ECHO);
    let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 7 + i / 251) as u8).collect();
    for _ in 0..3 {
        let back: ByteBuf = pool
            .run(&echo, "echo-bytes", (ByteBuf::from(data.clone()),))
            .await
            .unwrap();
        assert!(
            back.as_slice() == data.as_slice(),
            "the bytes came back changed"
        );
    }
    let len: u64 = pool
        .run(&echo, "byte-len", (ByteBuf::from(data.clone()),))
        .await
        .unwrap();
    assert_eq!(len, 1 << 20);
    // A `Vec<u8>` without serde_bytes travels as an array of integers; it
    // takes the dynamic path and arrives the same.
    let small: Vec<u8> = data[..1000].to_vec();
    let back: Vec<u8> = pool
        .run(&echo, "echo-bytes", (small.clone(),))
        .await
        .unwrap();
    assert_eq!(back, small);
}

#[tokio::test]
async fn long_unicode_strings_cross_intact() {
    let pool = pool(1);
    let echo = job(wasmpool_guests::ECHO);
    let s: String = "añ€𝄞 ".repeat(50_000);
    let back: String = pool.run(&echo, "echo-string", (&s,)).await.unwrap();
    assert_eq!(back, s);
}

#[tokio::test]
async fn a_payload_of_the_wrong_type_is_refused_with_its_path() {
    let pool = pool(1);
    let echo = job(wasmpool_guests::ECHO);
    let e = pool
        .run::<ByteBuf>(&echo, "echo-bytes", ("not bytes",))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ArgumentMismatch, "{e:?}");
    assert!(e.to_string().contains("args[0]"), "{e}");
    let e = pool
        .run::<String>(&echo, "echo-string", (ByteBuf::from(vec![1, 2]),))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ArgumentMismatch, "{e:?}");
    // The worker is fine afterwards.
    let back: String = pool.run(&echo, "echo-string", ("ok",)).await.unwrap();
    assert_eq!(back, "ok");
}
