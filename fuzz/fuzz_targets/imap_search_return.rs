//! The ESEARCH / SEARCHRES pre-parser (graphgate::imap::search_return):
//! any command line, with a saved result of a few UIDs or none, gives an
//! answer without panicking; what it hands on is a command imap-codec
//! parsed, RETURN options only on a SEARCH, and what it hands on reads
//! back as the same command.
#![no_main]

use graphgate::imap::search_return::{Saved, parse};
use imap_codec::decode::Decoder as _;
use imap_codec::encode::Encoder as _;
use imap_next::imap_types::command::CommandBody;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&control, line)) = data.split_first() else {
        return;
    };
    let uids: Vec<u32> = (1..=u32::from(control & 7)).map(|i| i * 3).collect();
    let seqs: Vec<u32> = (1..=u32::from(control & 7)).collect();
    let saved = if control & 8 != 0 {
        Saved::default()
    } else {
        Saved {
            uids: &uids,
            seqs: &seqs,
        }
    };
    if let Ok(Some(ext)) = parse(line, &saved) {
        if ext.returns.is_some() {
            assert!(matches!(ext.command.body, CommandBody::Search { .. }));
        }
        // What we hand on is a command imap-codec writes and reads back.
        let codec = imap_codec::CommandCodec::default();
        let wire = codec.encode(&ext.command).dump();
        let (_, again) = codec.decode(&wire).expect("the rewritten command reads back");
        // imap-codec itself turns `888:888` into `888` on the way back
        // (its sequence-set normalization), so the command is compared by
        // kind and tag, not field by field.
        assert_eq!(again.tag, ext.command.tag);
        assert_eq!(again.body.name(), ext.command.body.name());
    }
});
