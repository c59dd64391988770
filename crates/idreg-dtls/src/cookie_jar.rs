//! Stateless HelloVerifyRequest cookies (RFC 6347 §4.2.1): a cookie is an
//! HMAC over the client's address and its hello's parameters under a secret
//! that rotates every minute (the previous one is still accepted), so a
//! ClientHello costs the server no memory until the client proves it can
//! receive at its address.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hmac::{KeyInit as _, Mac};
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::handshake_codec::ClientHello;

pub const COOKIE_LEN: usize = 16;
const ROTATE_EVERY: Duration = Duration::from_secs(60);

pub struct CookieJar {
    current: Zeroizing<[u8; 32]>,
    previous: Zeroizing<[u8; 32]>,
    rotated_at: Instant,
}

fn fresh_secret() -> Zeroizing<[u8; 32]> {
    let mut s = Zeroizing::new([0u8; 32]);
    rand::rng().fill_bytes(s.as_mut_slice());
    s
}

fn compute(secret: &[u8; 32], from: SocketAddr, hello: &ClientHello<'_>) -> [u8; COOKIE_LEN] {
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    match from {
        SocketAddr::V4(a) => mac.update(&a.ip().octets()),
        SocketAddr::V6(a) => mac.update(&a.ip().octets()),
    }
    mac.update(&from.port().to_be_bytes());
    // Version, random and session id; then the offered suites. The client
    // must repeat these in its second hello (RFC 6347 §4.2.1).
    mac.update(hello.before_cookie);
    mac.update(hello.cipher_suites);
    let mut out = [0u8; COOKIE_LEN];
    out.copy_from_slice(&mac.finalize().into_bytes()[..COOKIE_LEN]);
    out
}

impl CookieJar {
    pub fn new(now: Instant) -> Self {
        Self {
            current: fresh_secret(),
            previous: fresh_secret(),
            rotated_at: now,
        }
    }

    fn rotate_if_due(&mut self, now: Instant) {
        if now.saturating_duration_since(self.rotated_at) >= ROTATE_EVERY {
            self.previous = std::mem::replace(&mut self.current, fresh_secret());
            self.rotated_at = now;
        }
    }

    /// The cookie to send `from` in a HelloVerifyRequest.
    pub fn cookie(
        &mut self,
        now: Instant,
        from: SocketAddr,
        hello: &ClientHello<'_>,
    ) -> [u8; COOKIE_LEN] {
        self.rotate_if_due(now);
        compute(&self.current, from, hello)
    }

    /// Whether `hello` carries a cookie this jar issued to `from` within the
    /// last one to two rotation periods.
    pub fn verify(&mut self, now: Instant, from: SocketAddr, hello: &ClientHello<'_>) -> bool {
        self.rotate_if_due(now);
        if hello.cookie.len() != COOKIE_LEN {
            return false;
        }
        [&self.current, &self.previous]
            .iter()
            .any(|secret| constant_time_eq(&compute(secret, from, hello), hello.cookie))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake_codec::client_hello_body;

    fn hello_with(cookie: &[u8], random: u8) -> Vec<u8> {
        client_hello_body(&[random; 32], cookie, &[0xc0a8], &[])
    }

    #[test]
    fn a_cookie_binds_address_and_hello_and_outlives_one_rotation_only() {
        let t0 = Instant::now();
        let mut jar = CookieJar::new(t0);
        let addr: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let first = hello_with(b"", 1);
        let cookie = jar.cookie(t0, addr, &ClientHello::parse(&first).unwrap());
        let second = hello_with(&cookie, 1);
        let h = ClientHello::parse(&second).unwrap();
        assert!(jar.verify(t0, addr, &h));
        // Another address or another hello: refused.
        assert!(!jar.verify(t0, "192.0.2.1:5001".parse().unwrap(), &h));
        let other = hello_with(&cookie, 2);
        assert!(!jar.verify(t0, addr, &ClientHello::parse(&other).unwrap()));
        // After one rotation it is still good; after two it is not.
        assert!(jar.verify(t0 + ROTATE_EVERY, addr, &h));
        assert!(!jar.verify(t0 + ROTATE_EVERY * 2, addr, &h));
    }
}
