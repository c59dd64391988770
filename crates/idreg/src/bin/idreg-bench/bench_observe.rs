//! `idreg-bench observe`: how long a revocation takes to reach every
//! observer of `/rl` (RFC 7641), with many observers spread over every
//! node's device front, and what each notification costs the servers.
//!
//! Set-up: one PSK device per front (its observers share its identity and
//! one source address, so they are not clones of each other), and one
//! victim per round. Each observer is its own DTLS session holding an
//! observation of `/rl` as text ("version V count C"). A round revokes its
//! victim through the gRPC endpoint and times, per observer, the interval
//! from just before the RevokeDevice call to the notification that counts
//! the new revocation. Server CPU (every PID given) over the round, divided
//! by the notifications delivered, is the cost per notification; it
//! includes the revocation's own raft write on every node.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use idreg_client::engine_device::EngineDevice;
use idreg_client::pb;
use idreg_dtls::client::ClientConfig;
use serde::Serialize;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::bench::{percentiles, psk_device};
use crate::cli::OutputFormat;
use idreg::proc_sample::proc_sample;

pub struct ObserveLoad {
    pub fronts: Vec<String>,
    pub observers: usize,
    pub rounds: usize,
    /// Handshakes in flight while the observers connect.
    pub connect_concurrency: usize,
    pub server_pids: Vec<u32>,
}

#[derive(Serialize)]
pub struct ObserveSummary {
    pub name: &'static str,
    pub fronts: Vec<String>,
    pub observers: usize,
    /// Observers that could not connect or register.
    pub observers_failed: usize,
    pub connect_seconds: f64,
    pub rounds: usize,
    pub notifications: usize,
    /// Observers a round's notification did not reach within 10 s.
    pub missed: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Summed over the PIDs given, per notification delivered.
    pub server_cpu_us_per_notification: Option<f64>,
    /// Summed RSS of the servers holding the observers.
    pub server_rss_kb: Option<u64>,
    pub first_error: Option<String>,
}

/// How long a round waits for every observer to hear of it.
const ROUND_LIMIT: Duration = Duration::from_secs(10);
/// Source addresses hold this many observers each (ephemeral ports).
const OBSERVERS_PER_SOURCE: usize = 20_000;

/// "version V count C" → C.
fn revoked_count(payload: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "count" {
            return words.next()?.parse().ok();
        }
    }
    None
}

/// What every observer shares with the bench.
#[derive(Clone)]
struct Wires {
    /// Its first count, or why it could not observe.
    ready: mpsc::UnboundedSender<Result<u64, String>>,
    /// (observer, count, when) for every notification.
    heard: mpsc::UnboundedSender<(usize, u64, Instant)>,
    stop: watch::Receiver<bool>,
    connecting: Arc<Semaphore>,
}

/// One observer: connects, registers, reports its first count, then every
/// count it is notified of until told to stop.
async fn observer(n: usize, source: IpAddr, front: SocketAddr, cred: ClientConfig, wires: Wires) {
    let Wires {
        ready,
        heard,
        mut stop,
        connecting,
    } = wires;
    let permit = connecting.acquire_owned().await;
    let mut device = None;
    let mut last_error = String::new();
    // A node may not have applied the device yet: a few tries.
    for _ in 0..5 {
        match EngineDevice::connect_from(
            (source, 0).into(),
            front,
            cred.clone(),
            Duration::from_secs(10),
        )
        .await
        {
            Ok(d) => {
                device = Some(d);
                break;
            }
            Err(e) => {
                last_error = e.to_string();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let Some(mut device) = device else {
        let _ = ready.send(Err(format!("connect to {front}: {last_error}")));
        return;
    };
    device.request_timeout = Duration::from_secs(10);
    let first = device.observe("/rl", Some(0)).await;
    drop(permit);
    match first {
        Ok(r) if r.code == "2.05" => match revoked_count(&r.payload) {
            Some(c) => {
                let _ = ready.send(Ok(c));
            }
            None => {
                let _ = ready.send(Err(format!(
                    "odd /rl answer {:?}",
                    String::from_utf8_lossy(&r.payload)
                )));
                return;
            }
        },
        Ok(r) => {
            let _ = ready.send(Err(format!("observe /rl answered {}", r.code)));
            return;
        }
        Err(e) => {
            let _ = ready.send(Err(format!("observe /rl: {e}")));
            return;
        }
    }
    loop {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        tokio::select! {
            _ = stop.changed() => break,
            got = device.notification(deadline) => match got {
                Ok(Some(r)) => {
                    if let Some(c) = revoked_count(&r.payload) {
                        let _ = heard.send((n, c, Instant::now()));
                    }
                }
                Ok(None) => {}
                Err(_) => break,
            },
        }
    }
    device.close().await;
}

fn cpu_of(pids: &[u32]) -> anyhow::Result<Duration> {
    pids.iter().map(|p| Ok(proc_sample(*p)?.cpu)).sum()
}

pub async fn run(
    target: &idreg_client::Target,
    load: ObserveLoad,
) -> anyhow::Result<ObserveSummary> {
    let fronts = crate::bench::parse_fronts(&load.fronts)?;
    let mut client = target.registry().await?;
    let tag = std::process::id();
    let key = b"observe-bench-secret-0123".to_vec();
    let mut creds = Vec::new();
    for i in 0..fronts.len() {
        let id = format!("obs-{tag}-{i}");
        client
            .create_device(psk_device(&id, &key))
            .await
            .context("CreateDevice")?;
        creds.push(ClientConfig::psk(id.as_bytes(), &key));
    }
    let victims: Vec<String> = (0..load.rounds)
        .map(|r| format!("obs-{tag}-victim-{r}"))
        .collect();
    for v in &victims {
        client
            .create_device(psk_device(v, &key))
            .await
            .context("CreateDevice")?;
    }

    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (heard_tx, mut heard_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let wires = Wires {
        ready: ready_tx,
        heard: heard_tx,
        stop: stop_rx,
        connecting: Arc::new(Semaphore::new(load.connect_concurrency.max(1))),
    };
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..load.observers {
        let f = n % fronts.len();
        let source = if fronts[f].ip().is_loopback() && fronts[f].is_ipv4() {
            IpAddr::V4(Ipv4Addr::new(
                127,
                4,
                f as u8,
                1 + (n / OBSERVERS_PER_SOURCE) as u8,
            ))
        } else if fronts[f].is_ipv4() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        };
        tasks.spawn(observer(
            n,
            source,
            fronts[f],
            creds[f].clone(),
            wires.clone(),
        ));
    }
    drop(wires);
    let (mut observing, mut failed, mut first_error) = (0usize, 0usize, None);
    let mut base: Option<u64> = None;
    // Every observer reports once (the senders live on in the observers).
    for _ in 0..load.observers {
        let Some(r) = ready_rx.recv().await else {
            break;
        };
        match r {
            Ok(c) => {
                observing += 1;
                base = Some(base.map_or(c, |b: u64| b.max(c)));
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    let mut count = base.unwrap_or(0);
    // Let the last registrations settle before the first round.
    tokio::time::sleep(Duration::from_secs(1)).await;
    while heard_rx.try_recv().is_ok() {}

    let (mut delays_us, mut missed, mut cpu_total) = (Vec::new(), 0usize, Duration::ZERO);
    for victim in &victims {
        let cpu_before = cpu_of(&load.server_pids).ok();
        let t0 = Instant::now();
        client
            .revoke_device(pb::RevokeDeviceRequest {
                id: victim.clone(),
                reason: "bench".into(),
            })
            .await
            .context("RevokeDevice")?;
        count += 1;
        let mut got = vec![false; load.observers];
        let mut delivered = 0usize;
        let deadline = tokio::time::Instant::now() + ROUND_LIMIT;
        while delivered < observing {
            match tokio::time::timeout_at(deadline, heard_rx.recv()).await {
                Ok(Some((n, c, at))) if c >= count && !got[n] => {
                    got[n] = true;
                    delivered += 1;
                    delays_us.push(at.saturating_duration_since(t0).as_micros() as u64);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        missed += observing - delivered;
        // Confirmable notifications' ACKs land within the second.
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let (Some(b), Ok(a)) = (cpu_before, cpu_of(&load.server_pids)) {
            cpu_total += a.saturating_sub(b);
        }
        while heard_rx.try_recv().is_ok() {}
    }
    let rss = if load.server_pids.is_empty() {
        None
    } else {
        load.server_pids
            .iter()
            .map(|p| proc_sample(*p).map(|s| s.rss_kb))
            .sum::<anyhow::Result<u64>>()
            .ok()
    };
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    let notifications = delays_us.len();
    let (_, p50, _, p99, max) = percentiles(delays_us);
    Ok(ObserveSummary {
        name: "observe",
        fronts: load.fronts,
        observers: load.observers,
        observers_failed: failed,
        connect_seconds,
        rounds: load.rounds,
        notifications,
        missed,
        p50_ms: p50 as f64 / 1000.0,
        p99_ms: p99 as f64 / 1000.0,
        max_ms: max as f64 / 1000.0,
        server_cpu_us_per_notification: (!load.server_pids.is_empty() && notifications > 0)
            .then(|| cpu_total.as_micros() as f64 / notifications as f64),
        server_rss_kb: rss,
        first_error,
    })
}

pub fn print(output: OutputFormat, s: &ObserveSummary) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string(s)?),
        OutputFormat::Table => {
            println!(
                "observe: {} observers over {} fronts ({} failed, connected in {:.1}s); {} rounds: {} notifications, {} missed",
                s.observers, s.fronts.len(), s.observers_failed, s.connect_seconds, s.rounds, s.notifications, s.missed
            );
            println!(
                "         revoke -> notification p50 {:.1} ms p99 {:.1} ms max {:.1} ms{}",
                s.p50_ms,
                s.p99_ms,
                s.max_ms,
                s.server_cpu_us_per_notification
                    .map(|c| format!("; server CPU {c:.1} µs/notification"))
                    .unwrap_or_default()
            );
            if let Some(e) = &s.first_error {
                println!("         first error: {e}");
            }
        }
    }
    Ok(())
}
