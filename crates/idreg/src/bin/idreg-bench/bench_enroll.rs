//! `idreg-bench enroll`: EST-coaps enrollments per second. Each simulated
//! device holds a manufacturer certificate (IDevID) of a group this bench
//! creates, handshakes with it, POSTs a CSR to `/.well-known/est/sen` and
//! checks the certificate it gets back. Reported: the rate, latency split
//! into DTLS handshake and enrollment request, the servers' CPU per
//! enrollment, and — measured here on the same machine with the server's
//! own code — what CSR verification and signing cost, so the rest of the
//! request is the raft write.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use idreg_client::engine_device::EngineDevice;
use idreg_client::pb;
use idreg_dtls::client::{ClientConfig, ClientCredential};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256,
};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::bench::percentiles;
use crate::cli::OutputFormat;
use idreg::proc_sample::{proc_sample, ProcSample};

#[derive(Serialize)]
pub struct EnrollSummary {
    pub name: &'static str,
    pub fronts: Vec<String>,
    pub concurrency: usize,
    pub enrollments: usize,
    pub errors: usize,
    pub seconds: f64,
    pub enrollments_per_sec: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub handshake_p50_us: u64,
    pub request_p50_us: u64,
    /// Summed over the PIDs given (every node of a cluster).
    pub server_cpu_us_per_enrollment: Option<f64>,
    /// The server's CSR check (parse, proof of possession) and certificate
    /// signing, timed here with the same code.
    pub csr_check_us: f64,
    pub signing_us: f64,
    pub first_error: Option<String>,
}

/// One device: its IDevID (DER, key) and the CSR for its operational key.
struct Kit {
    idevid: Vec<u8>,
    key: p256::ecdsa::SigningKey,
    csr: Vec<u8>,
}

fn p256_signing_key(pair: &KeyPair) -> anyhow::Result<p256::ecdsa::SigningKey> {
    use p256::pkcs8::DecodePrivateKey;
    p256::ecdsa::SigningKey::from_pkcs8_der(&pair.serialize_der()).context("P-256 key")
}

/// The manufacturer CA and `count` device kits under it.
fn make_kits(prefix: &str, count: usize) -> anyhow::Result<(String, Vec<Kit>)> {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "idreg bench manufacturer CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key)?;
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::new(ca, ca_key);
    let mut kits = Vec::with_capacity(count);
    for i in 0..count {
        let name = format!("{prefix}-{i:07}");
        let device_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, &name);
        let idevid = params.signed_by(&device_key, &issuer)?;
        let op_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut req = CertificateParams::new(Vec::<String>::new())?;
        req.distinguished_name.push(DnType::CommonName, &name);
        let csr = req.serialize_request(&op_key)?;
        kits.push(Kit {
            idevid: idevid.der().to_vec(),
            key: p256_signing_key(&device_key)?,
            csr: csr.der().to_vec(),
        });
    }
    Ok((ca_pem, kits))
}

/// What the server spends on one CSR check and one signature, from the
/// same functions, averaged over `n`.
fn server_crypto_costs(kits: &[Kit]) -> anyhow::Result<(f64, f64)> {
    use idreg_core::certificate_issuer::{check_csr, issue};
    use idreg_core::device_ca::DEVICE_CA_KEY_AAD;
    let n = kits.len().min(200);
    let start = Instant::now();
    let mut checked = Vec::with_capacity(n);
    for k in &kits[..n] {
        checked.push(check_csr("csr", &k.csr)?);
    }
    let csr_us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    let kek = idreg_core::Kek::from_bytes(&[7; 32]);
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let cert = params.self_signed(&ca_key)?;
    let pkcs8 = ca_key.serialize_der();
    let ca = idreg_core::DeviceCa {
        certificate: cert.der().to_vec(),
        sealed_key: kek.seal(&pkcs8, DEVICE_CA_KEY_AAD),
        origin: idreg_core::CaOrigin::Generated,
        installed_ms: 0,
    };
    let device = idreg_core::DeviceId::parse("id", "bench-device")?;
    let start = Instant::now();
    for c in &checked {
        // The server opens the sealed key for every issuance too.
        let key = kek.open(&ca.sealed_key, DEVICE_CA_KEY_AAD)?;
        issue(&ca, &key, c, &device, 1_800_000_000_000, 90, rand::random())?;
    }
    let sign_us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    Ok((csr_us, sign_us))
}

#[derive(Default)]
struct Tally {
    total: Vec<u64>,
    handshake: Vec<u64>,
    request: Vec<u64>,
    errors: usize,
    first_error: Option<String>,
}

pub struct EnrollLoad {
    pub fronts: Vec<String>,
    pub count: usize,
    pub concurrency: usize,
    pub server_pids: Vec<u32>,
    pub max_seconds: u64,
}

pub async fn run(target: &idreg_client::Target, load: EnrollLoad) -> anyhow::Result<EnrollSummary> {
    let fronts: Vec<SocketAddr> = load
        .fronts
        .iter()
        .map(|f| {
            f.parse()
                .with_context(|| format!("--fronts {f:?}: HOST:PORT"))
        })
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(!fronts.is_empty(), "--fronts: at least one");
    let prefix = format!("enr{}", std::process::id());
    eprintln!("making {} IDevIDs and CSRs…", load.count);
    let (ca_pem, kits) = make_kits(&prefix, load.count)?;
    let (csr_check_us, signing_us) = server_crypto_costs(&kits)?;
    let group = pb::EnrollmentGroup {
        name: prefix.clone(),
        attestation: Some(pb::enrollment_group::Attestation::ManufacturerCaPem(ca_pem)),
        id_template: "{cn}".into(),
        ..Default::default()
    };
    target
        .enrollment()
        .await?
        .create_enrollment_group(pb::CreateEnrollmentGroupRequest { group: Some(group) })
        .await
        .map_err(crate::bench::rpc)?;

    let before: Vec<ProcSample> = load
        .server_pids
        .iter()
        .map(|p| proc_sample(*p))
        .collect::<Result<_, _>>()?;
    let gate = Arc::new(Semaphore::new(load.concurrency.max(1)));
    let tally = Arc::new(std::sync::Mutex::new(Tally::default()));
    let deadline = Instant::now() + Duration::from_secs(load.max_seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, kit) in kits.into_iter().enumerate() {
        let permit = gate.clone().acquire_owned().await?;
        if Instant::now() > deadline {
            break;
        }
        let (front, tally) = (fronts[i % fronts.len()], tally.clone());
        tasks.push(tokio::spawn(async move {
            let outcome = enroll_one(front, kit).await;
            let mut t = tally.lock().expect("tally");
            match outcome {
                Ok((hs, req)) => {
                    t.handshake.push(hs);
                    t.request.push(req);
                    t.total.push(hs + req);
                }
                Err(e) => {
                    t.errors += 1;
                    t.first_error.get_or_insert(format!("{e:#}"));
                }
            }
            drop(permit);
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = start.elapsed();
    let after: Vec<ProcSample> = load
        .server_pids
        .iter()
        .map(|p| proc_sample(*p))
        .collect::<Result<_, _>>()?;
    let t = std::mem::take(&mut *tally.lock().expect("tally"));
    let (_, hs50, ..) = percentiles(t.handshake);
    let (_, rq50, ..) = percentiles(t.request);
    let (n, p50, _, p99, _) = percentiles(t.total);
    let cpu = (!before.is_empty() && n > 0).then(|| {
        let spent: Duration = before
            .iter()
            .zip(&after)
            .map(|(b, a)| a.cpu.saturating_sub(b.cpu))
            .sum();
        spent.as_secs_f64() * 1e6 / n as f64
    });
    Ok(EnrollSummary {
        name: "enroll",
        fronts: load.fronts,
        concurrency: load.concurrency,
        enrollments: n,
        errors: t.errors,
        seconds: elapsed.as_secs_f64(),
        enrollments_per_sec: n as f64 / elapsed.as_secs_f64(),
        p50_us: p50,
        p99_us: p99,
        handshake_p50_us: hs50,
        request_p50_us: rq50,
        server_cpu_us_per_enrollment: cpu,
        csr_check_us,
        signing_us,
        first_error: t.first_error,
    })
}

/// One enrollment: (handshake µs, request µs).
async fn enroll_one(front: SocketAddr, kit: Kit) -> anyhow::Result<(u64, u64)> {
    let config = ClientConfig::with(ClientCredential::Certificate {
        chain: vec![kit.idevid],
        key: kit.key,
    });
    let t0 = Instant::now();
    let mut device = EngineDevice::connect(front, config, Duration::from_secs(10)).await?;
    let t1 = Instant::now();
    device.request_timeout = Duration::from_secs(10);
    // 286 application/pkcs10 in, 287 application/pkix-cert out.
    let answer = device
        .post("/.well-known/est/sen", 286, Some(287), &kit.csr)
        .await;
    let t2 = Instant::now();
    device.close().await;
    let answer = answer?;
    anyhow::ensure!(
        answer.code == "2.04"
            && idreg_core::device_ca::describe_certificate(&answer.payload).is_some(),
        "enrollment answered {} {}",
        answer.code,
        String::from_utf8_lossy(&answer.payload)
    );
    Ok(((t1 - t0).as_micros() as u64, (t2 - t1).as_micros() as u64))
}

pub fn print(output: OutputFormat, s: &EnrollSummary) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string(s)?),
        OutputFormat::Table => {
            println!(
                "enroll: {} in {:.1}s = {:.0}/s (c={}, {} errors) p50 {} µs (handshake {} + request {}) p99 {} µs",
                s.enrollments,
                s.seconds,
                s.enrollments_per_sec,
                s.concurrency,
                s.errors,
                s.p50_us,
                s.handshake_p50_us,
                s.request_p50_us,
                s.p99_us
            );
            println!(
                "        server work per enrollment: CSR check {:.0} µs, signing {:.0} µs (measured here){}",
                s.csr_check_us,
                s.signing_us,
                s.server_cpu_us_per_enrollment
                    .map(|c| format!("; server CPU {c:.0} µs/enrollment"))
                    .unwrap_or_default()
            );
            if let Some(e) = &s.first_error {
                println!("        first error: {e}");
            }
        }
    }
    Ok(())
}
