//! The CoAP endpoint of a session fed arbitrary datagrams (the decrypted
//! application data a device sends), with time moving.
#![no_main]

use idreg_coap_endpoint::{CoapEndpoint, ResourceContext};
use libfuzzer_sys::fuzz_target;

struct Ctx;

impl ResourceContext for Ctx {
    fn device_id(&self) -> &str {
        "device"
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
        Some(vec![0x30; 600])
    }
}

fuzz_target!(|data: &[u8]| {
    let mut endpoint = CoapEndpoint::new(1);
    let mut now = 0u64;
    let mut rest = data;
    while let Some((&head, tail)) = rest.split_first() {
        let len = (head as usize).min(tail.len());
        let (datagram, after) = tail.split_at(len);
        rest = after;
        if let Some(reply) = endpoint.handle(datagram, now, &Ctx) {
            assert!(!reply.is_empty());
        }
        now += u64::from(head) * 1000;
    }
});
