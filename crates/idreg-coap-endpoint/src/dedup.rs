//! Duplicate detection for one CoAP peer (RFC 7252 §4.5): a request that
//! arrives again with the same message id within EXCHANGE_LIFETIME gets the
//! same response again, without being processed twice.

use std::collections::VecDeque;

/// RFC 7252 §4.8.2 EXCHANGE_LIFETIME with default transmission parameters.
pub const EXCHANGE_LIFETIME_MS: u64 = 247_000;

/// Bounded per peer: a device that sends more distinct requests than this
/// within the lifetime loses dedup for the oldest, which only costs it a
/// second evaluation of an idempotent GET.
pub const DEFAULT_CAPACITY: usize = 32;

#[derive(Debug)]
struct Entry {
    message_id: u16,
    at_ms: u64,
    response: Option<Vec<u8>>,
}

#[derive(Debug)]
pub struct Dedup {
    entries: VecDeque<Entry>,
    capacity: usize,
}

impl Dedup {
    pub fn new(capacity: usize) -> Self {
        // Nothing is allocated until the first request: an idle session
        // holds no cache.
        Self {
            entries: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    fn expire(&mut self, now_ms: u64) {
        while let Some(front) = self.entries.front() {
            if now_ms.saturating_sub(front.at_ms) >= EXCHANGE_LIFETIME_MS {
                self.entries.pop_front();
            } else {
                break;
            }
        }
    }

    /// The cached response if `message_id` was seen within the lifetime
    /// (`Some(None)` when it was seen and deserved no response).
    pub fn seen(&mut self, message_id: u16, now_ms: u64) -> Option<Option<&[u8]>> {
        self.expire(now_ms);
        self.entries
            .iter()
            .find(|e| e.message_id == message_id)
            .map(|e| e.response.as_deref())
    }

    pub fn remember(&mut self, message_id: u16, now_ms: u64, response: Option<Vec<u8>>) {
        self.expire(now_ms);
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(Entry {
            message_id,
            at_ms: now_ms,
            response,
        });
    }

    /// Sets the response remembered for `message_id` (a deferred answer
    /// that is now known), or remembers it anew if it has gone.
    pub fn replace(&mut self, message_id: u16, now_ms: u64, response: Option<Vec<u8>>) {
        match self.entries.iter_mut().find(|e| e.message_id == message_id) {
            Some(e) => e.response = response,
            None => self.remember(message_id, now_ms, response),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_within_lifetime_and_forgets_after() {
        let mut d = Dedup::new(4);
        assert!(d.seen(7, 0).is_none());
        d.remember(7, 0, Some(vec![1, 2]));
        assert_eq!(d.seen(7, 1000), Some(Some(&[1u8, 2][..])));
        assert!(d.seen(7, EXCHANGE_LIFETIME_MS).is_none());
        assert!(d.is_empty());
    }

    #[test]
    fn is_bounded() {
        let mut d = Dedup::new(4);
        for id in 0..100 {
            d.remember(id, 5, None);
        }
        assert_eq!(d.len(), 4);
        assert!(d.seen(0, 5).is_none());
        assert_eq!(d.seen(99, 5), Some(None));
    }
}
