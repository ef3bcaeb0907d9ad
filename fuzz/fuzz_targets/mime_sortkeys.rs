//! SORT and THREAD keys (graphgate::mime::imap::sortkeys): any header
//! block gives keys without panicking, in bounded work; the base subject
//! is a fixed point (RFC 5256 §2.1 applied to a base subject changes
//! nothing) and never longer than the subject it came from.
#![no_main]

use graphgate::mime::imap::sortkeys::{base_subject, sort_keys};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let keys = sort_keys(data);
    assert!(keys.references.len() <= 1_000);
    if let Ok(text) = std::str::from_utf8(data) {
        let (base, _) = base_subject(text);
        assert!(base.len() <= text.len());
        let (again, _) = base_subject(&base);
        assert_eq!(again, base, "{text:?}");
    }
});
