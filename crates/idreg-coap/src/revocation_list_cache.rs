//! The signed revocation lists this node serves, made once per list
//! version and shared by every shard: a device fetching a large list in
//! Block2 blocks must get the same bytes (the same `issued_at`, the same
//! signature) for each block, and signing per request would cost an ECDSA
//! signature and a scan of the revoked column family each time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use idreg_core::{Kek, RegistryView};
use idreg_store::RegistryReader;

/// Deltas kept per version (devices ask `since` their own last version).
const MAX_DELTAS: usize = 64;

#[derive(Default)]
struct Made {
    version: u64,
    full: Option<Arc<Vec<u8>>>,
    deltas: HashMap<u64, Arc<Vec<u8>>>,
}

pub struct RevocationListCache {
    reader: RegistryReader,
    kek: Kek,
    made: Mutex<Made>,
}

impl RevocationListCache {
    pub fn new(reader: RegistryReader, kek: Kek) -> Self {
        Self {
            reader,
            kek,
            made: Mutex::new(Made::default()),
        }
    }

    /// The signing key's SPKI DER and PEM, once the cluster has one.
    pub fn key(&self) -> Option<(Vec<u8>, String)> {
        let key = self.reader.rl_key().ok().flatten()?;
        let pem = key.public_pem();
        Some((key.public_spki, pem))
    }

    /// The signed list at this node's current version: whole, or the delta
    /// after `since` (the whole list when `since` is not older than now).
    pub fn signed(&self, since: Option<u64>) -> Result<Arc<Vec<u8>>, String> {
        let version = self
            .reader
            .revocation_list_version()
            .map_err(|e| e.to_string())?;
        let since = since.filter(|s| *s < version);
        {
            let mut made = self.made.lock().expect("cache lock");
            if made.version != version {
                *made = Made {
                    version,
                    ..Made::default()
                };
            }
            let hit = match since {
                None => made.full.clone(),
                Some(s) => made.deltas.get(&s).cloned(),
            };
            if let Some(hit) = hit {
                return Ok(hit);
            }
        }
        let bytes = Arc::new(
            self.reader
                .signed_revocation_list(&self.kek, version, since, crate::unix_ms())
                .map_err(|e| e.to_string())?,
        );
        let mut made = self.made.lock().expect("cache lock");
        if made.version == version {
            match since {
                None => made.full = Some(bytes.clone()),
                Some(s) => {
                    if made.deltas.len() >= MAX_DELTAS {
                        made.deltas.clear();
                    }
                    made.deltas.insert(s, bytes.clone());
                }
            }
        }
        Ok(bytes)
    }
}
