//! Arbitrary client input, cut into arbitrary chunks, through the APPEND
//! literal divert (`graphgate::imap::divert`): it never panics, every byte
//! comes out exactly once and in order (putting each diverted literal back
//! in place of its placeholder gives the input), the pieces do not depend
//! on how the input was cut, and a diverted literal is only ever an
//! APPEND's, of the size it announced.
#![no_main]

use graphgate::imap::divert::{Collected, DIVERT_FROM, Divert};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    // Small announcements divert too when the fuzzer's limit is low: the
    // threshold is the real one, so literals are stretched by repetition.
    let mut input = Vec::new();
    for part in rest.split(|&b| b == 0xff) {
        input.extend_from_slice(part);
        if part.ends_with(b"}\r\n") {
            input.extend(std::iter::repeat_n(b'x', DIVERT_FROM as usize));
        }
    }
    let max = u32::from(cut) * 4096 + DIVERT_FROM;
    let mut whole = Collected::default();
    let mut one = Divert::new(max, "k");
    one.feed(&input, &mut whole);
    let mut chunked = Collected::default();
    let mut divert = Divert::new(max, "k");
    for chunk in input.chunks(usize::from(cut % 64) + 1) {
        divert.feed(chunk, &mut chunked);
    }
    assert_eq!(whole, chunked);
    for d in &whole.diverted {
        assert!(d.len >= DIVERT_FROM && d.len <= max);
        assert!(d.bytes.len() <= d.len as usize);
        assert_eq!(d.complete, d.bytes.len() == d.len as usize);
    }
    assert_eq!(one.held(), divert.held());
    if whole.diverted.iter().all(|d| d.complete) {
        // A line not yet complete is held back, nothing else.
        assert_eq!([whole.restored(), one.held().to_vec()].concat(), input);
    }
});
