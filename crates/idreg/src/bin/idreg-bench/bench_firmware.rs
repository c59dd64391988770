//! `idreg-bench firmware`: firmware delivery and its cost to the registry.
//!
//! 1. Upload: a release of `image_kib` signed by a vendor key made for the
//!    run, through `Firmware/Upload` (time and MB/s).
//! 2. Delivery: `devices` DTLS sessions (PSK) spread over the fronts each
//!    fetch the whole image block by block (`GET /fw/image`, Block2 of
//!    2^(szx+4) bytes), all at once: MB/s over the run and server CPU per
//!    block. With `--peer`, the same sessions fetch a resource of the same
//!    size from another CoAP server (libcoap's `coap-server-openssl`
//!    serving the image PUT to `/example_data`), measured the same way.
//! 3. Registry writes under an upload: `CreateDevice` latency with
//!    `writers` clients, first idle, then while a 10 MB release uploads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use idreg_client::engine_device::EngineDevice;
use idreg_client::pb;
use idreg_core::firmware_manifest::Manifest;
use idreg_core::firmware_version::FirmwareVersion;
use idreg_core::DeviceClass;
use idreg_dtls::client::ClientConfig;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{watch, Semaphore};

use crate::bench::{percentiles, psk_device, sample_all};
use crate::cli::OutputFormat;

pub struct FirmwareLoad {
    pub fronts: Vec<String>,
    pub devices: usize,
    pub image_kib: usize,
    pub szx: u8,
    pub connect_concurrency: usize,
    pub server_pids: Vec<u32>,
    /// Another CoAP server (UDP HOST:PORT, DTLS PSK) serving `peer_path`,
    /// a body of the same size, with any identity and `peer_key`.
    pub peer: Option<String>,
    pub peer_path: String,
    pub peer_key: String,
    pub peer_pid: Option<u32>,
    pub writers: usize,
    pub write_seconds: u64,
    pub upload_mib: usize,
}

#[derive(Serialize, Default)]
pub struct Delivery {
    pub server: String,
    pub devices: usize,
    pub failed: usize,
    pub blocks: u64,
    pub seconds: f64,
    pub mb_per_s: f64,
    pub server_cpu_us_per_block: Option<f64>,
    pub first_error: Option<String>,
}

#[derive(Serialize)]
pub struct WriteLatency {
    pub phase: &'static str,
    pub writes: usize,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

#[derive(Serialize)]
pub struct FirmwareSummary {
    pub name: &'static str,
    pub image_bytes: usize,
    pub block_bytes: usize,
    pub upload_seconds: f64,
    pub upload_mb_per_s: f64,
    pub idreg: Delivery,
    pub peer: Option<Delivery>,
    /// Server CPU per block, idreg over the peer (same run).
    pub cpu_ratio: Option<f64>,
    pub create_idle: Option<WriteLatency>,
    pub create_during_upload: Option<WriteLatency>,
    pub upload_during_writes_seconds: Option<f64>,
}

/// A vendor for the run: a signer registered under `name`, and manifests
/// signed with its key.
struct Vendor {
    pkcs8: Vec<u8>,
}

impl Vendor {
    async fn register(
        client: &mut pb::firmware_client::FirmwareClient<tonic::transport::Channel>,
        name: &str,
    ) -> anyhow::Result<Self> {
        use p256::pkcs8::{EncodePrivateKey, EncodePublicKey};
        let key = p256::SecretKey::from_slice(&rand::random::<[u8; 32]>())?;
        client
            .add_signer(pb::AddSignerRequest {
                name: name.into(),
                public_key: key.public_key().to_public_key_der()?.as_bytes().to_vec(),
            })
            .await
            .context("AddSigner")?;
        Ok(Self {
            pkcs8: key.to_pkcs8_der()?.as_bytes().to_vec(),
        })
    }

    fn manifest(&self, class: &str, version: &str, image: &[u8]) -> anyhow::Result<Vec<u8>> {
        let m = Manifest {
            vendor: "bench".into(),
            class: DeviceClass::parse("class", class)?,
            version: FirmwareVersion::parse("version", version)?,
            image_size: image.len() as u64,
            image_sha256: Sha256::digest(image).into(),
            min_version: None,
            image_uri: None,
        };
        Ok(idreg_core::cose_sign1::sign(&m.encode(), &self.pkcs8)?)
    }
}

async fn upload(
    client: &mut pb::firmware_client::FirmwareClient<tonic::transport::Channel>,
    manifest: Vec<u8>,
    image: &[u8],
) -> anyhow::Result<Duration> {
    let mut parts: Vec<pb::UploadRequest> = image
        .chunks(256 * 1024)
        .map(|c| pb::UploadRequest {
            manifest: Vec::new(),
            image: c.to_vec(),
        })
        .collect();
    parts[0].manifest = manifest;
    let t = Instant::now();
    client
        .upload(tokio_stream::iter(parts))
        .await
        .context("Upload")?;
    Ok(t.elapsed())
}

/// Every device fetches the whole body of `path` from its front, block by
/// block, all starting together.
async fn deliver(
    name: &str,
    sessions: Vec<(SocketAddr, ClientConfig)>,
    path: &str,
    size: usize,
    szx: u8,
    connect_concurrency: usize,
    pids: &[u32],
) -> anyhow::Result<Delivery> {
    let block = 16usize << szx;
    let blocks = size.div_ceil(block) as u32;
    let (go_tx, go_rx) = watch::channel(false);
    let connecting = Arc::new(Semaphore::new(connect_concurrency.max(1)));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = tokio::task::JoinSet::new();
    let n = sessions.len();
    for (front, cred) in sessions {
        let (mut go, ready, connecting) = (go_rx.clone(), ready_tx.clone(), connecting.clone());
        let path = path.to_owned();
        tasks.spawn(async move {
            let permit = connecting.acquire_owned().await;
            let mut device = match EngineDevice::connect(front, cred, Duration::from_secs(20)).await
            {
                Ok(d) => d,
                Err(e) => {
                    let _ = ready.send(());
                    return Err(format!("connect {front}: {e}"));
                }
            };
            drop(permit);
            device.request_timeout = Duration::from_secs(30);
            let _ = ready.send(());
            while !*go.borrow() {
                if go.changed().await.is_err() {
                    return Err("stopped".into());
                }
            }
            let mut got = 0u64;
            for num in 0..blocks {
                match device.get_block(&path, num, szx).await {
                    Ok(r) if r.code == "2.05" => got += r.payload.len() as u64,
                    Ok(r) => return Err(format!("block {num}: {} {}", r.code, r.text())),
                    Err(e) => return Err(format!("block {num}: {e}")),
                }
            }
            device.close().await;
            Ok(got)
        });
    }
    drop(ready_tx);
    for _ in 0..n {
        if ready_rx.recv().await.is_none() {
            break;
        }
    }
    let before = sample_all(pids)?;
    let t = Instant::now();
    let _ = go_tx.send(true);
    let (mut bytes, mut failed, mut first_error) = (0u64, 0usize, None);
    while let Some(r) = tasks.join_next().await {
        match r.context("delivery task")? {
            Ok(b) => bytes += b,
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let seconds = t.elapsed().as_secs_f64();
    let after = sample_all(pids)?;
    let delivered_blocks = bytes.div_ceil(block as u64);
    Ok(Delivery {
        server: name.into(),
        devices: n,
        failed,
        blocks: delivered_blocks,
        seconds,
        mb_per_s: bytes as f64 / 1e6 / seconds,
        server_cpu_us_per_block: before.zip(after).filter(|_| delivered_blocks > 0).map(
            |(a, b)| b.cpu.saturating_sub(a.cpu).as_secs_f64() * 1e6 / delivered_blocks as f64,
        ),
        first_error,
    })
}

/// `CreateDevice` from `writers` clients for `seconds`: latencies (µs).
async fn create_load(
    target: &idreg_client::Target,
    prefix: &str,
    writers: usize,
    seconds: u64,
) -> anyhow::Result<Vec<u64>> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let mut client = target.registry().await?;
        let prefix = prefix.to_owned();
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0usize;
            while Instant::now() < deadline {
                let t = Instant::now();
                let id = format!("{prefix}-{w}-{i}");
                if client
                    .create_device(psk_device(&id, b"bench-write-secret-0123"))
                    .await
                    .is_ok()
                {
                    lat.push(t.elapsed().as_micros() as u64);
                }
                i += 1;
            }
            lat
        });
    }
    let mut all = Vec::new();
    while let Some(l) = tasks.join_next().await {
        all.extend(l?);
    }
    Ok(all)
}

fn latency(phase: &'static str, lat: Vec<u64>) -> WriteLatency {
    let (writes, p50_us, _, p99_us, max_us) = percentiles(lat);
    WriteLatency {
        phase,
        writes,
        p50_us,
        p99_us,
        max_us,
    }
}

pub async fn run(
    target: &idreg_client::Target,
    load: FirmwareLoad,
) -> anyhow::Result<FirmwareSummary> {
    let fronts = crate::bench::parse_fronts(&load.fronts)?;
    let tag = std::process::id();
    let class = format!("bench-{tag}");
    let mut firmware = target.firmware().await?;
    let mut registry = target.registry().await?;
    let vendor = Vendor::register(&mut firmware, &format!("bench-{tag}")).await?;
    let image: Vec<u8> = (0..load.image_kib * 1024)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
        .collect();
    let upload_time = upload(
        &mut firmware,
        vendor.manifest(&class, "1.0.0", &image)?,
        &image,
    )
    .await?;
    firmware
        .set_rollout(pb::SetRolloutRequest {
            device_class: class.clone(),
            version: "1.0.0".into(),
            labels: vec![],
            percent: 100,
            paused: false,
        })
        .await
        .context("SetRollout")?;
    let key = b"firmware-bench-secret-0123".to_vec();
    let mut sessions = Vec::new();
    for i in 0..load.devices {
        let id = format!("fw-{tag}-{i}");
        let mut req = psk_device(&id, &key);
        req.labels
            .insert(idreg_core::labels::CLASS_LABEL.into(), class.clone());
        registry.create_device(req).await.context("CreateDevice")?;
        sessions.push((
            fronts[i % fronts.len()],
            ClientConfig::psk(id.as_bytes(), &key),
        ));
    }
    // Let every node apply the devices and the rollout.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idreg = deliver(
        "idreg",
        sessions,
        "/fw/image",
        image.len(),
        load.szx,
        load.connect_concurrency,
        &load.server_pids,
    )
    .await?;
    let peer = match &load.peer {
        Some(p) => {
            let addr: SocketAddr = p
                .parse()
                .with_context(|| format!("--peer: {p:?} is not HOST:PORT"))?;
            let sessions = (0..load.devices)
                .map(|i| {
                    let id = format!("fw-{tag}-{i}");
                    (
                        addr,
                        ClientConfig::psk(id.as_bytes(), load.peer_key.as_bytes()),
                    )
                })
                .collect();
            Some(
                deliver(
                    "peer",
                    sessions,
                    &load.peer_path,
                    image.len(),
                    load.szx,
                    load.connect_concurrency,
                    load.peer_pid.as_slice(),
                )
                .await?,
            )
        }
        None => None,
    };
    let cpu_ratio = match (&peer, idreg.server_cpu_us_per_block) {
        (Some(p), Some(i)) => p.server_cpu_us_per_block.map(|pc| i / pc),
        _ => None,
    };

    let (mut create_idle, mut create_during, mut upload_during) = (None, None, None);
    if load.writers > 0 {
        let idle = create_load(
            target,
            &format!("fwi-{tag}"),
            load.writers,
            load.write_seconds,
        )
        .await?;
        create_idle = Some(latency("idle", idle));
        let big: Vec<u8> = (0..load.upload_mib << 20)
            .map(|i| (i % 251) as u8)
            .collect();
        let manifest = vendor.manifest(&class, "2.0.0", &big)?;
        let prefix = format!("fwu-{tag}");
        let writes = create_load(target, &prefix, load.writers, load.write_seconds);
        let mut uploader = firmware.clone();
        let up = async move {
            // Starts with the writers, after a moment's idle load.
            tokio::time::sleep(Duration::from_millis(500)).await;
            upload(&mut uploader, manifest, &big).await
        };
        let (lat, took) = tokio::join!(writes, up);
        create_during = Some(latency("during-upload", lat?));
        upload_during = Some(took?.as_secs_f64());
    }
    Ok(FirmwareSummary {
        name: "firmware",
        image_bytes: image.len(),
        block_bytes: 16 << load.szx,
        upload_seconds: upload_time.as_secs_f64(),
        upload_mb_per_s: image.len() as f64 / 1e6 / upload_time.as_secs_f64(),
        idreg,
        peer,
        cpu_ratio,
        create_idle,
        create_during_upload: create_during,
        upload_during_writes_seconds: upload_during,
    })
}

pub fn print(output: OutputFormat, s: &FirmwareSummary) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string(s)?),
        OutputFormat::Table => {
            println!(
                "firmware: {} B image in {} B blocks; upload {:.2} s ({:.1} MB/s)",
                s.image_bytes, s.block_bytes, s.upload_seconds, s.upload_mb_per_s
            );
            for d in std::iter::once(&s.idreg).chain(s.peer.as_ref()) {
                println!(
                    "  {:<6} {} devices ({} failed): {} blocks in {:.1} s, {:.1} MB/s{}",
                    d.server,
                    d.devices,
                    d.failed,
                    d.blocks,
                    d.seconds,
                    d.mb_per_s,
                    d.server_cpu_us_per_block
                        .map(|c| format!(", server CPU {c:.1} µs/block"))
                        .unwrap_or_default()
                );
                if let Some(e) = &d.first_error {
                    println!("         first error: {e}");
                }
            }
            if let Some(r) = s.cpu_ratio {
                println!("  CPU per block, idreg / peer: {r:.2}");
            }
            for l in [&s.create_idle, &s.create_during_upload]
                .into_iter()
                .flatten()
            {
                println!(
                    "  CreateDevice {:<14} {} writes p50 {} µs p99 {} µs max {} µs",
                    l.phase, l.writes, l.p50_us, l.p99_us, l.max_us
                );
            }
        }
    }
    Ok(())
}
