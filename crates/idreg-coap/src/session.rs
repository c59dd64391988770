//! One peer from its first ClientHello to its end: the DTLS handshake under a
//! timeout, then CoAP over the session until the device leaves, idles out, is
//! revoked or evicted. Every authenticated session is written to the audit log
//! at its start and at its end.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use idreg_core::{DeviceStatus, SessionEnd, SessionRecord};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};
use webrtc_dtls::conn::DTLSConn;

use crate::endpoint::CoapEndpoint;
use crate::live_sessions::EndSignal;
use crate::peer_conn::{ByteCounters, PeerConn};
use crate::resources::ResourceContext;
use crate::shared::{CredentialFamily, FrontShared};
use crate::udp_listener::PeerEvent;

pub struct SessionSpawn {
    pub shared: Arc<FrontShared>,
    pub family: CredentialFamily,
    pub peer: SocketAddr,
    pub generation: u64,
    pub conn: Arc<PeerConn>,
    pub counters: Arc<ByteCounters>,
    pub end: EndSignal,
    pub end_rx: watch::Receiver<Option<SessionEnd>>,
    pub events: mpsc::UnboundedSender<PeerEvent>,
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Tells the demultiplexer the peer is gone and unregisters the live session
/// however the session task ends, panics included, so no peer entry leaks.
struct PeerGuard {
    shared: Arc<FrontShared>,
    events: mpsc::UnboundedSender<PeerEvent>,
    peer: SocketAddr,
    generation: u64,
    live: Option<(String, u64)>,
}

impl Drop for PeerGuard {
    fn drop(&mut self) {
        if let Some((device, id)) = self.live.take() {
            self.shared.live.unregister(&device, id);
            self.shared
                .stats
                .sessions_live
                .fetch_sub(1, Ordering::Relaxed);
        }
        let _ = self
            .events
            .send(PeerEvent::Gone(self.peer, self.generation));
    }
}

/// Time allowed for sending close_notify before the session is dropped anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

pub async fn run_session(s: SessionSpawn) {
    let SessionSpawn {
        shared,
        family,
        peer,
        generation,
        conn,
        counters,
        end,
        mut end_rx,
        events,
    } = s;
    let mut guard = PeerGuard {
        shared: shared.clone(),
        events: events.clone(),
        peer,
        generation,
        live: None,
    };
    let handshake = DTLSConn::new(conn, shared.dtls_config(family), false, None);
    let outcome = tokio::select! {
        r = tokio::time::timeout(shared.config.handshake_timeout, handshake) => Some(r),
        _ = end_rx.changed() => None,
    };
    let dtls = match outcome {
        Some(Ok(Ok(c))) => c,
        Some(Ok(Err(e))) => {
            let n = shared.stats.handshake_failed(peer.ip());
            // The first few failures of a source are worth a line each; after
            // that only every hundredth, so a flood cannot flood the log too.
            if n <= 3 || n % 100 == 0 {
                warn!(%peer, error = %e, failures_from_source = n, "DTLS handshake failed");
            }
            return;
        }
        Some(Err(_)) => {
            shared
                .stats
                .handshakes_timed_out
                .fetch_add(1, Ordering::Relaxed);
            shared.stats.handshake_failed(peer.ip());
            debug!(%peer, "DTLS handshake timed out");
            return;
        }
        None => {
            // Evicted or shut down while handshaking.
            return;
        }
    };

    let Some(device) = identify(&shared, family, &dtls).await else {
        shared.stats.handshake_failed(peer.ip());
        let _ = dtls.close().await;
        return;
    };
    shared.stats.handshakes_ok.fetch_add(1, Ordering::Relaxed);
    let _ = events.send(PeerEvent::Established(peer, generation));

    let mut record = SessionRecord {
        id: rand::random::<u64>() >> 1,
        device: device.clone(),
        peer: peer.to_string(),
        credential: family.session_credential(),
        started_ms: unix_ms(),
        ended_ms: None,
        bytes_in: 0,
        bytes_out: 0,
        end: None,
    };
    shared.live.register(&device, record.id, end.clone());
    shared.stats.sessions_live.fetch_add(1, Ordering::Relaxed);
    guard.live = Some((device.clone(), record.id));
    // A revocation applied after the handshake's lookup but before the
    // registration above would otherwise be missed.
    if !shared.auth.still_active(&device) {
        end.send_replace(Some(SessionEnd::Revoked));
    }
    if let Err(e) = shared.audit.record(&record) {
        warn!(error = %e, "session audit write failed");
    }
    info!(%peer, device = %device, credential = family.session_credential().as_str(), "session started");

    let why = serve(&shared, &dtls, &device, family, &mut end_rx).await;
    if why != SessionEnd::ClosedByPeer {
        let _ = tokio::time::timeout(CLOSE_GRACE, dtls.close()).await;
    }
    drop(dtls);

    record.ended_ms = Some(unix_ms());
    record.bytes_in = counters.bytes_in.load(Ordering::Relaxed);
    record.bytes_out = counters.bytes_out.load(Ordering::Relaxed);
    record.end = Some(why);
    if let Err(e) = shared.audit.record(&record) {
        warn!(error = %e, "session audit write failed");
    }
    info!(%peer, device = %device, end = why.as_str(), duration_ms = record.duration_ms(0), "session ended");
    drop(guard);
}

/// The device the finished handshake authenticated.
async fn identify(
    shared: &FrontShared,
    family: CredentialFamily,
    dtls: &DTLSConn,
) -> Option<String> {
    let state = dtls.connection_state().await;
    let device = match family {
        // The handshake proved the key; only the device's status is re-read.
        CredentialFamily::Psk => shared.auth.psk_device(&state.identity_hint),
        CredentialFamily::Certificate => shared.auth.certificate(state.peer_certificates.first()?),
    };
    device.ok().map(|d| d.id.to_string())
}

struct SessionContext<'a> {
    shared: &'a FrontShared,
    device: &'a str,
    credential: &'static str,
}

impl ResourceContext for SessionContext<'_> {
    fn device_id(&self) -> &str {
        self.device
    }

    fn credential(&self) -> &'static str {
        self.credential
    }

    fn status(&self) -> Option<&'static str> {
        match self.shared.auth.reader().get(self.device) {
            Ok(Some(d)) => Some(d.status.as_str()),
            Ok(None) => None,
            Err(_) => Some(DeviceStatus::Active.as_str()),
        }
    }

    fn revocation_list(&self) -> (u64, u64) {
        // Revocations are final and never leave the list: its version (one per
        // revocation) is also its length.
        let v = self
            .shared
            .auth
            .reader()
            .revocation_list_version()
            .unwrap_or(0);
        (v, v)
    }
}

async fn serve(
    shared: &FrontShared,
    dtls: &DTLSConn,
    device: &str,
    family: CredentialFamily,
    end_rx: &mut watch::Receiver<Option<SessionEnd>>,
) -> SessionEnd {
    let ctx = SessionContext {
        shared,
        device,
        credential: family.session_credential().as_str(),
    };
    let mut endpoint = CoapEndpoint::default();
    let started = Instant::now();
    let mut buf = vec![0u8; 2048];
    loop {
        if let Some(why) = *end_rx.borrow() {
            return why;
        }
        let read = tokio::select! {
            biased;
            _ = end_rx.changed() => continue,
            r = tokio::time::timeout(shared.config.idle_timeout, dtls.read(&mut buf, None)) => r,
        };
        let n = match read {
            Err(_) => return SessionEnd::Idle,
            Ok(Err(e)) => {
                debug!(error = %e, "session read ended");
                return match e {
                    webrtc_dtls::Error::ErrAlertFatalOrClose
                    | webrtc_dtls::Error::ErrConnClosed => SessionEnd::ClosedByPeer,
                    _ => SessionEnd::Error,
                };
            }
            Ok(Ok(n)) => n,
        };
        // Checked again after the read: a revocation that raced the datagram
        // must not be answered.
        if let Some(why) = *end_rx.borrow() {
            return why;
        }
        let now = started.elapsed().as_millis() as u64;
        if let Some(out) = endpoint.handle(&buf[..n], now, &ctx) {
            if dtls.write(&out, None).await.is_err() {
                return SessionEnd::Error;
            }
        }
    }
}
