//! Arbitrary bytes as a message: ENVELOPE, BODY, BODYSTRUCTURE and the
//! numbered part ranges never panic, ranges stay inside the message, and
//! the FETCH response carrying them re-parses with imap-codec.
#![no_main]

use std::num::NonZeroU32;

use graphgate::imap::bodystructure::{body_structure, part_ranges};
use graphgate::imap::envelope::envelope;
use imap_codec::encode::Encoder;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::fetch::MessageDataItem;
use imap_codec::imap_types::response::{Data, Response};
use imap_codec::ResponseCodec;
use libfuzzer_sys::fuzz_target;

static QUIET: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    // graphgate contains mail-parser's own panics (see mime::parse_message);
    // libfuzzer-sys's hook would abort on them before they are caught, so
    // this target keeps the default hook. A panic graphgate does not catch
    // still ends the run (the fuzz_target! wrapper aborts on it).
    QUIET.call_once(|| {
        let _ = std::panic::take_hook();
    });
    let items = vec![
        MessageDataItem::Envelope(envelope(data)),
        MessageDataItem::BodyStructure(body_structure(data, true)),
        MessageDataItem::Body(body_structure(data, false)),
    ];
    let response = Response::Data(Data::Fetch {
        seq: NonZeroU32::MIN,
        items: Vec1::try_from(items).unwrap(),
    });
    let wire = ResponseCodec::default().encode(&response).dump();
    let decoded = ResponseCodec::default().decode(&wire);
    assert!(decoded.is_ok(), "{:?}", String::from_utf8_lossy(&wire));
    for path in [&[1u32][..], &[2], &[1, 1], &[2, 1], &[1, 2, 3]] {
        if let Some((head, body)) = part_ranges(data, path) {
            assert!(head.start <= head.end && head.end <= data.len());
            assert!(body.start <= body.end && body.end <= data.len());
        }
    }
});
