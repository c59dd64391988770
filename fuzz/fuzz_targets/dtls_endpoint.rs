//! The server endpoint fed a sequence of datagrams from a few addresses,
//! with time moving: the first datagrams of a real PSK handshake are
//! spliced in so the fuzzer reaches past the cookie. Nothing may panic, and
//! the endpoint's tables must stay within their bounds.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use idreg_dtls::client::{Client, ClientConfig};
use idreg_dtls::{CredentialStore, Endpoint, EndpointConfig, Refusal};
use libfuzzer_sys::fuzz_target;
use zeroize::Zeroizing;

struct Creds;

impl CredentialStore for Creds {
    type Device = u8;
    fn psk(&self, identity: &[u8]) -> Result<(u8, Zeroizing<Vec<u8>>), Refusal> {
        match identity {
            b"id" => Ok((1, Zeroizing::new(b"0123456789abcdef".to_vec()))),
            _ => Err(Refusal::Unknown),
        }
    }
    fn public_key(&self, _: &[u8]) -> Result<u8, Refusal> {
        Err(Refusal::Unknown)
    }
}

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let config = EndpointConfig {
        max_sessions: 4,
        max_handshakes: 4,
        ..Default::default()
    };
    let mut server = Endpoint::new(config, None, Creds, t0);
    let addrs: [SocketAddr; 3] = [
        "192.0.2.1:1".parse().unwrap(),
        "192.0.2.1:2".parse().unwrap(),
        "198.51.100.7:9".parse().unwrap(),
    ];
    // A real client on addrs[0], so its cookie and flights can be mixed in.
    let mut client = Client::new(ClientConfig::psk(b"id", b"0123456789abcdef"), t0);
    let mut now = t0;
    let mut rest = data;
    while let Some((&head, tail)) = rest.split_first() {
        let len = (head as usize & 0x7f).min(tail.len());
        let (chunk, after) = tail.split_at(len);
        rest = after;
        let from = addrs[(head >> 7) as usize + usize::from(chunk.first() == Some(&0))];
        if head & 0x40 != 0 {
            // Let the real client speak, maybe with a byte of ours changed.
            if let Some(mut d) = client.poll_transmit() {
                if let Some(b) = chunk.first() {
                    let i = *b as usize % d.len();
                    d[i] ^= chunk.get(1).copied().unwrap_or(0);
                }
                server.handle(now, addrs[0], &d);
            }
        } else {
            server.handle(now, from, chunk);
        }
        now += Duration::from_millis(u64::from(head & 0x3f) * 100);
        server.handle_timeout(now);
        client.handle_timeout(now);
        while let Some(t) = server.poll_transmit() {
            if t.to == addrs[0] {
                client.handle(now, &t.data);
            }
        }
        while server.poll_event().is_some() {}
        assert!(server.session_count() <= 4 + 1);
        assert!(server.handshake_count() <= 4);
    }
});
