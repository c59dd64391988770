//! The certificate and P-256 key the DTLS server presents to devices using
//! ECDHE-ECDSA suites (and its raw public key to RFC 7250 devices): from
//! `--coap-cert/--coap-key`, or generated into the data directory in dev
//! mode.

use std::path::{Path, PathBuf};

use idreg_dtls::ServerIdentity;
use p256::pkcs8::DecodePrivateKey;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("generating the dev certificate: {0}")]
    Generate(String),
}

fn read(path: &Path) -> Result<String, IdentityError> {
    std::fs::read_to_string(path).map_err(|source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn invalid(path: &Path, message: impl Into<String>) -> IdentityError {
    IdentityError::Invalid {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Loads a PEM certificate chain and a P-256 private key (PKCS#8 or SEC1
/// PEM), and checks the key is the leaf certificate's.
pub fn load(cert_path: &Path, key_path: &Path) -> Result<ServerIdentity, IdentityError> {
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;
    let key = p256::SecretKey::from_pkcs8_pem(&key_pem)
        .or_else(|_| p256::SecretKey::from_sec1_pem(&key_pem))
        .map_err(|_| invalid(key_path, "not a P-256 private key in PKCS#8 or SEC1 PEM"))?;
    let mut chain = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(cert_pem.as_bytes()) {
        let pem = pem.map_err(|e| invalid(cert_path, format!("bad PEM: {e}")))?;
        if pem.label == "CERTIFICATE" {
            chain.push(pem.contents);
        }
    }
    let leaf = chain
        .first()
        .ok_or_else(|| invalid(cert_path, "no CERTIFICATE block"))?;
    let leaf_key = idreg_core::credential::public_key_from_certificate_der("certificate", leaf)
        .map_err(|e| invalid(cert_path, e.message))?;
    let identity = ServerIdentity::new(chain, p256::ecdsa::SigningKey::from(&key));
    if leaf_key.spki_der != identity.spki {
        return Err(invalid(
            key_path,
            format!("not the key of {}", cert_path.display()),
        ));
    }
    Ok(identity)
}

/// The dev-mode pair under `dir`, generated (self-signed, P-256) on first use.
/// Returns the paths and whether they were just created.
pub fn dev_pair(dir: &Path) -> Result<(PathBuf, PathBuf, bool), IdentityError> {
    let cert_path = dir.join("coap-cert.pem");
    let key_path = dir.join("coap-key.pem");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path, false));
    }
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| IdentityError::Generate(e.to_string()))?;
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .map_err(|e| IdentityError::Generate(e.to_string()))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| IdentityError::Generate(e.to_string()))?;
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    std::fs::write(&cert_path, cert.pem()).map_err(|source| IdentityError::Io {
        path: cert_path.clone(),
        source,
    })?;
    Ok((cert_path, key_path, true))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let io = |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    };
    opts.open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_pair_is_generated_once_and_loads() {
        let tmp = tempfile::tempdir().unwrap();
        let (c, k, created) = dev_pair(tmp.path()).unwrap();
        assert!(created);
        let (_, _, again) = dev_pair(tmp.path()).unwrap();
        assert!(!again);
        let identity = load(&c, &k).unwrap();
        assert_eq!(identity.chain.len(), 1);
    }

    #[test]
    fn wrong_files_are_clear_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let (c, k, _) = dev_pair(tmp.path()).unwrap();
        let e = load(&k, &k).unwrap_err().to_string();
        assert!(e.contains("no CERTIFICATE"), "{e}");
        let e = load(&c, &c).unwrap_err().to_string();
        assert!(e.contains("P-256 private key"), "{e}");
        let other = tempfile::tempdir().unwrap();
        let (_, other_key, _) = dev_pair(other.path()).unwrap();
        let e = load(&c, &other_key).unwrap_err().to_string();
        assert!(e.contains("not the key of"), "{e}");
    }
}
