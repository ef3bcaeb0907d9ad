//! The large send path's split on arbitrary bytes: never panics, the draft
//! stays within its bound, attachment ranges lie inside the input and in
//! order, and a base64 attachment's announced size is what decoding its
//! range gives.
#![no_main]

use base64::Engine;
use graphgate::mime::split::{BodyEncoding, plan_split};
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
                let clean: Vec<u8> = body
                    .iter()
                    .copied()
                    .filter(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
                    .collect();
                if let Ok(decoded) =
                    base64::engine::general_purpose::STANDARD_NO_PAD.decode(&clean)
                {
                    let pads = body.iter().filter(|&&b| b == b'=').count();
                    // Padding in the middle of a body is malformed; only
                    // check well-formed bodies.
                    if pads <= 2 {
                        assert_eq!(part.decoded_size, decoded.len() as u64);
                    }
                }
            }
        }
    }
});
