//! Arbitrary bytes as a message through the IMAP MIME core
//! (`graphgate::mime::imap`): ENVELOPE, BODYSTRUCTURE, BODY and sections
//! never panic; the FETCH response carrying them re-parses with
//! imap-codec to the same wire form; BODY[HEADER] + BODY[TEXT] is the
//! message; every size in BODYSTRUCTURE is the length of that part's
//! BODY[n] and every line count its number of line ends. The structure
//! the warm FETCH path keeps (`graphgate::imap::structures`) reads back,
//! through imap-codec, to the same response (its media types are written
//! in the message's case), and reading arbitrary bytes as one never panics.
#![no_main]

use std::num::NonZeroU32;

use graphgate::imap::structures;
use graphgate::mime::imap::{Message, partial, section};
use imap_codec::ResponseCodec;
use imap_codec::decode::Decoder;
use imap_codec::encode::Encoder;
use imap_codec::imap_types::body::{BodyStructure, SpecificFields};
use imap_codec::imap_types::core::{AString, NString, Vec1};
use imap_codec::imap_types::fetch::{MessageDataItem, Part, Section};
use imap_codec::imap_types::response::{Data, Response};
use libfuzzer_sys::fuzz_target;

fn part(path: &[u32]) -> Part {
    Part(
        Vec1::try_from(
            path.iter()
                .map(|&n| NonZeroU32::new(n).unwrap())
                .collect::<Vec<_>>(),
        )
        .unwrap(),
    )
}

/// Single parts with their part numbers, sizes and line counts.
fn leaves(body: &BodyStructure<'_>, path: Vec<u32>, out: &mut Vec<(Vec<u32>, u32, Option<u32>)>) {
    match body {
        BodyStructure::Multi { bodies, .. } => {
            for (i, b) in bodies.as_ref().iter().enumerate() {
                let mut p = path.clone();
                p.push(i as u32 + 1);
                leaves(b, p, out);
            }
        }
        BodyStructure::Single { body, .. } => {
            let path = if path.is_empty() { vec![1] } else { path };
            let lines = match &body.specific {
                SpecificFields::Text {
                    number_of_lines, ..
                } => Some(*number_of_lines),
                SpecificFields::Message {
                    number_of_lines,
                    body_structure,
                    ..
                } => {
                    let mut inner = path.clone();
                    if !matches!(**body_structure, BodyStructure::Multi { .. }) {
                        inner.push(1);
                    }
                    leaves(body_structure, inner, out);
                    Some(*number_of_lines)
                }
                SpecificFields::Basic { .. } => None,
            };
            out.push((path, body.basic.size, lines));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let m = Message::new(data);
    let structure = m.body_structure();
    let names = Vec1::try_from(vec![
        AString::try_from("subject").unwrap(),
        AString::try_from("to").unwrap(),
    ])
    .unwrap();
    let mut items = vec![
        MessageDataItem::Envelope(m.envelope()),
        MessageDataItem::BodyStructure(structure.clone()),
        MessageDataItem::Body(m.body()),
        MessageDataItem::Rfc822Size(m.size()),
    ];
    for s in [
        Section::Header(None),
        Section::Text(None),
        Section::HeaderFields(None, names.clone()),
        Section::HeaderFieldsNot(Some(part(&[1])), names.clone()),
        Section::Mime(part(&[1])),
        Section::Part(part(&[2, 1])),
        Section::Text(Some(part(&[1]))),
    ] {
        let bytes = m.section(Some(&s));
        assert_eq!(bytes, section(data, Some(&s)));
        // NUL cannot travel in a literal; the server replaces it before
        // serving (see imap::content), so only NUL-free data is sent here.
        if !bytes.contains(&0) {
            items.push(MessageDataItem::BodyExt {
                section: Some(s),
                origin: None,
                data: NString::try_from(bytes.into_owned()).unwrap(),
            });
        }
    }
    let response = Response::Data(Data::Fetch {
        seq: NonZeroU32::MIN,
        items: Vec1::try_from(items).unwrap(),
    });
    let wire = ResponseCodec::default().encode(&response).dump();
    match ResponseCodec::default().decode(&wire) {
        Ok(([], decoded)) => {
            assert_eq!(ResponseCodec::default().encode(&decoded).dump(), wire);
        }
        other => panic!("{other:?}: {:?}", String::from_utf8_lossy(&wire)),
    }

    let header = m.section(Some(&Section::Header(None)));
    let text = m.section(Some(&Section::Text(None)));
    assert_eq!([&*header, &*text].concat(), data);
    let mut parts = Vec::new();
    leaves(&structure, Vec::new(), &mut parts);
    for (path, size, lines) in parts {
        let bytes = m.section(Some(&Section::Part(part(&path))));
        assert_eq!(bytes.len(), size as usize, "size of {path:?}");
        if let Some(lines) = lines {
            assert_eq!(
                bytes.iter().filter(|&&b| b == b'\n').count(),
                lines as usize,
                "lines of {path:?}"
            );
        }
    }
    let _ = partial(data, data.len() as u32 / 2, 7);

    let kept = structures::compute(data);
    let s = structures::decode(&kept).expect("a computed structure reads back");
    let four = Response::Data(Data::Fetch {
        seq: NonZeroU32::MIN,
        items: Vec1::try_from(vec![
            MessageDataItem::Envelope(m.envelope()),
            MessageDataItem::BodyStructure(structure),
            MessageDataItem::Body(m.body()),
            MessageDataItem::Rfc822Size(m.size()),
        ])
        .unwrap(),
    });
    let mut served = b"* 1 FETCH (".to_vec();
    for item in [s.envelope, s.body_structure, s.body] {
        served.extend_from_slice(item);
        served.push(b' ');
    }
    served.extend_from_slice(format!("RFC822.SIZE {})\r\n", s.rfc822_size).as_bytes());
    // The kept form writes text and message/rfc822 media types as Dovecot
    // does (imap-codec writes them in capitals); otherwise it is the same
    // response: imap-codec reads it back to what it writes itself.
    match ResponseCodec::default().decode(&served) {
        Ok(([], decoded)) => assert_eq!(
            ResponseCodec::default().encode(&decoded).dump(),
            ResponseCodec::default().encode(&four).dump()
        ),
        other => panic!("{other:?}: {:?}", String::from_utf8_lossy(&served)),
    }
    let _ = structures::decode(data);
});
