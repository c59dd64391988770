//! A vendor's firmware manifest: what an image is, for which devices, and
//! over which installed versions it may go, signed by the vendor — a
//! COSE_Sign1 (ES256) over a small CBOR map in the spirit of SUIT (RFC 9019,
//! RFC 9124), with integer keys:
//!
//! | key | field | CBOR |
//! |---:|---|---|
//! | 1 | vendor | text |
//! | 2 | device class | text |
//! | 3 | version | text, SemVer |
//! | 4 | image size | uint, bytes |
//! | 5 | image digest | bytes, SHA-256 (32) |
//! | 6 | minimum installed version (optional) | text, SemVer |
//! | 7 | image URI (optional) | text |
//!
//! Unknown keys are refused: a vendor's field idreg would silently ignore
//! could be one a device relies on.

use ciborium::value::Value;
use sha2::{Digest, Sha256};

use crate::cose_sign1::{self, CoseError};
use crate::firmware_version::FirmwareVersion;
use crate::names::DeviceClass;

/// Largest image a manifest may describe (the device front serves it
/// block-wise; the store keeps it chunked).
pub const MAX_IMAGE_SIZE: u64 = 64 << 20;
/// Longest vendor, class or URI text.
pub const MAX_TEXT_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub vendor: String,
    pub class: DeviceClass,
    pub version: FirmwareVersion,
    pub image_size: u64,
    pub image_sha256: [u8; 32],
    pub min_version: Option<FirmwareVersion>,
    pub image_uri: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("the manifest is not signed by a registered signer")]
    UnknownSigner,
    #[error("manifest: {0}")]
    Cose(String),
    #[error("manifest content: {0}")]
    Content(String),
    #[error("the image is {got} bytes; the manifest says {want}")]
    ImageSize { got: u64, want: u64 },
    #[error("the image's SHA-256 is not the manifest's digest")]
    ImageDigest,
}

fn content(msg: impl Into<String>) -> ManifestError {
    ManifestError::Content(msg.into())
}

fn text(field: &str, v: &Value) -> Result<String, ManifestError> {
    match v {
        Value::Text(t) if !t.is_empty() && t.len() <= MAX_TEXT_LEN => Ok(t.clone()),
        Value::Text(_) => Err(content(format!(
            "{field}: 1 to {MAX_TEXT_LEN} bytes of text"
        ))),
        _ => Err(content(format!("{field}: text expected"))),
    }
}

fn version(field: &str, v: &Value) -> Result<FirmwareVersion, ManifestError> {
    FirmwareVersion::parse(field, &text(field, v)?).map_err(|e| content(e.to_string()))
}

impl Manifest {
    /// Reads the CBOR document (the COSE payload).
    pub fn decode(payload: &[u8]) -> Result<Self, ManifestError> {
        let value: Value =
            ciborium::from_reader(payload).map_err(|e| content(format!("not CBOR: {e}")))?;
        let Value::Map(entries) = value else {
            return Err(content("not a CBOR map"));
        };
        let mut fields: [Option<Value>; 8] = Default::default();
        for (k, v) in entries {
            let key = k
                .as_integer()
                .and_then(|i| u8::try_from(i).ok())
                .filter(|k| (1..=7).contains(k))
                .ok_or_else(|| content(format!("unknown key {k:?}")))?;
            if fields[key as usize].replace(v).is_some() {
                return Err(content(format!("key {key} twice")));
            }
        }
        let need = |k: usize, name: &str| {
            fields[k]
                .clone()
                .ok_or_else(|| content(format!("{name} (key {k}) missing")))
        };
        let image_size = match need(4, "image size")? {
            Value::Integer(i) => u64::try_from(i)
                .ok()
                .filter(|n| (1..=MAX_IMAGE_SIZE).contains(n))
                .ok_or_else(|| content(format!("image size: 1 to {MAX_IMAGE_SIZE} bytes")))?,
            _ => return Err(content("image size: an unsigned integer expected")),
        };
        let image_sha256 = match need(5, "image digest")? {
            Value::Bytes(b) => <[u8; 32]>::try_from(b.as_slice())
                .map_err(|_| content("image digest: 32 bytes (SHA-256) expected"))?,
            _ => return Err(content("image digest: a byte string expected")),
        };
        Ok(Self {
            vendor: text("vendor", &need(1, "vendor")?)?,
            class: DeviceClass::parse(
                "device class",
                &text("device class", &need(2, "device class")?)?,
            )
            .map_err(|e| content(e.to_string()))?,
            version: version("version", &need(3, "version")?)?,
            image_size,
            image_sha256,
            min_version: fields[6]
                .as_ref()
                .map(|v| version("minimum version", v))
                .transpose()?,
            image_uri: fields[7]
                .as_ref()
                .map(|v| text("image URI", v))
                .transpose()?,
        })
    }

    /// The CBOR document (what a vendor signs).
    pub fn encode(&self) -> Vec<u8> {
        let mut map = vec![
            (Value::from(1), Value::Text(self.vendor.clone())),
            (Value::from(2), Value::Text(self.class.to_string())),
            (Value::from(3), Value::Text(self.version.to_string())),
            (Value::from(4), Value::from(self.image_size)),
            (Value::from(5), Value::Bytes(self.image_sha256.to_vec())),
        ];
        if let Some(m) = &self.min_version {
            map.push((Value::from(6), Value::Text(m.to_string())));
        }
        if let Some(u) = &self.image_uri {
            map.push((Value::from(7), Value::Text(u.clone())));
        }
        cose_sign1::encode(&Value::Map(map))
    }

    /// Checks a signed manifest against the registered signers (name,
    /// SubjectPublicKeyInfo DER): the signer that signed it and the manifest.
    pub fn verify<'a>(
        cose: &[u8],
        signers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<(String, Self), ManifestError> {
        for (name, spki) in signers {
            match cose_sign1::verify(cose, spki) {
                Ok(payload) => return Ok((name.to_owned(), Self::decode(&payload)?)),
                Err(CoseError::BadSignature | CoseError::Key(_)) => continue,
                Err(CoseError::Format(e)) => return Err(ManifestError::Cose(e)),
            }
        }
        Err(ManifestError::UnknownSigner)
    }

    /// Checks an image against the manifest: its size, then its digest.
    pub fn check_image(&self, image: &[u8]) -> Result<(), ManifestError> {
        if image.len() as u64 != self.image_size {
            return Err(ManifestError::ImageSize {
                got: image.len() as u64,
                want: self.image_size,
            });
        }
        if Sha256::digest(image).as_slice() != self.image_sha256 {
            return Err(ManifestError::ImageDigest);
        }
        Ok(())
    }

    /// Whether a device running `installed` may be offered this image: it
    /// is newer (never a downgrade, nor the same again), and the device is
    /// at or past the manifest's minimum. A device that has reported no
    /// version is offered only an image with no minimum.
    pub fn installable_over(&self, installed: Option<&FirmwareVersion>) -> bool {
        match (installed, &self.min_version) {
            (None, None) => true,
            (None, Some(_)) => false,
            (Some(v), min) => *v < self.version && min.as_ref().is_none_or(|m| v >= m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey};

    fn v(text: &str) -> FirmwareVersion {
        FirmwareVersion::parse("version", text).unwrap()
    }

    fn manifest(image: &[u8]) -> Manifest {
        Manifest {
            vendor: "acme".into(),
            class: DeviceClass::parse("class", "thermo-v2").unwrap(),
            version: v("1.4.2"),
            image_size: image.len() as u64,
            image_sha256: Sha256::digest(image).into(),
            min_version: Some(v("1.2.0")),
            image_uri: None,
        }
    }

    fn vendor() -> (Vec<u8>, Vec<u8>) {
        let key = p256::SecretKey::from_slice(&rand::random::<[u8; 32]>()).unwrap();
        (
            key.to_pkcs8_der().unwrap().as_bytes().to_vec(),
            key.public_key()
                .to_public_key_der()
                .unwrap()
                .as_bytes()
                .to_vec(),
        )
    }

    #[test]
    fn a_signed_manifest_names_its_signer_and_checks_its_image() {
        let image = b"firmware image bytes".repeat(100);
        let m = manifest(&image);
        assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
        let (pkcs8, spki) = vendor();
        let (_, other) = vendor();
        let cose = cose_sign1::sign(&m.encode(), &pkcs8).unwrap();
        let signers = [("other", other.as_slice()), ("acme", spki.as_slice())];
        let (signer, got) = Manifest::verify(&cose, signers).unwrap();
        assert_eq!((signer.as_str(), &got), ("acme", &m));
        got.check_image(&image).unwrap();
        assert_eq!(
            got.check_image(&image[..10]),
            Err(ManifestError::ImageSize {
                got: 10,
                want: image.len() as u64
            })
        );
        let mut flipped = image.clone();
        flipped[3] ^= 1;
        assert_eq!(got.check_image(&flipped), Err(ManifestError::ImageDigest));
        // Signed by no registered signer.
        assert_eq!(
            Manifest::verify(&cose, [("other", other.as_slice())]),
            Err(ManifestError::UnknownSigner)
        );
    }

    #[test]
    fn malformed_documents_are_refused_with_what_is_wrong() {
        let bad = |map: Vec<(Value, Value)>| {
            Manifest::decode(&cose_sign1::encode(&Value::Map(map))).unwrap_err()
        };
        let m = manifest(b"x");
        let mut entries = match ciborium::from_reader::<Value, _>(m.encode().as_slice()).unwrap() {
            Value::Map(e) => e,
            _ => unreachable!(),
        };
        entries.push((Value::from(9), Value::from(1)));
        assert!(bad(entries.clone()).to_string().contains("unknown key"));
        entries.pop();
        entries.retain(|(k, _)| k.as_integer() != Some(5.into()));
        assert!(bad(entries.clone())
            .to_string()
            .contains("image digest (key 5) missing"));
        entries.push((Value::from(5), Value::Bytes(vec![0; 31])));
        assert!(bad(entries).to_string().contains("32 bytes"));
        assert!(Manifest::decode(b"\xff").is_err());
    }

    #[test]
    fn never_a_downgrade_nor_below_the_minimum() {
        let m = manifest(b"x");
        assert!(m.installable_over(Some(&v("1.3.0"))));
        assert!(m.installable_over(Some(&v("1.2.0"))));
        assert!(!m.installable_over(Some(&v("1.1.9"))), "below the minimum");
        assert!(!m.installable_over(Some(&v("1.4.2"))), "the same again");
        assert!(!m.installable_over(Some(&v("2.0.0"))), "a downgrade");
        assert!(!m.installable_over(None));
        let open = Manifest {
            min_version: None,
            ..m
        };
        assert!(open.installable_over(None));
    }
}
