//! Puts incoming handshake fragments back into whole messages and hands them
//! out in `message_seq` order (RFC 6347 §4.2.2–4.2.3): fragments may be
//! lost, repeated, reordered or overlap. Bounded: only a few messages ahead
//! of the next expected one, and only so many bytes, are buffered.

use crate::handshake_codec::{Fragment, HandshakeType};

/// Messages buffered beyond the next expected one.
const MAX_AHEAD: u16 = 8;
/// Bytes buffered in all.
const MAX_BUFFERED: usize = 32 * 1024;

/// What became of a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Kept (or already known): wait for more.
    Buffered,
    /// Of a message already handed out: the peer is retransmitting.
    Stale,
    /// Too far ahead, or over the byte budget: dropped.
    Dropped,
    /// Contradicts what was received of the same message: dropped.
    Inconsistent,
}

struct Partial {
    seq: u16,
    msg_type: HandshakeType,
    data: Vec<u8>,
    /// Sorted, disjoint [start, end) ranges received.
    have: Vec<(u32, u32)>,
}

impl Partial {
    fn complete(&self) -> bool {
        self.have == [(0, self.data.len() as u32)] || self.data.is_empty()
    }

    fn add(&mut self, start: u32, end: u32) {
        self.have.push((start, end));
        self.have.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(self.have.len());
        for (s, e) in self.have.drain(..) {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.have = merged;
    }
}

pub struct MessageAssembler {
    next_seq: u16,
    partials: Vec<Partial>,
}

impl MessageAssembler {
    /// Expects `first_seq` next.
    pub fn new(first_seq: u16) -> Self {
        Self {
            next_seq: first_seq,
            partials: Vec::new(),
        }
    }

    pub fn next_seq(&self) -> u16 {
        self.next_seq
    }

    fn buffered(&self) -> usize {
        self.partials.iter().map(|p| p.data.len()).sum()
    }

    pub fn push(&mut self, f: &Fragment<'_>) -> Accepted {
        if f.message_seq < self.next_seq {
            return Accepted::Stale;
        }
        if f.message_seq - self.next_seq > MAX_AHEAD {
            return Accepted::Dropped;
        }
        let idx = match self.partials.iter().position(|p| p.seq == f.message_seq) {
            Some(i) => i,
            None => {
                if self.buffered() + f.length as usize > MAX_BUFFERED {
                    return Accepted::Dropped;
                }
                self.partials.push(Partial {
                    seq: f.message_seq,
                    msg_type: f.msg_type,
                    data: vec![0; f.length as usize],
                    have: Vec::new(),
                });
                self.partials.len() - 1
            }
        };
        let p = &mut self.partials[idx];
        if p.msg_type != f.msg_type || p.data.len() != f.length as usize {
            return Accepted::Inconsistent;
        }
        let start = f.offset as usize;
        let end = start + f.body.len();
        // `fragments()` checked end <= length.
        p.data[start..end].copy_from_slice(f.body);
        if end > start {
            p.add(start as u32, end as u32);
        }
        Accepted::Buffered
    }

    /// The next message in order, once all of it has arrived.
    pub fn pop(&mut self) -> Option<(HandshakeType, u16, Vec<u8>)> {
        let idx = self
            .partials
            .iter()
            .position(|p| p.seq == self.next_seq && p.complete())?;
        let p = self.partials.swap_remove(idx);
        self.next_seq = self.next_seq.wrapping_add(1);
        Some((p.msg_type, p.seq, p.data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(seq: u16, len: u32, offset: u32, body: &[u8]) -> Fragment<'_> {
        Fragment {
            msg_type: HandshakeType::Certificate,
            length: len,
            message_seq: seq,
            offset,
            body,
        }
    }

    #[test]
    fn reordered_overlapping_fragments_make_whole_messages_in_order() {
        let mut a = MessageAssembler::new(1);
        assert_eq!(a.push(&frag(2, 2, 0, b"xy")), Accepted::Buffered);
        assert!(a.pop().is_none(), "2 waits for 1");
        assert_eq!(a.push(&frag(1, 6, 3, b"def")), Accepted::Buffered);
        assert!(a.pop().is_none());
        assert_eq!(a.push(&frag(1, 6, 0, b"abcd")), Accepted::Buffered);
        assert_eq!(a.pop().unwrap().2, b"abcdef");
        assert_eq!(a.pop().unwrap().2, b"xy");
        assert_eq!(a.push(&frag(1, 6, 0, b"abcdef")), Accepted::Stale);
    }

    #[test]
    fn gaps_wait_and_bounds_hold() {
        let mut a = MessageAssembler::new(0);
        a.push(&frag(0, 6, 0, b"ab"));
        a.push(&frag(0, 6, 4, b"ef"));
        assert!(a.pop().is_none(), "a gap at 2..4");
        assert_eq!(a.push(&frag(0, 7, 2, b"cd")), Accepted::Inconsistent);
        assert_eq!(a.push(&frag(20, 1, 0, b"z")), Accepted::Dropped);
        assert_eq!(a.push(&frag(1, 16 * 1024, 0, b"")), Accepted::Buffered);
        assert_eq!(
            a.push(&frag(2, 16 * 1024, 0, b"")),
            Accepted::Dropped,
            "over 32 KiB"
        );
    }
}
