//! A cap on the log lines a shard writes about what peers do (refused
//! handshakes, cut-off sessions): a flood from many addresses must not
//! become a flood of log lines. Lines past the cap are counted, and the
//! next line written says how many were left out.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct LogBudget {
    per_window: u32,
    window: Duration,
    window_start: Option<Instant>,
    used: u32,
    suppressed: u64,
}

impl LogBudget {
    pub fn new(per_window: u32, window: Duration) -> Self {
        Self {
            per_window,
            window,
            window_start: None,
            used: 0,
            suppressed: 0,
        }
    }

    /// Whether a line may be written now; if so, how many lines were left
    /// out since the last one written.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        let fresh = self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= self.window);
        if fresh {
            self.window_start = Some(now);
            self.used = 0;
        }
        if self.used >= self.per_window {
            self.suppressed += 1;
            return None;
        }
        self.used += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

impl Default for LogBudget {
    /// Twenty lines a second per shard.
    fn default() -> Self {
        Self::new(20, Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_past_the_cap_are_counted_and_reported_with_the_next_window() {
        let t0 = Instant::now();
        let mut b = LogBudget::new(2, Duration::from_secs(1));
        assert_eq!(b.admit(t0), Some(0));
        assert_eq!(b.admit(t0), Some(0));
        for _ in 0..5 {
            assert_eq!(b.admit(t0 + Duration::from_millis(500)), None);
        }
        assert_eq!(b.admit(t0 + Duration::from_millis(1000)), Some(5));
        assert_eq!(b.admit(t0 + Duration::from_millis(1001)), Some(0));
        assert_eq!(b.admit(t0 + Duration::from_millis(1002)), None);
    }
}
