//! DTLS 1.2 handshake messages (RFC 5246 §7.4, RFC 6347 §4.2.2): the
//! 12-byte handshake header with its fragment fields, and the bodies of the
//! messages a PSK or ECDHE-ECDSA handshake exchanges, parsed from borrowed
//! bytes and written into buffers.

use crate::hello_extensions::{put_extension, ClientHelloExtensions};
use crate::reader::{DecodeError, Put, Reader};

pub const HANDSHAKE_HEADER_LEN: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeType {
    ClientHello,
    ServerHello,
    HelloVerifyRequest,
    Certificate,
    ServerKeyExchange,
    CertificateRequest,
    ServerHelloDone,
    CertificateVerify,
    ClientKeyExchange,
    Finished,
}

impl HandshakeType {
    pub fn code(self) -> u8 {
        match self {
            HandshakeType::ClientHello => 1,
            HandshakeType::ServerHello => 2,
            HandshakeType::HelloVerifyRequest => 3,
            HandshakeType::Certificate => 11,
            HandshakeType::ServerKeyExchange => 12,
            HandshakeType::CertificateRequest => 13,
            HandshakeType::ServerHelloDone => 14,
            HandshakeType::CertificateVerify => 15,
            HandshakeType::ClientKeyExchange => 16,
            HandshakeType::Finished => 20,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => HandshakeType::ClientHello,
            2 => HandshakeType::ServerHello,
            3 => HandshakeType::HelloVerifyRequest,
            11 => HandshakeType::Certificate,
            12 => HandshakeType::ServerKeyExchange,
            13 => HandshakeType::CertificateRequest,
            14 => HandshakeType::ServerHelloDone,
            15 => HandshakeType::CertificateVerify,
            16 => HandshakeType::ClientKeyExchange,
            20 => HandshakeType::Finished,
            _ => return None,
        })
    }
}

/// One handshake fragment as it arrived in a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment<'a> {
    pub msg_type: HandshakeType,
    /// Length of the whole message.
    pub length: u32,
    pub message_seq: u16,
    pub offset: u32,
    pub body: &'a [u8],
}

impl Fragment<'_> {
    pub fn is_whole(&self) -> bool {
        self.offset == 0 && self.body.len() as u32 == self.length
    }
}

/// The largest handshake message accepted (a certificate chain of a few
/// certificates); anything claiming more is refused before buffering.
pub const MAX_MESSAGE_LEN: u32 = 16 * 1024;

/// Splits a handshake record's plaintext into fragments.
pub fn fragments(body: &[u8]) -> impl Iterator<Item = Result<Fragment<'_>, DecodeError>> {
    let mut r = Reader::new(body);
    let mut failed = false;
    std::iter::from_fn(move || {
        if r.is_empty() || failed {
            return None;
        }
        let f = parse_fragment(&mut r);
        failed = f.is_err();
        Some(f)
    })
}

fn parse_fragment<'a>(r: &mut Reader<'a>) -> Result<Fragment<'a>, DecodeError> {
    let msg_type =
        HandshakeType::from_code(r.u8()?).ok_or(DecodeError::Malformed("handshake type"))?;
    let length = r.u24()?;
    let message_seq = r.u16()?;
    let offset = r.u24()?;
    let body = r.vec24()?;
    if length > MAX_MESSAGE_LEN {
        return Err(DecodeError::Malformed("handshake message too large"));
    }
    if u64::from(offset) + body.len() as u64 > u64::from(length) {
        return Err(DecodeError::Malformed("fragment beyond its message"));
    }
    Ok(Fragment {
        msg_type,
        length,
        message_seq,
        offset,
        body,
    })
}

/// Appends the 12-byte header of an unfragmented message of `len` bytes
/// (the form every message takes in the handshake transcript).
pub fn put_header(out: &mut Vec<u8>, msg_type: HandshakeType, message_seq: u16, len: usize) {
    put_fragment_header(out, msg_type, len, message_seq, 0, len);
}

pub fn put_fragment_header(
    out: &mut Vec<u8>,
    msg_type: HandshakeType,
    len: usize,
    message_seq: u16,
    offset: usize,
    fragment_len: usize,
) {
    out.put_u8(msg_type.code());
    out.put_u24(len as u32);
    out.put_u16(message_seq);
    out.put_u24(offset as u32);
    out.put_u24(fragment_len as u32);
}

/// A ClientHello, borrowed from the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello<'a> {
    pub version: u16,
    pub random: [u8; 32],
    pub session_id: &'a [u8],
    pub cookie: &'a [u8],
    /// Raw two-byte suite ids.
    pub cipher_suites: &'a [u8],
    pub compression_methods: &'a [u8],
    pub extensions: ClientHelloExtensions<'a>,
    /// The bytes the cookie is computed over: everything but the cookie.
    pub before_cookie: &'a [u8],
    pub after_cookie: &'a [u8],
}

/// TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746 §3.3).
pub const EMPTY_RENEGOTIATION_INFO_SCSV: u16 = 0x00ff;

impl<'a> ClientHello<'a> {
    pub fn parse(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let version = r.u16()?;
        let random = r.array::<32>()?;
        let session_id = r.vec8()?;
        if session_id.len() > 32 {
            return Err(DecodeError::Malformed("session id"));
        }
        let cookie_at = body.len() - r.remaining();
        let cookie = r.vec8()?;
        let after_at = body.len() - r.remaining();
        let cipher_suites = r.vec16()?;
        if cipher_suites.is_empty() || cipher_suites.len() % 2 != 0 {
            return Err(DecodeError::Malformed("cipher suites"));
        }
        let compression_methods = r.vec8()?;
        if !compression_methods.contains(&0) {
            return Err(DecodeError::Malformed("no null compression"));
        }
        let extensions = if r.is_empty() {
            ClientHelloExtensions::default()
        } else {
            let block = r.vec16()?;
            r.finish()?;
            ClientHelloExtensions::parse(block)?
        };
        Ok(ClientHello {
            version,
            random,
            session_id,
            cookie,
            cipher_suites,
            compression_methods,
            extensions,
            before_cookie: &body[..cookie_at],
            after_cookie: &body[after_at..],
        })
    }

    pub fn suite_ids(&self) -> impl Iterator<Item = u16> + '_ {
        self.cipher_suites
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
    }

    pub fn offers(&self, id: u16) -> bool {
        self.suite_ids().any(|s| s == id)
    }
}

/// Writes a ClientHello body (the test client's).
pub fn client_hello_body(
    random: &[u8; 32],
    cookie: &[u8],
    suites: &[u16],
    extensions: &[(u16, Vec<u8>)],
) -> Vec<u8> {
    let mut b = Vec::with_capacity(128);
    b.put_u16(crate::record::DTLS_1_2);
    b.extend_from_slice(random);
    b.put_vec8(&[]);
    b.put_vec8(cookie);
    let mut s = Vec::new();
    for id in suites {
        s.put_u16(*id);
    }
    b.put_vec16(&s);
    b.put_vec8(&[0]);
    let mut x = Vec::new();
    for (k, d) in extensions {
        put_extension(&mut x, *k, d);
    }
    b.put_vec16(&x);
    b
}

/// HelloVerifyRequest: DTLS 1.0 as version, as RFC 6347 §4.2.1 advises.
pub fn hello_verify_request_body(cookie: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(3 + cookie.len());
    b.put_u16(crate::record::DTLS_1_0);
    b.put_vec8(cookie);
    b
}

pub fn parse_hello_verify_request(body: &[u8]) -> Result<&[u8], DecodeError> {
    let mut r = Reader::new(body);
    r.u16()?;
    let cookie = r.vec8()?;
    r.finish()?;
    Ok(cookie)
}

/// A ServerHello, borrowed (the test client's side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello<'a> {
    pub random: [u8; 32],
    pub cipher_suite: u16,
    /// (type, data) in order.
    pub extensions: Vec<(u16, &'a [u8])>,
}

impl<'a> ServerHello<'a> {
    pub fn parse(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        if r.u16()? != crate::record::DTLS_1_2 {
            return Err(DecodeError::Malformed("server version"));
        }
        let random = r.array::<32>()?;
        r.vec8()?;
        let cipher_suite = r.u16()?;
        if r.u8()? != 0 {
            return Err(DecodeError::Malformed("compression"));
        }
        let mut extensions = Vec::new();
        if !r.is_empty() {
            let mut x = Reader::new(r.vec16()?);
            r.finish()?;
            while !x.is_empty() {
                extensions.push((x.u16()?, x.vec16()?));
            }
        }
        Ok(ServerHello {
            random,
            cipher_suite,
            extensions,
        })
    }

    pub fn extension(&self, kind: u16) -> Option<&'a [u8]> {
        self.extensions
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, d)| *d)
    }
}

pub fn server_hello_body(random: &[u8; 32], suite: u16, extensions: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(40 + extensions.len());
    b.put_u16(crate::record::DTLS_1_2);
    b.extend_from_slice(random);
    b.put_vec8(&[]);
    b.put_u16(suite);
    b.put_u8(0);
    if !extensions.is_empty() {
        b.put_vec16(extensions);
    }
    b
}

/// Certificate with X.509 certificates: a list of DER certificates.
pub fn certificate_x509_body(chain: &[Vec<u8>]) -> Vec<u8> {
    let mut list = Vec::new();
    for c in chain {
        list.put_vec24(c);
    }
    let mut b = Vec::with_capacity(3 + list.len());
    b.put_vec24(&list);
    b
}

/// Certificate with a raw public key (RFC 7250 §3): one SubjectPublicKeyInfo.
pub fn certificate_raw_public_key_body(spki: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(3 + spki.len());
    b.put_vec24(spki);
    b
}

/// The certificates of an X.509 Certificate message, leaf first.
pub fn parse_certificate_x509(body: &[u8]) -> Result<Vec<&[u8]>, DecodeError> {
    let mut r = Reader::new(body);
    let mut list = Reader::new(r.vec24()?);
    r.finish()?;
    let mut out = Vec::new();
    while !list.is_empty() {
        out.push(list.vec24()?);
    }
    Ok(out)
}

/// The SubjectPublicKeyInfo of a raw-public-key Certificate message.
pub fn parse_certificate_raw_public_key(body: &[u8]) -> Result<&[u8], DecodeError> {
    let mut r = Reader::new(body);
    let spki = r.vec24()?;
    r.finish()?;
    Ok(spki)
}

/// ServerECDHParams for named curve secp256r1 with `point` (uncompressed).
pub fn ecdh_params(point: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(4 + point.len());
    p.put_u8(3); // named_curve
    p.put_u16(crate::hello_extensions::SECP256R1);
    p.put_vec8(point);
    p
}

/// ServerKeyExchange for ECDHE_ECDSA: the params, then the signature.
pub fn server_key_exchange_body(params: &[u8], signature_der: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(params.len() + 4 + signature_der.len());
    b.extend_from_slice(params);
    b.put_u16(crate::hello_extensions::ECDSA_P256_SHA256);
    b.put_vec16(signature_der);
    b
}

/// A ServerKeyExchange for ECDHE_ECDSA, borrowed (the test client's side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerKeyExchange<'a> {
    /// The ServerECDHParams bytes, as signed.
    pub params: &'a [u8],
    pub point: &'a [u8],
    pub signature_algorithm: u16,
    pub signature: &'a [u8],
}

impl<'a> ServerKeyExchange<'a> {
    pub fn parse(body: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        if r.u8()? != 3 || r.u16()? != crate::hello_extensions::SECP256R1 {
            return Err(DecodeError::Malformed("curve"));
        }
        let point = r.vec8()?;
        let params = &body[..body.len() - r.remaining()];
        let signature_algorithm = r.u16()?;
        let signature = r.vec16()?;
        r.finish()?;
        Ok(ServerKeyExchange {
            params,
            point,
            signature_algorithm,
            signature,
        })
    }
}

/// CertificateRequest: ecdsa_sign, ecdsa_secp256r1_sha256, no CA names.
pub fn certificate_request_body() -> Vec<u8> {
    let mut b = Vec::with_capacity(8);
    b.put_vec8(&[64]);
    b.put_vec16(&crate::hello_extensions::ECDSA_P256_SHA256.to_be_bytes());
    b.put_vec16(&[]);
    b
}

/// A PSK ServerKeyExchange: the identity hint (RFC 4279 §2).
pub fn parse_psk_identity_hint(body: &[u8]) -> Result<&[u8], DecodeError> {
    let mut r = Reader::new(body);
    let hint = r.vec16()?;
    r.finish()?;
    Ok(hint)
}

/// A ClientKeyExchange for PSK: the identity.
pub fn parse_psk_client_key_exchange(body: &[u8]) -> Result<&[u8], DecodeError> {
    let mut r = Reader::new(body);
    let identity = r.vec16()?;
    r.finish()?;
    Ok(identity)
}

/// A ClientKeyExchange for ECDHE: the client's public point.
pub fn parse_ecdhe_client_key_exchange(body: &[u8]) -> Result<&[u8], DecodeError> {
    let mut r = Reader::new(body);
    let point = r.vec8()?;
    r.finish()?;
    Ok(point)
}

/// CertificateVerify: (signature algorithm, DER signature).
pub fn parse_certificate_verify(body: &[u8]) -> Result<(u16, &[u8]), DecodeError> {
    let mut r = Reader::new(body);
    let alg = r.u16()?;
    let sig = r.vec16()?;
    r.finish()?;
    Ok((alg, sig))
}

pub fn certificate_verify_body(signature_der: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(4 + signature_der.len());
    b.put_u16(crate::hello_extensions::ECDSA_P256_SHA256);
    b.put_vec16(signature_der);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hello_extensions::{CONNECTION_ID, EXTENDED_MASTER_SECRET};

    #[test]
    fn client_hello_round_trips_and_marks_its_cookie() {
        let body = client_hello_body(
            &[9; 32],
            b"cookie!",
            &[0xc0a8, 0x00ff],
            &[(EXTENDED_MASTER_SECRET, vec![]), (CONNECTION_ID, vec![0])],
        );
        let ch = ClientHello::parse(&body).unwrap();
        assert_eq!(ch.cookie, b"cookie!");
        assert!(ch.offers(0xc0a8) && ch.offers(EMPTY_RENEGOTIATION_INFO_SCSV));
        assert!(ch.extensions.extended_master_secret);
        assert_eq!(
            ch.before_cookie.len() + 1 + 7 + ch.after_cookie.len(),
            body.len()
        );
    }

    #[test]
    fn a_psk_identity_hint_is_read_and_its_truncations_refused() {
        assert_eq!(parse_psk_identity_hint(b"\0\x04CoAP").unwrap(), b"CoAP");
        assert_eq!(parse_psk_identity_hint(b"\0\0").unwrap(), b"");
        for cut in [&b""[..], b"\0", b"\0\x04CoA", b"\0\x04CoAPx"] {
            assert!(parse_psk_identity_hint(cut).is_err(), "{cut:?}");
        }
    }

    #[test]
    fn every_truncation_of_a_client_hello_is_an_error_not_a_panic() {
        let body = client_hello_body(
            &[9; 32],
            b"c",
            &[0xc0a8],
            &[(EXTENDED_MASTER_SECRET, vec![])],
        );
        // Cut right before the extensions block, it is a valid hello without
        // extensions; every other cut is an error.
        let without_extensions = body.len() - 6;
        for n in 0..body.len() {
            let parsed = ClientHello::parse(&body[..n]);
            assert_eq!(parsed.is_ok(), n == without_extensions, "{n}");
        }
    }

    #[test]
    fn fragments_must_lie_within_their_message() {
        let mut rec = Vec::new();
        put_fragment_header(&mut rec, HandshakeType::Finished, 12, 3, 8, 6);
        rec.extend_from_slice(&[0; 6]);
        assert!(fragments(&rec).next().unwrap().is_err());
        let mut ok = Vec::new();
        put_fragment_header(&mut ok, HandshakeType::Finished, 12, 3, 6, 6);
        ok.extend_from_slice(&[0; 6]);
        let f = fragments(&ok).next().unwrap().unwrap();
        assert_eq!((f.offset, f.length, f.is_whole()), (6, 12, false));
    }

    #[test]
    fn certificates_parse_as_lists_or_raw_keys() {
        let body = certificate_x509_body(&[vec![1, 2], vec![3]]);
        assert_eq!(
            parse_certificate_x509(&body).unwrap(),
            vec![&[1u8, 2][..], &[3][..]]
        );
        let rpk = certificate_raw_public_key_body(&[4, 5, 6]);
        assert_eq!(parse_certificate_raw_public_key(&rpk).unwrap(), &[4, 5, 6]);
    }
}
