//! CoAP sent to the DTLS port in the clear: refused, and never answered
//! with more bytes than were sent.

use coap_lite::MessageType;

use crate::endpoint::{empty_message, first_header_byte};

/// 4.01 Unauthorized.
const CODE_UNAUTHORIZED: u8 = 0x81;

/// The answer to a CoAP message sent in the clear: 4.01 Unauthorized for a
/// confirmable request (piggybacked, no larger than the request, so it cannot
/// amplify), RST for other messages that expect an answer, nothing otherwise.
pub fn refuse_plain_coap(d: &[u8]) -> Option<Vec<u8>> {
    let h = crate::endpoint::raw_header(d)?;
    if h.kind != MessageType::Confirmable {
        return None;
    }
    match h.code {
        // A request (class 0, method 1..31): piggybacked 4.01.
        1..=31 => {
            let id = h.message_id.to_be_bytes();
            let ack = first_header_byte(MessageType::Acknowledgement, h.token_len);
            let mut out = vec![ack, CODE_UNAUTHORIZED, id[0], id[1]];
            out.extend_from_slice(&d[4..4 + h.token_len]);
            Some(out)
        }
        _ => Some(empty_message(MessageType::Reset, h.message_id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
