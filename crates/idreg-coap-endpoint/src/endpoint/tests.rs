use super::*;

struct Ctx;

impl ResourceContext for Ctx {
    fn device_id(&self) -> &str {
        "sensor-1"
    }
    fn credential(&self) -> &'static str {
        "psk"
    }
    fn status(&self) -> Option<&'static str> {
        Some("active")
    }
    fn revocation_list(&self) -> (u64, u64) {
        (3, 3)
    }
    fn device_ca_certificate(&self) -> Option<Vec<u8>> {
        // Long enough to need blocks; any DER element is carried as is.
        let mut der = vec![0x04, 0x82, 0x01, 0x2C];
        der.extend_from_slice(&[0x5A; 300]);
        Some(der)
    }
}

fn get(kind: MessageType, mid: u16, path: &str, accept: Option<usize>) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(kind);
    p.header.code = MessageClass::Request(RequestType::Get);
    p.header.message_id = mid;
    p.set_token(vec![0xAB, 0xCD]);
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    if let Some(a) = accept {
        p.add_option(
            CoapOption::Accept,
            crate::block_option::encode_uint(a as u32),
        );
    }
    p.to_bytes().unwrap()
}

fn parse(bytes: &[u8]) -> Packet {
    Packet::from_bytes(bytes).unwrap()
}

#[test]
fn con_get_id_is_a_piggybacked_ack_with_the_token() {
    let mut ep = CoapEndpoint::new(1);
    let out = parse(
        &ep.handle(&get(MessageType::Confirmable, 42, "/id", None), 0, &Ctx)
            .unwrap(),
    );
    assert_eq!(out.header.get_type(), MessageType::Acknowledgement);
    assert_eq!(out.header.message_id, 42);
    assert_eq!(out.get_token(), &[0xAB, 0xCD]);
    assert_eq!(
        out.header.code,
        MessageClass::Response(ResponseType::Content)
    );
    assert_eq!(out.payload, b"sensor-1 active psk");
}

#[test]
fn json_and_cbor_by_accept_and_406_otherwise() {
    let mut ep = CoapEndpoint::new(1);
    let out = parse(
        &ep.handle(&get(MessageType::Confirmable, 1, "/id", Some(50)), 0, &Ctx)
            .unwrap(),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.payload).unwrap();
    assert_eq!(v["id"], "sensor-1");
    assert_eq!(
        out.get_content_format(),
        Some(ContentFormat::ApplicationJSON)
    );

    let out = parse(
        &ep.handle(&get(MessageType::Confirmable, 2, "/rl", Some(60)), 0, &Ctx)
            .unwrap(),
    );
    let v: ciborium::Value = ciborium::from_reader(out.payload.as_slice()).unwrap();
    assert!(format!("{v:?}").contains("version"));

    let out = parse(
        &ep.handle(&get(MessageType::Confirmable, 3, "/id", Some(41)), 0, &Ctx)
            .unwrap(),
    );
    assert_eq!(
        out.header.code,
        MessageClass::Response(ResponseType::NotAcceptable)
    );
}

#[test]
fn not_found_method_not_allowed_and_well_known_core() {
    let mut ep = CoapEndpoint::new(1);
    let out = parse(
        &ep.handle(&get(MessageType::Confirmable, 1, "/nope", None), 0, &Ctx)
            .unwrap(),
    );
    assert_eq!(
        out.header.code,
        MessageClass::Response(ResponseType::NotFound)
    );

    let mut post = parse(&get(MessageType::Confirmable, 2, "/id", None));
    post.header.code = MessageClass::Request(RequestType::Post);
    let out = parse(&ep.handle(&post.to_bytes().unwrap(), 0, &Ctx).unwrap());
    assert_eq!(
        out.header.code,
        MessageClass::Response(ResponseType::MethodNotAllowed)
    );

    let out = parse(
        &ep.handle(
            &get(MessageType::Confirmable, 3, "/.well-known/core", None),
            0,
            &Ctx,
        )
        .unwrap(),
    );
    assert_eq!(
        out.get_content_format(),
        Some(ContentFormat::ApplicationLinkFormat)
    );
    assert!(String::from_utf8(out.payload).unwrap().contains("</id>"));
}

#[test]
fn duplicate_con_gets_the_same_response_without_reprocessing() {
    let mut ep = CoapEndpoint::new(1);
    let req = get(MessageType::NonConfirmable, 9, "/id", None);
    let first = ep.handle(&req, 0, &Ctx).unwrap();
    let again = ep.handle(&req, 1000, &Ctx).unwrap();
    // A NON response gets a fresh message id; a reprocessed request would get
    // another one, so equality proves the cached copy was sent.
    assert_eq!(first, again);
    let later = ep
        .handle(&req, crate::dedup::EXCHANGE_LIFETIME_MS + 1, &Ctx)
        .unwrap();
    assert_ne!(first, later);
}

#[test]
fn ping_gets_rst_and_ack_rst_are_ignored() {
    let mut ep = CoapEndpoint::new(1);
    assert_eq!(
        ep.handle(&[0x40, 0, 0, 7], 0, &Ctx),
        Some(vec![0x70, 0, 0, 7])
    );
    assert_eq!(ep.handle(&[0x60, 0, 0, 7], 0, &Ctx), None);
    assert_eq!(ep.handle(&[0x70, 0, 0, 7], 0, &Ctx), None);
}

#[test]
fn malformed_requests_get_4_00_or_nothing_and_never_panic() {
    let mut ep = CoapEndpoint::new(1);
    // CON GET with token 0x01 and a truncated option (delta 11, length 5, 1 byte).
    let bad = [0x41, 0x01, 0x00, 0x05, 0x01, 0xB5, b'i'];
    let out = ep.handle(&bad, 0, &Ctx).unwrap();
    assert_eq!(out, vec![0x61, 0x80, 0x00, 0x05, 0x01]);
    // The same as NON: ignored.
    let mut non = bad;
    non[0] = 0x51;
    non[3] = 6;
    assert_eq!(ep.handle(&non, 0, &Ctx), None);
    // Not CoAP at all.
    assert_eq!(ep.handle(&[0xff, 1, 2], 0, &Ctx), None);
    // Fuzz: nothing panics.
    let mut seed = 0x1234_5678u32;
    for len in 0..2000usize {
        let mut buf = Vec::with_capacity(len % 64);
        for _ in 0..len % 64 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            buf.push((seed >> 16) as u8);
        }
        if !buf.is_empty() {
            buf[0] = 0x40 | (buf[0] & 0x3f);
        }
        let _ = ep.handle(&buf, len as u64, &Ctx);
    }
}

#[test]
fn unknown_critical_option_is_4_02() {
    let mut ep = CoapEndpoint::new(1);
    let mut p = parse(&get(MessageType::Confirmable, 1, "/id", None));
    p.add_option(CoapOption::Unknown(2049), vec![1]);
    let out = parse(&ep.handle(&p.to_bytes().unwrap(), 0, &Ctx).unwrap());
    assert_eq!(
        out.header.code,
        MessageClass::Response(ResponseType::BadOption)
    );
}

fn with_block(mut p: Packet, option: CoapOption, b: BlockOption) -> Vec<u8> {
    p.add_option(option, b.encode());
    p.to_bytes().unwrap()
}

fn block_of(p: &Packet, option: CoapOption) -> Option<BlockOption> {
    p.get_first_option(option)
        .map(|v| BlockOption::decode(v).unwrap())
}

#[test]
fn a_long_get_response_comes_in_block2_blocks_of_the_asked_size() {
    let mut ep = CoapEndpoint::new(1);
    let whole = well_known_core_bytes();
    let mut body = Vec::new();
    let mut etag = None;
    for num in 0..64u32 {
        let req = parse(&get(
            MessageType::Confirmable,
            num as u16,
            "/.well-known/core",
            None,
        ));
        let b = BlockOption {
            num,
            more: false,
            szx: 0,
        };
        let out = parse(
            &ep.handle(&with_block(req, CoapOption::Block2, b), 0, &Ctx)
                .unwrap(),
        );
        assert_eq!(
            out.header.code,
            MessageClass::Response(ResponseType::Content)
        );
        let got = block_of(&out, CoapOption::Block2).expect("Block2 on every block");
        assert_eq!((got.num, got.szx), (num, 0));
        if num == 0 {
            let size2 = out.get_first_option(CoapOption::Size2).unwrap();
            assert_eq!(decode_uint(size2), Some(whole.len() as u32));
        }
        let tag = out.get_first_option(CoapOption::ETag).unwrap().clone();
        assert_eq!(
            etag.get_or_insert(tag.clone()),
            &tag,
            "one ETag for every block"
        );
        body.extend_from_slice(&out.payload);
        if !got.more {
            assert_eq!(out.payload.len(), whole.len() - 16 * num as usize);
            break;
        }
        assert_eq!(out.payload.len(), 16);
    }
    assert_eq!(body, whole);

    // Past the end: 4.02. No Block2 and a body that fits: no block options.
    let req = parse(&get(
        MessageType::Confirmable,
        100,
        "/.well-known/core",
        None,
    ));
    let b = BlockOption {
        num: 60,
        more: false,
        szx: 0,
    };
    let out = parse(
        &ep.handle(&with_block(req, CoapOption::Block2, b), 0, &Ctx)
            .unwrap(),
    );
    assert_eq!(
        out.header.code,
        MessageClass::Response(ResponseType::BadOption)
    );
    let out = parse(
        &ep.handle(
            &get(MessageType::Confirmable, 101, "/.well-known/core", None),
            0,
            &Ctx,
        )
        .unwrap(),
    );
    assert_eq!(out.payload, whole);
    assert!(out.get_first_option(CoapOption::Block2).is_none());
}

fn well_known_core_bytes() -> Vec<u8> {
    crate::resources::WELL_KNOWN_CORE.as_bytes().to_vec()
}

fn post_block(mid: u16, num: u32, more: bool, szx: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = parse(&get(MessageType::Confirmable, mid, "/id", None));
    p.header.code = MessageClass::Request(RequestType::Post);
    p.set_content_format(ContentFormat::ApplicationPkcs10);
    p.payload = payload.to_vec();
    with_block(p, CoapOption::Block1, BlockOption { num, more, szx })
}

#[test]
fn block1_blocks_are_acknowledged_with_2_31_and_the_whole_request_is_processed_once() {
    let mut ep = CoapEndpoint::new(1);
    for num in 0..3u32 {
        let out = parse(
            &ep.handle(&post_block(num as u16, num, true, 1, &[7; 32]), 0, &Ctx)
                .unwrap(),
        );
        assert_eq!(
            out.header.code,
            MessageClass::Response(ResponseType::Continue)
        );
        assert_eq!(
            block_of(&out, CoapOption::Block1),
            Some(BlockOption {
                num,
                more: true,
                szx: 1
            })
        );
    }
    // The last block: the request reaches the resource (which allows only
    // GET), and the answer echoes the final Block1.
    let out = parse(
        &ep.handle(&post_block(3, 3, false, 1, &[7; 5]), 0, &Ctx)
            .unwrap(),
    );
    assert_eq!(
        out.header.code,
        MessageClass::Response(ResponseType::MethodNotAllowed)
    );
    assert_eq!(
        block_of(&out, CoapOption::Block1),
        Some(BlockOption {
            num: 3,
            more: false,
            szx: 1
        })
    );
    assert!(
        ep.blocks.is_none(),
        "a finished transfer leaves nothing behind"
    );

    // Out of order: 4.08.
    let out = parse(
        &ep.handle(&post_block(10, 2, true, 1, &[7; 32]), 0, &Ctx)
            .unwrap(),
    );
    assert_eq!(
        out.header.code,
        MessageClass::Response(ResponseType::RequestEntityIncomplete)
    );
}

#[test]
fn an_oversized_block1_body_is_4_13_with_size1() {
    let mut ep = CoapEndpoint::new(1);
    let mut last = None;
    for num in 0..=(MAX_REQUEST_BODY / 1024) as u32 {
        last = ep.handle(&post_block(num as u16, num, true, 6, &[1; 1024]), 0, &Ctx);
    }
    let out = parse(&last.unwrap());
    assert_eq!(
        out.header.code,
        MessageClass::Response(ResponseType::RequestEntityTooLarge)
    );
    let size1 = out.get_first_option(CoapOption::Size1).unwrap();
    assert_eq!(decode_uint(size1), Some(MAX_REQUEST_BODY as u32));

    // Announced up front with Size1: refused before any block is kept.
    let mut p = parse(&post_block(100, 0, true, 6, &[1; 1024]));
    p.add_option(CoapOption::Size1, encode_uint(MAX_REQUEST_BODY as u32 + 1));
    let out = parse(&ep.handle(&p.to_bytes().unwrap(), 0, &Ctx).unwrap());
    assert_eq!(
        out.header.code,
        MessageClass::Response(ResponseType::RequestEntityTooLarge)
    );
    assert!(ep.blocks.is_none());

    // BERT (szx 7) is not for UDP: 4.02.
    let mut p = parse(&post_block(101, 0, false, 0, &[1; 3]));
    p.clear_option(CoapOption::Block1);
    p.add_option(CoapOption::Block1, vec![0x07]);
    let out = parse(&ep.handle(&p.to_bytes().unwrap(), 0, &Ctx).unwrap());
    assert_eq!(
        out.header.code,
        MessageClass::Response(ResponseType::BadOption)
    );
}

#[test]
fn est_crts_is_pkcs7_by_default_and_der_on_request() {
    let mut ep = CoapEndpoint::new(1);
    let ca = Ctx.device_ca_certificate().unwrap();
    let out = parse(
        &ep.handle(
            &get(MessageType::Confirmable, 1, "/.well-known/est/crts", None),
            0,
            &Ctx,
        )
        .unwrap(),
    );
    assert_eq!(
        out.get_content_format(),
        Some(ContentFormat::ApplicationPkcs7MimeCertsOnly)
    );
    assert_eq!(out.payload, crate::pkcs7::certs_only(&[&ca]));
    let out = parse(
        &ep.handle(
            &get(
                MessageType::Confirmable,
                2,
                "/.well-known/est/crts",
                Some(287),
            ),
            0,
            &Ctx,
        )
        .unwrap(),
    );
    assert_eq!(
        out.get_content_format(),
        Some(ContentFormat::ApplicationPkixCert)
    );
    assert_eq!(out.payload, ca);
    let out = parse(
        &ep.handle(
            &get(
                MessageType::Confirmable,
                3,
                "/.well-known/est/crts",
                Some(50),
            ),
            0,
            &Ctx,
        )
        .unwrap(),
    );
    assert_eq!(
        out.header.code,
        MessageClass::Response(ResponseType::NotAcceptable)
    );
}

/// A session whose credential may only enroll, and whose enrollments are
/// answered later (as the front answers after raft).
struct Enrolling {
    started: std::cell::Cell<usize>,
}

impl ResourceContext for Enrolling {
    fn device_id(&self) -> &str {
        "factory-7"
    }
    fn credential(&self) -> &'static str {
        "certificate"
    }
    fn status(&self) -> Option<&'static str> {
        None
    }
    fn revocation_list(&self) -> (u64, u64) {
        (0, 0)
    }
    fn device_ca_certificate(&self) -> Option<Vec<u8>> {
        None
    }
    fn enrollment_only(&self) -> bool {
        true
    }
    fn start_enrollment(&self, request: &crate::est::EnrollRequest<'_>) -> Result<(), Reply> {
        assert_eq!(request.csr, &[7u8; 100][..]);
        self.started.set(self.started.get() + 1);
        Ok(())
    }
}

fn post_sen(mid: u16, num: u32, more: bool, payload: &[u8]) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Post);
    p.header.message_id = mid;
    p.set_token(vec![0x51]);
    for seg in [".well-known", "est", "sen"] {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    p.set_content_format(ContentFormat::ApplicationPkcs10);
    p.payload = payload.to_vec();
    with_block(p, CoapOption::Block1, BlockOption { num, more, szx: 2 })
}

#[test]
fn an_enrollment_is_answered_later_in_the_ack_the_device_waits_for() {
    let ctx = Enrolling {
        started: std::cell::Cell::new(0),
    };
    let mut ep = CoapEndpoint::new(1);
    let csr = [7u8; 100];
    // Two Block1 blocks of 64: the first is 2.31, the last starts the work.
    let out = parse(
        &ep.handle(&post_sen(10, 0, true, &csr[..64]), 0, &ctx)
            .unwrap(),
    );
    assert_eq!(
        out.header.code,
        MessageClass::Response(ResponseType::Continue)
    );
    assert_eq!(
        ep.handle(&post_sen(11, 1, false, &csr[64..]), 1, &ctx),
        None
    );
    assert!(ep.is_pending());
    // A retransmission while the answer is being made: silence, no second start.
    assert_eq!(
        ep.handle(&post_sen(11, 1, false, &csr[64..]), 2, &ctx),
        None
    );
    assert_eq!(ctx.started.get(), 1);
    // A second enrollment meanwhile is refused, not queued.
    let other = parse(&ep.handle(&post_sen(12, 0, false, &csr), 3, &ctx).unwrap());
    assert_eq!(
        other.header.code,
        MessageClass::Response(ResponseType::ServiceUnavailable)
    );

    let certificate = vec![0x30; 150];
    let reply = crate::est::certificate_reply(&certificate, crate::est::CertificateFormat::Der);
    let out = parse(&ep.complete(reply, 4).unwrap());
    assert!(!ep.is_pending());
    assert_eq!(out.header.get_type(), MessageType::Acknowledgement);
    assert_eq!(out.header.message_id, 11);
    assert_eq!(out.get_token(), &[0x51]);
    assert_eq!(
        out.header.code,
        MessageClass::Response(ResponseType::Changed)
    );
    assert_eq!(block_of(&out, CoapOption::Block1).unwrap().num, 1);
    // Longer than the device's 64-byte Block1 blocks: the first Block2
    // block of that size.
    let b2 = block_of(&out, CoapOption::Block2).unwrap();
    assert!(b2.more && b2.num == 0);
    assert_eq!(out.payload, certificate[..64]);
    // The same retransmission now gets that same answer.
    let again = ep
        .handle(&post_sen(11, 1, false, &csr[64..]), 5, &ctx)
        .unwrap();
    assert_eq!(parse(&again).payload, out.payload);

    // The rest comes from the kept response.
    let mut next = parse(&post_sen(13, 0, false, &[]));
    next.payload.clear();
    next.clear_option(CoapOption::Block1);
    let next = with_block(
        next,
        CoapOption::Block2,
        BlockOption {
            num: 1,
            more: false,
            szx: 2,
        },
    );
    let out = parse(&ep.handle(&next, 6, &ctx).unwrap());
    assert_eq!(out.payload, certificate[64..128]);
    assert_eq!(ctx.started.get(), 1);
}

#[test]
fn an_enrollment_only_session_reaches_est_and_discovery_only() {
    let ctx = Enrolling {
        started: std::cell::Cell::new(0),
    };
    let mut ep = CoapEndpoint::new(1);
    for (mid, path, code) in [
        (1, "/id", ResponseType::Forbidden),
        (2, "/rl", ResponseType::Forbidden),
        (3, "/.well-known/core", ResponseType::Content),
        (4, "/.well-known/est/crts", ResponseType::ServiceUnavailable),
        (5, "/.well-known/est/sen", ResponseType::MethodNotAllowed),
    ] {
        let out = parse(
            &ep.handle(&get(MessageType::Confirmable, mid, path, None), 0, &ctx)
                .unwrap(),
        );
        assert_eq!(out.header.code, MessageClass::Response(code), "{path}");
    }
    // The wrong body type is 4.15, before anything starts.
    let mut p = parse(&post_sen(6, 0, false, &[7; 100]));
    p.clear_option(CoapOption::Block1);
    p.clear_option(CoapOption::ContentFormat);
    p.set_content_format(ContentFormat::ApplicationOctetStream);
    let out = parse(&ep.handle(&p.to_bytes().unwrap(), 0, &ctx).unwrap());
    assert_eq!(
        out.header.code,
        MessageClass::Response(ResponseType::UnsupportedContentFormat)
    );
    assert_eq!(ctx.started.get(), 0);
}

fn observe_rl(mid: u16, token: u8, observe: u32) -> Vec<u8> {
    let mut p = parse(&get(MessageType::Confirmable, mid, "/rl", Some(0)));
    p.set_token(vec![token]);
    p.add_option(
        CoapOption::Observe,
        crate::block_option::encode_uint(observe),
    );
    p.to_bytes().unwrap()
}

fn observe_of(p: &Packet) -> Option<u32> {
    p.get_first_option(CoapOption::Observe)
        .and_then(|v| crate::block_option::decode_uint(v))
}

#[test]
fn observers_are_notified_confirmably_now_and_then_and_dropped_when_silent() {
    let mut ep = CoapEndpoint::new(100);
    let first = parse(&ep.handle(&observe_rl(1, 0x0B, 0), 0, &Ctx).unwrap());
    assert_eq!(
        first.header.code,
        MessageClass::Response(ResponseType::Content)
    );
    assert_eq!(observe_of(&first), Some(1));
    assert_eq!(ep.observation_count(), 1);
    // /id is not observable: answered, not registered.
    let mut id = parse(&get(MessageType::Confirmable, 2, "/id", None));
    id.add_option(CoapOption::Observe, vec![]);
    let out = parse(&ep.handle(&id.to_bytes().unwrap(), 0, &Ctx).unwrap());
    assert_eq!(observe_of(&out), None);
    assert_eq!(ep.observation_count(), 1);

    // Seven NON notifications with rising sequence numbers, then a CON.
    let mut last = 1;
    for n in 1..=8 {
        let sent = ep.notify(&["rl"], &Ctx);
        assert_eq!(sent.len(), 1);
        let p = parse(&sent[0]);
        assert_eq!(p.get_token(), &[0x0B]);
        assert_eq!(p.payload, b"version 3 count 3");
        let seq = observe_of(&p).unwrap();
        assert!(seq > last);
        last = seq;
        let want = if n == 8 {
            MessageType::Confirmable
        } else {
            MessageType::NonConfirmable
        };
        assert_eq!(p.header.get_type(), want, "notification {n}");
        if n == 8 {
            // Acknowledged: the observer is alive.
            ep.handle(
                &empty_message(MessageType::Acknowledgement, p.header.message_id),
                0,
                &Ctx,
            );
        }
    }
    for _ in 0..8 {
        assert_eq!(ep.notify(&["rl"], &Ctx).len(), 1);
    }
    // That CON went unanswered: the next change drops the observer.
    assert!(ep.notify(&["rl"], &Ctx).is_empty());
    assert_eq!(ep.observation_count(), 0);

    // An RST to a notification ends it; Observe: 1 cancels.
    ep.handle(&observe_rl(3, 0x0C, 0), 0, &Ctx).unwrap();
    let p = parse(&ep.notify(&["rl"], &Ctx)[0]);
    ep.handle(
        &empty_message(MessageType::Reset, p.header.message_id),
        0,
        &Ctx,
    );
    assert_eq!(ep.observation_count(), 0);
    ep.handle(&observe_rl(4, 0x0D, 0), 0, &Ctx).unwrap();
    let out = parse(&ep.handle(&observe_rl(5, 0x0D, 1), 0, &Ctx).unwrap());
    assert_eq!(observe_of(&out), None);
    assert_eq!(ep.observation_count(), 0);

    // At most four per session.
    for t in 0..6u8 {
        ep.handle(&observe_rl(10 + u16::from(t), t, 0), 0, &Ctx)
            .unwrap();
    }
    assert_eq!(ep.observation_count(), crate::observe::MAX_PER_SESSION);
}

/// A gateway "hub" with one active spoke "s1".
struct Hub;

impl ResourceContext for Hub {
    fn device_id(&self) -> &str {
        "hub"
    }
    fn credential(&self) -> &'static str {
        "psk"
    }
    fn status(&self) -> Option<&'static str> {
        Some("active")
    }
    fn revocation_list(&self) -> (u64, u64) {
        (7, 2)
    }
    fn device_ca_certificate(&self) -> Option<Vec<u8>> {
        None
    }
    fn spoke_status(&self, spoke: &str) -> Result<&'static str, Reply> {
        match spoke {
            "s1" => Ok("active"),
            _ => Err(Reply::error(ResponseType::Forbidden, "not your spoke")),
        }
    }
}

#[test]
fn a_gateway_acts_for_its_spoke_on_the_spokes_resources_only() {
    let mut ep = CoapEndpoint::new(1);
    let mut ask = |mid: u16, path: &str, accept: Option<usize>| {
        parse(
            &ep.handle(&get(MessageType::Confirmable, mid, path, accept), 0, &Hub)
                .unwrap(),
        )
    };
    assert_eq!(
        ask(1, "/gw/spoke/s1/id", None).payload,
        b"s1 active via-gateway"
    );
    let rl = ask(2, "/gw/spoke/s1/rl", Some(0));
    assert_eq!(rl.payload, b"version 7 count 2");
    // Someone else's spoke, and what a spoke may not do, are refused.
    let other = ask(3, "/gw/spoke/s9/id", None);
    assert_eq!(
        other.header.code,
        MessageClass::Response(ResponseType::Forbidden)
    );
    let nested = ask(4, "/gw/spoke/s1/gw/spokes", None);
    assert_eq!(
        nested.header.code,
        MessageClass::Response(ResponseType::NotFound)
    );
    let est = ask(5, "/gw/spoke/s1/.well-known/est/crts", None);
    assert_eq!(
        est.header.code,
        MessageClass::Response(ResponseType::NotFound)
    );
}

/// A device offered a 2,500-byte image, recording what it reports.
struct Updating {
    reports: std::cell::RefCell<Vec<(crate::resources::FirmwareState, bool)>>,
}

const IMAGE_LEN: usize = 2500;

impl ResourceContext for Updating {
    fn device_id(&self) -> &str {
        "thermo-1"
    }
    fn credential(&self) -> &'static str {
        "psk"
    }
    fn status(&self) -> Option<&'static str> {
        Some("active")
    }
    fn revocation_list(&self) -> (u64, u64) {
        (0, 0)
    }
    fn device_ca_certificate(&self) -> Option<Vec<u8>> {
        None
    }
    fn firmware_manifest(&self) -> Result<Vec<u8>, Reply> {
        Ok(vec![0xD2; 40])
    }
    fn firmware_image(
        &self,
        offset: u64,
        len: usize,
    ) -> Result<crate::resources::ImageWindow, Reply> {
        let image: Vec<u8> = (0..IMAGE_LEN).map(|i| i as u8).collect();
        let start = (offset as usize).min(IMAGE_LEN);
        Ok(crate::resources::ImageWindow {
            bytes: image[start..(start + len).min(IMAGE_LEN)].to_vec(),
            total: IMAGE_LEN as u64,
            etag: [7; 8],
        })
    }
    fn report_firmware(
        &self,
        state: &crate::resources::FirmwareState,
        later: bool,
    ) -> Result<(), Reply> {
        self.reports.borrow_mut().push((state.clone(), later));
        Ok(())
    }
}

fn get_block(mid: u16, path: &str, num: u32, szx: u8) -> Vec<u8> {
    let p = parse(&get(MessageType::Confirmable, mid, path, None));
    with_block(
        p,
        CoapOption::Block2,
        BlockOption {
            num,
            more: false,
            szx,
        },
    )
}

#[test]
fn an_image_is_served_block_by_block_from_any_block() {
    let ctx = Updating {
        reports: Default::default(),
    };
    let mut ep = CoapEndpoint::new(1);
    // Block 0 of 1024: Size2 and the ETag; more to follow.
    let first = parse(
        &ep.handle(&get_block(1, "/fw/image", 0, 6), 0, &ctx)
            .unwrap(),
    );
    assert_eq!(first.payload.len(), 1024);
    let b = block_of(&first, CoapOption::Block2).unwrap();
    assert_eq!((b.num, b.more, b.szx), (0, true, 6));
    assert_eq!(
        first
            .get_first_option(CoapOption::Size2)
            .map(|v| v.to_vec()),
        Some(crate::block_option::encode_uint(IMAGE_LEN as u32))
    );
    assert_eq!(
        first.get_first_option(CoapOption::ETag).map(|v| v.to_vec()),
        Some(vec![7; 8])
    );
    // A resumed download asks for block 2 first: the last 452 bytes.
    let mut fresh = CoapEndpoint::new(1);
    let last = parse(
        &fresh
            .handle(&get_block(2, "/fw/image", 2, 6), 0, &ctx)
            .unwrap(),
    );
    let b = block_of(&last, CoapOption::Block2).unwrap();
    assert_eq!((b.num, b.more), (2, false));
    assert_eq!(
        last.payload,
        (2048..IMAGE_LEN).map(|i| i as u8).collect::<Vec<_>>()
    );
    assert!(last.get_first_option(CoapOption::Size2).is_none());
    // Past the end: 4.02. No Block2 at all: the first block of 1024.
    let past = parse(
        &fresh
            .handle(&get_block(3, "/fw/image", 3, 6), 0, &ctx)
            .unwrap(),
    );
    assert_eq!(
        past.header.code,
        MessageClass::Response(ResponseType::BadOption)
    );
    let plain = parse(
        &fresh
            .handle(
                &get(MessageType::Confirmable, 4, "/fw/image", None),
                0,
                &ctx,
            )
            .unwrap(),
    );
    assert_eq!(plain.payload.len(), 1024);
    // The manifest is a COSE_Sign1 (content-format 18).
    let m = parse(
        &fresh
            .handle(
                &get(MessageType::Confirmable, 5, "/fw/manifest", None),
                0,
                &ctx,
            )
            .unwrap(),
    );
    assert_eq!(
        m.get_content_format(),
        Some(ContentFormat::ApplicationCoseSign1)
    );
    // Without an offer (the default context): 4.04.
    let none = parse(
        &fresh
            .handle(
                &get(MessageType::Confirmable, 6, "/fw/manifest", None),
                0,
                &Ctx,
            )
            .unwrap(),
    );
    assert_eq!(
        none.header.code,
        MessageClass::Response(ResponseType::NotFound)
    );
}

/// GET /id with one Uri-Query option per `queries` entry.
fn get_id_with(mid: u16, queries: &[&str]) -> Vec<u8> {
    let mut p = parse(&get(MessageType::Confirmable, mid, "/id", None));
    for q in queries {
        p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
    }
    p.to_bytes().unwrap()
}

fn post_state(mid: u16, format: ContentFormat, payload: &[u8]) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(MessageType::Confirmable);
    p.header.code = MessageClass::Request(RequestType::Post);
    p.header.message_id = mid;
    p.set_token(vec![0x33]);
    for seg in ["fw", "state"] {
        p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
    }
    p.set_content_format(format);
    p.payload = payload.to_vec();
    p.to_bytes().unwrap()
}

#[test]
fn firmware_reports_in_cbor_json_text_or_an_id_query() {
    let ctx = Updating {
        reports: Default::default(),
    };
    let cbor = |v: ciborium::value::Value| {
        let mut out = Vec::new();
        ciborium::into_writer(&v, &mut out).unwrap();
        out
    };
    use ciborium::value::Value;
    let downloading = cbor(Value::Map(vec![
        (Value::from(1), Value::Text("1.3.0".into())),
        (Value::from(2), Value::from(1)),
        (Value::from(3), Value::Text("1.4.2".into())),
    ]));
    let mut ep = CoapEndpoint::new(1);
    // Answered later, once stored.
    assert_eq!(
        ep.handle(
            &post_state(1, ContentFormat::ApplicationCBOR, &downloading),
            0,
            &ctx
        ),
        None
    );
    assert!(ep.is_pending());
    ep.complete(
        Reply {
            code: ResponseType::Changed,
            format: None,
            payload: vec![],
        },
        1,
    )
    .unwrap();
    let json = br#"{"running": "1.4.2"}"#;
    ep.handle(
        &post_state(2, ContentFormat::ApplicationJSON, json),
        2,
        &ctx,
    );
    ep.complete(
        Reply {
            code: ResponseType::Changed,
            format: None,
            payload: vec![],
        },
        3,
    )
    .unwrap();
    ep.handle(
        &post_state(3, ContentFormat::TextPlain, b"1.4.2\n"),
        4,
        &ctx,
    );
    ep.complete(
        Reply {
            code: ResponseType::Changed,
            format: None,
            payload: vec![],
        },
        5,
    )
    .unwrap();
    // The smallest devices: a query on /id, stored in the background.
    let id = parse(&ep.handle(&get_id_with(4, &["fw=2.0.0"]), 6, &ctx).unwrap());
    assert_eq!(id.payload, b"thermo-1 active psk");
    let reports = ctx.reports.borrow();
    type Seen<'a> = (&'a str, Option<(&'a str, &'a str)>, bool);
    let got: Vec<Seen> = reports
        .iter()
        .map(|(s, later)| {
            (
                s.running.as_str(),
                s.attempt.as_ref().map(|(v, st)| (v.as_str(), *st)),
                *later,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("1.3.0", Some(("1.4.2", "downloading")), true),
            ("1.4.2", None, true),
            ("1.4.2", None, true),
            ("2.0.0", None, false),
        ]
    );
    drop(reports);
    // Bad reports are 4.00 and record nothing.
    let before = ctx.reports.borrow().len();
    let bad = cbor(Value::Map(vec![(Value::from(2), Value::from(2))]));
    for (mid, format, body) in [
        (10, ContentFormat::ApplicationCBOR, bad.as_slice()),
        (
            11,
            ContentFormat::ApplicationJSON,
            br#"{"running": 1}"#.as_slice(),
        ),
        (12, ContentFormat::ApplicationCBOR, b"\xff".as_slice()),
    ] {
        let out = parse(&ep.handle(&post_state(mid, format, body), 10, &ctx).unwrap());
        assert_eq!(
            out.header.code,
            MessageClass::Response(ResponseType::BadRequest),
            "{mid}"
        );
    }
    let odd = parse(
        &ep.handle(&get_id_with(13, &["fw_state=failed"]), 11, &ctx)
            .unwrap(),
    );
    assert_eq!(
        odd.header.code,
        MessageClass::Response(ResponseType::BadRequest)
    );
    assert_eq!(ctx.reports.borrow().len(), before);
}
