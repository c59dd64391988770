//! `idreg-bench import` (bulk registration through the streaming
//! ImportDevices RPC) and `idreg-bench lookup` (the handshake path's registry
//! lookups, in process, on a node's data directory opened read-only).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use idreg_client::pb;
use idreg_coap::authenticator::Authenticator;
use idreg_core::Kek;
use indicatif::{ProgressBar, ProgressStyle};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use serde::Serialize;

use crate::bench::{sample_all, spread, Latencies};
use crate::cli::OutputFormat;

/// Devices per ImportDevices message.
const CHUNK: usize = 1000;
const PSK: &[u8] = b"bench-import-secret-0123";

/// The deterministic P-256 key of device `i` under `prefix`, so `lookup`
/// can find the same fingerprints `import` registered.
pub fn device_key(prefix: &str, i: usize) -> p256::SecretKey {
    let mut bytes = [0x11u8; 32];
    let tag = prefix.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    bytes[8..16].copy_from_slice(&tag.to_be_bytes());
    bytes[24..].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    p256::SecretKey::from_slice(&bytes).expect("a scalar below the group order")
}

pub fn device_id(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i:08}")
}

/// Even devices get a PSK, odd ones a P-256 public key.
fn request(prefix: &str, i: usize) -> pb::CreateDeviceRequest {
    use pb::credential_input::Kind;
    let id = device_id(prefix, i);
    let kind = if i.is_multiple_of(2) {
        Kind::Psk(pb::PskInput {
            identity: id.clone().into_bytes(),
            secret: PSK.to_vec(),
        })
    } else {
        Kind::PublicKeyPem(
            device_key(prefix, i)
                .public_key()
                .to_public_key_pem(LineEnding::LF)
                .expect("PEM of a valid key"),
        )
    };
    pb::CreateDeviceRequest {
        id,
        credentials: vec![pb::CredentialInput { kind: Some(kind) }],
        ..Default::default()
    }
}

#[derive(Serialize)]
struct ImportSummary {
    name: &'static str,
    devices: usize,
    created: u64,
    failed: u64,
    streams: usize,
    seconds: f64,
    devices_per_sec: f64,
    server_cpu_us_per_device: Option<f64>,
    server_rss_kb: Option<u64>,
    first_error: Option<String>,
}

/// Imports `count` generated devices over `streams` concurrent streams.
pub async fn import(
    target: &idreg_client::Target,
    prefix: &str,
    count: usize,
    streams: usize,
    max_time: Duration,
    server_pids: &[u32],
    output: OutputFormat,
) -> anyhow::Result<()> {
    let streams = streams.max(1);
    let bar = if output == OutputFormat::Table {
        ProgressBar::new(count as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} devices sent, {per_sec}, eta {eta}")
            .expect("valid template"),
    );
    let before = sample_all(server_pids)?;
    let start = Instant::now();
    let deadline = start + max_time;
    let mut tasks = Vec::new();
    for s in 0..streams {
        let mut client = target.registry().await?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let prefix = prefix.to_owned();
        let progress = bar.clone();
        // Key generation is CPU work: a thread per stream makes the chunks.
        std::thread::spawn(move || {
            let mine: Vec<usize> = (s..count).step_by(streams).collect();
            for part in mine.chunks(CHUNK) {
                if Instant::now() > deadline {
                    break;
                }
                let devices = part.iter().map(|i| request(&prefix, *i)).collect();
                progress.inc(part.len() as u64);
                if tx
                    .blocking_send(pb::ImportDevicesRequest { devices })
                    .is_err()
                {
                    break;
                }
            }
        });
        tasks.push(tokio::spawn(async move {
            client
                .import_devices(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .map(|r| r.into_inner())
        }));
    }
    let (mut created, mut failed, mut first_error) = (0, 0, None);
    for t in tasks {
        match t.await? {
            Ok(r) => {
                created += r.created;
                failed += r.failed;
                if first_error.is_none() {
                    first_error = r.errors.first().map(|e| format!("{}: {}", e.id, e.message));
                }
            }
            Err(s) => {
                first_error.get_or_insert(s.to_string());
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let after = sample_all(server_pids)?;
    bar.finish_and_clear();
    let s = ImportSummary {
        name: "import",
        devices: count,
        created,
        failed,
        streams,
        seconds,
        devices_per_sec: created as f64 / seconds,
        server_cpu_us_per_device: before
            .zip(after)
            .filter(|_| created > 0)
            .map(|(b, a)| a.cpu.saturating_sub(b.cpu).as_secs_f64() * 1e6 / created as f64),
        server_rss_kb: after.map(|a| a.rss_kb),
        first_error,
    };
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string(&s)?),
        OutputFormat::Table => {
            println!(
                "import     streams={} created={} failed={} in {:.1} s: {:.0} devices/s",
                s.streams, s.created, s.failed, s.seconds, s.devices_per_sec
            );
            if let (Some(cpu), Some(rss)) = (s.server_cpu_us_per_device, s.server_rss_kb) {
                println!(
                    "           server: {cpu:.1} µs CPU/device, RSS {} MiB",
                    rss / 1024
                );
            }
            if let Some(e) = &s.first_error {
                println!("           first error: {e}");
            }
        }
    }
    Ok(())
}

/// PSK and fingerprint lookups as the DTLS handshake does them.
pub fn lookup(
    data_dir: &Path,
    kek_file: &Path,
    prefix: &str,
    population: usize,
    count: usize,
) -> anyhow::Result<Vec<(&'static str, Latencies)>> {
    let kek_text =
        std::fs::read(kek_file).with_context(|| format!("cannot read {}", kek_file.display()))?;
    let kek = Kek::parse_file_content(&kek_text).context("--kek-file")?;
    let store = idreg_store::Store::open_read_only(data_dir)
        .with_context(|| format!("cannot open {} read-only", data_dir.display()))?;
    let auth = Authenticator::new(store.reader(), kek);
    // A spread over the population: an even (PSK) or odd (key) device.
    let pairs = (population / 2).max(1) as u64;
    let pick = |i: usize, odd: bool| spread(i, pairs as usize) as usize * 2 + odd as usize;
    let mut out = Vec::new();

    let start = Instant::now();
    let (mut lat, mut errors) = (Vec::with_capacity(count), 0);
    for i in 0..count {
        let id = device_id(prefix, pick(i, false));
        let t = Instant::now();
        let ok = matches!(auth.psk(id.as_bytes()), Ok((_, key, _)) if key.as_slice() == PSK);
        let us = t.elapsed().as_nanos() as u64 / 1000;
        if ok {
            lat.push(us);
        } else {
            errors += 1;
        }
    }
    out.push(("lookup-psk", (lat, errors, start.elapsed())));

    // Fingerprints of the odd devices, computed before timing.
    let keys: Vec<idreg_core::Fingerprint> = (0..count.min(100_000))
        .map(|i| {
            let pem = device_key(prefix, pick(i, true))
                .public_key()
                .to_public_key_pem(LineEnding::LF)
                .expect("PEM");
            idreg_core::credential::public_key_from_spki_pem("bench", &pem)
                .expect("a valid key")
                .fingerprint
        })
        .collect();
    let reader = store.reader();
    let start = Instant::now();
    let (mut lat, mut errors) = (Vec::with_capacity(keys.len()), 0);
    for fp in &keys {
        let t = Instant::now();
        let ok = matches!(reader.by_fingerprint(fp), Ok(Some(_)));
        let us = t.elapsed().as_nanos() as u64 / 1000;
        if ok {
            lat.push(us);
        } else {
            errors += 1;
        }
    }
    out.push(("lookup-key", (lat, errors, start.elapsed())));
    Ok(out)
}
