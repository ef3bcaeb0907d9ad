//! The index of the on-disk message cache: raw MIME stored by content hash,
//! with its size and last use, for a size cap with LRU eviction. The files
//! themselves are managed by the mailbox layer.

use rusqlite::params;

use super::{Store, StoreError, now_unix};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    pub content_hash: String,
    pub size: u64,
    pub last_used: i64,
    /// A cached computed structure (ENVELOPE/BODYSTRUCTURE), if any.
    pub structure: Option<Vec<u8>>,
}

/// Entries used within this many seconds are never evicted: a FETCH may
/// be serving them from disk right now.
pub const RECENT_S: i64 = 300;

/// Index a content (hash, size, now), or mark it used if it is indexed.
pub(super) const CACHE_PUT: &str =
    "INSERT INTO cache (content_hash, size, last_used) VALUES (?1, ?2, ?3)
     ON CONFLICT (content_hash) DO UPDATE SET last_used = excluded.last_used";

impl Store {
    /// One entry indexed (the FETCH path indexes with the messages' rows,
    /// `Store::record_contents`).
    #[cfg(test)]
    pub fn cache_put(&self, content_hash: &str, size: u64) -> Result<(), StoreError> {
        let conn = self.lock()?;
        conn.execute(CACHE_PUT, params![content_hash, size as i64, now_unix()])?;
        Ok(())
    }

    /// Look an entry up and mark it used.
    #[cfg(test)]
    pub fn cache_get(&self, content_hash: &str) -> Result<Option<CacheEntry>, StoreError> {
        use rusqlite::OptionalExtension as _;
        let conn = self.lock()?;
        conn.execute(
            "UPDATE cache SET last_used = ?1 WHERE content_hash = ?2",
            params![now_unix(), content_hash],
        )?;
        conn.query_row(
            "SELECT content_hash, size, last_used, structure FROM cache WHERE content_hash = ?1",
            [content_hash],
            |r| {
                Ok(CacheEntry {
                    content_hash: r.get(0)?,
                    size: r.get::<_, i64>(1)?.max(0) as u64,
                    last_used: r.get(2)?,
                    structure: r.get(3)?,
                })
            },
        )
        .optional()
        .map_err(Into::into)
    }

    /// Keep computed structures (`(content hash, encoded structure)`), one
    /// transaction for all; an entry evicted meanwhile is left out.
    pub fn cache_set_structures(&self, structures: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        {
            let mut set =
                tx.prepare_cached("UPDATE cache SET structure = ?1 WHERE content_hash = ?2")?;
            for (hash, structure) in structures {
                set.execute(params![structure, hash])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The stored structures of a folder's messages, by UID (ascending;
    /// messages without one are left out).
    pub fn folder_structures(
        &self,
        folder: super::folders::FolderId,
    ) -> Result<Vec<(super::folders::Uid, Vec<u8>)>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached(
            "SELECT m.uid, c.structure FROM messages m
             JOIN cache c ON c.content_hash = m.content_hash
             WHERE m.folder_id = ?1 AND c.structure IS NOT NULL
             ORDER BY m.uid",
        )?;
        let rows = stmt.query_map([folder.0], |r| {
            Ok((super::folders::Uid(r.get(0)?), r.get::<_, Vec<u8>>(1)?))
        })?;
        rows.collect::<Result<Vec<_>, _>>().map_err(Into::into)
    }

    /// Every content hash a message row names (the APPENDed bytes kept
    /// for none of them are deleted, mailbox/appended.rs).
    pub fn contents_in_use(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached(
            "SELECT DISTINCT content_hash FROM messages WHERE content_hash IS NOT NULL",
        )?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect::<Result<_, _>>().map_err(Into::into)
    }

    /// Total bytes indexed.
    pub fn cache_size(&self) -> Result<u64, StoreError> {
        let conn = self.lock()?;
        let total: i64 =
            conn.query_row("SELECT COALESCE(SUM(size), 0) FROM cache", [], |r| r.get(0))?;
        Ok(total.max(0) as u64)
    }

    /// Mark entries used now (one transaction for a whole FETCH). An entry
    /// used within the last minute is left as it is: eviction needs no finer
    /// recency, and a FETCH repeated over a big folder then writes nothing.
    pub fn cache_touch(&self, hashes: &[&str]) -> Result<(), StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        {
            let mut touch = tx.prepare(
                "UPDATE cache SET last_used = ?1 WHERE content_hash = ?2 AND last_used < ?1 - 60",
            )?;
            let now = now_unix();
            for hash in hashes {
                touch.execute(params![now, hash])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Drop least recently used entries until the total is at most `cap`
    /// bytes, never one of `keep` (what is being served right now);
    /// returns the hashes dropped (the caller deletes their files).
    pub fn cache_evict_to(
        &self,
        cap: u64,
        keep: &std::collections::HashSet<String>,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction()?;
        let mut total: i64 =
            tx.query_row("SELECT COALESCE(SUM(size), 0) FROM cache", [], |r| r.get(0))?;
        let mut dropped = Vec::new();
        let recent = now_unix() - RECENT_S;
        {
            let mut oldest = tx.prepare(
                "SELECT content_hash, size, last_used FROM cache ORDER BY last_used, content_hash",
            )?;
            let mut rows = oldest.query([])?;
            while total > cap as i64 {
                let Some(row) = rows.next()? else { break };
                let hash: String = row.get(0)?;
                let size: i64 = row.get(1)?;
                let last_used: i64 = row.get(2)?;
                // What was used in the last minutes may be being served.
                if keep.contains(&hash) || last_used > recent {
                    continue;
                }
                total -= size;
                dropped.push(hash);
            }
        }
        for hash in &dropped {
            tx.execute("DELETE FROM cache WHERE content_hash = ?1", [hash])?;
        }
        tx.commit()?;
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_to_the_cap() {
        let store = Store::open_in_memory().unwrap();
        for (i, hash) in ["a", "b", "c", "d"].iter().enumerate() {
            store.cache_put(hash, 100).unwrap();
            // a, b and c were last used long ago (a first); d just now.
            if *hash != "d" {
                store
                    .lock()
                    .unwrap()
                    .execute(
                        "UPDATE cache SET last_used = ?1 WHERE content_hash = ?2",
                        params![now_unix() - 10_000 + i as i64, hash],
                    )
                    .unwrap();
            }
        }
        assert_eq!(store.cache_size().unwrap(), 400);
        // b is being served: kept although old; a and c go; d is recent.
        let keep = ["b".to_string()].into_iter().collect();
        let dropped = store.cache_evict_to(150, &keep).unwrap();
        assert_eq!(dropped, ["a", "c"]);
        assert_eq!(store.cache_size().unwrap(), 200);
        // Touching marks an entry used now.
        store.cache_touch(&["b"]).unwrap();
        assert!(
            store
                .cache_evict_to(0, &Default::default())
                .unwrap()
                .is_empty()
        );
        // A structure is kept with its entry (and read with it).
        store
            .cache_set_structures(&[("d".into(), b"S".to_vec()), ("gone".into(), b"T".to_vec())])
            .unwrap();
        assert_eq!(
            store.cache_get("d").unwrap().unwrap().structure.as_deref(),
            Some(&b"S"[..])
        );
        assert_eq!(store.cache_get("gone").unwrap(), None);
    }
}
