//! The state store's hot operations: assigning UIDs to a folder's worth of
//! new remote ids (a cold sync), listing a folder's index (SELECT), and
//! sealing/opening a token set.
//!
//! `cargo bench --bench store`

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use graphgate::store::folders::NewMessage;
use graphgate::store::{NewAccount, Store, StoreKey};

fn store_with_folder() -> (Store, graphgate::store::FolderId, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let account = store
        .add_account(&NewAccount::delegated("alice@example.com", "alice"))
        .unwrap();
    let folder = store
        .upsert_folder(
            account.id,
            "alice@example.com",
            "R-INBOX",
            "INBOX",
            None,
            None,
        )
        .unwrap();
    (store, folder.id, dir)
}

fn messages(n: usize) -> Vec<NewMessage> {
    (0..n)
        .map(|i| NewMessage {
            remote_id: format!(
                "AAMkADExMzJmYWQ3LTU0ZjMtNDM0ZC1iYjE2LWM1MjBmZTAwZDE5MwBGAAAAAAAR{i:08}"
            ),
            flags: (i % 4) as u32,
            keywords: String::new(),
            size: Some(4096 + i as u64),
            internal_date: Some(1_700_000_000 + i as i64),
        })
        .collect()
}

fn uid_assignment(c: &mut Criterion) {
    let mut group = c.benchmark_group("store");
    group.sample_size(10);
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("assign 10k UIDs (one transaction, fsync)", |b| {
        b.iter_batched(
            || (store_with_folder(), messages(10_000)),
            |((store, folder, _dir), new)| store.add_messages(folder, &new).unwrap(),
            BatchSize::PerIteration,
        )
    });
    let (store, folder, _dir) = store_with_folder();
    store.add_messages(folder, &messages(10_000)).unwrap();
    group.bench_function("list a 10k-message folder", |b| {
        b.iter(|| store.messages(folder).unwrap())
    });
    group.finish();

    let key = StoreKey::from_bytes([42; 32]);
    let token_set = vec![b'x'; 3000];
    c.bench_function("seal + open a 3 KB token set", |b| {
        b.iter(|| {
            let sealed = key.seal(&token_set, "ctx").unwrap();
            key.open(&sealed, "ctx").unwrap()
        })
    });
}

criterion_group!(benches, uid_assignment);
criterion_main!(benches);
