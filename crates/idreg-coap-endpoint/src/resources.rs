//! What each device-facing resource answers. The registry is reached through
//! [`ResourceContext`], so this module is tested without a store.

use coap_lite::{ContentFormat, RequestType, ResponseType};
use serde::Serialize;

use crate::block_option::BlockOption;

/// What a resource needs to know about the session and the registry.
pub trait ResourceContext {
    /// The authenticated device.
    fn device_id(&self) -> &str;
    /// How it authenticated: "psk" or "certificate".
    fn credential(&self) -> &'static str;
    /// Its current status as the registry on this node has it ("active",
    /// "disabled", "revoked"), or `None` if it has been deleted.
    fn status(&self) -> Option<&'static str>;
    /// The revocation list's version and number of entries.
    fn revocation_list(&self) -> (u64, u64);
    /// The cluster's device CA certificate (DER), once it has one.
    fn device_ca_certificate(&self) -> Option<Vec<u8>>;
    /// The signed revocation list (COSE_Sign1 bytes): whole, or the delta
    /// after version `since`. An error reply when it cannot be made.
    fn signed_revocation_list(&self, since: Option<u64>) -> Result<Vec<u8>, Reply> {
        let _ = since;
        Err(Reply::error(
            ResponseType::ServiceUnavailable,
            "no signed revocation list here",
        ))
    }
    /// The revocation list's signing key: SubjectPublicKeyInfo DER and PEM.
    fn revocation_list_key(&self) -> Option<(Vec<u8>, String)> {
        None
    }
    /// A page of the spokes of the session's device, which must be an
    /// active gateway: those with ids after `after`, at most `limit`.
    fn spokes(&self, after: Option<&str>, limit: usize) -> Result<SpokePage, Reply> {
        let _ = (after, limit);
        Err(Reply::error(ResponseType::Forbidden, "not a gateway"))
    }
    /// The status of `spoke` when the session's device is an active gateway
    /// and `spoke` is one of its active spokes; else the refusal.
    fn spoke_status(&self, spoke: &str) -> Result<&'static str, Reply> {
        let _ = spoke;
        Err(Reply::error(ResponseType::Forbidden, "not a gateway"))
    }
    /// Records a session a gateway's spoke had with it (its own link).
    fn report_spoke_session(&self, report: &SpokeSessionReport) -> Result<(), Reply> {
        let _ = report;
        Err(Reply::error(ResponseType::Forbidden, "not a gateway"))
    }
    /// The signed manifest (COSE_Sign1) of the firmware release offered to
    /// the session's device; 4.04 when none is.
    fn firmware_manifest(&self) -> Result<Vec<u8>, Reply> {
        Err(no_firmware())
    }
    /// `len` bytes of the offered image from `offset` (fewer at its end).
    fn firmware_image(&self, offset: u64, len: usize) -> Result<ImageWindow, Reply> {
        let _ = (offset, len);
        Err(no_firmware())
    }
    /// Records what the device reports about its firmware. With `later`
    /// the reply comes through `CoapEndpoint::complete` once it is stored;
    /// without, it is stored in the background.
    fn report_firmware(&self, state: &FirmwareState, later: bool) -> Result<(), Reply> {
        let _ = (state, later);
        Err(Reply::error(
            ResponseType::NotFound,
            "firmware reports are not taken here",
        ))
    }
    /// Whether this node takes one more observer (RFC 7641); it bounds
    /// them across sessions.
    fn may_observe(&self) -> bool {
        true
    }
    /// Whether the session's credential allows enrollment only (a
    /// manufacturer certificate, a bootstrap PSK): EST and discovery.
    fn enrollment_only(&self) -> bool {
        false
    }
    /// Starts an EST enrollment; its response comes later, through
    /// `CoapEndpoint::complete`. An error reply when it cannot start.
    fn start_enrollment(&self, request: &crate::est::EnrollRequest<'_>) -> Result<(), Reply> {
        let _ = request;
        Err(Reply::error(
            ResponseType::NotFound,
            "enrollment is not offered here",
        ))
    }
}

/// What a resource made of a request: the reply, or a reply to come (a
/// write through raft) that the session's owner completes.
#[derive(Debug, Clone)]
pub enum Routed {
    Now(Reply),
    Later,
    /// One Block2 block of a representation too large to make whole for
    /// each block (a firmware image): the reply holds just that block.
    Block {
        reply: Reply,
        block: BlockOption,
        total: u64,
        etag: [u8; 8],
    },
}

/// Part of a firmware image: the bytes asked for, the image's size and an
/// entity tag that changes with the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageWindow {
    pub bytes: Vec<u8>,
    pub total: u64,
    pub etag: [u8; 8],
}

/// What a device reports about its firmware (`POST /fw/state`): the
/// version it runs and, while an update is under way or after it failed,
/// the version it tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareState {
    pub running: String,
    /// `(version, "downloading" | "failed")`.
    pub attempt: Option<(String, &'static str)>,
}

fn no_firmware() -> Reply {
    Reply::error(
        ResponseType::NotFound,
        "no firmware update is offered to this device",
    )
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub code: ResponseType,
    pub format: Option<ContentFormat>,
    pub payload: Vec<u8>,
}

impl Reply {
    pub fn error(code: ResponseType, diagnostic: impl Into<String>) -> Self {
        // RFC 7252 §5.5.2: a diagnostic payload, no content format.
        Self {
            code,
            format: None,
            payload: diagnostic.into().into_bytes(),
        }
    }

    pub fn content(format: ContentFormat, payload: Vec<u8>) -> Self {
        Self {
            code: ResponseType::Content,
            format: Some(format),
            payload,
        }
    }
}

pub const WELL_KNOWN_CORE: &str = concat!(
    "</id>;rt=\"idreg.id\";ct=\"0 50 60\",",
    "</rl>;rt=\"idreg.rl\";ct=\"18 0 50 60\";obs,",
    "</rl/key>;rt=\"idreg.rl.key\";ct=\"0 42\",",
    "</gw/spokes>;rt=\"idreg.gw.spokes\";ct=\"60 50\";obs,",
    "</fw/manifest>;rt=\"idreg.fw.manifest\";ct=18,",
    "</fw/image>;rt=\"idreg.fw.image\";ct=42,",
    "</fw/state>;rt=\"idreg.fw.state\";ct=\"60 50 0\",",
    // RFC 9148 §5: EST-coaps, discoverable by its resource types.
    "</.well-known/est/crts>;rt=\"ace.est.crts\";ct=\"281 287\",",
    "</.well-known/est/sen>;rt=\"ace.est.sen\";ct=\"281 287\",",
    "</.well-known/est/sren>;rt=\"ace.est.sren\";ct=\"281 287\""
);

/// One spoke of a gateway as `/gw/spokes` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Spoke {
    pub id: String,
    pub status: &'static str,
    /// Credential kinds ("psk", "certificate", …).
    pub credentials: Vec<&'static str>,
    /// SHA-256 fingerprints of its public keys, hex.
    pub fingerprints: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpokePage {
    pub spokes: Vec<Spoke>,
    /// More spokes follow the last one: ask again with `after=` its id.
    pub more: bool,
}

/// A gateway's report of a spoke's session over its own link
/// (`POST /gw/sessions`, JSON or CBOR). A second report with the same
/// `started_ms` (and `ended_ms`) closes the record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct SpokeSessionReport {
    pub spoke: String,
    /// Start, ms since the epoch; the time of the report if absent.
    pub started_ms: Option<u64>,
    pub ended_ms: Option<u64>,
    /// The spoke's link address (e.g. "ble:c4:7c:8d:6a:2e:01"), up to 64
    /// bytes.
    pub link: Option<String>,
}

/// Spokes per `/gw/spokes` page.
pub const SPOKES_PER_PAGE: usize = 32;

/// Resources a device may observe (RFC 7641): notified when they change.
pub fn observable(path: &[&str]) -> bool {
    matches!(path, ["rl"] | ["gw", "spokes"])
}

/// A request as a resource sees it: options decoded, the body whole (a
/// Block1 transfer already reassembled).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: RequestType,
    pub path: &'a [&'a str],
    pub query: &'a [&'a str],
    pub accept: Option<ContentFormat>,
    pub content_format: Option<ContentFormat>,
    pub payload: &'a [u8],
    /// The request's own Block2 option (which block of the response).
    pub block2: Option<BlockOption>,
}

pub fn dispatch(request: &Request<'_>, ctx: &dyn ResourceContext) -> Routed {
    let enrollment_only = ctx.enrollment_only();
    let resource: fn(Option<ContentFormat>, &dyn ResourceContext) -> Reply = match request.path {
        [".well-known", "core"] => well_known_core,
        [".well-known", "est", "crts"] => crate::est::crts,
        [".well-known", "est", op @ ("sen" | "sren")] => {
            if request.method != RequestType::Post {
                return Routed::Now(Reply::error(
                    ResponseType::MethodNotAllowed,
                    "only POST is allowed here",
                ));
            }
            return crate::est::enroll(*op == "sren", request, ctx);
        }
        _ if enrollment_only => {
            return Routed::Now(Reply::error(
                ResponseType::Forbidden,
                "this credential may only enroll (/.well-known/est)",
            ))
        }
        ["id"] if !request.query.is_empty() => return Routed::Now(id_reporting(request, ctx)),
        ["id"] => id,
        ["fw", "manifest"] => {
            if request.method != RequestType::Get {
                return Routed::Now(Reply::error(
                    ResponseType::MethodNotAllowed,
                    "only GET is allowed here",
                ));
            }
            return Routed::Now(match ctx.firmware_manifest() {
                Ok(cose) => Reply::content(ContentFormat::ApplicationCoseSign1, cose),
                Err(reply) => reply,
            });
        }
        ["fw", "image"] if request.method == RequestType::Get => {
            return fw_image(request, ctx);
        }
        ["fw", "state"] if request.method == RequestType::Post => {
            return match parse_firmware_state(request).and_then(|s| ctx.report_firmware(&s, true)) {
                Ok(()) => Routed::Later,
                Err(reply) => Routed::Now(reply),
            };
        }
        ["fw", "image" | "state"] => {
            return Routed::Now(Reply::error(
                ResponseType::MethodNotAllowed,
                "GET /fw/image, POST /fw/state",
            ))
        }
        ["rl"] if request.method == RequestType::Get => {
            return Routed::Now(rl(request, ctx));
        }
        ["rl"] => rl_summary,
        ["rl", "key"] => rl_key,
        ["gw", "spokes"] if request.method == RequestType::Get => {
            return Routed::Now(gw_spokes(request, ctx));
        }
        ["gw", "sessions"] if request.method == RequestType::Post => {
            return Routed::Now(gw_sessions(request, ctx));
        }
        ["gw", "spoke", spoke, rest @ ..] => {
            return Routed::Now(match ctx.spoke_status(spoke) {
                Ok(status) => {
                    let for_spoke = ForSpoke {
                        gateway: ctx,
                        spoke,
                        status,
                    };
                    as_spoke(
                        &Request {
                            path: rest,
                            ..*request
                        },
                        &for_spoke,
                    )
                }
                Err(reply) => reply,
            });
        }
        _ => return Routed::Now(Reply::error(ResponseType::NotFound, "no such resource")),
    };
    if request.method != RequestType::Get {
        return Routed::Now(Reply::error(
            ResponseType::MethodNotAllowed,
            "only GET is allowed here",
        ));
    }
    Routed::Now(resource(request.accept, ctx))
}

/// A request a gateway makes for one of its active spokes
/// (`/gw/spoke/ID/...`): the resources a spoke may use itself, answered as
/// they would be for the spoke.
fn as_spoke(request: &Request<'_>, spoke: &ForSpoke<'_>) -> Reply {
    match (request.method, request.path) {
        (RequestType::Get, ["id"]) => id(request.accept, spoke),
        (RequestType::Get, ["rl"]) => rl(request, spoke),
        (RequestType::Get, ["rl", "key"]) => rl_key(request.accept, spoke),
        (_, ["id"] | ["rl"] | ["rl", "key"]) => {
            Reply::error(ResponseType::MethodNotAllowed, "only GET is allowed here")
        }
        _ => Reply::error(
            ResponseType::NotFound,
            "a gateway acts for a spoke on /id, /rl and /rl/key",
        ),
    }
}

/// The session's gateway, acting for `spoke` (checked: one of its active
/// spokes): the spoke's identity, the gateway's view of everything else,
/// and nothing a gateway may do (a spoke lists no spokes, enrolls nothing
/// through here, observes nothing).
struct ForSpoke<'a> {
    gateway: &'a dyn ResourceContext,
    spoke: &'a str,
    status: &'static str,
}

impl ResourceContext for ForSpoke<'_> {
    fn device_id(&self) -> &str {
        self.spoke
    }
    fn credential(&self) -> &'static str {
        "via-gateway"
    }
    fn status(&self) -> Option<&'static str> {
        Some(self.status)
    }
    fn revocation_list(&self) -> (u64, u64) {
        self.gateway.revocation_list()
    }
    fn device_ca_certificate(&self) -> Option<Vec<u8>> {
        self.gateway.device_ca_certificate()
    }
    fn signed_revocation_list(&self, since: Option<u64>) -> Result<Vec<u8>, Reply> {
        self.gateway.signed_revocation_list(since)
    }
    fn revocation_list_key(&self) -> Option<(Vec<u8>, String)> {
        self.gateway.revocation_list_key()
    }
    fn may_observe(&self) -> bool {
        false
    }
}

fn well_known_core(accept: Option<ContentFormat>, _: &dyn ResourceContext) -> Reply {
    match accept {
        None | Some(ContentFormat::ApplicationLinkFormat) => Reply::content(
            ContentFormat::ApplicationLinkFormat,
            WELL_KNOWN_CORE.as_bytes().to_vec(),
        ),
        Some(_) => Reply::error(ResponseType::NotAcceptable, "link-format only"),
    }
}

#[derive(Serialize)]
struct IdBody<'a> {
    id: &'a str,
    status: &'a str,
    credential: &'a str,
}

fn id(accept: Option<ContentFormat>, ctx: &dyn ResourceContext) -> Reply {
    let body = IdBody {
        id: ctx.device_id(),
        status: ctx.status().unwrap_or("deleted"),
        credential: ctx.credential(),
    };
    represent(accept, &body, || {
        format!("{} {} {}", body.id, body.status, body.credential)
    })
}

/// `GET /id?fw=V[&fw_try=V&fw_state=downloading|failed]`: `/id`, with
/// the device's firmware report in the query, for devices too small for
/// `POST /fw/state`. The report is stored in the background.
fn id_reporting(request: &Request<'_>, ctx: &dyn ResourceContext) -> Reply {
    let mut running = None;
    let mut tried = None;
    let mut state = None;
    for q in request.query {
        match q.split_once('=') {
            Some(("fw", v)) => running = Some(v.to_owned()),
            Some(("fw_try", v)) => tried = Some(v.to_owned()),
            Some(("fw_state", v)) => state = Some(v),
            _ => {
                return Reply::error(
                    ResponseType::BadRequest,
                    "the queries are fw=V, fw_try=V and fw_state=downloading|failed",
                )
            }
        }
    }
    let Some(running) = running else {
        return Reply::error(ResponseType::BadRequest, "fw=V names the running version");
    };
    let attempt = match (tried, state) {
        (None, None) => None,
        (Some(v), Some(s)) => match attempt_state(s) {
            Some(s) => Some((v, s)),
            None => {
                return Reply::error(ResponseType::BadRequest, "fw_state: downloading or failed")
            }
        },
        _ => return Reply::error(ResponseType::BadRequest, "fw_try and fw_state go together"),
    };
    if let Err(reply) = ctx.report_firmware(&FirmwareState { running, attempt }, false) {
        return reply;
    }
    id(request.accept, ctx)
}

fn attempt_state(s: &str) -> Option<&'static str> {
    match s {
        "downloading" => Some("downloading"),
        "failed" => Some("failed"),
        _ => None,
    }
}

/// The body of `POST /fw/state`: CBOR `{1: running, 2: state, 3: tried}`
/// (state 0 running normally, 1 downloading, 2 failed), JSON
/// `{"running", "state", "tried"}`, or text: the running version alone.
fn parse_firmware_state(request: &Request<'_>) -> Result<FirmwareState, Reply> {
    let bad = |why: String| Reply::error(ResponseType::BadRequest, why);
    let (running, state, tried) = match request.content_format {
        Some(ContentFormat::ApplicationCBOR) => {
            let value: ciborium::value::Value = ciborium::from_reader(request.payload)
                .map_err(|e| bad(format!("not CBOR: {e}")))?;
            let entries = value
                .into_map()
                .map_err(|_| bad("a CBOR map {1: running, 2: state, 3: tried}".into()))?;
            let mut running = None;
            let mut state = None;
            let mut tried = None;
            for (k, v) in entries {
                match (k.as_integer().and_then(|i| u8::try_from(i).ok()), v) {
                    (Some(1), ciborium::value::Value::Text(t)) => running = Some(t),
                    (Some(2), ciborium::value::Value::Integer(i)) => {
                        state = Some(match u8::try_from(i) {
                            Ok(0) => "running",
                            Ok(1) => "downloading",
                            Ok(2) => "failed",
                            _ => {
                                return Err(bad("state: 0 running, 1 downloading, 2 failed".into()))
                            }
                        })
                    }
                    (Some(3), ciborium::value::Value::Text(t)) => tried = Some(t),
                    (k, _) => return Err(bad(format!("unexpected key {k:?} or value type"))),
                }
            }
            (running, state, tried)
        }
        Some(ContentFormat::ApplicationJSON) => {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Body {
                running: String,
                state: Option<String>,
                tried: Option<String>,
            }
            let b: Body =
                serde_json::from_slice(request.payload).map_err(|e| bad(format!("report: {e}")))?;
            let state = match b.state.as_deref() {
                None | Some("running") => None,
                Some(s) => Some(
                    attempt_state(s)
                        .ok_or_else(|| bad("state: running, downloading or failed".into()))?,
                ),
            };
            (Some(b.running), state, b.tried)
        }
        None | Some(ContentFormat::TextPlain) => {
            let text = std::str::from_utf8(request.payload)
                .map_err(|_| bad("the running version as text".into()))?;
            (Some(text.trim().to_owned()), None, None)
        }
        Some(_) => {
            return Err(Reply::error(
                ResponseType::UnsupportedContentFormat,
                "application/cbor (60), application/json (50) or text/plain (0)",
            ))
        }
    };
    let running = running.ok_or_else(|| bad("running (key 1) missing".into()))?;
    let attempt = match (state.filter(|s| *s != "running"), tried) {
        (None, _) => None,
        (Some(s), Some(v)) => Some((v, s)),
        (Some(_), None) => {
            return Err(bad(
                "a downloading or failed state names the version tried (key 3)".into(),
            ))
        }
    };
    Ok(FirmwareState { running, attempt })
}

/// `GET /fw/image`: the offered image, block by block (RFC 7959), any
/// block at any time, so a download resumes where it broke off.
fn fw_image(request: &Request<'_>, ctx: &dyn ResourceContext) -> Routed {
    match request.accept {
        None | Some(ContentFormat::ApplicationOctetStream) => {}
        Some(_) => {
            return Routed::Now(Reply::error(
                ResponseType::NotAcceptable,
                "application/octet-stream (42)",
            ))
        }
    }
    let block = request.block2.unwrap_or(BlockOption {
        num: 0,
        more: false,
        szx: crate::block_option::MAX_SZX,
    });
    let window = match ctx.firmware_image(block.offset() as u64, block.size()) {
        Ok(w) => w,
        Err(reply) => return Routed::Now(reply),
    };
    if block.offset() as u64 >= window.total {
        return Routed::Now(Reply::error(
            ResponseType::BadOption,
            "Block2 block past the end",
        ));
    }
    Routed::Block {
        reply: Reply::content(ContentFormat::ApplicationOctetStream, window.bytes),
        block,
        total: window.total,
        etag: window.etag,
    }
}

#[derive(Serialize)]
struct RlBody {
    version: u64,
    count: u64,
}

/// `GET /rl`: the signed list (COSE_Sign1, content-format 18) by default
/// or on request, `?since=V` for the delta after version V; its version and
/// size alone as text, JSON or CBOR.
fn rl(request: &Request<'_>, ctx: &dyn ResourceContext) -> Reply {
    match request.accept {
        None | Some(ContentFormat::ApplicationCoseSign1) => {}
        _ => return rl_summary(request.accept, ctx),
    }
    let mut since = None;
    for q in request.query {
        match q.split_once('=') {
            Some(("since", v)) => match v.parse::<u64>() {
                Ok(v) => since = Some(v),
                Err(_) => return Reply::error(ResponseType::BadRequest, "since: a list version"),
            },
            _ => return Reply::error(ResponseType::BadRequest, "the only query is since=V"),
        }
    }
    match ctx.signed_revocation_list(since) {
        Ok(cose) => Reply::content(ContentFormat::ApplicationCoseSign1, cose),
        Err(reply) => reply,
    }
}

fn rl_summary(accept: Option<ContentFormat>, ctx: &dyn ResourceContext) -> Reply {
    let (version, count) = ctx.revocation_list();
    let body = RlBody { version, count };
    represent(accept, &body, || format!("version {version} count {count}"))
}

/// `GET /gw/spokes[?after=ID]`: a gateway's spokes, a page at a time, CBOR
/// by default or JSON.
fn gw_spokes(request: &Request<'_>, ctx: &dyn ResourceContext) -> Reply {
    let mut after = None;
    for q in request.query {
        match q.split_once('=') {
            Some(("after", id)) => after = Some(id),
            _ => return Reply::error(ResponseType::BadRequest, "the only query is after=ID"),
        }
    }
    let page = match ctx.spokes(after, SPOKES_PER_PAGE) {
        Ok(page) => page,
        Err(reply) => return reply,
    };
    match request.accept {
        None | Some(ContentFormat::ApplicationCBOR) => {
            let mut out = Vec::new();
            ciborium::into_writer(&page, &mut out).expect("plain struct serialises");
            Reply::content(ContentFormat::ApplicationCBOR, out)
        }
        Some(ContentFormat::ApplicationJSON) => Reply::content(
            ContentFormat::ApplicationJSON,
            serde_json::to_vec(&page).expect("plain struct serialises"),
        ),
        Some(_) => Reply::error(
            ResponseType::NotAcceptable,
            "application/cbor (60) or application/json (50)",
        ),
    }
}

/// `POST /gw/sessions`: a spoke's session, reported by its gateway.
fn gw_sessions(request: &Request<'_>, ctx: &dyn ResourceContext) -> Reply {
    let report: Result<SpokeSessionReport, String> = match request.content_format {
        Some(ContentFormat::ApplicationJSON) => {
            serde_json::from_slice(request.payload).map_err(|e| e.to_string())
        }
        Some(ContentFormat::ApplicationCBOR) => {
            ciborium::from_reader(request.payload).map_err(|e| e.to_string())
        }
        _ => {
            return Reply::error(
                ResponseType::UnsupportedContentFormat,
                "application/json (50) or application/cbor (60)",
            )
        }
    };
    let report = match report {
        Ok(r) => r,
        Err(e) => return Reply::error(ResponseType::BadRequest, format!("report: {e}")),
    };
    if report.link.as_ref().is_some_and(|l| l.len() > 64) {
        return Reply::error(ResponseType::BadRequest, "link: at most 64 bytes");
    }
    match ctx.report_spoke_session(&report) {
        Ok(()) => Reply {
            code: ResponseType::Changed,
            format: None,
            payload: Vec::new(),
        },
        Err(reply) => reply,
    }
}

/// `GET /rl/key`: the list's signing key, PEM by default, DER (42) on
/// request.
fn rl_key(accept: Option<ContentFormat>, ctx: &dyn ResourceContext) -> Reply {
    let Some(spki) = ctx.revocation_list_key() else {
        return Reply::error(
            ResponseType::ServiceUnavailable,
            "the cluster has no revocation-list key yet",
        );
    };
    match accept {
        None | Some(ContentFormat::TextPlain) => {
            Reply::content(ContentFormat::TextPlain, spki.1.into_bytes())
        }
        Some(ContentFormat::ApplicationOctetStream) => {
            Reply::content(ContentFormat::ApplicationOctetStream, spki.0)
        }
        Some(_) => Reply::error(
            ResponseType::NotAcceptable,
            "text/plain (PEM, 0) or application/octet-stream (DER, 42)",
        ),
    }
}

/// text/plain by default; JSON or CBOR on request; anything else is 4.06.
fn represent<T: Serialize>(
    accept: Option<ContentFormat>,
    body: &T,
    text: impl FnOnce() -> String,
) -> Reply {
    match accept {
        None | Some(ContentFormat::TextPlain) => {
            Reply::content(ContentFormat::TextPlain, text().into_bytes())
        }
        Some(ContentFormat::ApplicationJSON) => Reply::content(
            ContentFormat::ApplicationJSON,
            serde_json::to_vec(body).expect("plain struct serialises"),
        ),
        Some(ContentFormat::ApplicationCBOR) => {
            let mut out = Vec::new();
            ciborium::into_writer(body, &mut out).expect("plain struct serialises");
            Reply::content(ContentFormat::ApplicationCBOR, out)
        }
        Some(_) => Reply::error(
            ResponseType::NotAcceptable,
            "text/plain (0), application/json (50) or application/cbor (60)",
        ),
    }
}
