//! The device front of one node: its socket shards on the one UDP port,
//! the task that turns registry changes into session ends, the audit writer
//! and the audit retention task; sessions saved at shutdown and taken back
//! at start.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use idreg_core::{Kek, SessionAudit};
use idreg_dtls::{Endpoint, EndpointConfig};
use idreg_store::{SessionLog, Store};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::authenticator::Authenticator;
use crate::enrollment_desk::{EnrollmentDesk, RegistryWriter};
use crate::front_config::FrontConfig;
use crate::front_shard::{FrontShard, ShardCommand, ShardShared};
use crate::registry_credentials::{RegistryCredentials, RegistryFreshness};
use crate::shard_directory::ShardDirectory;
use crate::stats::{FrontStats, StatsSnapshot};
use crate::{server_identity, session_vault};

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

/// Commands queued per shard before senders wait (forwarded datagrams,
/// registry changes).
const SHARD_QUEUE: usize = 4096;
/// Audit records queued for the writer.
const AUDIT_QUEUE: usize = 16_384;
/// Clone sightings waiting to be written (a flood of them is dropped past it,
/// still counted).
const SIGHTING_QUEUE: usize = 4096;

pub struct DeviceFront {
    addr: SocketAddr,
    shards: Arc<Vec<mpsc::Sender<ShardCommand>>>,
    shard_tasks: Vec<JoinHandle<()>>,
    stats: Arc<FrontStats>,
    clones: Arc<crate::clone_watch::CloneWatch>,
    config: FrontConfig,
    kek: Kek,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// One UDP socket of the shard set: SO_REUSEPORT so they share the port,
/// and a receive buffer that absorbs bursts.
fn shard_socket(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    let _ = socket.set_recv_buffer_size(4 << 20);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    tokio::net::UdpSocket::from_std(socket.into())
}

impl DeviceFront {
    pub async fn start(
        config: FrontConfig,
        store: &Store,
        kek: Kek,
        fresh: RegistryFreshness,
        writer: Option<RegistryWriter>,
        announce: Option<Arc<dyn idreg_core::SessionAnnouncer>>,
    ) -> Result<Self, FrontError> {
        let identity = server_identity::load(&config.server_cert, &config.server_key)?;
        let creds =
            RegistryCredentials::new(Authenticator::new(store.reader(), kek.clone()), fresh);
        let n = config.shards.clamp(1, 64);
        // The first socket picks the port when 0 was asked; the rest join it.
        let first = shard_socket(config.addr).map_err(|source| FrontError::Bind {
            addr: config.addr,
            source,
        })?;
        let addr = first.local_addr().map_err(|source| FrontError::Bind {
            addr: config.addr,
            source,
        })?;
        let mut sockets = vec![first];
        for _ in 1..n {
            sockets.push(shard_socket(addr).map_err(|source| FrontError::Bind { addr, source })?);
        }

        let stats = Arc::new(FrontStats::default());
        let (audit_tx, audit_rx) = mpsc::channel(AUDIT_QUEUE);
        let mut queues = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..n {
            let (tx, rx) = mpsc::channel(SHARD_QUEUE);
            queues.push(tx);
            receivers.push(rx);
        }
        let shards = Arc::new(queues);
        let (sightings_tx, sightings_rx) = mpsc::channel(SIGHTING_QUEUE);
        let clones = Arc::new(crate::clone_watch::CloneWatch::new(
            u64::from(config.node_id),
            config.on_clone,
            clone_policy_lookup(store.reader()),
            shards.clone(),
            sightings_tx,
            announce,
        ));
        let shared = ShardShared {
            stats: stats.clone(),
            audit: audit_tx,
            shards: shards.clone(),
            directory: (n > 1).then(|| Arc::new(ShardDirectory::default())),
            observers: Default::default(),
            clones: clones.clone(),
            revocation_lists: Arc::new(crate::revocation_list_cache::RevocationListCache::new(
                store.reader(),
                kek.clone(),
            )),
            firmware: crate::firmware_desk::FirmwareDesk::new(store.reader(), writer.clone()),
            enrollment: writer.map(|w| {
                EnrollmentDesk::new(
                    store.reader(),
                    kek.clone(),
                    w,
                    config.device_cert_days,
                    config.rotation_grace,
                )
            }),
        };
        let mut saved = match &config.session_file {
            Some(path) => session_vault::take(path, &kek).unwrap_or_else(|e| {
                warn!(error = %e, "saved device sessions unusable; devices will handshake again");
                Vec::new()
            }),
            None => Vec::new(),
        };
        let mut shard_tasks = Vec::new();
        let mut restored = 0;
        for (i, (socket, rx)) in sockets.into_iter().zip(receivers).enumerate() {
            let endpoint_config = EndpointConfig {
                node_id: config.node_id,
                shard: i as u8,
                idle_timeout: config.idle_timeout,
                max_sessions: config.max_sessions.div_ceil(n),
                handshake: idreg_dtls::server_handshake::HandshakeSettings {
                    timeout: config.handshake_timeout,
                    ..EndpointConfig::default().handshake
                },
                ..EndpointConfig::default()
            };
            let endpoint = Endpoint::new(
                endpoint_config,
                Some(identity.clone()),
                creds.clone(),
                std::time::Instant::now(),
            );
            let mut shard = FrontShard::new(i as u16, socket, endpoint, shared.clone());
            // A file from a run with more shards: the extra ones go round.
            let mine: Vec<Vec<u8>> = (0..saved.len())
                .filter(|j| j % n == i)
                .map(|j| std::mem::take(&mut saved[j]))
                .collect();
            for blob in mine {
                restored += shard.restore(&blob);
            }
            shard_tasks.push(tokio::spawn(shard.run(rx)));
        }

        let (shutdown, shutdown_rx) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(write_audit(
                store.session_log(),
                audit_rx,
                SessionLog::record_sessions,
            )),
            tokio::spawn(write_audit(
                store.session_log(),
                sightings_rx,
                SessionLog::record_clones,
            )),
            tokio::spawn(follow_registry(
                shards.clone(),
                store.subscribe(),
                store.installs_watch(),
                shutdown_rx.clone(),
            )),
            tokio::spawn(purge_audit(
                store.session_log(),
                config.audit_retention,
                shutdown_rx,
            )),
        ];
        info!(%addr, shards = n, restored, "device front listening (CoAP over DTLS 1.2: PSK, certificates, raw public keys)");
        Ok(Self {
            addr,
            shards,
            shard_tasks,
            stats,
            clones,
            config,
            kek,
            shutdown,
            tasks,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Cloned-credential sightings: the count and the node's policy for the
    /// Sessions API, and the other nodes' announcements for the peer API.
    pub fn clone_watch(&self) -> Arc<crate::clone_watch::CloneWatch> {
        self.clones.clone()
    }

    /// A cheap handle for the Sessions API.
    pub fn stats_source(&self) -> Arc<dyn Fn() -> StatsSnapshot + Send + Sync> {
        let stats = self.stats.clone();
        Arc::new(move || stats.snapshot())
    }

    /// Stops the sockets. With a session file, live sessions are saved
    /// (sealed) for the next start and stay open on the devices' side;
    /// without, each ends with close_notify.
    pub async fn shutdown(self) {
        let mut replies = Vec::new();
        for shard in self.shards.iter() {
            let (save, reply) = match self.config.session_file {
                Some(_) => {
                    let (tx, rx) = oneshot::channel();
                    (Some(tx), Some(rx))
                }
                None => (None, None),
            };
            let _ = shard.send(ShardCommand::Stop { save }).await;
            replies.push(reply);
        }
        let mut saved = Vec::new();
        for r in replies.into_iter().flatten() {
            saved.push(r.await.unwrap_or_default());
        }
        for t in self.shard_tasks {
            let _ = t.await;
        }
        if let Some(path) = &self.config.session_file {
            let count = saved.iter().filter(|s| s.len() > 8).count();
            match session_vault::save(path, &self.kek, &saved) {
                Ok(()) => {
                    info!(path = %path.display(), shards = count, "device sessions saved for the next start")
                }
                Err(e) => {
                    warn!(error = %e, "device sessions could not be saved; devices will handshake again")
                }
            }
        }
        let _ = self.shutdown.send(true);
        drop(self.shards);
        // The last holder of the clone watch: its sighting writer ends.
        drop(self.clones);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Tells every shard about each registry change as it is applied on this
/// node: a device cut off (revoked, disabled, deleted) loses its sessions at
/// once; any other change to a device with sessions has them re-checked
/// (a removed or replaced credential ends the sessions it opened). After a
/// snapshot install or lost events, every session is re-checked.
async fn follow_registry(
    shards: Arc<Vec<mpsc::Sender<ShardCommand>>>,
    mut events: broadcast::Receiver<idreg_store::RegistryEvent>,
    mut installs: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let tell_all = |make: &dyn Fn() -> ShardCommand| {
        for s in shards.iter() {
            // A full queue: the shard is drowning in datagrams; the next
            // recheck catches it.
            if s.try_send(make()).is_err() {
                warn!(
                    "device front shard queue full; a registry change waits for the next recheck"
                );
            }
        }
    };
    let mut installs_open = true;
    loop {
        let ev = tokio::select! {
            ev = events.recv() => ev,
            changed = installs.changed(), if installs_open => {
                match changed {
                    Ok(()) => {
                        info!("snapshot installed; rechecking live device sessions");
                        tell_all(&|| ShardCommand::RecheckAll);
                        tell_all(&|| ShardCommand::RevocationListChanged);
                    }
                    Err(_) => installs_open = false,
                }
                continue;
            }
            _ = shutdown.changed() => return,
        };
        match ev {
            Ok(ev) => {
                let device: Arc<str> = Arc::from(ev.device.as_str());
                for gw in &ev.gateways {
                    let gw: Arc<str> = Arc::from(gw.as_str());
                    tell_all(&|| ShardCommand::SpokesChanged(gw.clone()));
                }
                if ev.status == Some(idreg_core::DeviceStatus::Revoked) {
                    // Observers of /rl hear of it (once per list version).
                    tell_all(&|| ShardCommand::RevocationListChanged);
                }
                if ev.cut_off {
                    tell_all(&|| ShardCommand::EndDevice {
                        device: device.clone(),
                        proposed_at_ms: ev.proposed_at_ms,
                    });
                } else {
                    tell_all(&|| ShardCommand::RecheckDevice(device.clone()));
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                warn!(
                    missed,
                    "registry events lagged; rechecking live device sessions"
                );
                tell_all(&|| ShardCommand::RecheckAll);
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// A device's own clone policy (its `idreg.io/on-clone` label), else its
/// tenant's, read when a clone is seen.
fn clone_policy_lookup(reader: idreg_store::RegistryReader) -> crate::clone_watch::PolicyLookup {
    Box::new(move |device| {
        let d = reader.get(device).ok().flatten()?;
        idreg_core::ClonePolicy::of_labels(&d.labels)
            .or_else(|| reader.tenant_clone_policy(d.tenant.as_str()).ok().flatten())
    })
}

/// Writes session audit entries off the shards' loops, in batches: after the
/// first of a burst it gathers for [`AUDIT_GATHER`], so a busy front pays one
/// blocking-pool hand-off and one WAL append per interval rather than per
/// handshake.
async fn write_audit<L, T>(
    log: L,
    mut records: mpsc::Receiver<T>,
    write: fn(&L, &[T]) -> Result<(), L::Error>,
) where
    L: SessionAudit + Clone + Send + 'static,
    L::Error: std::fmt::Display + Send,
    T: Send + 'static,
{
    let mut batch = Vec::new();
    while records.recv_many(&mut batch, AUDIT_BATCH).await > 0 {
        let gathering = tokio::time::sleep(AUDIT_GATHER);
        tokio::pin!(gathering);
        while batch.len() < AUDIT_BATCH {
            let room = AUDIT_BATCH - batch.len();
            tokio::select! {
                _ = &mut gathering => break,
                n = records.recv_many(&mut batch, room) => if n == 0 { break },
            }
        }
        let log = log.clone();
        let chunk = std::mem::take(&mut batch);
        let written = tokio::task::spawn_blocking(move || write(&log, &chunk)).await;
        if let Ok(Err(e)) = written {
            warn!(error = %e, "session audit write failed");
        }
    }
}

/// How long the audit writer gathers a burst (audit is not fsynced anyway:
/// a crash may lose its last moments, never registry state).
const AUDIT_GATHER: Duration = Duration::from_millis(10);
const AUDIT_BATCH: usize = 1024;

/// Deletes audit records older than the retention, hourly.
async fn purge_audit<L>(log: L, retention: Duration, mut shutdown: watch::Receiver<bool>)
where
    L: SessionAudit + Clone + Send + 'static,
    L::Error: std::fmt::Display + Send,
{
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let cutoff = crate::unix_ms().saturating_sub(retention.as_millis() as u64);
        let log = log.clone();
        match tokio::task::spawn_blocking(move || log.purge_before(cutoff)).await {
            Ok(Ok(n)) if n > 0 => info!(purged = n, "session audit retention"),
            Ok(Err(e)) => warn!(error = %e, "session audit purge failed"),
            _ => {}
        }
    }
}
