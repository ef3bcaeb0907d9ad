//! Mod-sequences (RFC 7162 CONDSTORE / QRESYNC): per message the
//! mod-sequence of its last change, per folder its HIGHESTMODSEQ, and the
//! UIDs expunged with the mod-sequence of their expunge, so that
//! `VANISHED (EARLIER)` can name them.
//!
//! Every writer that changes what a client sees of a message (its flags
//! and keywords, its arrival, its expunge, a new UID) bumps the folder's
//! HIGHESTMODSEQ once, in the same transaction, and gives every message
//! it changed that value (RFC 7162 §3.1: each change gets a mod-sequence
//! above every earlier one; messages changed by one operation may share
//! one). A write that changes nothing bumps nothing.
//!
//! Values start at 1: a message without a row in `modseqs` has 1, a
//! folder without a row in `folder_modseqs` has HIGHESTMODSEQ 1 (what
//! every folder had before this was kept; no client was told anything
//! else).
//!
//! Horizon: the newest [`VANISHED_KEPT`] expunged UIDs of a folder are
//! kept; older ones are forgotten and the folder's `vanished_floor`
//! rises to the highest mod-sequence forgotten. A client resyncing from
//! a mod-sequence below the floor is answered from what it says it knows
//! (QRESYNC's known UIDs, RFC 7162 §3.2.5.1) instead; see
//! docs/imap-condstore.md.

use rusqlite::{Connection, OptionalExtension, params};

use super::folders::{FolderId, Uid};
use super::{Store, StoreError};

/// How many expunged UIDs a folder remembers (see the module's notes).
pub const VANISHED_KEPT: i64 = 50_000;

/// The folder's HIGHESTMODSEQ and vanished floor, inside a transaction.
fn state(conn: &Connection, folder: FolderId) -> rusqlite::Result<(u64, u64)> {
    Ok(conn
        .query_row(
            "SELECT highest, vanished_floor FROM folder_modseqs WHERE folder_id = ?1",
            [folder.0],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )
        .optional()?
        .unwrap_or((1, 1)))
}

/// A new mod-sequence for the folder (HIGHESTMODSEQ + 1, stored as the
/// new HIGHESTMODSEQ), inside the caller's transaction.
pub(super) fn bump(conn: &Connection, folder: FolderId) -> rusqlite::Result<u64> {
    let (highest, floor) = state(conn, folder)?;
    let next = highest + 1;
    conn.execute(
        "INSERT INTO folder_modseqs (folder_id, highest, vanished_floor) VALUES (?1, ?2, ?3)
         ON CONFLICT (folder_id) DO UPDATE SET highest = excluded.highest",
        params![folder.0, next as i64, floor as i64],
    )?;
    Ok(next)
}

/// Give `uid` the mod-sequence `modseq`.
pub(super) fn set(
    conn: &Connection,
    folder: FolderId,
    uid: Uid,
    modseq: u64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO modseqs (folder_id, uid, modseq) VALUES (?1, ?2, ?3)
         ON CONFLICT (folder_id, uid) DO UPDATE SET modseq = excluded.modseq",
    )?
    .execute(params![folder.0, uid.0, modseq as i64])?;
    Ok(())
}

/// `uid` was expunged at `modseq`: forget its mod-sequence, remember the
/// expunge.
pub(super) fn expunged(
    conn: &Connection,
    folder: FolderId,
    uid: Uid,
    modseq: u64,
) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM modseqs WHERE folder_id = ?1 AND uid = ?2")?
        .execute(params![folder.0, uid.0])?;
    conn.prepare_cached(
        "INSERT INTO vanished (folder_id, uid, modseq) VALUES (?1, ?2, ?3)
         ON CONFLICT (folder_id, uid) DO UPDATE SET modseq = excluded.modseq",
    )?
    .execute(params![folder.0, uid.0, modseq as i64])?;
    Ok(())
}

/// Forget the expunges past the horizon (all but the newest
/// [`VANISHED_KEPT`]) and raise the floor to the newest one forgotten.
pub(super) fn prune(conn: &Connection, folder: FolderId) -> rusqlite::Result<()> {
    let edge: Option<i64> = conn
        .query_row(
            "SELECT modseq FROM vanished WHERE folder_id = ?1
             ORDER BY modseq DESC LIMIT 1 OFFSET ?2",
            params![folder.0, VANISHED_KEPT],
            |r| r.get(0),
        )
        .optional()?;
    let Some(edge) = edge else {
        return Ok(());
    };
    conn.execute(
        "DELETE FROM vanished WHERE folder_id = ?1 AND modseq <= ?2",
        params![folder.0, edge],
    )?;
    conn.execute(
        "UPDATE folder_modseqs SET vanished_floor = max(vanished_floor, ?2) WHERE folder_id = ?1",
        params![folder.0, edge],
    )?;
    Ok(())
}

/// The UIDs expunged after a mod-sequence, as far as the folder remembers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vanished {
    /// Every UID expunged after it, ascending.
    Known(Vec<Uid>),
    /// The mod-sequence is below the horizon: not every expunge after it
    /// is remembered.
    Forgotten,
}

impl Store {
    /// The folder's HIGHESTMODSEQ (RFC 7162 §3.1.2.1).
    pub fn highest_modseq(&self, folder: FolderId) -> Result<u64, StoreError> {
        let conn = self.lock()?;
        Ok(state(&conn, folder)?.0)
    }

    /// The UIDs of `folder` expunged at a mod-sequence above `since`.
    pub fn vanished_since(&self, folder: FolderId, since: u64) -> Result<Vanished, StoreError> {
        let conn = self.lock()?;
        let (_, floor) = state(&conn, folder)?;
        if since < floor {
            return Ok(Vanished::Forgotten);
        }
        let mut stmt = conn.prepare(
            "SELECT uid FROM vanished WHERE folder_id = ?1 AND modseq > ?2 ORDER BY uid",
        )?;
        let rows = stmt.query_map(params![folder.0, since.min(i64::MAX as u64) as i64], |r| {
            r.get::<_, u32>(0)
        })?;
        Ok(Vanished::Known(
            rows.map(|r| r.map(Uid)).collect::<Result<Vec<_>, _>>()?,
        ))
    }

    /// Store new flags of several messages of one folder in one
    /// transaction; those whose flags differ get one new mod-sequence.
    /// Returns it (`None`: nothing changed).
    pub fn set_messages_flags(
        &self,
        folder: FolderId,
        changes: &[(Uid, u32, String)],
    ) -> Result<Option<u64>, StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        let mut modseq = None;
        {
            let mut update = tx.prepare(
                "UPDATE messages SET flags = ?1, keywords = ?2
                 WHERE folder_id = ?3 AND uid = ?4 AND (flags != ?1 OR keywords != ?2)",
            )?;
            for (uid, bits, keywords) in changes {
                super::subscriptions::remember_keywords(&tx, folder, keywords)?;
                if update.execute(params![bits, keywords, folder.0, uid.0])? == 1 {
                    let m = match modseq {
                        Some(m) => m,
                        None => *modseq.insert(bump(&tx, folder)?),
                    };
                    set(&tx, folder, *uid, m)?;
                }
            }
        }
        tx.commit()?;
        Ok(modseq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewAccount;
    use crate::store::folders::NewMessage;

    fn new(id: &str) -> NewMessage {
        NewMessage {
            remote_id: id.into(),
            flags: 0,
            keywords: String::new(),
            size: None,
            internal_date: None,
        }
    }

    #[test]
    fn every_change_and_only_a_change_bumps_the_modseq() {
        let store = Store::open_in_memory().unwrap();
        let account = store
            .add_account(&NewAccount::delegated("a@example.com", "pw"))
            .unwrap()
            .id;
        let f = store
            .upsert_folder(account, "a@example.com", "R", "INBOX", None, None)
            .unwrap()
            .id;
        assert_eq!(store.highest_modseq(f).unwrap(), 1);
        store.add_messages(f, &[new("m1"), new("m2")]).unwrap();
        assert_eq!(store.highest_modseq(f).unwrap(), 2);
        let ms: Vec<u64> = store
            .messages(f)
            .unwrap()
            .iter()
            .map(|m| m.modseq)
            .collect();
        assert_eq!(ms, vec![2, 2]);
        // A replay adds nothing and bumps nothing.
        store.add_messages(f, &[new("m1")]).unwrap();
        assert_eq!(store.highest_modseq(f).unwrap(), 2);
        // Flags as they are: nothing; a real change: one bump.
        assert_eq!(
            store
                .set_messages_flags(f, &[(Uid(1), 0, String::new())])
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .set_messages_flags(f, &[(Uid(1), 1, String::new()), (Uid(2), 0, String::new())])
                .unwrap(),
            Some(3)
        );
        let ms: Vec<u64> = store
            .messages(f)
            .unwrap()
            .iter()
            .map(|m| m.modseq)
            .collect();
        assert_eq!(ms, vec![3, 2]);
        store.set_message_flags(f, Uid(2), 0, "").unwrap();
        assert_eq!(store.highest_modseq(f).unwrap(), 3);
        // An expunge is remembered with its mod-sequence.
        store.remove_messages(f, &["m2".into()]).unwrap();
        assert_eq!(store.highest_modseq(f).unwrap(), 4);
        assert_eq!(
            store.vanished_since(f, 3).unwrap(),
            Vanished::Known(vec![Uid(2)])
        );
        assert_eq!(store.vanished_since(f, 4).unwrap(), Vanished::Known(vec![]));
        // MOVE into the folder itself: the old UID vanishes, the new one
        // is a change.
        let pairs = store.renumber_messages(f, &[Uid(1)]).unwrap();
        assert_eq!(pairs, vec![(Uid(1), Uid(3))]);
        assert_eq!(store.highest_modseq(f).unwrap(), 5);
        assert_eq!(
            store.vanished_since(f, 4).unwrap(),
            Vanished::Known(vec![Uid(1)])
        );
        assert_eq!(store.messages(f).unwrap()[0].modseq, 5);
    }

    #[test]
    fn expunges_past_the_horizon_are_forgotten_and_said_so() {
        let store = Store::open_in_memory().unwrap();
        let account = store
            .add_account(&NewAccount::delegated("a@example.com", "pw"))
            .unwrap()
            .id;
        let f = store
            .upsert_folder(account, "a@example.com", "R", "INBOX", None, None)
            .unwrap()
            .id;
        {
            let mut conn = store.lock().unwrap();
            let tx = conn.transaction().unwrap();
            for uid in 1..=(VANISHED_KEPT as u32 + 2) {
                let m = bump(&tx, f).unwrap();
                expunged(&tx, f, Uid(uid), m).unwrap();
            }
            prune(&tx, f).unwrap();
            tx.commit().unwrap();
        }
        assert_eq!(store.vanished_since(f, 1).unwrap(), Vanished::Forgotten);
        let highest = store.highest_modseq(f).unwrap();
        match store.vanished_since(f, highest - 1).unwrap() {
            Vanished::Known(uids) => assert_eq!(uids, vec![Uid(VANISHED_KEPT as u32 + 2)]),
            other => panic!("{other:?}"),
        }
    }
}
