//! `idreg-bench rl-size`: how large a signed revocation list is, and how
//! long making and checking it takes, for COUNT revoked devices (each with
//! one key fingerprint and one PSK identity, ids like a fleet's), and for a
//! one-revocation delta. In memory, with the server's own functions: the
//! size does not depend on the store.

use std::time::Instant;

use idreg_core::revocation_list::{
    document, sign, verify, ListedRevocation, RlSigningKey, RL_KEY_AAD,
};
use idreg_core::{DeviceId, Fingerprint, Kek, RevocationRecord};
use serde::Serialize;

use crate::cli::OutputFormat;

#[derive(Serialize)]
pub struct RlSize {
    pub name: &'static str,
    pub revoked: usize,
    pub full_bytes: usize,
    pub bytes_per_revocation: f64,
    pub make_and_sign_ms: f64,
    pub verify_ms: f64,
    pub delta_of_one_bytes: usize,
}

pub fn run(count: usize, output: OutputFormat) -> anyhow::Result<()> {
    let kek = Kek::from_bytes(&rand::random::<[u8; 32]>());
    let key = RlSigningKey::generate(&kek, 0);
    let pkcs8 = kek.open(&key.sealed_key, RL_KEY_AAD)?;
    let entry = |i: usize| -> anyhow::Result<ListedRevocation> {
        Ok(ListedRevocation {
            version: i as u64 + 1,
            record: RevocationRecord {
                device: DeviceId::parse("id", &format!("sensor-{i:08}"))?,
                reason: "revoked".into(),
                at_ms: 1_800_000_000_000 + i as u64,
                psk_identities: vec![format!("sensor-{i:08}-psk").into_bytes()],
                fingerprints: vec![Fingerprint(rand::random())],
            },
        })
    };
    let entries: Vec<ListedRevocation> = (0..count).map(entry).collect::<Result<_, _>>()?;
    let start = Instant::now();
    let full = sign(&document(count as u64, None, 0, &entries), &pkcs8)?;
    let make_and_sign_ms = start.elapsed().as_secs_f64() * 1e3;
    let start = Instant::now();
    verify(&full, &key.public_spki)?;
    let verify_ms = start.elapsed().as_secs_f64() * 1e3;
    let delta = sign(
        &document(count as u64 + 1, Some(count as u64), 0, &[entry(count)?]),
        &pkcs8,
    )?;
    let s = RlSize {
        name: "rl-size",
        revoked: count,
        full_bytes: full.len(),
        bytes_per_revocation: full.len() as f64 / count.max(1) as f64,
        make_and_sign_ms,
        verify_ms,
        delta_of_one_bytes: delta.len(),
    };
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string(&s)?),
        OutputFormat::Table => println!(
            "signed list of {} revocations: {} bytes ({:.1} per revocation), made and signed in {:.0} ms, verified in {:.0} ms; a one-revocation delta: {} bytes",
            s.revoked, s.full_bytes, s.bytes_per_revocation, s.make_and_sign_ms, s.verify_ms, s.delta_of_one_bytes
        ),
    }
    Ok(())
}
