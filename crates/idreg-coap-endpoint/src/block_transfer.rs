//! The block-wise transfers (RFC 7959) of one session: a request body being
//! assembled from Block1 blocks, and the last large non-GET response being
//! served in Block2 blocks. A device runs one block-wise exchange at a time,
//! so one of each per session is enough, and both are bounded: an idle
//! session's endpoint holds none of this.

use crate::block_option::BlockOption;
use crate::resources::Reply;

/// The largest request body assembled from Block1 blocks. A CSR with a
/// P-256 key is ~400 bytes, a re-enrollment request with a certificate chain
/// a few KB; anything beyond this is refused with 4.13 and Size1.
pub const MAX_REQUEST_BODY: usize = 8 * 1024;

/// The largest non-GET response kept for Block2 follow-ups. GET responses are
/// not kept: a follow-up block is cut from the representation made anew, and
/// the ETag tells the device if it changed in between.
pub const MAX_KEPT_RESPONSE: usize = 16 * 1024;

/// A transfer with no block for this long is dropped (a device that starts
/// a new one later starts at block 0).
pub const IDLE_MS: u64 = 60_000;

/// What identifies "the same request" across its blocks (RFC 7959 §2.3: the
/// method and the request's URI and Content-Format; the token may change).
pub type RequestKey = Vec<u8>;

/// What the receipt of one Block1 block means for the exchange.
#[derive(Debug, PartialEq, Eq)]
pub enum Block1Outcome {
    /// More blocks are awaited: answer 2.31 Continue.
    Continue,
    /// The body is whole: process the request with it.
    Complete(Vec<u8>),
    /// A block that does not follow the one before (or no transfer is in
    /// progress): 4.08 Request Entity Incomplete.
    Incomplete,
    /// The body would exceed [`MAX_REQUEST_BODY`]: 4.13 with Size1.
    TooLarge,
    /// A non-final block shorter than its size: 4.00.
    ShortBlock,
}

#[derive(Debug, Default)]
pub struct BlockTransfer {
    upload: Option<(RequestKey, Vec<u8>, u64)>,
    download: Option<(RequestKey, Reply, u64)>,
}

impl BlockTransfer {
    /// True when nothing is in progress, so the owner may drop it.
    pub fn is_empty(&self) -> bool {
        self.upload.is_none() && self.download.is_none()
    }

    /// Drops transfers that have been idle for [`IDLE_MS`].
    pub fn expire(&mut self, now_ms: u64) {
        if matches!(&self.upload, Some((_, _, t)) if now_ms.saturating_sub(*t) >= IDLE_MS) {
            self.upload = None;
        }
        if matches!(&self.download, Some((_, _, t)) if now_ms.saturating_sub(*t) >= IDLE_MS) {
            self.download = None;
        }
    }

    /// Takes one Block1 block of the request `key`.
    pub fn receive(
        &mut self,
        key: &[u8],
        block: BlockOption,
        payload: &[u8],
        now_ms: u64,
    ) -> Block1Outcome {
        if block.more && payload.len() != block.size() {
            self.upload = None;
            return Block1Outcome::ShortBlock;
        }
        if block.num == 0 {
            // Block 0 always starts over, replacing whatever was in progress.
            self.upload = Some((key.to_vec(), Vec::new(), now_ms));
        }
        let Some((upload_key, body, last)) = self.upload.as_mut() else {
            return Block1Outcome::Incomplete;
        };
        // Blocks must come in order; the size may shrink mid-transfer, so the
        // check is on the offset, not the number.
        if upload_key.as_slice() != key || block.offset() != body.len() {
            self.upload = None;
            return Block1Outcome::Incomplete;
        }
        if body.len() + payload.len() > MAX_REQUEST_BODY {
            self.upload = None;
            return Block1Outcome::TooLarge;
        }
        body.extend_from_slice(payload);
        *last = now_ms;
        if block.more {
            return Block1Outcome::Continue;
        }
        let (_, body, _) = self.upload.take().expect("checked above");
        Block1Outcome::Complete(body)
    }

    /// Keeps a response whose later blocks the device will ask for. Returns
    /// false (and keeps nothing) when it is too large to keep.
    pub fn keep(&mut self, key: &[u8], response: Reply, now_ms: u64) -> bool {
        if response.payload.len() > MAX_KEPT_RESPONSE {
            return false;
        }
        self.download = Some((key.to_vec(), response, now_ms));
        true
    }

    /// The kept response to `key`, if there is one.
    pub fn kept(&mut self, key: &[u8], now_ms: u64) -> Option<&Reply> {
        match self.download.as_mut() {
            Some((k, response, last)) if k.as_slice() == key => {
                *last = now_ms;
                Some(response)
            }
            _ => None,
        }
    }

    /// Forgets the kept response once its last block has been sent.
    pub fn finish_download(&mut self) {
        self.download = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(num: u32, more: bool, szx: u8) -> BlockOption {
        BlockOption { num, more, szx }
    }

    #[test]
    fn blocks_in_order_assemble_the_body() {
        let mut t = BlockTransfer::default();
        let key = b"POST est/sen".to_vec();
        assert_eq!(
            t.receive(&key, block(0, true, 0), &[1; 16], 0),
            Block1Outcome::Continue
        );
        assert_eq!(
            t.receive(&key, block(1, true, 0), &[2; 16], 1),
            Block1Outcome::Continue
        );
        let Block1Outcome::Complete(body) = t.receive(&key, block(2, false, 0), &[3; 5], 2) else {
            panic!("expected the whole body");
        };
        assert_eq!(body.len(), 37);
        assert_eq!(&body[32..], &[3; 5]);
        assert!(t.is_empty());
    }

    #[test]
    fn size_may_shrink_but_offsets_must_follow() {
        let mut t = BlockTransfer::default();
        let key = b"k".to_vec();
        // 64-byte block 0, then the client switches to 32-byte blocks: block 2
        // of size 32 starts at offset 64.
        assert_eq!(
            t.receive(&key, block(0, true, 2), &[0; 64], 0),
            Block1Outcome::Continue
        );
        assert!(matches!(
            t.receive(&key, block(2, false, 1), &[0; 10], 0),
            Block1Outcome::Complete(b) if b.len() == 74
        ));
        // A gap, a repeat of an earlier block, or a block for another request.
        t.receive(&key, block(0, true, 0), &[0; 16], 0);
        assert_eq!(
            t.receive(&key, block(2, true, 0), &[0; 16], 0),
            Block1Outcome::Incomplete
        );
        assert_eq!(
            t.receive(&key, block(1, true, 0), &[0; 16], 0),
            Block1Outcome::Incomplete,
            "a failed transfer is gone"
        );
        t.receive(&key, block(0, true, 0), &[0; 16], 0);
        assert_eq!(
            t.receive(b"other", block(1, false, 0), &[0; 3], 0),
            Block1Outcome::Incomplete
        );
    }

    #[test]
    fn short_blocks_oversized_bodies_and_idle_transfers_end() {
        let mut t = BlockTransfer::default();
        assert_eq!(
            t.receive(b"k", block(0, true, 0), &[0; 15], 0),
            Block1Outcome::ShortBlock
        );
        let mut outcome = Block1Outcome::Continue;
        for num in 0..=(MAX_REQUEST_BODY / 1024) as u32 {
            outcome = t.receive(b"k", block(num, true, 6), &[0; 1024], 0);
        }
        assert_eq!(outcome, Block1Outcome::TooLarge);
        assert!(t.is_empty());

        t.receive(b"k", block(0, true, 0), &[0; 16], 0);
        t.expire(IDLE_MS - 1);
        assert!(!t.is_empty());
        t.expire(IDLE_MS);
        assert!(t.is_empty());
        assert_eq!(
            t.receive(b"k", block(1, false, 0), &[0; 3], IDLE_MS),
            Block1Outcome::Incomplete
        );
    }

    #[test]
    fn kept_responses_are_found_by_key_and_bounded() {
        let mut t = BlockTransfer::default();
        let r = |n| Reply {
            code: coap_lite::ResponseType::Changed,
            format: None,
            payload: vec![0; n],
        };
        assert!(!t.keep(b"k", r(MAX_KEPT_RESPONSE + 1), 0));
        assert!(t.is_empty());
        assert!(t.keep(b"k", r(2000), 0));
        assert!(t.kept(b"other", 0).is_none());
        assert_eq!(t.kept(b"k", 0).unwrap().payload.len(), 2000);
        t.finish_download();
        assert!(t.kept(b"k", 0).is_none());
    }
}
