//! Handshake messages: fragments, every message parser, extensions, and the
//! reassembly of whatever fragments the input holds.
#![no_main]

use idreg_dtls::handshake_codec::*;
use idreg_dtls::hello_extensions::ClientHelloExtensions;
use idreg_dtls::message_assembler::MessageAssembler;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut assembler = MessageAssembler::new(0);
    for fragment in fragments(data).flatten() {
        assembler.push(&fragment);
    }
    while let Some((_, _, body)) = assembler.pop() {
        let _ = ClientHello::parse(&body);
    }
    let _ = ClientHello::parse(data);
    let _ = ServerHello::parse(data);
    let _ = ServerKeyExchange::parse(data);
    let _ = ClientHelloExtensions::parse(data);
    let _ = parse_hello_verify_request(data);
    let _ = parse_certificate_x509(data);
    let _ = parse_certificate_raw_public_key(data);
    let _ = parse_psk_client_key_exchange(data);
    let _ = parse_ecdhe_client_key_exchange(data);
    let _ = parse_certificate_verify(data);
    let _ = idreg_dtls::alert::parse(data);
});
