//! Anti-replay for one epoch (RFC 6347 §4.1.2.6): a 64-record sliding
//! window over sequence numbers. A record is checked before it is opened
//! (cheap refusal) and marked only after it authenticated (so a forged
//! record cannot move the window).

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Highest sequence number accepted; meaningful once `bits != 0`.
    top: u64,
    /// Bit i set: `top - i` was accepted.
    bits: u64,
}

impl ReplayWindow {
    /// Whether `seq` is new and not too old to judge.
    pub fn is_fresh(&self, seq: u64) -> bool {
        if self.bits == 0 || seq > self.top {
            return true;
        }
        let age = self.top - seq;
        age < 64 && self.bits & (1 << age) == 0
    }

    /// Whether `seq` would be the newest record yet (RFC 9146 §6: only such
    /// a record may move a session to a new address).
    pub fn is_newest(&self, seq: u64) -> bool {
        self.bits == 0 || seq > self.top
    }

    pub fn mark(&mut self, seq: u64) {
        if self.bits == 0 {
            self.top = seq;
            self.bits = 1;
        } else if seq > self.top {
            let shift = seq - self.top;
            self.bits = if shift >= 64 { 0 } else { self.bits << shift } | 1;
            self.top = seq;
        } else if self.top - seq < 64 {
            self.bits |= 1 << (self.top - seq);
        }
    }

    /// (top, bits), for saving a session.
    pub fn to_parts(self) -> (u64, u64) {
        (self.top, self.bits)
    }

    pub fn from_parts(top: u64, bits: u64) -> Self {
        Self { top, bits }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_and_too_old_records_are_refused() {
        let mut w = ReplayWindow::default();
        assert!(w.is_fresh(0));
        w.mark(0);
        assert!(!w.is_fresh(0));
        for s in [5, 3, 4, 1] {
            assert!(w.is_fresh(s));
            w.mark(s);
            assert!(!w.is_fresh(s));
        }
        assert!(w.is_fresh(2));
        w.mark(100);
        assert!(!w.is_fresh(36), "64 or more behind the top is too old");
        assert!(w.is_fresh(37));
        assert!(!w.is_newest(99) && w.is_newest(101));
        let (top, bits) = w.to_parts();
        assert_eq!(ReplayWindow::from_parts(top, bits), w);
    }
}
