//! The CoAP side of one authenticated device session, with no sockets and no
//! clock: decrypted datagrams in, datagrams out. Message-layer rules of
//! RFC 7252 live here (piggybacked ACKs, deduplication, RST, ping, critical
//! options); what each resource answers lives in `resources`.

use coap_lite::{
    CoapOption, ContentFormat, MessageClass, MessageType, Packet, RequestType, ResponseType,
};

use crate::dedup::{Dedup, DEFAULT_CAPACITY};
use crate::resources::{self, Reply, ResourceContext};

/// Options this server understands. Any other critical (odd-numbered) option
/// makes a request fail with 4.02 (RFC 7252 §5.4.1).
const KNOWN_OPTIONS: &[u16] = &[
    3,  // Uri-Host
    6,  // Observe (elective)
    7,  // Uri-Port
    11, // Uri-Path
    12, // Content-Format
    15, // Uri-Query
    17, // Accept
    23, // Block2
    28, // Size2
    60, // Size1
];

/// Parsed fixed header of a CoAP message, enough to answer even when the rest
/// does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawHeader {
    pub kind: u8, // 0 CON, 1 NON, 2 ACK, 3 RST
    pub code: u8,
    pub message_id: u16,
    pub token_len: usize,
}

/// Reads the 4-byte CoAP header; `None` when it is not CoAP version 1 or the
/// token is cut off.
pub fn raw_header(datagram: &[u8]) -> Option<RawHeader> {
    if datagram.len() < 4 || datagram[0] >> 6 != 1 {
        return None;
    }
    let token_len = (datagram[0] & 0x0f) as usize;
    if token_len > 8 || datagram.len() < 4 + token_len {
        return None;
    }
    Some(RawHeader {
        kind: (datagram[0] >> 4) & 0x03,
        code: datagram[1],
        message_id: u16::from_be_bytes([datagram[2], datagram[3]]),
        token_len,
    })
}

/// An empty message (RST, or an ACK) with the given id.
pub fn empty_message(kind: u8, message_id: u16) -> Vec<u8> {
    let id = message_id.to_be_bytes();
    vec![0x40 | (kind << 4), 0, id[0], id[1]]
}

/// A response carrying only a code, echoing the header's id and token; used
/// when a request's options or payload cannot be parsed.
fn bare_response(h: &RawHeader, datagram: &[u8], code: u8) -> Vec<u8> {
    let id = h.message_id.to_be_bytes();
    // CON -> piggybacked ACK; NON -> NON with the same id (we keep no counter here).
    let kind = if h.kind == 0 { 2 } else { 1 };
    let mut out = vec![0x40 | (kind << 4) | h.token_len as u8, code, id[0], id[1]];
    out.extend_from_slice(&datagram[4..4 + h.token_len]);
    out
}

const CODE_BAD_REQUEST: u8 = 0x80; // 4.00

pub struct CoapEndpoint {
    dedup: Dedup,
    next_message_id: u16,
}

impl Default for CoapEndpoint {
    fn default() -> Self {
        Self::new(rand::random())
    }
}

impl CoapEndpoint {
    pub fn new(first_message_id: u16) -> Self {
        Self {
            dedup: Dedup::new(DEFAULT_CAPACITY),
            next_message_id: first_message_id,
        }
    }

    /// Handles one datagram from the device; returns the datagram to send back,
    /// if any.
    pub fn handle(
        &mut self,
        datagram: &[u8],
        now_ms: u64,
        ctx: &dyn ResourceContext,
    ) -> Option<Vec<u8>> {
        let h = raw_header(datagram)?; // not CoAP: silently ignored (RFC 7252 §4.2)
        match h.kind {
            2 | 3 => return None, // ACK/RST: we never send CON, nothing awaits them
            _ => {}
        }
        if h.code == 0 {
            // Empty CON is a ping (answered with RST); empty NON is malformed.
            return (h.kind == 0).then(|| empty_message(3, h.message_id));
        }
        if let Some(cached) = self.dedup.seen(h.message_id, now_ms) {
            return cached.map(<[u8]>::to_vec);
        }
        let response = self.respond(&h, datagram, ctx);
        self.dedup.remember(h.message_id, now_ms, response.clone());
        response
    }

    fn respond(
        &mut self,
        h: &RawHeader,
        datagram: &[u8],
        ctx: &dyn ResourceContext,
    ) -> Option<Vec<u8>> {
        let request = match Packet::from_bytes(datagram) {
            Ok(p) => p,
            Err(_) if h.kind == 0 => return Some(bare_response(h, datagram, CODE_BAD_REQUEST)),
            Err(_) => return None,
        };
        let method = match request.header.code {
            MessageClass::Request(m) => m,
            // A response or reserved code sent to us: reject a CON, ignore a NON.
            _ => return (h.kind == 0).then(|| empty_message(3, h.message_id)),
        };
        let reply = match unknown_critical_option(&request) {
            Some(number) => Reply::error(
                ResponseType::BadOption,
                format!("unsupported critical option {number}"),
            ),
            None => route(method, &request, ctx),
        };
        let mut response = Packet::new();
        if h.kind == 0 {
            response.header.set_type(MessageType::Acknowledgement);
            response.header.message_id = request.header.message_id;
        } else {
            response.header.set_type(MessageType::NonConfirmable);
            response.header.message_id = self.next_message_id;
            self.next_message_id = self.next_message_id.wrapping_add(1);
        }
        response.set_token(request.get_token().to_vec());
        response.header.code = MessageClass::Response(reply.code);
        if let Some(cf) = reply.format {
            response.set_content_format(cf);
        }
        response.payload = reply.payload;
        response.to_bytes().ok()
    }
}

fn unknown_critical_option(p: &Packet) -> Option<u16> {
    p.options()
        .map(|(n, _)| *n)
        .find(|n| n % 2 == 1 && !KNOWN_OPTIONS.contains(n))
}

fn route(method: RequestType, request: &Packet, ctx: &dyn ResourceContext) -> Reply {
    let path: Vec<String> = request
        .get_option(CoapOption::UriPath)
        .map(|segs| {
            segs.iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default();
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    let accept = match request.get_first_option(CoapOption::Accept) {
        None => None,
        Some(v) => match decode_uint(v).map(|n| ContentFormat::try_from(n as usize)) {
            Some(Ok(cf)) => Some(cf),
            _ => return Reply::error(ResponseType::NotAcceptable, "unknown Accept value"),
        },
    };
    resources::dispatch(method, &path, accept, ctx)
}

fn decode_uint(bytes: &[u8]) -> Option<u32> {
    if bytes.len() > 4 {
        return None;
    }
    Some(bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
}

#[cfg(test)]
mod tests;
