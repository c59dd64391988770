//! Opaque page tokens for ListDevices: the last id returned, bound to the
//! filter it was issued for and checksummed, so a token from another query or
//! from nowhere is refused rather than silently misread.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

const VERSION: u8 = 1;

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u32).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// A stable description of the filter a token belongs to.
pub fn filter_digest(fields: &[&str]) -> [u8; 8] {
    let parts: Vec<&[u8]> = fields.iter().map(|f| f.as_bytes()).collect();
    digest(&parts)[..8].try_into().expect("8 bytes")
}

pub fn encode(filter: [u8; 8], last_id: &str) -> String {
    let mut body = vec![VERSION];
    body.extend_from_slice(&filter);
    body.extend_from_slice(last_id.as_bytes());
    let check = digest(&[b"idreg-page", &body]);
    body.extend_from_slice(&check[..4]);
    URL_SAFE_NO_PAD.encode(body)
}

/// The last id of the previous page, or a message for INVALID_ARGUMENT.
pub fn decode(filter: [u8; 8], token: &str) -> Result<String, &'static str> {
    let bad = "page_token: not a token this server issued; start without one";
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad)?;
    if raw.len() < 1 + 8 + 4 || raw[0] != VERSION {
        return Err(bad);
    }
    let (body, check) = raw.split_at(raw.len() - 4);
    if digest(&[b"idreg-page", body])[..4] != *check {
        return Err(bad);
    }
    if body[1..9] != filter {
        return Err(
            "page_token: issued for a different filter; repeat the filters of the first request",
        );
    }
    String::from_utf8(body[9..].to_vec()).map_err(|_| bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let f = filter_digest(&["active", "site=berlin"]);
        let t = encode(f, "sensor-41");
        assert_eq!(decode(f, &t).unwrap(), "sensor-41");
        assert!(decode(filter_digest(&["other"]), &t)
            .unwrap_err()
            .contains("different filter"));
        assert!(decode(f, "abc").is_err());
        assert!(decode(f, "").is_err());
        let mut forged = t.clone();
        forged.replace_range(3..4, if &t[3..4] == "A" { "B" } else { "A" });
        assert!(decode(f, &forged).is_err());
    }
}
