//! The IMAP MIME core over the fixture corpus (`tests/data/mime/`), in
//! MB/s of message bytes: ENVELOPE + BODYSTRUCTURE (one part-tree read,
//! then both items), the same with BODY[1] as well, the part tree alone
//! and ENVELOPE alone (where the time goes), and — for scale — a bare
//! `mail_parser::MessageParser::parse` of the same bytes.
//!
//! `cargo bench --bench mime`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use graphgate::mime::imap::Message;
use imap_types::core::Vec1;
use imap_types::fetch::{Part, Section};
use std::hint::black_box;
use std::num::NonZeroU32;

fn corpus() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mime");
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .expect("fixture directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| std::fs::read(p).expect("fixture"))
        .collect()
}

fn bench(c: &mut Criterion) {
    let corpus = corpus();
    let bytes: usize = corpus.iter().map(Vec::len).sum();
    let mut group = c.benchmark_group("mime_corpus");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("envelope+bodystructure", |b| {
        b.iter(|| {
            for msg in &corpus {
                let m = Message::new(black_box(msg));
                black_box(m.envelope());
                black_box(m.body_structure());
            }
        })
    });
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
    group.bench_function("mail_parser::parse", |b| {
        let parser = mail_parser::MessageParser::default();
        b.iter(|| {
            for msg in &corpus {
                black_box(parser.parse(black_box(msg)));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
