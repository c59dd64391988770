//! The CoAP side of one authenticated device session, with no sockets and no
//! clock: decrypted datagrams in, datagrams out. Message-layer rules of
//! RFC 7252 live here (piggybacked ACKs, deduplication, RST, ping, critical
//! options, block-wise transfers); what each resource answers lives in
//! `resources`.

use coap_lite::{
    CoapOption, ContentFormat, MessageClass, MessageType, Packet, RequestType, ResponseType,
};

use crate::block_option::{decode_uint, encode_uint, BlockOption, MAX_SZX};
use crate::block_transfer::{Block1Outcome, BlockTransfer, RequestKey, MAX_REQUEST_BODY};
use crate::dedup::{Dedup, DEFAULT_CAPACITY};
use crate::observe::{Observation, Observations, CON_EVERY};
use crate::resources::{self, Reply, Request, ResourceContext, Routed};

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
    27, // Block1
    28, // Size2
    60, // Size1
];

/// Parsed fixed header of a CoAP message, enough to answer even when the rest
/// does not parse.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawHeader {
    pub kind: MessageType,
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
        kind: match (datagram[0] >> 4) & 0x03 {
            0 => MessageType::Confirmable,
            1 => MessageType::NonConfirmable,
            2 => MessageType::Acknowledgement,
            _ => MessageType::Reset,
        },
        code: datagram[1],
        message_id: u16::from_be_bytes([datagram[2], datagram[3]]),
        token_len,
    })
}

/// The first header byte: version 1, the type, the token length.
pub fn first_header_byte(kind: MessageType, token_len: usize) -> u8 {
    let bits = match kind {
        MessageType::Confirmable => 0,
        MessageType::NonConfirmable => 1,
        MessageType::Acknowledgement => 2,
        MessageType::Reset => 3,
    };
    0x40 | (bits << 4) | token_len as u8
}

/// An empty message (RST, or an ACK) with the given id.
pub fn empty_message(kind: MessageType, message_id: u16) -> Vec<u8> {
    let id = message_id.to_be_bytes();
    vec![first_header_byte(kind, 0), 0, id[0], id[1]]
}

/// A response carrying only a code, echoing the header's id and token; used
/// when a request's options or payload cannot be parsed.
fn bare_response(h: &RawHeader, datagram: &[u8], code: u8) -> Vec<u8> {
    let id = h.message_id.to_be_bytes();
    // CON -> piggybacked ACK; NON -> NON with the same id (we keep no counter here).
    let kind = if h.kind == MessageType::Confirmable {
        MessageType::Acknowledgement
    } else {
        MessageType::NonConfirmable
    };
    let mut out = vec![first_header_byte(kind, h.token_len), code, id[0], id[1]];
    out.extend_from_slice(&datagram[4..4 + h.token_len]);
    out
}

const CODE_BAD_REQUEST: u8 = 0x80; // 4.00

pub struct CoapEndpoint {
    dedup: Dedup,
    next_message_id: u16,
    /// Block-wise transfers in progress; boxed so an idle session pays one
    /// pointer for them.
    blocks: Option<Box<BlockTransfer>>,
    /// A request whose response is still being made (an enrollment waiting
    /// for raft); at most one per session.
    pending: Option<Box<Pending>>,
    /// Observers of this session (RFC 7641); boxed like `blocks`.
    observations: Option<Box<Observations>>,
}

type Options = Vec<(CoapOption, Vec<u8>)>;

/// What answering a deferred request later needs: who asked, in which
/// message, and how the response is to be cut into blocks.
struct Pending {
    header: RawHeader,
    token: Vec<u8>,
    method: RequestType,
    key: RequestKey,
    options: Options,
    block2: Option<BlockOption>,
}

/// What [`CoapEndpoint::exchange`] made of a request.
enum Exchanged {
    Now(Reply, Options),
    /// The resource answers later; the request's shape is kept.
    Later {
        method: RequestType,
        key: RequestKey,
        options: Options,
        block2: Option<BlockOption>,
    },
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
            blocks: None,
            pending: None,
            observations: None,
        }
    }

    /// Observations this session holds.
    pub fn observation_count(&self) -> usize {
        self.observations.as_ref().map_or(0, |o| o.len())
    }

    /// Notifies the observers of `path` that it changed: a datagram each
    /// (NON, every few a CON), with the resource's representation made
    /// anew — its first Block2 block when it is longer than the observer's
    /// block size (RFC 7959 §3.4). An observer whose last CON went
    /// unacknowledged, or whose resource now answers an error, is dropped.
    pub fn notify(&mut self, path: &[&str], ctx: &dyn ResourceContext) -> Vec<Vec<u8>> {
        let Some(observations) = self.observations.as_mut() else {
            return Vec::new();
        };
        let targets = observations.of_path(path);
        let mut out = Vec::new();
        for mut o in targets {
            let path: Vec<&str> = o.path.iter().map(String::as_str).collect();
            let query: Vec<&str> = o.query.iter().map(String::as_str).collect();
            let request = Request {
                method: RequestType::Get,
                path: &path,
                query: &query,
                accept: o.accept,
                content_format: None,
                payload: &[],
                block2: None,
            };
            let Routed::Now(reply) = resources::dispatch(&request, ctx) else {
                continue;
            };
            let still = reply.code == ResponseType::Content;
            let szx = o.szx.unwrap_or(MAX_SZX);
            let (reply, mut options) = if reply.payload.len() <= BlockOption::size_of(szx) {
                (reply, Vec::new())
            } else {
                let first = BlockOption {
                    num: 0,
                    more: false,
                    szx,
                };
                let (block, options, _) = cut_block(&reply, first);
                (block, options)
            };
            o.seq = (o.seq + 1) & 0x00ff_ffff;
            o.sent += 1;
            let message_id = self.take_message_id();
            let confirmable = o.sent.is_multiple_of(CON_EVERY);
            o.last_message_id = Some(message_id);
            o.awaiting = confirmable.then_some(message_id);
            if still {
                options.push((CoapOption::Observe, encode_uint(o.seq)));
            }
            let kind = if confirmable {
                MessageType::Confirmable
            } else {
                MessageType::NonConfirmable
            };
            out.extend(response_bytes(kind, message_id, &o.token, reply, options));
            let observations = self.observations.as_mut().expect("checked above");
            if still {
                observations.register(o);
            } else {
                observations.cancel(&o.token);
            }
        }
        if self.observations.as_ref().is_some_and(|o| o.is_empty()) {
            self.observations = None;
        }
        out
    }

    /// A GET with Observe: 0 registers the token for notifications (when
    /// the resource is observable, answered 2.05, and there is room), 1
    /// cancels it. The response then carries the Observe option.
    fn observe_request(
        &mut self,
        request: &Packet,
        reply: &Reply,
        options: &mut Options,
        ctx: &dyn ResourceContext,
    ) {
        let Some(value) = request.get_first_option(CoapOption::Observe) else {
            return;
        };
        let token = request.get_token().to_vec();
        match decode_uint(value) {
            Some(0) => {}
            Some(1) => {
                if let Some(o) = self.observations.as_mut() {
                    o.cancel(&token);
                }
                return;
            }
            _ => return,
        }
        let block2 = block_option(request, CoapOption::Block2).ok().flatten();
        let path = option_strings(request, CoapOption::UriPath);
        let path_refs: Vec<&str> = path.iter().map(String::as_str).collect();
        if reply.code != ResponseType::Content
            || !resources::observable(&path_refs)
            || block2.is_some_and(|b| b.num > 0)
        {
            return;
        }
        let registered = self
            .observations
            .as_mut()
            .is_some_and(|o| o.register_again(&token))
            || ctx.may_observe();
        if !registered {
            return;
        }
        let observation = Observation {
            token,
            path,
            query: option_strings(request, CoapOption::UriQuery),
            accept: content_format(request, CoapOption::Accept).ok().flatten(),
            szx: block2.map(|b| b.szx),
            seq: 1,
            sent: 0,
            awaiting: None,
            last_message_id: None,
        };
        if self
            .observations
            .get_or_insert_with(Default::default)
            .register(observation)
        {
            options.push((CoapOption::Observe, encode_uint(1)));
        }
    }

    /// Whether a deferred response is still to come.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// The response to the deferred request, now that it is known: sent as
    /// the piggybacked ACK the device is still waiting for (its
    /// retransmissions were not answered meanwhile), and remembered for
    /// later duplicates.
    pub fn complete(&mut self, reply: Reply, now_ms: u64) -> Option<Vec<u8>> {
        let p = self.pending.take()?;
        let (reply, options) = self.shape(reply, p.options, p.block2, p.method, &p.key, now_ms);
        let response = self.encode(&p.header, &p.token, reply, options);
        self.dedup
            .replace(p.header.message_id, now_ms, response.clone());
        response
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
        if matches!(h.kind, MessageType::Acknowledgement | MessageType::Reset) {
            // ACK/RST: only notifications await them.
            if let Some(o) = self.observations.as_mut() {
                o.answered(h.message_id, h.kind == MessageType::Reset);
            }
            return None;
        }
        if h.code == 0 {
            // Empty CON is a ping (answered with RST); empty NON is malformed.
            return (h.kind == MessageType::Confirmable)
                .then(|| empty_message(MessageType::Reset, h.message_id));
        }
        if let Some(cached) = self.dedup.seen(h.message_id, now_ms) {
            return cached.map(<[u8]>::to_vec);
        }
        let response = self.respond(&h, datagram, now_ms, ctx);
        self.dedup.remember(h.message_id, now_ms, response.clone());
        response
    }

    fn respond(
        &mut self,
        h: &RawHeader,
        datagram: &[u8],
        now_ms: u64,
        ctx: &dyn ResourceContext,
    ) -> Option<Vec<u8>> {
        let request = match Packet::from_bytes(datagram) {
            Ok(p) => p,
            Err(_) if h.kind == MessageType::Confirmable => {
                return Some(bare_response(h, datagram, CODE_BAD_REQUEST))
            }
            Err(_) => return None,
        };
        let method = match request.header.code {
            MessageClass::Request(m) => m,
            // A response or reserved code sent to us: reject a CON, ignore a NON.
            _ => {
                return (h.kind == MessageType::Confirmable)
                    .then(|| empty_message(MessageType::Reset, h.message_id))
            }
        };
        let (reply, options) = match unknown_critical_option(&request) {
            Some(number) => (
                Reply::error(
                    ResponseType::BadOption,
                    format!("unsupported critical option {number}"),
                ),
                Vec::new(),
            ),
            None => match self.exchange(method, &request, now_ms, ctx) {
                Exchanged::Now(reply, options) => (reply, options),
                Exchanged::Later {
                    method,
                    key,
                    options,
                    block2,
                } => {
                    self.pending = Some(Box::new(Pending {
                        header: *h,
                        token: request.get_token().to_vec(),
                        method,
                        key,
                        options,
                        block2,
                    }));
                    // Its retransmissions go unanswered until then.
                    return None;
                }
            },
        };
        let mut options = options;
        if method == RequestType::Get {
            self.observe_request(&request, &reply, &mut options, ctx);
        }
        self.encode(h, request.get_token(), reply, options)
    }

    fn encode(
        &mut self,
        h: &RawHeader,
        token: &[u8],
        reply: Reply,
        options: Options,
    ) -> Option<Vec<u8>> {
        if self.blocks.as_ref().is_some_and(|t| t.is_empty()) {
            self.blocks = None;
        }
        // A CON is answered piggybacked in its ACK; a NON with a NON of
        // our own message id.
        let (kind, message_id) = if h.kind == MessageType::Confirmable {
            (MessageType::Acknowledgement, h.message_id)
        } else {
            (MessageType::NonConfirmable, self.take_message_id())
        };
        response_bytes(kind, message_id, token, reply, options)
    }

    /// The next message id of ours (notifications, NON responses).
    fn take_message_id(&mut self) -> u16 {
        let id = self.next_message_id;
        self.next_message_id = id.wrapping_add(1);
        id
    }

    /// One request, block-wise or not (RFC 7959): a Block1 block joins the
    /// body being assembled, and a response longer than the device's block
    /// size goes out one Block2 block at a time.
    fn exchange(
        &mut self,
        method: RequestType,
        request: &Packet,
        now_ms: u64,
        ctx: &dyn ResourceContext,
    ) -> Exchanged {
        let no_options = Vec::new;
        let (block1, block2) = match (
            block_option(request, CoapOption::Block1),
            block_option(request, CoapOption::Block2),
        ) {
            (Ok(b1), Ok(b2)) => (b1, b2),
            (Err(reply), _) | (_, Err(reply)) => return Exchanged::Now(reply, no_options()),
        };
        if let Some(t) = self.blocks.as_mut() {
            t.expire(now_ms);
        }
        let request_size = request
            .get_first_option(CoapOption::Size1)
            .and_then(|v| decode_uint(v));
        if request_size.is_some_and(|n| n as usize > MAX_REQUEST_BODY) {
            return too_large();
        }
        let key = request_key(method, request);
        let mut options = Vec::new();
        let assembled;
        let payload: &[u8] = match block1 {
            None => &request.payload,
            Some(b1) => {
                let transfer = self.blocks.get_or_insert_with(Default::default);
                match transfer.receive(&key, b1, &request.payload, now_ms) {
                    Block1Outcome::Continue => {
                        let reply = Reply {
                            code: ResponseType::Continue,
                            format: None,
                            payload: Vec::new(),
                        };
                        return Exchanged::Now(reply, vec![(CoapOption::Block1, b1.encode())]);
                    }
                    Block1Outcome::Complete(body) => {
                        let last = BlockOption { more: false, ..b1 };
                        options.push((CoapOption::Block1, last.encode()));
                        assembled = body;
                        &assembled
                    }
                    Block1Outcome::Incomplete => {
                        let reply = Reply::error(
                            ResponseType::RequestEntityIncomplete,
                            "Block1 block out of order, or no transfer in progress: start at block 0",
                        );
                        return Exchanged::Now(reply, no_options());
                    }
                    Block1Outcome::TooLarge => return too_large(),
                    Block1Outcome::ShortBlock => {
                        let reply = Reply::error(
                            ResponseType::BadRequest,
                            "a Block1 block with more to follow must be full size",
                        );
                        return Exchanged::Now(reply, no_options());
                    }
                }
            }
        };

        // With no Block2 of its own, a device that sent its body in blocks
        // gets the response in blocks of that size (RFC 7959 §2.5).
        let block2 = block2.or(block1.map(|b1| BlockOption {
            num: 0,
            more: false,
            szx: b1.szx,
        }));

        // A later block of a response the device has the start of: a kept
        // one (non-GET), or for GET the representation made anew.
        let later_block = block2.filter(|b| b.num > 0 && block1.is_none());
        if let Some(b2) = later_block {
            if let Some(kept) = self.blocks.as_mut().and_then(|t| t.kept(&key, now_ms)) {
                let (reply, block_options, last) = cut_block(kept, b2);
                if let Some(t) = self.blocks.as_mut().filter(|_| last) {
                    t.finish_download();
                }
                return Exchanged::Now(reply, block_options);
            }
            if method != RequestType::Get {
                let reply = Reply::error(
                    ResponseType::RequestEntityIncomplete,
                    "no response to continue: repeat the request from block 0",
                );
                return Exchanged::Now(reply, no_options());
            }
        }

        let busy = Busy(ctx);
        let ctx: &dyn ResourceContext = match self.pending {
            Some(_) => &busy,
            None => ctx,
        };
        let reply = match route(method, request, payload, ctx) {
            Routed::Now(reply) => reply,
            Routed::Block {
                reply,
                block,
                total,
                etag,
            } => {
                let end = block.offset() as u64 + reply.payload.len() as u64;
                let block = BlockOption {
                    more: end < total,
                    ..block
                };
                let mut options = vec![
                    (CoapOption::Block2, block.encode()),
                    (CoapOption::ETag, etag.to_vec()),
                ];
                if block.num == 0 {
                    options.push((CoapOption::Size2, encode_uint(total as u32)));
                }
                return Exchanged::Now(reply, options);
            }
            Routed::Later => {
                return Exchanged::Later {
                    method,
                    key,
                    options,
                    block2,
                }
            }
        };
        let (reply, options) = self.shape(reply, options, block2, method, &key, now_ms);
        Exchanged::Now(reply, options)
    }

    /// A resource's reply as it goes out: whole when it fits the device's
    /// block size, else its first (or asked-for) Block2 block, the rest of a
    /// non-GET response kept for the device's next requests.
    fn shape(
        &mut self,
        reply: Reply,
        mut options: Options,
        block2: Option<BlockOption>,
        method: RequestType,
        key: &RequestKey,
        now_ms: u64,
    ) -> (Reply, Options) {
        let szx = block2.map_or(MAX_SZX, |b| b.szx);
        let num = block2.map_or(0, |b| b.num);
        if num == 0 && reply.payload.len() <= BlockOption::size_of(szx) {
            return (reply, options);
        }
        let (block, block_options, last) = cut_block(
            &reply,
            BlockOption {
                num,
                more: false,
                szx,
            },
        );
        options.extend(block_options);
        if method != RequestType::Get && !last {
            let transfer = self.blocks.get_or_insert_with(Default::default);
            if !transfer.keep(key, reply, now_ms) {
                let reply = Reply::error(
                    ResponseType::InternalServerError,
                    "response too large to send block-wise",
                );
                return (reply, Vec::new());
            }
        }
        (block, options)
    }
}

/// The session's context while a deferred answer is outstanding: one at a
/// time, so another enrollment is refused before it starts.
struct Busy<'a>(&'a dyn ResourceContext);

impl ResourceContext for Busy<'_> {
    fn device_id(&self) -> &str {
        self.0.device_id()
    }
    fn credential(&self) -> &'static str {
        self.0.credential()
    }
    fn status(&self) -> Option<&'static str> {
        self.0.status()
    }
    fn revocation_list(&self) -> (u64, u64) {
        self.0.revocation_list()
    }
    fn device_ca_certificate(&self) -> Option<Vec<u8>> {
        self.0.device_ca_certificate()
    }
    fn enrollment_only(&self) -> bool {
        self.0.enrollment_only()
    }
    fn signed_revocation_list(&self, since: Option<u64>) -> Result<Vec<u8>, Reply> {
        self.0.signed_revocation_list(since)
    }
    fn revocation_list_key(&self) -> Option<(Vec<u8>, String)> {
        self.0.revocation_list_key()
    }
    fn may_observe(&self) -> bool {
        self.0.may_observe()
    }
    fn spoke_status(&self, spoke: &str) -> Result<&'static str, Reply> {
        self.0.spoke_status(spoke)
    }
    fn report_spoke_session(
        &self,
        report: &crate::resources::SpokeSessionReport,
    ) -> Result<(), Reply> {
        self.0.report_spoke_session(report)
    }
    fn spokes(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<crate::resources::SpokePage, Reply> {
        self.0.spokes(after, limit)
    }
    fn start_enrollment(&self, _: &crate::est::EnrollRequest<'_>) -> Result<(), Reply> {
        Err(Reply::error(
            ResponseType::ServiceUnavailable,
            "an enrollment of this session is still being answered",
        ))
    }
    fn firmware_manifest(&self) -> Result<Vec<u8>, Reply> {
        self.0.firmware_manifest()
    }
    fn firmware_image(
        &self,
        offset: u64,
        len: usize,
    ) -> Result<crate::resources::ImageWindow, Reply> {
        self.0.firmware_image(offset, len)
    }
    fn report_firmware(
        &self,
        state: &crate::resources::FirmwareState,
        later: bool,
    ) -> Result<(), Reply> {
        if later {
            return Err(Reply::error(
                ResponseType::ServiceUnavailable,
                "an earlier request of this session is still being answered",
            ));
        }
        self.0.report_firmware(state, later)
    }
}

/// 4.13 with the largest body we take in Size1 (RFC 7959 §4).
fn too_large() -> Exchanged {
    let reply = Reply::error(
        ResponseType::RequestEntityTooLarge,
        format!("request body over {MAX_REQUEST_BODY} bytes"),
    );
    let size1 = encode_uint(MAX_REQUEST_BODY as u32);
    Exchanged::Now(reply, vec![(CoapOption::Size1, size1)])
}

/// Block `want.num` of a response in blocks of `want.size()`: the reply, its
/// Block2 (and on block 0 Size2) and ETag options, and whether it is the last.
/// A block past the end is 4.02 (RFC 7959 §2.2).
fn cut_block(whole: &Reply, want: BlockOption) -> (Reply, Vec<(CoapOption, Vec<u8>)>, bool) {
    let len = whole.payload.len();
    let start = want.offset();
    if start >= len && !(len == 0 && want.num == 0) {
        let reply = Reply::error(ResponseType::BadOption, "Block2 block past the end");
        return (reply, Vec::new(), true);
    }
    let end = (start + want.size()).min(len);
    let block = BlockOption {
        num: want.num,
        more: end < len,
        szx: want.szx,
    };
    let mut options = vec![
        (CoapOption::Block2, block.encode()),
        (CoapOption::ETag, etag(&whole.payload).to_vec()),
    ];
    if want.num == 0 {
        options.push((CoapOption::Size2, encode_uint(len as u32)));
    }
    let reply = Reply {
        code: whole.code,
        format: whole.format,
        payload: whole.payload[start..end].to_vec(),
    };
    (reply, options, !block.more)
}

/// A representation's entity tag (RFC 7252 §5.10.6): 64-bit FNV-1a of the
/// body, so a device fetching blocks sees when it changed in between.
fn etag(body: &[u8]) -> [u8; 8] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.to_be_bytes()
}

/// The Block1 or Block2 option of a request; 4.02 if it does not decode (or
/// is BERT, which is for CoAP over TCP).
fn block_option(request: &Packet, option: CoapOption) -> Result<Option<BlockOption>, Reply> {
    match request.get_first_option(option) {
        None => Ok(None),
        Some(v) => BlockOption::decode(v).map(Some).ok_or_else(|| {
            Reply::error(
                ResponseType::BadOption,
                format!("bad {option:?} value (block sizes are 16 to 1024)"),
            )
        }),
    }
}

/// What makes the blocks of a request one request (RFC 7959 §2.3): method,
/// Uri-Path, Uri-Query and Content-Format; not the token.
fn request_key(method: RequestType, request: &Packet) -> RequestKey {
    let mut key = vec![u8::from(MessageClass::Request(method))];
    for option in [
        CoapOption::UriPath,
        CoapOption::UriQuery,
        CoapOption::ContentFormat,
    ] {
        key.push(0xff);
        for value in request.get_option(option).into_iter().flatten() {
            key.extend_from_slice(&(value.len() as u16).to_be_bytes());
            key.extend_from_slice(value);
        }
    }
    key
}

fn unknown_critical_option(p: &Packet) -> Option<u16> {
    p.options()
        .map(|(n, _)| *n)
        .find(|n| n % 2 == 1 && !KNOWN_OPTIONS.contains(n))
}

fn option_strings(request: &Packet, option: CoapOption) -> Vec<String> {
    request
        .get_option(option)
        .map(|values| {
            values
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn content_format(request: &Packet, option: CoapOption) -> Result<Option<ContentFormat>, ()> {
    match request.get_first_option(option) {
        None => Ok(None),
        Some(v) => match decode_uint(v).map(|n| ContentFormat::try_from(n as usize)) {
            Some(Ok(cf)) => Ok(Some(cf)),
            _ => Err(()),
        },
    }
}

fn route(
    method: RequestType,
    request: &Packet,
    payload: &[u8],
    ctx: &dyn ResourceContext,
) -> Routed {
    let path = option_strings(request, CoapOption::UriPath);
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    let query = option_strings(request, CoapOption::UriQuery);
    let query: Vec<&str> = query.iter().map(String::as_str).collect();
    let Ok(accept) = content_format(request, CoapOption::Accept) else {
        return Routed::Now(Reply::error(
            ResponseType::NotAcceptable,
            "unknown Accept value",
        ));
    };
    let Ok(content_format) = content_format(request, CoapOption::ContentFormat) else {
        return Routed::Now(Reply::error(
            ResponseType::UnsupportedContentFormat,
            "unknown Content-Format value",
        ));
    };
    resources::dispatch(
        &Request {
            method,
            path: &path,
            query: &query,
            accept,
            content_format,
            payload,
            block2: block_option(request, CoapOption::Block2).ok().flatten(),
        },
        ctx,
    )
}

/// A response message: its type and id, the request's token, the reply's
/// code, content format and payload, and `options`.
fn response_bytes(
    kind: MessageType,
    message_id: u16,
    token: &[u8],
    reply: Reply,
    options: Options,
) -> Option<Vec<u8>> {
    let mut response = Packet::new();
    response.header.set_type(kind);
    response.header.message_id = message_id;
    response.set_token(token.to_vec());
    response.header.code = MessageClass::Response(reply.code);
    if let Some(cf) = reply.format {
        response.set_content_format(cf);
    }
    for (option, value) in options {
        response.add_option(option, value);
    }
    response.payload = reply.payload;
    response.to_bytes().ok()
}

#[cfg(test)]
mod tests;
