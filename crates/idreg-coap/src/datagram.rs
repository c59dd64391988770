//! First look at a datagram arriving from an address with no session: only a
//! DTLS ClientHello may create state; plain CoAP is refused; the rest is
//! dropped unanswered.

/// DTLS record header length.
const RECORD_HEADER: usize = 13;
/// Handshake message header length (DTLS).
const HANDSHAKE_HEADER: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstDatagram {
    /// A DTLS handshake record in epoch 0 carrying a ClientHello.
    ClientHello,
    /// A CoAP message sent without DTLS.
    PlainCoap,
    /// Anything else (other DTLS records for a forgotten session, junk).
    Other,
}

pub fn classify(d: &[u8]) -> FirstDatagram {
    match d.first() {
        Some(22)
            if d.len() >= RECORD_HEADER + HANDSHAKE_HEADER
                && d[1] == 0xfe
                && (d[2] == 0xfd || d[2] == 0xff)
                && d[3] == 0
                && d[4] == 0
                && d[RECORD_HEADER] == 1 =>
        {
            FirstDatagram::ClientHello
        }
        Some(b) if b >> 6 == 1 && d.len() >= 4 => FirstDatagram::PlainCoap,
        _ => FirstDatagram::Other,
    }
}

/// The answer to a CoAP message sent in the clear: 4.01 Unauthorized for a
/// confirmable request (piggybacked, no larger than the request, so it cannot
/// amplify), RST for other messages that expect an answer, nothing otherwise.
pub fn refuse_plain_coap(d: &[u8]) -> Option<Vec<u8>> {
    let h = crate::endpoint::raw_header(d)?;
    match (h.kind, h.code) {
        (0, 1..=31) => {
            let id = h.message_id.to_be_bytes();
            let mut out = vec![0x60 | h.token_len as u8, 0x81, id[0], id[1]];
            out.extend_from_slice(&d[4..4 + h.token_len]);
            Some(out)
        }
        (0, _) => Some(crate::endpoint::empty_message(3, h.message_id)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        let mut hello = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 40, 1];
        hello.resize(60, 0);
        assert_eq!(classify(&hello), FirstDatagram::ClientHello);
        let mut epoch1 = hello.clone();
        epoch1[4] = 1;
        assert_eq!(classify(&epoch1), FirstDatagram::Other);
        assert_eq!(classify(&hello[..20]), FirstDatagram::Other);
        assert_eq!(classify(&[0x40, 1, 0, 1]), FirstDatagram::PlainCoap);
        assert_eq!(classify(&[]), FirstDatagram::Other);
        assert_eq!(classify(&[23, 0xfe, 0xfd]), FirstDatagram::Other);
    }

    #[test]
    fn plain_coap_get_is_refused_with_4_01_no_larger_than_the_request() {
        let req = [0x42, 0x01, 0x12, 0x34, 0xaa, 0xbb, 0xb2, b'i', b'd'];
        let out = refuse_plain_coap(&req).unwrap();
        assert_eq!(out, vec![0x62, 0x81, 0x12, 0x34, 0xaa, 0xbb]);
        assert!(out.len() <= req.len());
        assert_eq!(refuse_plain_coap(&[0x50, 0x01, 0, 1]), None); // NON: silence
        assert_eq!(
            refuse_plain_coap(&[0x40, 0, 0, 1]),
            Some(vec![0x70, 0, 0, 1])
        ); // ping
    }
}
