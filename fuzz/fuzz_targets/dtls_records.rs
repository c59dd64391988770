//! Record framing and record protection: any bytes split into records (with
//! and without CIDs) and opened under a fixed key must fail cleanly.
#![no_main]

use idreg_dtls::cipher_suite::Aead;
use idreg_dtls::record::split_records;
use idreg_dtls::record_cipher::{open, DirectionKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = DirectionKey {
        key: [7; 16],
        iv: [1, 2, 3, 4],
    };
    let mut plain = Vec::new();
    for cid_len in [0, 6] {
        for record in split_records(data, cid_len).flatten() {
            let _ = record.epoch_sequence();
            for aead in [Aead::Ccm8, Aead::Ccm16, Aead::Gcm] {
                let _ = open(aead, &key, &record, &mut plain);
            }
        }
    }
});
