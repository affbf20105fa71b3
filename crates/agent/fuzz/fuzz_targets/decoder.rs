//! The agent line decoder: never panics, and every call returns a frame,
//! needs more bytes, or consumes input (no endless error loop, issue 8.1).
//! The first byte picks the chunk size the rest is pushed in.
#![no_main]
use libfuzzer_sys::fuzz_target;
use umlkit_agent::Decoder;

fuzz_target!(|data: &[u8]| {
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let mut d = Decoder::new();
    for chunk in rest.chunks(step) {
        d.push(chunk);
        let start = d.pending();
        let mut calls = 0;
        loop {
            let before = d.pending();
            match d.next_frame() {
                Ok(None) => break,
                Ok(Some(f)) => {
                    assert!(d.pending() < before);
                    let _ = f.code();
                }
                Err(_) => assert!(d.pending() < before, "error without progress"),
            }
            calls += 1;
            assert!(calls <= start);
        }
    }
});
