//! Feeds arbitrary bytes to every Graph JSON decoder of
//! `graphgate::graph::decode`: none may panic, whatever Graph (or a
//! man-in-the-middle) sends.
#![no_main]

use graphgate::graph::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode::decode_folder_page(data);
    let _ = decode::decode_folder(data);
    let _ = decode::decode_message_page(data);
    let _ = decode::decode_message(data);
    let _ = decode::decode_message_size(data);
    let _ = decode::decode_upload_session(data).map(|s| decode::next_expected_start(&s.next_expected_ranges));
    if let Ok(replies) = decode::decode_batch_response(data) {
        for reply in replies {
            let _ = reply.body_bytes();
            let _ = reply.retry_after();
            let _ = reply.error().remedy();
        }
    }
    let status = data.first().map_or(400, |b| 400 + u16::from(*b));
    let error = decode::decode_error(status, data);
    let _ = (error.remedy(), error.is_transient(), error.code());
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = decode::is_integer_property(text, 0x0E08);
    }
});
