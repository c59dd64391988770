//! The TLS 1.2 pseudo-random function over HMAC-SHA256 (RFC 5246 §5) and
//! the secrets a handshake derives with it: the PSK premaster secret
//! (RFC 4279 §2), the extended master secret (RFC 7627 §4), the key block
//! and the Finished messages' verify_data.

use hmac::{KeyInit as _, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

type HmacSha256 = hmac::Hmac<Sha256>;

/// `P_SHA256(secret, label || seed...)` into `out`.
pub fn prf(secret: &[u8], label: &[u8], seeds: &[&[u8]], out: &mut [u8]) {
    let keyed = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    let with_seed = |mac: &mut HmacSha256| {
        mac.update(label);
        for s in seeds {
            mac.update(s);
        }
    };
    // A(1) = HMAC(secret, label || seed)
    let mut a = {
        let mut m = keyed.clone();
        with_seed(&mut m);
        m.finalize().into_bytes()
    };
    for chunk in out.chunks_mut(32) {
        let mut m = keyed.clone();
        m.update(&a);
        with_seed(&mut m);
        let block = m.finalize().into_bytes();
        chunk.copy_from_slice(&block[..chunk.len()]);
        let mut next = keyed.clone();
        next.update(&a);
        a = next.finalize().into_bytes();
    }
}

/// RFC 4279 §2: `uint16 N, N zero bytes, uint16 N, psk`.
pub fn psk_premaster(psk: &[u8]) -> Zeroizing<Vec<u8>> {
    let n = psk.len() as u16;
    let mut out = Zeroizing::new(Vec::with_capacity(4 + 2 * psk.len()));
    out.extend_from_slice(&n.to_be_bytes());
    out.resize(2 + psk.len(), 0);
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(psk);
    out
}

/// RFC 7627: the master secret bound to the hash of the handshake up to
/// and including the ClientKeyExchange.
pub fn extended_master_secret(premaster: &[u8], session_hash: &[u8]) -> Zeroizing<[u8; 48]> {
    let mut ms = Zeroizing::new([0u8; 48]);
    prf(
        premaster,
        b"extended master secret",
        &[session_hash],
        ms.as_mut_slice(),
    );
    ms
}

/// The keys of both directions for an AEAD suite with a 16-byte key and a
/// 4-byte implicit IV (RFC 5246 §6.3; AEAD suites take no MAC keys).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyBlock {
    pub client_key: [u8; 16],
    pub server_key: [u8; 16],
    pub client_iv: [u8; 4],
    pub server_iv: [u8; 4],
}

impl Drop for KeyBlock {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.client_key.zeroize();
        self.server_key.zeroize();
    }
}

pub fn key_block(master: &[u8; 48], client_random: &[u8], server_random: &[u8]) -> KeyBlock {
    let mut block = Zeroizing::new([0u8; 40]);
    prf(
        master,
        b"key expansion",
        &[server_random, client_random],
        block.as_mut_slice(),
    );
    let mut k = KeyBlock {
        client_key: [0; 16],
        server_key: [0; 16],
        client_iv: [0; 4],
        server_iv: [0; 4],
    };
    k.client_key.copy_from_slice(&block[0..16]);
    k.server_key.copy_from_slice(&block[16..32]);
    k.client_iv.copy_from_slice(&block[32..36]);
    k.server_iv.copy_from_slice(&block[36..40]);
    k
}

/// Which side's Finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

pub fn verify_data(master: &[u8; 48], side: Side, handshake_hash: &[u8]) -> [u8; 12] {
    let label: &[u8] = match side {
        Side::Client => b"client finished",
        Side::Server => b"server finished",
    };
    let mut out = [0u8; 12];
    prf(master, label, &[handshake_hash], &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The TLS 1.2 PRF test vector for SHA-256 published with the IETF TLS
    /// working group's vectors (secret, "test label", seed → 100 bytes).
    #[test]
    fn matches_the_published_sha256_vector() {
        let secret = hex("9bbe436ba940f017b17652849a71db35");
        let seed = hex("a0ba9f936cda311827a6f796ffd5198c");
        let expected = hex(
            "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a6b301791e90d35c9c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff70187347b66",
        );
        let mut out = vec![0u8; expected.len()];
        prf(&secret, b"test label", &[&seed], &mut out);
        assert_eq!(out, expected);
        // The seed may come in pieces.
        let mut split = vec![0u8; expected.len()];
        prf(
            &secret,
            b"test label",
            &[&seed[..5], &seed[5..]],
            &mut split,
        );
        assert_eq!(split, expected);
    }

    /// The classic (non-extended) master secret of a known X25519 exchange,
    /// as webrtc-dtls's and Go's DTLS tests have it: checks the seed order.
    #[test]
    fn master_secret_of_a_known_exchange() {
        let premaster = hex("df4a291baa1eb7cfa6934b29b474baad2697e29f1f920dcc77c8a0a088447624");
        let client_random: Vec<u8> = (0x00..0x20).collect();
        let server_random: Vec<u8> = (0x70..0x90).collect();
        let mut ms = [0u8; 48];
        prf(
            &premaster,
            b"master secret",
            &[&client_random, &server_random],
            &mut ms,
        );
        assert_eq!(
            ms.to_vec(),
            hex("916abf9da55973e13614ae0a3f5d3f37b023ba129aee02cc9134338127cd7049781c8e19fc1eb2a7387ac06ae237344c")
        );
    }

    #[test]
    fn psk_premaster_layout() {
        let pm = psk_premaster(b"abc");
        assert_eq!(pm.as_slice(), &[0, 3, 0, 0, 0, 0, 3, b'a', b'b', b'c']);
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
