//! The IMAP MIME core over the benchmark corpus (`benches/corpus/`), in
//! MB/s of message bytes, next to a bare `mail_parser::MessageParser::parse`
//! of the same bytes (the anchor of issue 8's first target):
//!
//! - `realistic`: everyday mail plus four messages with attachments of
//!   1.2–6 MB (most of the bytes, as in a real mailbox);
//! - `everyday`: the 32 fixtures of `tests/data/mime/`, newsletters,
//!   replies with 20–120 KB attachments, forwarded messages — headers
//!   weigh more here. Also the part tree alone, ENVELOPE alone and
//!   ENVELOPE + BODYSTRUCTURE + BODY[1], to show where the time goes.
//!
//! `cargo bench --bench mime`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use graphgate::mime::imap::Message;
use imap_types::core::Vec1;
use imap_types::fetch::{Part, Section};
use std::hint::black_box;
use std::num::NonZeroU32;

#[path = "corpus/mod.rs"]
mod corpus;

fn structure(corpus: &[Vec<u8>]) {
    for msg in corpus {
        let m = Message::new(black_box(msg));
        black_box(m.envelope());
        black_box(m.body_structure());
    }
}

fn full_parse(parser: &mail_parser::MessageParser, corpus: &[Vec<u8>]) {
    for msg in corpus {
        black_box(parser.parse(black_box(msg)));
    }
}

fn bench(c: &mut Criterion) {
    let parser = mail_parser::MessageParser::default();
    for (name, corpus) in [
        ("realistic", corpus::realistic()),
        ("everyday", corpus::everyday()),
    ] {
        let bytes: usize = corpus.iter().map(Vec::len).sum();
        let mut group = c.benchmark_group(format!("mime_{name}"));
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function("envelope+bodystructure", |b| b.iter(|| structure(&corpus)));
        group.bench_function("mail_parser::parse", |b| {
            b.iter(|| full_parse(&parser, &corpus))
        });
        if name == "everyday" {
            let first = Section::Part(Part(Vec1::from(NonZeroU32::MIN)));
            group.bench_function("envelope+bodystructure+body[1]", |b| {
                b.iter(|| {
                    for msg in &corpus {
                        let m = Message::new(black_box(msg));
                        black_box(m.envelope());
                        black_box(m.body_structure());
                        black_box(m.section(Some(&first)));
                    }
                })
            });
            group.bench_function("part tree", |b| {
                b.iter(|| {
                    for msg in &corpus {
                        black_box(Message::new(black_box(msg)));
                    }
                })
            });
            group.bench_function("envelope", |b| {
                b.iter(|| {
                    for msg in &corpus {
                        black_box(graphgate::mime::imap::envelope(black_box(msg)));
                    }
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
