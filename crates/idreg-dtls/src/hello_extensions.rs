//! The ClientHello and ServerHello extensions this engine understands
//! (RFC 5246 §7.4.1.4, RFC 4492, RFC 7627, RFC 7250, RFC 9146, RFC 5746).
//! Unknown extensions are skipped, as TLS requires; a known one that is
//! malformed or repeated makes the hello malformed.

use crate::reader::{DecodeError, Put, Reader};

pub const SERVER_NAME: u16 = 0;
pub const SUPPORTED_GROUPS: u16 = 10;
pub const EC_POINT_FORMATS: u16 = 11;
pub const SIGNATURE_ALGORITHMS: u16 = 13;
pub const CLIENT_CERTIFICATE_TYPE: u16 = 19;
pub const SERVER_CERTIFICATE_TYPE: u16 = 20;
pub const EXTENDED_MASTER_SECRET: u16 = 23;
pub const CONNECTION_ID: u16 = 54;
pub const RENEGOTIATION_INFO: u16 = 0xff01;

/// secp256r1 in supported_groups.
pub const SECP256R1: u16 = 23;
/// ecdsa_secp256r1_sha256 (hash sha256 = 4, signature ecdsa = 3).
pub const ECDSA_P256_SHA256: u16 = 0x0403;
/// The uncompressed point format.
pub const UNCOMPRESSED: u8 = 0;

/// RFC 7250 certificate types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateType {
    X509,
    RawPublicKey,
}

impl CertificateType {
    pub fn code(self) -> u8 {
        match self {
            CertificateType::X509 => 0,
            CertificateType::RawPublicKey => 2,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(CertificateType::X509),
            2 => Some(CertificateType::RawPublicKey),
            _ => None,
        }
    }
}

/// What a ClientHello's extensions say, reduced to what the server decides
/// with. Borrowed from the datagram.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHelloExtensions<'a> {
    pub extended_master_secret: bool,
    /// `None`: the extension was absent (RFC 4492: then any curve may be used).
    pub supports_secp256r1: Option<bool>,
    pub supports_uncompressed_points: Option<bool>,
    /// `None`: absent (RFC 5246: then SHA-1 is assumed, which we do not do).
    pub supports_ecdsa_p256_sha256: Option<bool>,
    /// Types the client can present (RFC 7250), raw codes.
    pub client_certificate_types: Option<&'a [u8]>,
    /// Types the client can process from the server, raw codes.
    pub server_certificate_types: Option<&'a [u8]>,
    /// RFC 9146: the CID the client wants to receive (may be empty).
    pub connection_id: Option<&'a [u8]>,
    /// RFC 5746: the client asked for secure renegotiation signalling.
    pub renegotiation_info: bool,
}

fn contains_u16(list: &[u8], value: u16) -> bool {
    list.chunks_exact(2)
        .any(|c| u16::from_be_bytes([c[0], c[1]]) == value)
}

impl<'a> ClientHelloExtensions<'a> {
    /// Parses the extensions block (after its two-byte length).
    pub fn parse(block: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(block);
        let mut seen: Vec<u16> = Vec::new();
        let mut x = ClientHelloExtensions::default();
        while !r.is_empty() {
            let kind = r.u16()?;
            let data = r.vec16()?;
            if seen.contains(&kind) {
                return Err(DecodeError::Malformed("extension repeated"));
            }
            seen.push(kind);
            let mut d = Reader::new(data);
            match kind {
                EXTENDED_MASTER_SECRET => {
                    d.finish()?;
                    x.extended_master_secret = true;
                }
                SUPPORTED_GROUPS => {
                    let list = d.vec16()?;
                    if list.len() % 2 != 0 {
                        return Err(DecodeError::Malformed("supported_groups"));
                    }
                    d.finish()?;
                    x.supports_secp256r1 = Some(contains_u16(list, SECP256R1));
                }
                EC_POINT_FORMATS => {
                    let list = d.vec8()?;
                    d.finish()?;
                    x.supports_uncompressed_points = Some(list.contains(&UNCOMPRESSED));
                }
                SIGNATURE_ALGORITHMS => {
                    let list = d.vec16()?;
                    if list.len() % 2 != 0 {
                        return Err(DecodeError::Malformed("signature_algorithms"));
                    }
                    d.finish()?;
                    x.supports_ecdsa_p256_sha256 = Some(contains_u16(list, ECDSA_P256_SHA256));
                }
                CLIENT_CERTIFICATE_TYPE => {
                    x.client_certificate_types = Some(d.vec8()?);
                    d.finish()?;
                }
                SERVER_CERTIFICATE_TYPE => {
                    x.server_certificate_types = Some(d.vec8()?);
                    d.finish()?;
                }
                CONNECTION_ID => {
                    x.connection_id = Some(d.vec8()?);
                    d.finish()?;
                }
                RENEGOTIATION_INFO => {
                    // An initial handshake carries an empty renegotiated_connection.
                    if d.vec8()? != b"" {
                        return Err(DecodeError::Malformed("renegotiation_info"));
                    }
                    d.finish()?;
                    x.renegotiation_info = true;
                }
                _ => {}
            }
        }
        Ok(x)
    }

    /// For a certificate-type extension: the first type in the client's
    /// list (its preference) that is one of `ours`; X.509 when the extension
    /// is absent (RFC 7250 §4.1).
    pub fn pick_type(offered: Option<&[u8]>, ours: &[CertificateType]) -> Option<CertificateType> {
        match offered {
            None => ours
                .contains(&CertificateType::X509)
                .then_some(CertificateType::X509),
            Some(list) => list
                .iter()
                .filter_map(|c| CertificateType::from_code(*c))
                .find(|t| ours.contains(t)),
        }
    }
}

/// Appends one extension (type, then its data with a two-byte length).
pub fn put_extension(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    out.put_u16(kind);
    out.put_vec16(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(exts: &[(u16, &[u8])]) -> Vec<u8> {
        let mut b = Vec::new();
        for (k, d) in exts {
            put_extension(&mut b, *k, d);
        }
        b
    }

    #[test]
    fn reads_what_the_server_decides_with_and_skips_the_rest() {
        let b = block(&[
            (SERVER_NAME, b"\x00\x00"),
            (EXTENDED_MASTER_SECRET, b""),
            (SUPPORTED_GROUPS, &[0, 4, 0, 29, 0, 23]),
            (SIGNATURE_ALGORITHMS, &[0, 2, 4, 3]),
            (CLIENT_CERTIFICATE_TYPE, &[2, 2, 0]),
            (CONNECTION_ID, &[0]),
            (RENEGOTIATION_INFO, &[0]),
            (0x1234, b"anything"),
        ]);
        let x = ClientHelloExtensions::parse(&b).unwrap();
        assert!(x.extended_master_secret && x.renegotiation_info);
        assert_eq!(x.supports_secp256r1, Some(true));
        assert_eq!(x.supports_ecdsa_p256_sha256, Some(true));
        assert_eq!(x.connection_id, Some(&[][..]));
        assert_eq!(
            ClientHelloExtensions::pick_type(
                x.client_certificate_types,
                &[CertificateType::RawPublicKey, CertificateType::X509]
            ),
            Some(CertificateType::RawPublicKey)
        );
        assert_eq!(
            ClientHelloExtensions::pick_type(None, &[CertificateType::X509]),
            Some(CertificateType::X509)
        );
    }

    #[test]
    fn repeated_or_malformed_known_extensions_are_refused() {
        let twice = block(&[(EXTENDED_MASTER_SECRET, b""), (EXTENDED_MASTER_SECRET, b"")]);
        assert!(ClientHelloExtensions::parse(&twice).is_err());
        let odd = block(&[(SUPPORTED_GROUPS, &[0, 3, 0, 23, 1])]);
        assert!(ClientHelloExtensions::parse(&odd).is_err());
        let ems_with_data = block(&[(EXTENDED_MASTER_SECRET, b"x")]);
        assert!(ClientHelloExtensions::parse(&ems_with_data).is_err());
        assert!(ClientHelloExtensions::parse(&[0, 23, 0]).is_err());
    }
}
