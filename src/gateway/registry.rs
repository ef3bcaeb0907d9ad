//! The gateway's listeners, as `/readyz` and the console see them: each
//! listener records itself when it binds and counts as down once its
//! accept loop ends. Here, not in `admin/`, so that the gateway does not
//! import the admin endpoint that imports it (tests/module_graph.rs).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The gateway's listeners: each is up while its accept loop runs.
#[derive(Clone, Default)]
pub struct Listeners {
    list: Arc<Mutex<Vec<Listener>>>,
}

/// A listener's name, address and whether its accept loop still runs.
type Listener = (String, SocketAddr, Arc<AtomicBool>);

/// Held by a listener's task: the listener counts as down once dropped.
pub struct Up(Arc<AtomicBool>);

impl Drop for Up {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Listeners {
    /// Record that `what` listens on `addr`; it stays up while the
    /// returned guard lives.
    pub fn started(&self, what: &str, addr: SocketAddr) -> Up {
        let flag = Arc::new(AtomicBool::new(true));
        self.list.lock().unwrap_or_else(|e| e.into_inner()).push((
            what.to_string(),
            addr,
            flag.clone(),
        ));
        Up(flag)
    }

    /// Every listener: name, address, whether it still accepts.
    pub fn all(&self) -> Vec<(String, SocketAddr, bool)> {
        self.list
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(what, addr, up)| (what.clone(), *addr, up.load(Ordering::Acquire)))
            .collect()
    }

    /// The listeners that stopped, by name and address.
    pub(crate) fn down(&self) -> Vec<String> {
        self.list
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, _, up)| !up.load(Ordering::Acquire))
            .map(|(what, addr, _)| format!("the {what} on {addr} stopped accepting"))
            .collect()
    }
}
