//! The file live sessions wait in across a restart: written at shutdown,
//! sealed with the KEK (it holds session keys), owner-only, read once at the
//! next start and deleted, so an old copy can never be loaded twice.

use std::io::Write;
use std::path::Path;

use idreg_core::{Kek, SealedSecret};

const MAGIC: &[u8; 10] = b"IDREGSESS1";
/// Associated data: a sealed session file cannot pass for another secret.
const AAD: &[u8] = b"idreg:front-sessions";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a sealed session file")]
    Format,
    #[error("cannot open the session file: {0}")]
    Sealed(#[from] idreg_core::SecretError),
}

/// Writes each shard's saved sessions, sealed, to `path` (mode 0600, fsynced).
pub fn save(path: &Path, kek: &Kek, shards: &[Vec<u8>]) -> Result<(), VaultError> {
    let mut plain = zeroize::Zeroizing::new(Vec::new());
    for s in shards {
        plain.extend_from_slice(&(s.len() as u32).to_be_bytes());
        plain.extend_from_slice(s);
    }
    let sealed = kek.seal(&plain, AAD);
    let mut out = Vec::with_capacity(MAGIC.len() + 20 + sealed.ciphertext.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&sealed.kek_id);
    out.extend_from_slice(&sealed.nonce);
    out.extend_from_slice(&sealed.ciphertext);
    let tmp = path.with_extension("tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp)?;
        f.write_all(&out)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Reads and deletes the file; each shard's bytes as saved. No file: none.
pub fn take(path: &Path, kek: &Kek) -> Result<Vec<Vec<u8>>, VaultError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    // Whatever it holds, it is used at most once.
    std::fs::remove_file(path)?;
    let rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or(VaultError::Format)?;
    if rest.len() < 20 {
        return Err(VaultError::Format);
    }
    let sealed = SealedSecret {
        kek_id: rest[..8].try_into().expect("8 bytes"),
        nonce: rest[8..20].try_into().expect("12 bytes"),
        ciphertext: rest[20..].to_vec(),
    };
    let plain = kek.open(&sealed, AAD)?;
    let mut shards = Vec::new();
    let mut p: &[u8] = &plain;
    while !p.is_empty() {
        let (len, rest) = p.split_first_chunk::<4>().ok_or(VaultError::Format)?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err(VaultError::Format);
        }
        shards.push(rest[..len].to_vec());
        p = &rest[len..];
    }
    Ok(shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_come_back_once_and_only_with_the_kek() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.sealed");
        let kek = Kek::from_bytes(&[3; 32]);
        save(
            &path,
            &kek,
            &[b"shard zero".to_vec(), vec![], b"two".to_vec()],
        )
        .unwrap();
        let raw = std::fs::read(&path).unwrap();
        assert!(!raw.windows(4).any(|w| w == b"zero"), "sealed");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(
            take(&path, &kek).unwrap(),
            vec![b"shard zero".to_vec(), vec![], b"two".to_vec()]
        );
        assert!(take(&path, &kek).unwrap().is_empty(), "read once");
        save(&path, &kek, &[b"x".to_vec()]).unwrap();
        assert!(take(&path, &Kek::from_bytes(&[4; 32])).is_err());
        assert!(!path.exists(), "deleted even when it cannot be opened");
    }
}
