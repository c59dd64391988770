//! `idreg-bench revoke`: how long after `RevokeDevice` is acknowledged every
//! given device front refuses the device's DTLS handshake.
//!
//! Per round: register a PSK device, handshake with it on every front (so
//! each node knows it), revoke it, then on every front at once retry the
//! handshake until it is refused. The round's figure is the slowest front's
//! time from the acknowledgement to its first refused handshake (which
//! includes that failing handshake's own round trip).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use idreg_client::engine_device::EngineDevice;
use idreg_client::pb;
use idreg_dtls::client::ClientConfig;

/// How long a front may take to learn of a new device, or of its revocation.
const PROPAGATION_LIMIT: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// One handshake on the idreg-dtls client, which ends at the server's fatal
/// alert (webrtc-dtls's client waits out its timeout instead, which would
/// make every refusal look 2 s slow).
async fn handshake_ok(front: SocketAddr, cred: &ClientConfig) -> bool {
    match EngineDevice::connect(front, cred.clone(), HANDSHAKE_TIMEOUT).await {
        Ok(c) => {
            c.close().await;
            true
        }
        Err(_) => false,
    }
}

/// Waits until `front` gives `want` for the device's handshake; the time taken.
async fn until(front: SocketAddr, cred: ClientConfig, want: bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < PROPAGATION_LIMIT {
        if handshake_ok(front, &cred).await == want {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

/// [`until`] on every front at once, results in front order.
async fn on_every_front(
    fronts: &[SocketAddr],
    cred: &ClientConfig,
    want: bool,
) -> Vec<Option<Duration>> {
    let tasks: Vec<_> = fronts
        .iter()
        .map(|f| tokio::spawn(until(*f, cred.clone(), want)))
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.ok().flatten());
    }
    out
}

/// Runs `count` rounds (stopping at `max_time`): latencies in µs, failed rounds.
pub async fn run(
    target: &idreg_client::Target,
    fronts: &[String],
    count: usize,
    max_time: Duration,
) -> anyhow::Result<(Vec<u64>, usize, Duration)> {
    let fronts: Vec<SocketAddr> = fronts
        .iter()
        .map(|f| {
            f.parse()
                .with_context(|| format!("--fronts: {f:?} is not HOST:PORT"))
        })
        .collect::<Result<_, _>>()?;
    let mut client = target.registry().await?;
    let start = Instant::now();
    let (mut lat, mut errors) = (Vec::new(), 0);
    for i in 0..count {
        if start.elapsed() > max_time {
            break;
        }
        let id = format!("revoke-{}-{i:06}", std::process::id());
        let key = b"revoke-bench-secret-0123".to_vec();
        client
            .create_device(crate::bench::psk_device(&id, &key))
            .await
            .context("CreateDevice")?;
        let cred = ClientConfig::psk(id.as_bytes(), &key);
        let known = on_every_front(&fronts, &cred, true).await;
        if known.iter().any(Option::is_none) {
            errors += 1;
            continue;
        }
        client
            .revoke_device(pb::RevokeDeviceRequest {
                id,
                reason: "bench".into(),
            })
            .await
            .context("RevokeDevice")?;
        let refused = on_every_front(&fronts, &cred, false).await;
        match refused.iter().copied().collect::<Option<Vec<_>>>() {
            Some(times) => {
                lat.push(times.iter().max().copied().unwrap_or_default().as_micros() as u64)
            }
            None => errors += 1,
        }
    }
    Ok((lat, errors, start.elapsed()))
}
