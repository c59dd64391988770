//! The one PKCS#7 (CMS, RFC 5652) structure EST needs: a "certs-only"
//! SignedData — no content, no signers, just certificates — which is what
//! content-format 281 (application/pkcs7-mime; smime-type=certs-only) carries
//! for `crts` and for issued certificates (RFC 7030 §4.1.3, RFC 9148 §5).

/// id-signedData, 1.2.840.113549.1.7.2.
const OID_SIGNED_DATA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x02];
/// id-data, 1.2.840.113549.1.7.1.
const OID_DATA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x01];

/// A DER TLV with a definite length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// ContentInfo { signedData, SignedData { version 1, no digest algorithms,
/// empty id-data content, certificates, no signer infos } } over DER
/// certificates.
pub fn certs_only(certificates: &[&[u8]]) -> Vec<u8> {
    let encap = tlv(0x30, &tlv(0x06, OID_DATA));
    let certs = tlv(0xA0, &certificates.concat()); // [0] IMPLICIT SET OF
    let signed_data = tlv(
        0x30,
        &[
            tlv(0x02, &[1]).as_slice(), // version
            &tlv(0x31, &[]),            // digestAlgorithms
            &encap,
            &certs,
            &tlv(0x31, &[]), // signerInfos
        ]
        .concat(),
    );
    tlv(
        0x30,
        &[tlv(0x06, OID_SIGNED_DATA), tlv(0xA0, &signed_data)].concat(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certs_only_around_one_small_certificate() {
        // A stand-in "certificate" (any DER element is carried as is).
        let cert = [0x30, 0x03, 0x02, 0x01, 0x05];
        let expected: Vec<u8> = [
            &[0x30, 0x2A][..],
            &[
                0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x02,
            ],
            &[0xA0, 0x1D, 0x30, 0x1B],
            &[0x02, 0x01, 0x01, 0x31, 0x00],
            &[
                0x30, 0x0B, 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x01,
            ],
            &[0xA0, 0x05, 0x30, 0x03, 0x02, 0x01, 0x05],
            &[0x31, 0x00],
        ]
        .concat();
        assert_eq!(certs_only(&[&cert]), expected);
    }

    #[test]
    fn long_lengths_use_the_long_form() {
        assert_eq!(&tlv(0x04, &[0; 200])[..3], &[0x04, 0x81, 200]);
        assert_eq!(&tlv(0x04, &[0; 600])[..4], &[0x04, 0x82, 0x02, 0x58]);
    }
}
