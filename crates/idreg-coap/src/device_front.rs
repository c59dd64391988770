//! The device front of one node: its UDP sockets, the task that ends sessions
//! of devices cut off by a registry change, and the audit retention task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use idreg_core::{Kek, SessionEnd};
use idreg_store::Store;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::authenticator::Authenticator;
use crate::front_config::FrontConfig;
use crate::server_identity;
use crate::shared::{CredentialFamily, FrontShared};
use crate::stats::StatsSnapshot;
use crate::udp_listener::UdpListener;

#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    #[error("binding UDP {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server certificate: {0}")]
    Identity(#[from] server_identity::IdentityError),
}

pub struct DeviceFront {
    shared: Arc<FrontShared>,
    psk_addr: SocketAddr,
    cert_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl DeviceFront {
    pub async fn start(config: FrontConfig, store: &Store, kek: Kek) -> Result<Self, FrontError> {
        let server_cert = match config.cert_addr {
            Some(_) => Some(server_identity::load(
                &config.server_cert,
                &config.server_key,
            )?),
            None => None,
        };
        let auth = Authenticator::new(store.reader(), kek);
        let shared = FrontShared::new(config.clone(), auth, store.session_log(), server_cert);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();

        let psk = UdpListener::bind(config.psk_addr, CredentialFamily::Psk, shared.clone())
            .await
            .map_err(|source| FrontError::Bind {
                addr: config.psk_addr,
                source,
            })?;
        let psk_addr = psk.local_addr().expect("bound socket has an address");
        tasks.push(tokio::spawn(psk.run(shutdown_rx.clone())));

        let mut cert_addr = None;
        if let Some(addr) = config.cert_addr {
            let cert = UdpListener::bind(addr, CredentialFamily::Certificate, shared.clone())
                .await
                .map_err(|source| FrontError::Bind { addr, source })?;
            cert_addr = Some(cert.local_addr().expect("bound socket has an address"));
            tasks.push(tokio::spawn(cert.run(shutdown_rx.clone())));
        }

        tasks.push(tokio::spawn(end_cut_off_sessions(
            shared.clone(),
            store.subscribe(),
            store.installs_watch(),
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(purge_audit(shared.clone(), shutdown_rx)));
        info!(%psk_addr, cert_addr = ?cert_addr, "device front listening (CoAP over DTLS 1.2)");
        Ok(Self {
            shared,
            psk_addr,
            cert_addr,
            shutdown,
            tasks,
        })
    }

    pub fn psk_addr(&self) -> SocketAddr {
        self.psk_addr
    }

    pub fn cert_addr(&self) -> Option<SocketAddr> {
        self.cert_addr
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// A cheap handle for the Sessions API.
    pub fn stats_source(&self) -> Arc<dyn Fn() -> StatsSnapshot + Send + Sync> {
        let shared = self.shared.clone();
        Arc::new(move || shared.stats.snapshot())
    }

    /// Ends every session (close_notify) and stops the sockets.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        // Sessions received their end signal from the listeners; give them a
        // moment to send close_notify and write their audit record.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while !self.shared.live.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Checks every connected device against the registry and ends the sessions
/// of those no longer active.
fn recheck_live_sessions(shared: &FrontShared) {
    for device in shared.live.devices() {
        if !shared.auth.still_active(&device) {
            shared.live.end_device(&device, SessionEnd::Revoked);
        }
    }
}

/// Ends the sessions of every device a registry change cuts off (revoked,
/// disabled, deleted), as the change is applied on this node — also when the
/// node catches up by installing a snapshot, which carries no per-change events.
async fn end_cut_off_sessions(
    shared: Arc<FrontShared>,
    mut events: broadcast::Receiver<idreg_store::RegistryEvent>,
    mut installs: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut installs_open = true;
    loop {
        let ev = tokio::select! {
            ev = events.recv() => ev,
            changed = installs.changed(), if installs_open => {
                match changed {
                    Ok(()) => {
                        info!("snapshot installed; rechecking live sessions");
                        recheck_live_sessions(&shared);
                    }
                    Err(_) => installs_open = false,
                }
                continue;
            }
            _ = shutdown.changed() => return,
        };
        match ev {
            Ok(ev) if ev.cut_off => {
                let n = shared
                    .live
                    .end_device(ev.device.as_str(), SessionEnd::Revoked);
                if n > 0 {
                    info!(device = %ev.device, sessions = n, "closing sessions of a cut-off device");
                }
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                // Changes were missed: check every connected device directly.
                warn!(missed, "registry events lagged; rechecking live sessions");
                recheck_live_sessions(&shared);
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Deletes audit records older than the retention, hourly.
async fn purge_audit(shared: Arc<FrontShared>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let cutoff = crate::session::unix_ms()
            .saturating_sub(shared.config.audit_retention.as_millis() as u64);
        let audit = shared.audit.clone();
        match tokio::task::spawn_blocking(move || audit.purge_before(cutoff)).await {
            Ok(Ok(n)) if n > 0 => info!(purged = n, "session audit retention"),
            Ok(Err(e)) => warn!(error = %e, "session audit purge failed"),
            _ => {}
        }
    }
}
