//! The large send path's split on arbitrary bytes: never panics, the draft
//! stays within its bound, attachment ranges lie inside the input and in
//! order, and a base64 attachment's announced size is what decoding its
//! range gives (the lenient decoding the upload streams).
#![no_main]

use graphgate::mime::split::{BodyEncoding, decode_base64_lenient, plan_split};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(plan) = plan_split(data, b"Bcc: x@example.com\r\n", 64 * 1024) else {
        return;
    };
    assert!(plan.draft_mime.len() <= 64 * 1024);
    let mut last = 0u64;
    for part in &plan.attachments {
        assert!(part.body_start <= part.body_end);
        assert!(part.body_end as usize <= data.len());
        assert!(part.body_start >= last);
        last = part.body_end;
        let body = &data[part.body_start as usize..part.body_end as usize];
        match part.encoding {
            BodyEncoding::Identity => assert_eq!(part.decoded_size, body.len() as u64),
            BodyEncoding::Base64 => {
                assert_eq!(part.decoded_size, decode_base64_lenient(body).len() as u64);
            }
        }
    }
});
