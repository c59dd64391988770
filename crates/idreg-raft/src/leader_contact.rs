//! When this node last heard from a raft leader it accepted: a follower's
//! copy of the registry is only as fresh as that. The device front refuses
//! new handshakes when it is too old, so a partitioned node cannot keep
//! admitting devices revoked elsewhere.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Milliseconds since a process-wide base, +1 so 0 means "never".
#[derive(Clone, Default)]
pub struct LeaderContact(Arc<AtomicU64>);

impl LeaderContact {
    pub fn touch(&self) {
        let now = base().elapsed().as_millis() as u64 + 1;
        self.0.store(now, Ordering::Relaxed);
    }

    /// Whether the last contact was within `max`.
    pub fn within(&self, max: Duration) -> bool {
        match self.0.load(Ordering::Relaxed) {
            0 => false,
            at => base().elapsed().as_millis() as u64 + 1 - at <= max.as_millis() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_is_stale_and_a_touch_is_fresh() {
        let c = LeaderContact::default();
        assert!(!c.within(Duration::from_secs(3600)));
        c.touch();
        assert!(c.within(Duration::from_secs(1)));
        std::thread::sleep(Duration::from_millis(30));
        assert!(!c.within(Duration::from_millis(10)));
    }
}
