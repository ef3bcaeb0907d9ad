//! One gate per folder, shared by every session of every connection in the
//! process: the lock that orders changes to the folder's messages (a flag
//! change, a copy or move out, an expunge, a sync merge), and the change
//! counter that tells sessions something changed.
//!
//! Why a process-wide registry: two IMAP connections of one account each
//! build their own [`super::MailboxModel`], so a lock inside a model would
//! order nothing between them. The registry is keyed by the Graph mailbox
//! and the folder's remote (immutable) id, which name one folder wherever
//! it is seen from. An entry lives while someone holds its gate.
//!
//! Announcing (RFC 3501 §7): the model bumps the folder's counter after
//! each change it stores; a session compares the counter with the one it
//! last reported at and, when they differ, diffs its view against the
//! store at the next command boundary (or at once while idling).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};

/// What orders and announces the changes of one folder.
pub struct FolderGate {
    lock: tokio::sync::Mutex<()>,
    changed: tokio::sync::watch::Sender<u64>,
    /// Changes waiting for the lock (contention, for tests and logs).
    waiting: std::sync::atomic::AtomicUsize,
}

/// The key of a folder in the registry.
type Key = (String, String);

static GATES: LazyLock<Mutex<HashMap<Key, Weak<FolderGate>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The gate of the folder `remote_id` of the Graph mailbox `mailbox`.
pub fn gate(mailbox: &str, remote_id: &str) -> Arc<FolderGate> {
    let key = (mailbox.to_ascii_lowercase(), remote_id.to_string());
    let mut gates = GATES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(g) = gates.get(&key).and_then(Weak::upgrade) {
        return g;
    }
    // Forget gates nobody holds any more (folders no session has open).
    gates.retain(|_, g| g.strong_count() > 0);
    let g = Arc::new(FolderGate {
        lock: tokio::sync::Mutex::new(()),
        changed: tokio::sync::watch::channel(0).0,
        waiting: std::sync::atomic::AtomicUsize::new(0),
    });
    gates.insert(key, Arc::downgrade(&g));
    g
}

impl FolderGate {
    /// Hold the folder: no other change to its messages runs meanwhile.
    pub async fn hold(&self) -> tokio::sync::MutexGuard<'_, ()> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        /// Counts a waiter until the lock is had or the wait is dropped.
        struct Waiter<'a>(&'a AtomicUsize);
        impl Drop for Waiter<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let waiter = Waiter(&self.waiting);
        let guard = self.lock.lock().await;
        drop(waiter);
        guard
    }

    /// How many changes wait for the folder now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Say that the folder's stored state changed.
    pub fn announce(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The change counter now.
    pub fn version(&self) -> u64 {
        *self.changed.borrow()
    }

    /// Wait until the counter differs from `seen`.
    pub async fn changed_since(&self, seen: u64) {
        let mut rx = self.changed.subscribe();
        let _ = rx.wait_for(|v| *v != seen).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_gate_per_folder_across_models() {
        let a = gate("Alice@example.com", "F1");
        let b = gate("alice@example.com", "F1");
        assert!(Arc::ptr_eq(&a, &b));
        let other = gate("alice@example.com", "F2");
        assert!(!Arc::ptr_eq(&a, &other));
        let seen = a.version();
        let held = a.hold().await;
        assert!(b.lock.try_lock().is_err(), "held through the other handle");
        drop(held);
        b.announce();
        a.changed_since(seen).await;
        assert_ne!(a.version(), seen);
    }
}
