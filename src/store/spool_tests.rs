//! Tests of the spool's durable record ([`super`]).

use super::*;
use crate::store::NewAccount;

#[test]
fn spool_state_machine_is_compare_and_set() {
    let store = Store::open_in_memory().unwrap();
    let account = store
        .add_account(&NewAccount::delegated("a@example.com", "p"))
        .unwrap();
    let entry = store
        .spool_insert(&NewSpoolEntry {
            account: account.id,
            mail_from: "a@example.com",
            rcpt_to: &["b@example.com".into()],
            path: "/spool/1.eml",
            body: None,
            size: 123,
            message_id: Some("<x@y>"),
            prefix: "",
            not_before: None,
            claimed_with: None,
            fingerprint: None,
        })
        .unwrap();
    assert_eq!(entry.state, SpoolState::Queued);
    assert_eq!(entry.rcpt_to, vec!["b@example.com".to_string()]);
    assert!(
        store
            .spool_transition(
                entry.id,
                SpoolState::Queued,
                SpoolState::Sending,
                None,
                None
            )
            .unwrap()
    );
    // A second worker cannot take it again.
    assert!(
        !store
            .spool_transition(
                entry.id,
                SpoolState::Queued,
                SpoolState::Sending,
                None,
                None
            )
            .unwrap()
    );
    let sending = store.spool_entry(entry.id).unwrap().unwrap();
    assert_eq!(sending.attempts, 1);
    assert_eq!(
        store
            .spool_list(Some(SpoolState::Sending), None)
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .spool_transition(
                entry.id,
                SpoolState::Sending,
                SpoolState::Delivered,
                None,
                None
            )
            .unwrap()
    );
    assert!(
        store
            .spool_list(Some(SpoolState::Queued), None)
            .unwrap()
            .is_empty()
    );
}

fn account(store: &Store) -> AccountId {
    store
        .add_account(&NewAccount::delegated("a@example.com", "p"))
        .unwrap()
        .id
}

fn synchronous(store: &Store) -> i64 {
    store
        .lock()
        .unwrap()
        .pragma_query_value(None, "synchronous", |r| r.get(0))
        .unwrap()
}

#[test]
fn a_known_fingerprint_gives_the_entry_that_has_it_and_records_nothing() {
    let store = Store::open_in_memory().unwrap();
    let account = account(&store);
    let new = |fingerprint| NewSpoolEntry {
        account,
        mail_from: "a@example.com",
        rcpt_to: &[],
        path: "",
        body: Some(b"x"),
        size: 1,
        message_id: Some("x@y"),
        prefix: "",
        not_before: None,
        claimed_with: Some(DeliveryMethod::SendMail),
        fingerprint,
    };
    let SpoolInsert::New(first) = store
        .spool_insert_unless_known(&new(Some("f1")), 0)
        .unwrap()
    else {
        panic!("the first one is new");
    };
    // Sent again while the first waits: that entry, nothing recorded.
    assert_eq!(
        store
            .spool_insert_unless_known(&new(Some("f1")), 0)
            .unwrap(),
        SpoolInsert::Known(first.clone())
    );
    assert_eq!(store.spool_list(None, None).unwrap().len(), 1);
    // Refused for good: sending it again is a new try.
    let refused = store
        .spool_update(
            first.id,
            SpoolState::Sending,
            &SpoolUpdate {
                state: Some(SpoolState::Rejected),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(refused);
    let again = store
        .spool_insert_unless_known(&new(Some("f1")), 0)
        .unwrap();
    assert!(matches!(again, SpoolInsert::New(e) if e.id != first.id));
    // Another fingerprint, none, or the same accepted before the
    // window: new.
    for (fingerprint, since) in [(Some("f2"), 0), (None, 0), (Some("f1"), now_unix() + 10)] {
        assert!(matches!(
            store
                .spool_insert_unless_known(&new(fingerprint), since)
                .unwrap(),
            SpoolInsert::New(_)
        ));
    }
    assert_eq!(store.spool_list(None, None).unwrap().len(), 5);
}

#[test]
fn inline_bytes_are_recorded_claimed_and_cleared_when_final() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let account = account(&store);
    let body = b"Subject: hi\r\n\r\nhello\r\n";
    let entry = store
        .spool_insert(&NewSpoolEntry {
            account,
            mail_from: "a@example.com",
            rcpt_to: &["b@example.com".into()],
            path: "",
            body: Some(body),
            size: body.len() as u64,
            message_id: Some("x@y"),
            prefix: "",
            not_before: None,
            claimed_with: Some(DeliveryMethod::SendMail),
            fingerprint: None,
        })
        .unwrap();
    // One commit recorded the bytes and the claim.
    assert_eq!(entry.state, SpoolState::Sending);
    assert_eq!(entry.method, Some(DeliveryMethod::SendMail));
    assert_eq!(entry.attempts, 1);
    assert!(entry.sending_since.is_some());
    assert!(entry.inline);
    assert_eq!(store.spool_body(entry.id).unwrap().unwrap(), body);
    // Another process sees them (a restart after a crash).
    let other = Store::open(dir.path()).unwrap();
    assert_eq!(other.spool_body(entry.id).unwrap().unwrap(), body);
    assert_eq!(synchronous(&store), 2, "FULL");
    assert!(
        store
            .spool_update(
                entry.id,
                SpoolState::Sending,
                &SpoolUpdate {
                    state: Some(SpoolState::Delivered),
                    lazy: true,
                    ..Default::default()
                },
            )
            .unwrap()
    );
    // The relaxed commit was for that statement only.
    assert_eq!(synchronous(&store), 2, "FULL again");
    let delivered = other.spool_entry(entry.id).unwrap().unwrap();
    assert_eq!(delivered.state, SpoolState::Delivered);
    assert!(!delivered.inline, "bytes forgotten once delivered");
    assert_eq!(store.spool_body(entry.id).unwrap(), None);
}

#[test]
fn a_spool_of_schema_4_keeps_its_files_after_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = Store::path_in(dir.path());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        for sql in &crate::store::schema::MIGRATIONS[..4] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 4).unwrap();
        conn.execute_batch(
            "INSERT INTO accounts (login, password_hash, mailbox, auth_profile,
                 created_at, updated_at)
             VALUES ('a', 'x', 'a@example.com', 'delegated', 0, 0);
             INSERT INTO spool (account_id, state, mail_from, rcpt_to, path, size,
                 message_id, next_attempt_at, accepted_at, updated_at)
             VALUES (1, 'queued', 'a@example.com', '[\"b@example.com\"]',
                 '/spool/old.eml', 42, 'old@y', 0, 0, 0);",
        )
        .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.schema_version().unwrap(),
        crate::store::schema::latest()
    );
    let old = store.spool_list(Some(SpoolState::Queued), None).unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].path, "/spool/old.eml");
    assert!(!old[0].inline);
    assert_eq!(store.spool_body(old[0].id).unwrap(), None);
}

/// The method column keeps the words it always held, so rows written
/// before the enum read back as the same method, and back again.
#[test]
fn delivery_methods_round_trip_through_their_text_column() {
    let store = Store::open_in_memory().unwrap();
    let account = account(&store);
    let entry = store
        .spool_insert(&NewSpoolEntry {
            account,
            mail_from: "a@example.com",
            rcpt_to: &["b@example.com".into()],
            path: "",
            body: Some(b"x"),
            size: 1,
            message_id: None,
            prefix: "",
            not_before: None,
            claimed_with: Some(DeliveryMethod::SendMail),
            fingerprint: None,
        })
        .unwrap();
    assert_eq!(entry.method, Some(DeliveryMethod::SendMail));
    let words = [
        "sendmail",
        "draft",
        "draft-ready",
        "dsn-pending",
        "dsn-placed",
    ];
    for (method, word) in DeliveryMethod::ALL.into_iter().zip(words) {
        let update = SpoolUpdate {
            method: Some(Some(method)),
            ..Default::default()
        };
        assert!(
            store
                .spool_update(entry.id, SpoolState::Sending, &update)
                .unwrap()
        );
        let raw: String = store
            .lock()
            .unwrap()
            .query_row(
                "SELECT method FROM spool WHERE id = ?1",
                [entry.id.0],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(raw, word);
        assert_eq!(DeliveryMethod::parse(word), Some(method));
        // As an older version wrote it.
        store
            .lock()
            .unwrap()
            .execute(
                "UPDATE spool SET method = ?1 WHERE id = ?2",
                params![word, entry.id.0],
            )
            .unwrap();
        let back = store.spool_entry(entry.id).unwrap().unwrap();
        assert_eq!(back.method, Some(method));
    }
    // A word no version writes is an error, not another method.
    store
        .lock()
        .unwrap()
        .execute(
            "UPDATE spool SET method = 'carrier-pigeon' WHERE id = ?1",
            [entry.id.0],
        )
        .unwrap();
    assert!(store.spool_entry(entry.id).is_err());
    assert_eq!(DeliveryMethod::parse("carrier-pigeon"), None);
}
