//! `idreg serve`: open the store, check the KEK, start raft, serve gRPC, and
//! shut down cleanly on SIGTERM/SIGINT.

use anyhow::Context;
use idreg_api::access_policy::Listener;
use idreg_api::{
    CallerAuth, ClusterService, EnrollmentService, FrontStatsSource, OversizeStatus,
    RegistryService, SessionsService,
};
use idreg_coap::{DeviceFront, FrontConfig};
use idreg_core::Kek;
use idreg_raft::grpc_network::PeerDialer;
use idreg_raft::{NodeConfig, RegistryNode};
use idreg_store::Store;
use tracing::{info, warn};

use crate::cli::ServeArgs;
use crate::serve_config::{FrontSettings, ServeConfig};

/// Name of the development KEK generated into the data directory.
const DEV_KEK_FILE: &str = "dev-kek.hex";

/// How long a stopping node waits for its open streams to finish before it
/// closes them: a client that stopped reading holds its stream open against
/// flow control, and a graceful server would wait for it for ever. Well
/// inside the pod's 60 s termination grace period, after the preStop hook.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Logs on stderr: text for people, or with `--log-format json` one JSON
/// object per line for log shippers (no colours, fields as keys).
fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IDREG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// The KEK from `--kek-file`, or in development a generated one kept in the
/// data directory (with a warning: it sits beside the data it protects).
fn load_kek(config: &ServeConfig) -> anyhow::Result<Kek> {
    let (path, generated) = match &config.kek_file {
        Some(p) => (p.clone(), false),
        None => {
            let p = config.data_dir.join(DEV_KEK_FILE);
            let generated = !p.exists();
            if generated {
                crate::kek_file::generate(&p)?;
            }
            (p, generated)
        }
    };
    let kek = crate::kek_file::read(&path)?;
    if config.kek_file.is_none() {
        warn!(
            "!!! DEVELOPMENT MODE: no --kek-file given; using the key-encryption key in {} ({}). \
             It lies beside the data it protects. In production mount a secret and pass --kek-file. !!!",
            path.display(),
            if generated { "just generated" } else { "generated earlier" }
        );
    }
    Ok(kek)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT: shutting down"),
    }
}

/// `idreg serve`: its settings resolved, then the node on a runtime of
/// `--runtime-threads` workers.
pub fn main(args: ServeArgs) -> std::process::ExitCode {
    init_tracing(args.log_format == crate::cli::LogFormat::Json);
    let config = match ServeConfig::resolve(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    idreg::run_command_on(Some(config.runtime_threads), run(config))
}

async fn run(config: ServeConfig) -> anyhow::Result<()> {
    info!(threads = config.runtime_threads, "runtime");
    for d in &config.deprecations {
        warn!("{d}");
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let kek = load_kek(&config)?;
    let options = idreg_store::OpenOptions {
        rocksdb_statistics: config.metrics.is_some(),
        wal_limit_bytes: config.wal_limit_bytes,
    };
    let store = Store::open_with(&config.data_dir, &kek, options)
        .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))?
        .with_history_keep(config.watch_history);
    info!(kek = %kek.id_hex(), data_dir = %config.data_dir.display(), "store open");

    let tls = crate::serve_tls::resolve(&config)?;
    let dialer = PeerDialer {
        local_ip: Some(config.peer_addr.ip()).filter(|ip| !ip.is_unspecified()),
        tls: tls.peer_dialer.clone(),
    };
    // Ordinal 0 founds a cluster only if no other pod already runs one (its
    // disk may have been replaced under a live cluster).
    let mut bootstrap = config.bootstrap;
    let had_history = store_has_history(&store);
    if let Some(pod) = &config.pod {
        if bootstrap && !had_history && crate::k8s::cluster_elsewhere(&dialer, pod).await {
            info!("a cluster already runs on the other pods: joining it");
            bootstrap = false;
        }
    }
    // Listen first: the other founding members' votes and entries must reach
    // this node while it starts.
    let listener = tokio::net::TcpListener::bind(config.grpc_addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.grpc_addr))?;
    let peer_listener = tokio::net::TcpListener::bind(config.peer_addr)
        .await
        .with_context(|| format!("cannot listen on --peer-addr {}", config.peer_addr))?;
    let advertise_addr = advertised(&config.advertise_addr, peer_listener.local_addr()?);
    let node_config = NodeConfig {
        node_id: config.node_id,
        advertise_addr: advertise_addr.clone(),
        snapshot_every: config.snapshot_every,
        snapshot_keep_logs: config.snapshot_keep_logs,
        initial_members: config.initial_members.clone(),
        bootstrap,
        snapshot_max_bytes: config.snapshot_max_bytes,
        ..Default::default()
    };
    let node = RegistryNode::start(
        NodeConfig {
            dialer: dialer.clone(),
            ..node_config
        },
        store,
    )
    .await
    .context("cannot start the raft node")?;
    info!(
        node_id = config.node_id,
        members = config.initial_members.len().max(1),
        advertise = %advertise_addr,
        "raft node started"
    );

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    // Readiness (the Kubernetes gRPC probe asks for ""): serving once this
    // node is a member, knows a leader and has applied what it holds.
    report_readiness(&node, &health_reporter).await;
    {
        let (node, reporter) = (node.clone(), health_reporter.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                report_readiness(&node, &reporter).await;
            }
        });
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(idreg_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("reflection service")?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(idreg_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("reflection service")?;

    // The device CA every node issues under: the leader makes one if the
    // registry has none.
    tokio::spawn(idreg_api::device_ca_founding::ensure_device_ca(
        node.clone(),
        kek.clone(),
    ));

    let front = match &config.front {
        Some(settings) => Some(start_front(settings, &config, &node, kek.clone()).await?),
        None => {
            info!("device front off (--coap-addr off)");
            None
        }
    };
    let stats_source = front.as_ref().map(|f| front_stats_source(f));

    info!(
        client = %listener.local_addr()?,
        peer = %peer_listener.local_addr()?,
        tls = tls.client.is_some(),
        "gRPC listening"
    );
    if let Some(pod) = config.pod.clone() {
        // Every pod but a freshly founding ordinal 0 makes sure the cluster
        // counts it as a member (it may have left in its preStop hook).
        if !bootstrap || had_history {
            tokio::spawn(crate::k8s::join(node.clone(), pod));
        }
    }

    // One stop for everything: the node's own, which also ends its
    // long-lived streams so the servers below can drain.
    let stop_rx = node.stopping();
    let stopping = node.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        stopping.begin_stopping();
    });
    // Request metrics are counted only when /metrics is on: with it off the
    // layer is left out, not kept counting for nobody.
    let mut metrics_registry = prometheus_client::registry::Registry::default();
    let grpc_metrics = idreg_api::request_metrics::RequestMetrics::new(
        &mut metrics_registry,
        &[
            idreg_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ],
    );
    let grpc_metrics = config.metrics.is_some().then_some(grpc_metrics);
    if let Some(listen) = config.metrics {
        start_metrics(
            listen,
            metrics_registry,
            &node,
            front.as_ref().map(|f| f.stats_source()),
            stop_rx.clone(),
        )
        .await?;
    }
    // Closes every client and peer connection at once, when the drain
    // limit passes with streams still open.
    let (force_close, closing) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let (client_auth, peer_auth) = match &tls.client {
        Some(_) => (
            CallerAuth::new(Listener::Client),
            CallerAuth::new(Listener::Peer),
        ),
        None => (
            CallerAuth::insecure(Listener::Client),
            CallerAuth::insecure(Listener::Peer),
        ),
    };
    let limits = &config.api_limits;
    let mut client_server =
        tonic::transport::Server::builder().max_concurrent_streams(limits.max_concurrent_streams);
    let mut peer_server = tonic::transport::Server::builder();
    if let (Some(client_tls), Some(peer_tls)) = (tls.client.clone(), tls.peer.clone()) {
        client_server = client_server.tls_config(client_tls).context("client TLS")?;
        peer_server = peer_server.tls_config(peer_tls).context("peer TLS")?;
    }
    let cluster_service = ClusterService::new(node.clone(), kek.clone(), limits);
    idreg_api::firmware_upload::spawn_upload_sweeper(node.clone());
    let client_api = client_server
        .layer(tower::util::option_layer(grpc_metrics))
        .layer(OversizeStatus)
        .layer(client_auth)
        .add_service(health_service.clone())
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(RegistryService::new(node.clone(), kek.clone(), limits).into_server())
        .add_service(EnrollmentService::new(node.clone(), kek.clone()).into_server())
        .add_service(idreg_api::firmware_service::FirmwareService::new(node.clone()).into_server())
        .add_service(
            SessionsService::new(node.store().session_log(), stats_source)
                .into_server(limits.max_message_bytes),
        )
        .add_service(cluster_service.clone().into_server())
        .serve_with_incoming_shutdown(
            closable_incoming(listener, &closing),
            stopped(stop_rx.clone()),
        );
    let peer_api = peer_server
        .layer(peer_auth)
        .add_service(health_service.clone())
        .add_service(node.raft_service().into_server())
        .add_service(cluster_service.into_server())
        .serve_with_incoming_shutdown(
            closable_incoming(peer_listener, &closing),
            stopped(stop_rx.clone()),
        );
    let health_api = async {
        match config.health_addr {
            Some(addr) => {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on --health-addr {addr}"))?;
                info!(addr = %l.local_addr()?, "plaintext health listening");
                tonic::transport::Server::builder()
                    .add_service(health_service)
                    .serve_with_incoming_shutdown(
                        closable_incoming(l, &closing),
                        stopped(stop_rx.clone()),
                    )
                    .await
                    .context("health server")
            }
            None => Ok(()),
        }
    };
    let servers = async {
        tokio::try_join!(
            async { client_api.await.context("gRPC client listener") },
            async { peer_api.await.context("gRPC peer listener") },
            health_api,
        )
    };
    let drain_limit = async {
        stopped(stop_rx.clone()).await;
        tokio::time::sleep(DRAIN_LIMIT).await;
    };
    let mut servers = std::pin::pin!(servers);
    tokio::select! {
        served = &mut servers => {
            served?;
        }
        () = drain_limit => {
            warn!(
                limit = ?DRAIN_LIMIT,
                "streams still open after the drain limit (a client that stopped reading?); closing them"
            );
            let _ = force_close.send(true);
            servers.await?;
        }
    }
    if let Some(front) = front {
        front.shutdown().await;
    }
    node.shutdown().await;
    // Memtables to SST files, so a restart need not replay the WAL.
    if let Err(e) = node.store().flush() {
        warn!("flush on shutdown: {e}");
    }
    info!("stopped");
    Ok(())
}

async fn report_readiness(node: &RegistryNode, reporter: &tonic_health::server::HealthReporter) {
    use tonic_health::ServingStatus;
    let status = if node.view().ready() {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    reporter.set_service_status("", status).await;
    reporter
        .set_service_status("idreg.v1.DeviceRegistry", status)
        .await;
}

/// The peer address this node tells the cluster: `--advertise-addr` (or
/// the peer address it came from), with port 0 — "any free port" — replaced
/// by the port the peer listener got.
fn advertised(configured: &str, peer_bound: std::net::SocketAddr) -> String {
    match configured.rsplit_once(':') {
        Some((host, "0")) => format!("{host}:{}", peer_bound.port()),
        _ => configured.to_owned(),
    }
}

/// Whether the data directory already holds a raft history.
fn store_has_history(store: &Store) -> bool {
    store.reader().applied_index().unwrap_or(0) > 0
}

/// A listener's connections, each closed when `close` turns true.
fn closable_incoming(
    listener: tokio::net::TcpListener,
    close: &tokio::sync::watch::Receiver<bool>,
) -> impl tokio_stream::Stream<Item = std::io::Result<crate::closable_io::ClosableIo>> {
    use tokio_stream::StreamExt;
    let close = close.clone();
    tonic::transport::server::TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .map(move |accepted| {
            accepted.map(|s| crate::closable_io::ClosableIo::new(s, close.clone()))
        })
}

/// Starts the device front; in dev mode (no --coap-cert/--coap-key) with a
/// self-signed server certificate generated into the data directory.
async fn start_front(
    settings: &FrontSettings,
    config: &ServeConfig,
    node: &RegistryNode,
    kek: Kek,
) -> anyhow::Result<DeviceFront> {
    let (server_cert, server_key) = match &settings.cert_and_key {
        Some((c, k)) => (c.clone(), k.clone()),
        None => {
            let (c, k, created) = idreg_coap::server_identity::dev_pair(&config.data_dir)?;
            warn!(
                cert = %c.display(),
                "DEVELOPMENT MODE: no --coap-cert/--coap-key; the DTLS server presents a self-signed certificate{}",
                if created { " (just generated)" } else { "" }
            );
            (c, k)
        }
    };
    let front_config = FrontConfig {
        addr: settings.addr,
        shards: settings.shards,
        server_cert,
        server_key,
        max_sessions: settings.max_sessions,
        handshake_timeout: settings.handshake_timeout,
        idle_timeout: settings.idle_timeout,
        audit_retention: settings.audit_retention,
        // Node ids are small (1..=7 in a cluster); the CID keeps one byte.
        node_id: config.node_id as u8,
        max_auth_staleness: settings.max_auth_staleness,
        session_file: settings.session_file.clone(),
        on_clone: settings.on_clone,
        device_cert_days: settings.device_cert_days,
        rotation_grace: settings.rotation_grace,
    };
    let fresh: idreg_coap::RegistryFreshness = {
        let (node, max) = (node.clone(), settings.max_auth_staleness);
        std::sync::Arc::new(move || node.registry_fresh_within(max))
    };
    let writer: idreg_coap::RegistryWriter = {
        let node = node.clone();
        std::sync::Arc::new(move |command, by| {
            let node = node.clone();
            Box::pin(async move { node.propose(command, by).await.map_err(|e| e.to_string()) })
        })
    };
    let herald = node.session_herald().clone();
    let announce: std::sync::Arc<dyn idreg_core::SessionAnnouncer> =
        std::sync::Arc::new(herald.clone());
    let front = DeviceFront::start(
        front_config,
        node.store(),
        kek,
        fresh,
        Some(writer),
        Some(announce),
    )
    .await
    .context("cannot start the device front")?;
    let listener: std::sync::Arc<dyn idreg_core::PeerSessions> = front.clone_watch();
    herald.listen(&listener);
    Ok(front)
}

/// `/metrics` on `listen`. An address the operator chose must be bound;
/// the default one only warns when it is taken (another node on the host).
async fn start_metrics(
    listen: crate::serve_config::MetricsListen,
    mut registry: prometheus_client::registry::Registry,
    node: &idreg_raft::RegistryNode,
    front: Option<crate::node_metrics::FrontStats>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listener = match tokio::net::TcpListener::bind(listen.addr).await {
        Ok(l) => l,
        Err(e) if !listen.chosen => {
            tracing::warn!(
                addr = %listen.addr,
                "metrics off: the default address is taken ({e}); set --metrics-addr"
            );
            return Ok(());
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot listen on --metrics-addr {}", listen.addr))
        }
    };
    node.write_metrics().register(&mut registry);
    registry.register_collector(Box::new(crate::node_metrics::NodeMetrics::start(
        node.clone(),
        front,
    )));
    info!(addr = %listener.local_addr()?, "metrics listening");
    tokio::spawn(crate::metrics_http::serve(
        listener,
        std::sync::Arc::new(registry),
        stop,
    ));
    Ok(())
}

fn front_stats_source(front: &DeviceFront) -> FrontStatsSource {
    let stats = front.stats_source();
    let clones = front.clone_watch();
    let addr = front.addr().to_string();
    let shards = front.shard_count() as u32;
    std::sync::Arc::new(move || {
        let s = stats();
        idreg_proto::v1::FrontStats {
            peers: s.handshaking + s.sessions_live,
            handshaking: s.handshaking,
            sessions_live: s.sessions_live,
            handshakes_ok: s.handshakes_ok,
            handshakes_failed: s.handshakes_failed,
            handshakes_timed_out: s.handshakes_timed_out,
            datagrams_dropped: s.datagrams_dropped,
            plain_coap_refused: s.plain_coap_refused,
            peers_evicted: s.peers_evicted,
            top_failing_sources: s
                .top_failing_sources
                .iter()
                .map(|(a, n)| idreg_proto::v1::FailingSource {
                    address: a.to_string(),
                    failed_handshakes: *n,
                })
                .collect(),
            failures_from_other_sources: s.failures_from_other_sources,
            enabled: true,
            psk_addr: addr.clone(),
            cert_addr: addr.clone(),
            cookies_sent: s.cookies_sent,
            handshakes_over_budget: s.handshakes_over_budget,
            address_changes: s.address_changes,
            sessions_restored: s.sessions_restored,
            handshakes_refused_stale: s.handshakes_refused_stale,
            shards,
            clones_detected: clones.detected(),
            on_clone: clones.default_policy().as_str().into(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_is_advertised_as_the_port_bound() {
        let bound: std::net::SocketAddr = "127.0.0.3:41234".parse().unwrap();
        assert_eq!(advertised("127.0.0.3:0", bound), "127.0.0.3:41234");
        assert_eq!(advertised("node-2.peers:7001", bound), "node-2.peers:7001");
    }
}
