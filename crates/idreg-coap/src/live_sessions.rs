//! Which devices have live sessions on this node, so a revocation applied here
//! can end them at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use idreg_core::SessionEnd;
use tokio::sync::watch;

/// Tells a session (or a handshake in progress) to end, and why.
pub type EndSignal = Arc<watch::Sender<Option<SessionEnd>>>;

pub fn end_signal() -> (EndSignal, watch::Receiver<Option<SessionEnd>>) {
    let (tx, rx) = watch::channel(None);
    (Arc::new(tx), rx)
}

#[derive(Default)]
pub struct LiveSessions {
    by_device: Mutex<HashMap<String, HashMap<u64, EndSignal>>>,
}

impl LiveSessions {
    pub fn register(&self, device: &str, session: u64, end: EndSignal) {
        self.by_device
            .lock()
            .expect("live sessions lock")
            .entry(device.to_string())
            .or_default()
            .insert(session, end);
    }

    pub fn unregister(&self, device: &str, session: u64) {
        let mut map = self.by_device.lock().expect("live sessions lock");
        if let Some(s) = map.get_mut(device) {
            s.remove(&session);
            if s.is_empty() {
                map.remove(device);
            }
        }
    }

    /// Ends every session of `device`; returns how many were told.
    pub fn end_device(&self, device: &str, why: SessionEnd) -> usize {
        let sessions = self
            .by_device
            .lock()
            .expect("live sessions lock")
            .get(device)
            .map(|s| s.values().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        for s in &sessions {
            s.send_replace(Some(why));
        }
        sessions.len()
    }

    pub fn devices(&self) -> Vec<String> {
        self.by_device
            .lock()
            .expect("live sessions lock")
            .keys()
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.by_device
            .lock()
            .expect("live sessions lock")
            .values()
            .map(HashMap::len)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ending_a_device_signals_all_its_sessions_only() {
        let live = LiveSessions::default();
        let (a1, r1) = end_signal();
        let (a2, r2) = end_signal();
        let (b1, rb) = end_signal();
        live.register("a", 1, a1);
        live.register("a", 2, a2);
        live.register("b", 3, b1);
        assert_eq!(live.end_device("a", SessionEnd::Revoked), 2);
        assert_eq!(*r1.borrow(), Some(SessionEnd::Revoked));
        assert_eq!(*r2.borrow(), Some(SessionEnd::Revoked));
        assert_eq!(*rb.borrow(), None);
        live.unregister("a", 1);
        live.unregister("a", 2);
        assert_eq!(live.devices(), vec!["b".to_string()]);
    }
}
