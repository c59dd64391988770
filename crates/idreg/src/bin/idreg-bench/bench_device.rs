//! `idreg-bench handshake|coap`: load on a DTLS/CoAP server from the Rust
//! device client, bounded in time, with the server's CPU time per operation
//! and resident memory read from /proc when its PID is given.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use idreg_client::device::{
    certificate_from_pem, CoapResponse, DeviceClient, DeviceCredential, DeviceError,
};
use idreg_client::engine_device::EngineDevice;
use idreg_dtls::client::{ClientConfig, ClientCredential};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::bench::{percentiles, sample_all};
use crate::cli::{DeviceStack, DeviceTarget, HandshakeMode, OutputFormat};
use idreg::proc_sample::ProcSample;

#[derive(Serialize)]
pub struct DeviceSummary {
    pub name: String,
    pub target: String,
    pub mode: String,
    pub concurrency: usize,
    pub sessions: usize,
    pub operations: usize,
    pub errors: usize,
    pub seconds: f64,
    pub ops_per_sec: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// Server CPU time per operation, µs (needs --server-pid).
    pub server_cpu_us_per_op: Option<f64>,
    pub server_rss_kb_before: Option<u64>,
    pub server_rss_kb_after: Option<u64>,
    /// (RSS with the sessions open − RSS before) / sessions, bytes.
    pub server_bytes_per_session: Option<f64>,
    pub first_error: Option<String>,
}

/// How the benchmark's devices authenticate, for either stack.
#[derive(Clone)]
enum BenchCredential {
    Webrtc(DeviceCredential),
    Engine(ClientConfig),
}

fn credential(d: &DeviceTarget) -> anyhow::Result<BenchCredential> {
    let pems = || -> anyhow::Result<(String, String)> {
        let (Some(c), Some(k)) = (&d.device_cert, &d.device_key) else {
            bail!("--mode cert needs --device-cert and --device-key");
        };
        let cert = std::fs::read_to_string(c).with_context(|| c.display().to_string())?;
        let key = std::fs::read_to_string(k).with_context(|| k.display().to_string())?;
        Ok((cert, key))
    };
    Ok(match (d.client, d.mode) {
        (DeviceStack::Webrtc, HandshakeMode::Psk) => {
            BenchCredential::Webrtc(DeviceCredential::Psk {
                identity: d.identity.as_bytes().to_vec(),
                key: d.psk.as_bytes().to_vec(),
            })
        }
        (DeviceStack::Webrtc, HandshakeMode::Cert) => {
            let (cert, key) = pems()?;
            BenchCredential::Webrtc(DeviceCredential::Certificate(Box::new(
                certificate_from_pem(&cert, &key)?,
            )))
        }
        (DeviceStack::Engine, HandshakeMode::Psk) => {
            BenchCredential::Engine(ClientConfig::psk(d.identity.as_bytes(), d.psk.as_bytes()))
        }
        (DeviceStack::Engine, HandshakeMode::Cert) => {
            use p256::pkcs8::DecodePrivateKey;
            let (cert, key) = pems()?;
            let der = x509_der(&cert)?;
            let key = p256::ecdsa::SigningKey::from_pkcs8_pem(&key)
                .context("--device-key: a PKCS#8 P-256 key")?;
            BenchCredential::Engine(ClientConfig::with(ClientCredential::Certificate {
                chain: vec![der],
                key,
            }))
        }
    })
}

/// The DER of the first certificate in a PEM text.
fn x509_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    use base64::Engine;
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .context("--device-cert: a PEM certificate")
}

/// One benchmark device on either stack.
enum BenchDevice {
    Webrtc(DeviceClient),
    Engine(EngineDevice),
}

/// Source addresses a client spreads its sessions over: one address has
/// fewer ephemeral ports than a 100,000-session run needs.
const SESSIONS_PER_SOURCE: usize = 20_000;

impl BenchDevice {
    async fn connect(
        target: SocketAddr,
        cred: &BenchCredential,
        block: u8,
        n: usize,
    ) -> Result<Self, DeviceError> {
        match cred {
            BenchCredential::Webrtc(c) => {
                DeviceClient::connect(target, c.clone(), HANDSHAKE_TIMEOUT)
                    .await
                    .map(Self::Webrtc)
            }
            BenchCredential::Engine(c) if target.ip().is_loopback() && target.is_ipv4() => {
                let source =
                    std::net::Ipv4Addr::new(127, 3, block, 1 + (n / SESSIONS_PER_SOURCE) as u8);
                EngineDevice::connect_from((source, 0).into(), target, c.clone(), HANDSHAKE_TIMEOUT)
                    .await
                    .map(Self::Engine)
            }
            BenchCredential::Engine(c) => {
                EngineDevice::connect(target, c.clone(), HANDSHAKE_TIMEOUT)
                    .await
                    .map(Self::Engine)
            }
        }
    }

    async fn get(&mut self, path: &str) -> Result<CoapResponse, DeviceError> {
        match self {
            Self::Webrtc(c) => {
                c.request_timeout = Duration::from_secs(5);
                c.get(path, None).await
            }
            Self::Engine(c) => {
                c.request_timeout = Duration::from_secs(5);
                c.get(path, None).await
            }
        }
    }

    async fn close(self) {
        match self {
            Self::Webrtc(c) => c.close().await,
            Self::Engine(c) => c.close().await,
        }
    }
}

#[derive(Default)]
struct Outcome {
    lat: Vec<u64>,
    errors: usize,
    first_error: Option<String>,
}

fn merge(parts: Vec<Outcome>) -> Outcome {
    let mut all = Outcome::default();
    for p in parts {
        all.lat.extend(p.lat);
        all.errors += p.errors;
        all.first_error = all.first_error.or(p.first_error);
    }
    all
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[allow(clippy::too_many_arguments)]
fn summary(
    name: &str,
    d: &DeviceTarget,
    concurrency: usize,
    sessions: usize,
    o: Outcome,
    elapsed: Duration,
    before: Option<ProcSample>,
    loaded: Option<ProcSample>,
    after: Option<ProcSample>,
) -> DeviceSummary {
    let (n, p50, p90, p99, max) = percentiles(o.lat);
    let cpu = match (loaded, after) {
        (Some(a), Some(b)) if n > 0 => {
            Some((b.cpu.saturating_sub(a.cpu)).as_secs_f64() * 1e6 / n as f64)
        }
        _ => None,
    };
    DeviceSummary {
        name: name.into(),
        target: d.target.clone(),
        mode: format!("{:?}", d.mode).to_lowercase(),
        concurrency,
        sessions,
        operations: n,
        errors: o.errors,
        seconds: elapsed.as_secs_f64(),
        ops_per_sec: n as f64 / elapsed.as_secs_f64(),
        p50_us: p50,
        p90_us: p90,
        p99_us: p99,
        max_us: max,
        server_cpu_us_per_op: cpu,
        server_rss_kb_before: before.map(|s| s.rss_kb),
        server_rss_kb_after: loaded.map(|s| s.rss_kb),
        server_bytes_per_session: match (before, loaded) {
            (Some(b), Some(l)) if sessions > 0 => {
                Some((l.rss_kb as f64 - b.rss_kb as f64) * 1024.0 / sessions as f64)
            }
            _ => None,
        },
        first_error: o.first_error,
    }
}

pub fn print(output: OutputFormat, s: &DeviceSummary) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string(s)?),
        OutputFormat::Table => {
            println!(
                "{:<10} {} {} conc={} ops={} errors={} {:.0} ops/s p50={}µs p90={}µs p99={}µs max={}µs",
                s.name, s.mode, s.target, s.concurrency, s.operations, s.errors, s.ops_per_sec,
                s.p50_us, s.p90_us, s.p99_us, s.max_us
            );
            if let Some(c) = s.server_cpu_us_per_op {
                println!("           server CPU {c:.1} µs/op");
            }
            if let Some(b) = s.server_bytes_per_session {
                println!(
                    "           server RSS {} kB → {} kB with {} sessions: {:.0} bytes/session",
                    s.server_rss_kb_before.unwrap_or(0),
                    s.server_rss_kb_after.unwrap_or(0),
                    s.sessions,
                    b
                );
            }
            if let Some(e) = &s.first_error {
                println!("           first error: {e}");
            }
        }
    }
    Ok(())
}

pub async fn handshake(
    d: DeviceTarget,
    concurrency: usize,
    duration: u64,
) -> anyhow::Result<DeviceSummary> {
    let target: SocketAddr = d.target.parse().context("--target HOST:PORT")?;
    let cred = credential(&d)?;
    let before = sample_all(d.server_pid.as_slice())?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(duration);
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let cred = cred.clone();
        let path = d.path.clone();
        tasks.push(tokio::spawn(async move {
            let mut o = Outcome::default();
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = async {
                    let mut c = BenchDevice::connect(target, &cred, 0, 0).await?;
                    let resp = c.get(&path).await;
                    c.close().await;
                    resp
                }
                .await;
                match r {
                    Ok(_) => o.lat.push(t.elapsed().as_micros() as u64),
                    Err(e) => {
                        o.errors += 1;
                        o.first_error.get_or_insert(e.to_string());
                    }
                }
            }
            o
        }));
    }
    let mut parts = Vec::new();
    for t in tasks {
        parts.push(t.await?);
    }
    let elapsed = start.elapsed();
    let after = sample_all(d.server_pid.as_slice())?;
    Ok(summary(
        "handshake",
        &d,
        concurrency,
        0,
        merge(parts),
        elapsed,
        before,
        before,
        after,
    ))
}

/// What `bench coap` does: open `sessions`, then GET on `concurrency` of them
/// for `duration` seconds.
pub struct CoapLoad {
    pub sessions: usize,
    pub concurrency: usize,
    pub duration: u64,
    pub source_block: u8,
    pub start_file: Option<std::path::PathBuf>,
}

pub async fn coap(d: DeviceTarget, load: CoapLoad) -> anyhow::Result<DeviceSummary> {
    let CoapLoad {
        sessions,
        concurrency,
        duration,
        source_block,
        start_file,
    } = load;
    let target: SocketAddr = d.target.parse().context("--target HOST:PORT")?;
    let cred = credential(&d)?;
    let before = sample_all(d.server_pid.as_slice())?;
    // Establish the sessions, a few handshakes at a time.
    let gate = Arc::new(Semaphore::new(32));
    let mut opening = Vec::new();
    for n in 0..sessions.max(1) {
        let gate = gate.clone();
        let cred = cred.clone();
        opening.push(tokio::spawn(async move {
            let _permit = gate.acquire().await;
            BenchDevice::connect(target, &cred, source_block, n).await
        }));
    }
    let mut clients = Vec::new();
    for t in opening {
        clients.push(t.await?.context("establishing sessions")?);
    }
    if let Some(file) = &start_file {
        eprintln!("ready");
        let waiting = Instant::now();
        while !file.exists() {
            anyhow::ensure!(
                waiting.elapsed() < Duration::from_secs(3600),
                "{} did not appear within an hour",
                file.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Let the server settle before reading its memory with the sessions open
    // (with a start file, every client's sessions are open by now).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded = sample_all(d.server_pid.as_slice())?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(duration);
    let active: Vec<BenchDevice> = clients.drain(..concurrency.min(sessions).max(1)).collect();
    let mut tasks = Vec::new();
    for mut c in active {
        let path = d.path.clone();
        tasks.push(tokio::spawn(async move {
            let mut o = Outcome::default();
            while Instant::now() < deadline {
                let t = Instant::now();
                match c.get(&path).await {
                    Ok(_) => o.lat.push(t.elapsed().as_micros() as u64),
                    Err(e) => {
                        o.errors += 1;
                        o.first_error.get_or_insert(e.to_string());
                        break;
                    }
                }
            }
            (o, c)
        }));
    }
    let mut parts = Vec::new();
    for t in tasks {
        let (o, c) = t.await?;
        parts.push(o);
        clients.push(c);
    }
    let elapsed = start.elapsed();
    let after = sample_all(d.server_pid.as_slice())?;
    for c in clients {
        c.close().await;
    }
    Ok(summary(
        "coap",
        &d,
        concurrency,
        sessions,
        merge(parts),
        elapsed,
        before,
        loaded,
        after,
    ))
}
