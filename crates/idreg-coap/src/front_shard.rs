//! One socket shard of the device front: a UDP socket (SO_REUSEPORT), the
//! DTLS engine for the peers the kernel hands it, and CoAP for their
//! sessions, all in one loop with batched system calls. No task per peer:
//! a session is an entry in the engine's table and one here.
//!
//! The loop never blocks on storage: handshake lookups are local RocksDB
//! point reads, and audit records go to a writer task through a bounded
//! queue.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use idreg_core::{AddressChange, CredentialRef, SessionCredential, SessionEnd, SessionRecord};
use idreg_dtls::server_handshake::FailReason;
use idreg_dtls::session::Session;
use idreg_dtls::{
    AuthCredential, CloseReason, ConnId, Endpoint, EndpointStats, Event, Miss, Refusal,
};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::endpoint::CoapEndpoint;
use crate::enrollment_desk::EnrollmentDesk;
use crate::log_budget::LogBudget;
use crate::registry_credentials::{RegistryCredentials, SessionDevice, SessionRole};
use crate::resources::{Reply, ResourceContext};
use crate::revocation_list_cache::RevocationListCache;
use crate::shard_directory::ShardDirectory;
use crate::stats::{add, FrontStats};
use crate::udp_batch::{send_batch, RecvBatch};
use coap_lite::ResponseType;
use idreg_coap_endpoint::est::EnrollRequest;

/// Datagrams read per system call.
const RECV_BATCH: usize = 32;
/// Batches read per wake-up before commands and timers get a turn.
const BATCHES_PER_WAKE: usize = 8;

/// What the rest of the node asks of a shard.
pub enum ShardCommand {
    /// End the sessions of a device now (revoked, disabled, deleted).
    EndDevice {
        device: Arc<str>,
        /// When the change was proposed (the proposer's wall clock), for
        /// the cut-off latency.
        proposed_at_ms: u64,
    },
    /// Check the device's sessions against the registry: its status and the
    /// credential each authenticated with (removed or replaced: ended).
    RecheckDevice(Arc<str>),
    /// The same for every session (after a snapshot install or lost events).
    RecheckAll,
    /// End one session of this shard: a clone the policy ends.
    EndClone(ConnId),
    /// The revocation list may have a new version: notify its observers.
    RevocationListChanged,
    /// A spoke of this gateway changed: notify observers of its `/gw/spokes`.
    SpokesChanged(Arc<str>),
    /// A datagram another shard received for a session of this one.
    Forwarded { from: SocketAddr, data: Vec<u8> },
    /// The answer to a session's deferred request (an enrollment), for the
    /// session with that audit id if it is still there.
    Answer {
        conn: ConnId,
        audit_id: u64,
        reply: Reply,
    },
    /// Stop. With `save`, hand back the sessions (sealed by the caller) and
    /// keep them open for the next start; without, end them with close_notify.
    Stop {
        save: Option<oneshot::Sender<Vec<u8>>>,
    },
}

/// What a shard keeps per session beside the engine's record layer.
struct LiveSession {
    coap: CoapEndpoint,
    /// Where the session started (the audit's `peer`); moves are below.
    started_from: SocketAddr,
    address_changes: Vec<AddressChange>,
    restored: bool,
}

/// What a shard shares with its siblings and the front.
#[derive(Clone)]
pub struct ShardShared {
    pub stats: Arc<FrontStats>,
    pub audit: mpsc::Sender<SessionRecord>,
    /// Every shard's command queue, by index, for forwarding.
    pub shards: Arc<Vec<mpsc::Sender<ShardCommand>>>,
    /// `None` with a single shard.
    pub directory: Option<Arc<ShardDirectory>>,
    /// EST enrollment (`None`: not offered).
    pub enrollment: Option<EnrollmentDesk>,
    pub firmware: crate::firmware_desk::FirmwareDesk,
    pub revocation_lists: Arc<RevocationListCache>,
    /// Live sessions by device across shards, for clone sightings.
    pub clones: Arc<crate::clone_watch::CloneWatch>,
    /// Observations (RFC 7641) held on this node, across shards.
    pub observers: Arc<std::sync::atomic::AtomicUsize>,
}

/// Largest signed revocation list served over CoAP (~27 000 revocations).
pub const MAX_LIST_OVER_COAP: usize = 4 << 20;

/// Observations one node holds at most; past it a GET with Observe is
/// answered without registering.
pub const MAX_OBSERVERS_PER_NODE: usize = 100_000;

pub struct FrontShard {
    index: u16,
    socket: UdpSocket,
    endpoint: Endpoint<RegistryCredentials>,
    shared: ShardShared,
    live: HashMap<ConnId, LiveSession>,
    by_device: HashMap<Arc<str>, Vec<ConnId>>,
    /// Sessions holding observations, and the revocation-list version
    /// they were last told of.
    observing: std::collections::HashSet<ConnId>,
    notified_rl_version: u64,
    /// Sessions this shard is closing, and why (the engine only knows
    /// "local").
    closing: HashMap<ConnId, SessionEnd>,
    /// The engine's counters at the last sync, and our gauges, so the shared
    /// counters get only the difference.
    synced: EndpointStats,
    synced_handshaking: u64,
    started: Instant,
    /// Caps the lines written about peers (refused handshakes, cut-offs).
    log_budget: LogBudget,
}

fn credential_of(c: &AuthCredential) -> SessionCredential {
    match c {
        AuthCredential::Psk { .. } => SessionCredential::Psk,
        AuthCredential::PublicKey { raw: false, .. } => SessionCredential::Certificate,
        AuthCredential::PublicKey { raw: true, .. } => SessionCredential::RawPublicKey,
    }
}

fn end_of(reason: CloseReason) -> SessionEnd {
    match reason {
        CloseReason::ClosedByPeer => SessionEnd::ClosedByPeer,
        CloseReason::Idle => SessionEnd::Idle,
        CloseReason::Replaced => SessionEnd::ClosedByPeer,
        CloseReason::Evicted => SessionEnd::Evicted,
        CloseReason::Local => SessionEnd::Shutdown,
    }
}

/// The audit record of a session as it stands.
fn record_of(
    session: &Session<SessionDevice>,
    live: &LiveSession,
    end: Option<SessionEnd>,
) -> SessionRecord {
    SessionRecord {
        id: session.device.audit_id,
        device: session.device.id.to_string(),
        peer: live.started_from.to_string(),
        credential: credential_of(&session.credential),
        started_ms: session.device.started_ms,
        ended_ms: end.map(|_| crate::unix_ms()),
        bytes_in: session.bytes_in,
        bytes_out: session.bytes_out,
        end,
        suite: session.suite.name().to_string(),
        connection_id: session.uses_cid(),
        address_changes: live.address_changes.clone(),
        restored: live.restored,
    }
}

struct Context<'a> {
    session: &'a Session<SessionDevice>,
    creds: &'a RegistryCredentials,
    enrollment: Option<&'a EnrollmentDesk>,
    firmware: &'a crate::firmware_desk::FirmwareDesk,
    revocation_lists: &'a RevocationListCache,
    observers: &'a std::sync::atomic::AtomicUsize,
    audit: &'a mpsc::Sender<SessionRecord>,
    /// Where a deferred answer goes: this shard's queue.
    queue: &'a mpsc::Sender<ShardCommand>,
    conn: ConnId,
}

impl<'a> Context<'a> {
    fn new(
        session: &'a Session<SessionDevice>,
        endpoint: &'a Endpoint<RegistryCredentials>,
        shared: &'a ShardShared,
        shard: u16,
        conn: ConnId,
    ) -> Self {
        Self {
            session,
            creds: endpoint.credentials(),
            enrollment: shared.enrollment.as_ref(),
            firmware: &shared.firmware,
            revocation_lists: &shared.revocation_lists,
            observers: &shared.observers,
            audit: &shared.audit,
            queue: &shared.shards[shard as usize],
            conn,
        }
    }

    /// Where a deferred answer goes: this shard's loop, which sends it in
    /// the ACK the device waits for.
    fn answer_sink(&self) -> crate::enrollment_desk::AnswerSink {
        let (queue, conn, audit_id) = (self.queue.clone(), self.conn, self.session.device.audit_id);
        Box::new(move |reply| {
            // The loop may be busy; the device retransmits meanwhile.
            let queue_answer = ShardCommand::Answer {
                conn,
                audit_id,
                reply,
            };
            tokio::spawn(async move {
                let _ = queue.send(queue_answer).await;
            });
        })
    }

    /// The session's device, when it is an active gateway.
    fn my_gateway(&self) -> Result<idreg_core::Device, Reply> {
        let reader = self.creds.authenticator().reader();
        let me = reader
            .get(&self.session.device.id)
            .map_err(|e| Reply::error(ResponseType::ServiceUnavailable, e.to_string()))?;
        me.filter(|d| d.labels.is_gateway() && d.status == idreg_core::DeviceStatus::Active)
            .ok_or_else(|| {
                Reply::error(
                    ResponseType::Forbidden,
                    "not a gateway (label idreg.io/role=gateway)",
                )
            })
    }
}

impl ResourceContext for Context<'_> {
    fn device_id(&self) -> &str {
        &self.session.device.id
    }

    fn enrollment_only(&self) -> bool {
        self.session.device.role.enrollment_only()
    }

    fn signed_revocation_list(&self, since: Option<u64>) -> Result<Vec<u8>, Reply> {
        let bytes = self
            .revocation_lists
            .signed(since)
            .map_err(|e| Reply::error(ResponseType::ServiceUnavailable, e))?;
        // Each Block2 block is cut from the list anew: past this size a
        // device should follow deltas (or a site take `idreg rl export`).
        if bytes.len() > MAX_LIST_OVER_COAP {
            return Err(Reply::error(
                ResponseType::ServiceUnavailable,
                format!("the list is {} bytes: ask for ?since=V deltas", bytes.len()),
            ));
        }
        Ok(bytes.to_vec())
    }

    fn revocation_list_key(&self) -> Option<(Vec<u8>, String)> {
        self.revocation_lists.key()
    }

    fn spoke_status(&self, spoke: &str) -> Result<&'static str, Reply> {
        let gateway = self.my_gateway()?;
        let reader = self.creds.authenticator().reader();
        let spoke = reader
            .get(spoke)
            .map_err(|e| Reply::error(ResponseType::ServiceUnavailable, e.to_string()))?
            .filter(|d| d.gateway.as_ref() == Some(&gateway.id))
            .ok_or_else(|| Reply::error(ResponseType::Forbidden, "not a spoke of this gateway"))?;
        if spoke.status != idreg_core::DeviceStatus::Active {
            return Err(Reply::error(
                ResponseType::Forbidden,
                format!("spoke {} is {}", spoke.id, spoke.status.as_str()),
            ));
        }
        Ok(spoke.status.as_str())
    }

    fn report_spoke_session(
        &self,
        report: &idreg_coap_endpoint::resources::SpokeSessionReport,
    ) -> Result<(), Reply> {
        let gateway = self.my_gateway()?;
        self.spoke_status(&report.spoke)?;
        let now = crate::unix_ms();
        let started = report.started_ms.unwrap_or(now);
        // One record per (gateway, spoke, start): a second report with the
        // same start closes it.
        let id = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (gateway.id.as_str(), report.spoke.as_str(), started).hash(&mut h);
            h.finish() >> 1
        };
        let record = SessionRecord {
            id,
            device: report.spoke.clone(),
            peer: format!(
                "via gateway {}{}",
                gateway.id,
                report
                    .link
                    .as_deref()
                    .map(|l| format!(" ({l})"))
                    .unwrap_or_default()
            ),
            credential: SessionCredential::ViaGateway,
            started_ms: started,
            ended_ms: report.ended_ms,
            bytes_in: 0,
            bytes_out: 0,
            end: report.ended_ms.map(|_| SessionEnd::ClosedByPeer),
            suite: "gateway".into(),
            connection_id: false,
            address_changes: Vec::new(),
            restored: false,
        };
        self.audit
            .try_send(record)
            .map_err(|_| Reply::error(ResponseType::ServiceUnavailable, "audit queue full; retry"))
    }

    fn spokes(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<idreg_coap_endpoint::resources::SpokePage, Reply> {
        use idreg_coap_endpoint::resources::{Spoke, SpokePage};
        let reader = self.creds.authenticator().reader();
        let unavailable = |e: idreg_store::StoreError| {
            Reply::error(ResponseType::ServiceUnavailable, e.to_string())
        };
        let gateway = self.my_gateway()?;
        let filter = idreg_core::DeviceFilter {
            gateway: Some(gateway.id.to_string()),
            ..Default::default()
        };
        let page = reader.list(&filter, after, limit).map_err(unavailable)?;
        let spokes = page
            .devices
            .iter()
            .map(|d| Spoke {
                id: d.id.to_string(),
                status: d.status.as_str(),
                credentials: d.credentials.iter().map(|c| c.kind()).collect(),
                fingerprints: d.fingerprints().map(|f| f.to_string()).collect(),
            })
            .collect();
        Ok(SpokePage {
            spokes,
            more: page.more,
        })
    }

    fn may_observe(&self) -> bool {
        self.observers.load(std::sync::atomic::Ordering::Relaxed) < MAX_OBSERVERS_PER_NODE
    }

    fn start_enrollment(&self, request: &EnrollRequest<'_>) -> Result<(), Reply> {
        let Some(desk) = self.enrollment else {
            return Err(Reply::error(
                ResponseType::NotFound,
                "enrollment is not offered by this node",
            ));
        };
        let answer = self.answer_sink();
        desk.start(
            &self.session.device,
            &self.session.credential,
            request,
            answer,
        )
    }

    fn firmware_manifest(&self) -> Result<Vec<u8>, Reply> {
        Ok(self.firmware.offered(&self.session.device.id)?.cose)
    }

    fn firmware_image(
        &self,
        offset: u64,
        len: usize,
    ) -> Result<idreg_coap_endpoint::resources::ImageWindow, Reply> {
        let release = self.firmware.offered(&self.session.device.id)?;
        self.firmware.image(&release, offset, len)
    }

    fn report_firmware(
        &self,
        state: &idreg_coap_endpoint::resources::FirmwareState,
        later: bool,
    ) -> Result<(), Reply> {
        let answer = later.then(|| self.answer_sink());
        self.firmware.report(&self.session.device.id, state, answer)
    }

    fn credential(&self) -> &'static str {
        credential_of(&self.session.credential).as_str()
    }

    fn status(&self) -> Option<&'static str> {
        match self
            .creds
            .authenticator()
            .reader()
            .get(&self.session.device.id)
        {
            Ok(Some(d)) => Some(d.status.as_str()),
            Ok(None) => None,
            Err(_) => Some(idreg_core::DeviceStatus::Active.as_str()),
        }
    }

    fn revocation_list(&self) -> (u64, u64) {
        // Revocations are final and never leave the list: its version (one
        // per revocation) is also its length.
        let v = self
            .creds
            .authenticator()
            .reader()
            .revocation_list_version()
            .unwrap_or(0);
        (v, v)
    }

    fn device_ca_certificate(&self) -> Option<Vec<u8>> {
        use idreg_core::RegistryView;
        let reader = self.creds.authenticator().reader();
        reader.device_ca().ok().flatten().map(|ca| ca.certificate)
    }
}

impl FrontShard {
    pub fn new(
        index: u16,
        socket: UdpSocket,
        endpoint: Endpoint<RegistryCredentials>,
        shared: ShardShared,
    ) -> Self {
        Self {
            index,
            socket,
            endpoint,
            shared,
            live: HashMap::new(),
            by_device: HashMap::new(),
            observing: Default::default(),
            notified_rl_version: 0,
            closing: HashMap::new(),
            synced: EndpointStats::default(),
            synced_handshaking: 0,
            started: Instant::now(),
            log_budget: LogBudget::default(),
        }
    }

    /// Takes back sessions saved at the last shutdown (their bytes).
    pub fn restore(&mut self, saved: &[u8]) -> usize {
        let n = self
            .endpoint
            .restore_sessions(Instant::now(), crate::unix_ms(), saved, SessionDevice::from_bytes)
            .unwrap_or_else(|e| {
                warn!(shard = self.index, error = %e, "saved sessions unreadable; devices will handshake again");
                0
            });
        self.after_io();
        n
    }

    pub async fn run(mut self, mut commands: mpsc::Receiver<ShardCommand>) {
        let mut batch = RecvBatch::new(RECV_BATCH);
        loop {
            let deadline = self.endpoint.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                readable = self.socket.readable() => {
                    if let Err(e) = readable {
                        warn!(shard = self.index, error = %e, "device front socket failed");
                        return;
                    }
                    self.read_batches(&mut batch);
                }
                command = commands.recv() => match command {
                    None => return,
                    Some(ShardCommand::Stop { save }) => {
                        self.stop(save);
                        return;
                    }
                    Some(c) => self.command(c),
                },
                _ = sleep => self.endpoint.handle_timeout(Instant::now()),
            }
            self.after_io();
        }
    }

    fn read_batches(&mut self, batch: &mut RecvBatch) {
        for _ in 0..BATCHES_PER_WAKE {
            let n = match batch.recv(&self.socket) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    debug!(shard = self.index, error = %e, "receive failed");
                    return;
                }
            };
            let now = Instant::now();
            for i in 0..n {
                let (from, data) = batch.get(i);
                self.datagram(now, from, data, true);
            }
            if n < RECV_BATCH {
                return;
            }
        }
    }

    fn datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8], may_forward: bool) {
        if matches!(data.first(), Some(b) if b >> 6 == 1) {
            // CoAP in the clear: refused, never answered larger than asked.
            self.shared
                .stats
                .plain_coap_refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Some(reply) = crate::plain_coap::refuse_plain_coap(data) {
                send_batch(&self.socket, &[(from, &reply)]);
            }
            return;
        }
        let Some(miss) = self.endpoint.handle(now, from, data) else {
            return;
        };
        let owner = match (&self.shared.directory, miss) {
            (Some(d), Miss::UnknownCid(cid)) => d.shard_of_cid(&cid),
            (Some(d), Miss::UnknownAddress) => d.shard_of_addr(&from),
            (None, _) => None,
        };
        match owner {
            Some(s) if may_forward && s != self.index => {
                let command = ShardCommand::Forwarded {
                    from,
                    data: data.to_vec(),
                };
                // A full queue drops it: UDP may lose it anyway.
                let _ = self.shared.shards[s as usize].try_send(command);
            }
            _ => {}
        }
    }

    fn command(&mut self, command: ShardCommand) {
        match command {
            ShardCommand::EndDevice {
                device,
                proposed_at_ms,
            } => {
                let conns = self.by_device.get(&device).cloned().unwrap_or_default();
                if conns.is_empty() {
                    return;
                }
                let took_ms = crate::unix_ms().saturating_sub(proposed_at_ms);
                for conn in &conns {
                    self.close(*conn, SessionEnd::Revoked);
                    self.shared
                        .stats
                        .revocation_cutoffs
                        .observe(std::time::Duration::from_millis(took_ms));
                }
                if let Some(left_out) = self.log_budget.admit(Instant::now()) {
                    info!(device = %device, sessions = conns.len(), after_ms = took_ms, similar_lines_left_out = left_out, "device cut off: its sessions are closed");
                }
            }
            ShardCommand::RecheckDevice(device) => {
                for conn in self.by_device.get(&device).cloned().unwrap_or_default() {
                    self.recheck(conn);
                }
            }
            ShardCommand::RevocationListChanged => self.notify_revocation_list(),
            ShardCommand::EndClone(conn) => self.close(conn, SessionEnd::Clone),
            ShardCommand::SpokesChanged(gateway) => {
                let conns: Vec<ConnId> = self
                    .by_device
                    .get(&gateway)
                    .into_iter()
                    .flatten()
                    .filter(|c| self.observing.contains(c))
                    .copied()
                    .collect();
                for conn in conns {
                    self.notify(conn, &["gw", "spokes"]);
                }
            }
            ShardCommand::RecheckAll => {
                let all: Vec<ConnId> = self.live.keys().copied().collect();
                for conn in all {
                    self.recheck(conn);
                }
            }
            ShardCommand::Forwarded { from, data } => {
                self.datagram(Instant::now(), from, &data, false)
            }
            ShardCommand::Answer {
                conn,
                audit_id,
                reply,
            } => {
                let now_ms = self.started.elapsed().as_millis() as u64;
                let ours = self
                    .endpoint
                    .session(conn)
                    .is_some_and(|s| s.device.audit_id == audit_id);
                let Some(live) = self.live.get_mut(&conn).filter(|_| ours) else {
                    return; // the session ended; a retried request finds the device
                };
                if let Some(datagram) = live.coap.complete(reply, now_ms) {
                    self.endpoint.send(conn, &datagram);
                }
            }
            ShardCommand::Stop { .. } => unreachable!("handled by the loop"),
        }
    }

    /// Ends the session unless its device is active and still holds the
    /// credential the session authenticated with.
    fn recheck(&mut self, conn: ConnId) {
        let Some(s) = self.endpoint.session(conn) else {
            return;
        };
        if s.device.role.enrollment_only() {
            // Its credential is retired by the enrollment it makes (the
            // answer must still reach it); EST itself checks the registry
            // on every request, and cut-off devices still end (EndDevice).
            return;
        }
        let valid = self
            .endpoint
            .credentials()
            .authenticator()
            .session_still_valid(&s.device.id, &s.credential);
        if !valid {
            self.close(conn, SessionEnd::Revoked);
        }
    }

    fn close(&mut self, conn: ConnId, why: SessionEnd) {
        self.closing.insert(conn, why);
        if !self.endpoint.close(conn, CloseReason::Local) {
            self.closing.remove(&conn);
        }
    }

    fn stop(&mut self, save: Option<oneshot::Sender<Vec<u8>>>) {
        match save {
            Some(reply) => {
                // Enrollment sessions are not kept across a restart.
                let enrolling: Vec<ConnId> = self
                    .endpoint
                    .sessions()
                    .filter(|(_, s)| s.device.role.enrollment_only())
                    .map(|(c, _)| c)
                    .collect();
                for conn in enrolling {
                    self.close(conn, SessionEnd::Shutdown);
                }
                self.after_io();
                let saved = self.endpoint.save_sessions(
                    Instant::now(),
                    crate::unix_ms(),
                    SessionDevice::to_bytes,
                );
                let _ = reply.send(saved);
            }
            None => {
                let all: Vec<ConnId> = self.live.keys().copied().collect();
                for conn in all {
                    self.close(conn, SessionEnd::Shutdown);
                }
                self.after_io();
            }
        }
        // Our share of the gauges goes with us.
        let stats = &self.shared.stats;
        stats
            .sessions_live
            .fetch_sub(self.live.len() as u64, std::sync::atomic::Ordering::Relaxed);
        stats.handshaking.fetch_sub(
            self.synced_handshaking,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Handles the engine's events, sends what it queued, and brings the
    /// shared counters up to date.
    fn after_io(&mut self) {
        while let Some(event) = self.endpoint.poll_event() {
            self.event(event);
        }
        let mut out = Vec::new();
        while let Some(t) = self.endpoint.poll_transmit() {
            out.push(t);
        }
        if !out.is_empty() {
            let batch: Vec<(SocketAddr, &[u8])> =
                out.iter().map(|t| (t.to, t.data.as_slice())).collect();
            send_batch(&self.socket, &batch);
        }
        self.sync_stats();
    }

    fn sync_stats(&mut self) {
        let now = self.endpoint.stats();
        let was = std::mem::replace(&mut self.synced, now);
        let s = &self.shared.stats;
        add(&s.cookies_sent, now.cookies_sent - was.cookies_sent);
        add(&s.handshakes_over_budget, now.over_budget - was.over_budget);
        add(&s.peers_evicted, now.evicted - was.evicted);
        add(
            &s.address_changes,
            now.address_changes - was.address_changes,
        );
        add(
            &s.datagrams_dropped,
            (now.malformed + now.unknown_cid + now.no_peer + now.replayed + now.bad_records)
                - (was.malformed + was.unknown_cid + was.no_peer + was.replayed + was.bad_records),
        );
        let handshaking = self.endpoint.handshake_count() as u64;
        if handshaking != self.synced_handshaking {
            if handshaking > self.synced_handshaking {
                add(&s.handshaking, handshaking - self.synced_handshaking);
            } else {
                s.handshaking.fetch_sub(
                    self.synced_handshaking - handshaking,
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            self.synced_handshaking = handshaking;
        }
    }

    fn audit(&self, record: SessionRecord) {
        if self.shared.audit.try_send(record).is_err() {
            warn!("session audit queue full; a record was dropped");
        }
    }

    fn event(&mut self, event: Event<SessionDevice>) {
        let stats = self.shared.stats.clone();
        match event {
            Event::Established {
                conn,
                addr,
                device,
                credential,
                suite,
                cid,
                restored,
                handshake_time,
            } => {
                if !restored {
                    stats.handshake_times.observe(handshake_time);
                    add(&stats.handshakes_by_suite[suite.index()], 1);
                }
                let live = LiveSession {
                    coap: CoapEndpoint::default(),
                    started_from: addr,
                    address_changes: Vec::new(),
                    restored,
                };
                if let Some(d) = &self.shared.directory {
                    let our_cid = self
                        .endpoint
                        .session(conn)
                        .and_then(|s| s.our_cid().copied());
                    d.insert(self.index, addr, our_cid);
                }
                self.by_device
                    .entry(device.id.clone())
                    .or_default()
                    .push(conn);
                add(&stats.sessions_live, 1);
                if restored {
                    add(&stats.sessions_restored, 1);
                } else {
                    add(&stats.handshakes_ok, 1);
                }
                if let Some(s) = self.endpoint.session(conn) {
                    self.audit(record_of(s, &live, None));
                }
                self.live.insert(conn, live);
                debug!(%addr, device = %device.id, credential = credential.kind(), suite = suite.name(), cid, restored, "session started");
                self.watch_for_clones(conn, addr, &device);
                if device.role
                    == (SessionRole::Device {
                        finishes_rotation: true,
                    })
                {
                    self.finish_rotation(&device.id, &credential);
                }
                // A revocation applied between the handshake's lookup and
                // now would otherwise be missed.
                if !device.role.enrollment_only()
                    && !self
                        .endpoint
                        .credentials()
                        .authenticator()
                        .session_still_valid(&device.id, &credential)
                {
                    self.close(conn, SessionEnd::Revoked);
                }
            }
            Event::Data { conn, data } => self.coap(conn, &data),
            Event::AddressChanged { conn, from, to } => {
                if let Some(d) = &self.shared.directory {
                    d.moved(self.index, from, to);
                }
                if let (Some(live), Some(s)) =
                    (self.live.get_mut(&conn), self.endpoint.session(conn))
                {
                    if live.address_changes.len() == idreg_core::session::MAX_ADDRESS_CHANGES {
                        live.address_changes.remove(0);
                    }
                    live.address_changes.push(AddressChange {
                        at_ms: crate::unix_ms(),
                        peer: to.to_string(),
                    });
                    let record = record_of(s, live, None);
                    info!(device = %s.device.id, %from, %to, "session moved to a new address (Connection ID)");
                    self.audit(record);
                }
            }
            Event::Closed {
                conn,
                reason,
                session,
            } => {
                let why = self.closing.remove(&conn).unwrap_or_else(|| end_of(reason));
                if let Some(d) = &self.shared.directory {
                    d.remove(self.index, session.addr(), session.our_cid().copied());
                }
                self.shared
                    .clones
                    .ended(&session.device.id, self.index, conn);
                if let Some(conns) = self.by_device.get_mut(&session.device.id) {
                    conns.retain(|c| *c != conn);
                    if conns.is_empty() {
                        self.by_device.remove(&session.device.id);
                    }
                }
                if let Some(live) = self.live.remove(&conn) {
                    self.observations_changed(conn, live.coap.observation_count(), 0);
                    stats
                        .sessions_live
                        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    add(&stats.sessions_ended[why.index()], 1);
                    if why == SessionEnd::Evicted {
                        debug!(device = %session.device.id, "session evicted: the table is full");
                    }
                    let record = record_of(&session, &live, Some(why));
                    debug!(device = %session.device.id, end = why.as_str(), "session ended");
                    self.audit(record);
                }
            }
            Event::HandshakeFailed { addr, reason } => {
                match &reason {
                    FailReason::TimedOut => add(&stats.handshakes_timed_out, 1),
                    FailReason::Refused(Refusal::Unavailable(_)) => {
                        add(&stats.handshakes_refused_stale, 1)
                    }
                    _ => {}
                }
                let n = stats.handshake_failed(addr.ip(), &reason);
                // The first few failures of a source are worth a line each;
                // after that only every hundredth, so a flood cannot flood
                // the log too.
                if n <= 3 || n.is_multiple_of(100) {
                    if let Some(left_out) = self.log_budget.admit(Instant::now()) {
                        warn!(peer = %addr, reason = reason.label(), failures_from_source = n, similar_lines_left_out = left_out, "DTLS handshake failed");
                    }
                }
            }
        }
    }

    /// A new session of `device` from `addr`: announced to the peers, and
    /// if the same identity is live from another address here, a clone —
    /// recorded, and ended as the policy says.
    fn watch_for_clones(&mut self, conn: ConnId, addr: SocketAddr, device: &SessionDevice) {
        let new = crate::clone_watch::LiveRef {
            shard: self.index,
            conn,
            ip: addr.ip(),
            session: device.audit_id,
            started_ms: device.started_ms,
        };
        for l in self.shared.clones.started(&device.id, new) {
            if l.shard == self.index {
                self.close(l.conn, SessionEnd::Clone);
            } else {
                let _ =
                    self.shared.shards[l.shard as usize].try_send(ShardCommand::EndClone(l.conn));
            }
        }
    }

    /// The successor of a rotated key was used: the old key is retired
    /// (and its sessions end as the change is applied).
    fn finish_rotation(&self, device: &str, credential: &AuthCredential) {
        let (Some(desk), Ok(id)) = (
            &self.shared.enrollment,
            idreg_core::DeviceId::parse("id", device),
        ) else {
            return;
        };
        let new = match credential {
            AuthCredential::PublicKey { fingerprint, .. } => {
                CredentialRef::Fingerprint(idreg_core::Fingerprint(*fingerprint))
            }
            AuthCredential::Psk { identity } => CredentialRef::PskIdentity(identity.to_vec()),
        };
        desk.finish_rotation(id, new);
    }

    fn coap(&mut self, conn: ConnId, data: &[u8]) {
        let now_ms = self.started.elapsed().as_millis() as u64;
        let Some(session) = self.endpoint.session(conn) else {
            return;
        };
        let ctx = Context::new(session, &self.endpoint, &self.shared, self.index, conn);
        let Some(live) = self.live.get_mut(&conn) else {
            return;
        };
        let observed = live.coap.observation_count();
        let reply = live.coap.handle(data, now_ms, &ctx);
        let observes = live.coap.observation_count();
        if let Some(reply) = reply {
            self.endpoint.send(conn, &reply);
        }
        self.observations_changed(conn, observed, observes);
    }

    /// Keeps the node's observer count and this shard's set of observing
    /// sessions in step with one session's change.
    fn observations_changed(&mut self, conn: ConnId, before: usize, after: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        // Most requests change nothing: no set or counter touched for them.
        if after > before {
            self.shared.observers.fetch_add(after - before, Relaxed);
        } else if before > after {
            self.shared.observers.fetch_sub(before - after, Relaxed);
        } else {
            return;
        }
        if after > 0 {
            self.observing.insert(conn);
        } else {
            self.observing.remove(&conn);
        }
    }

    /// Sends each observer of `/rl` the list at the version this node has
    /// now applied, once per version.
    fn notify_revocation_list(&mut self) {
        let Ok(version) = self
            .endpoint
            .credentials()
            .authenticator()
            .reader()
            .revocation_list_version()
        else {
            return;
        };
        if version == self.notified_rl_version || self.observing.is_empty() {
            self.notified_rl_version = version;
            return;
        }
        self.notified_rl_version = version;
        let conns: Vec<ConnId> = self.observing.iter().copied().collect();
        for conn in conns {
            self.notify(conn, &["rl"]);
        }
    }

    /// Sends the session's observers of `path` its representation now.
    fn notify(&mut self, conn: ConnId, path: &[&str]) {
        let Some(session) = self.endpoint.session(conn) else {
            self.observing.remove(&conn);
            return;
        };
        let ctx = Context::new(session, &self.endpoint, &self.shared, self.index, conn);
        let Some(live) = self.live.get_mut(&conn) else {
            return;
        };
        let before = live.coap.observation_count();
        let out = live.coap.notify(path, &ctx);
        let after = live.coap.observation_count();
        for datagram in out {
            self.endpoint.send(conn, &datagram);
        }
        self.observations_changed(conn, before, after);
    }
}
