//! Resolving `idreg serve`'s settings: flag > environment > TOML file > default.
//! (clap already puts the environment into the flags.)

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::cli::ServeArgs;

/// The TOML file: every key optional, unknown keys refused (a typo should not be
/// silently ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    grpc_addr: Option<String>,
    peer_addr: Option<String>,
    health_addr: Option<String>,
    metrics_addr: Option<String>,
    pki_dir: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_ca_file: Option<PathBuf>,
    peer_cert_file: Option<PathBuf>,
    peer_key_file: Option<PathBuf>,
    peer_ca_file: Option<PathBuf>,
    snapshot_max_bytes: Option<u64>,
    wal_limit_mb: Option<u64>,
    coap_addr: Option<String>,
    coap_cert_addr: Option<String>,
    coap_cert: Option<PathBuf>,
    coap_key: Option<PathBuf>,
    coap_max_peers: Option<usize>,
    coap_shards: Option<usize>,
    coap_session_file: Option<String>,
    max_auth_staleness: Option<String>,
    coap_handshake_timeout_ms: Option<u64>,
    coap_idle_timeout_secs: Option<u64>,
    device_cert_days: Option<u32>,
    rotation_grace: Option<String>,
    on_clone: Option<String>,
    session_retention_hours: Option<u64>,
    kek_file: Option<PathBuf>,
    node_id: Option<u64>,
    snapshot_every: Option<u64>,
    snapshot_keep_logs: Option<u64>,
    initial_cluster: Option<String>,
    initial_cluster_state: Option<String>,
    advertise_addr: Option<String>,
    watch_history: Option<u64>,
    grpc_max_message_bytes: Option<usize>,
    grpc_max_concurrent_streams: Option<u32>,
    max_watchers: Option<usize>,
    max_label_selectors: Option<usize>,
    max_snapshot_builds: Option<usize>,
    runtime_threads: Option<usize>,
}

/// The device front's settings; `None` in [`ServeConfig::front`] when
/// `--coap-addr off`.
#[derive(Debug, Clone)]
pub struct FrontSettings {
    pub addr: SocketAddr,
    pub shards: usize,
    /// Both or neither; neither means the dev pair in the data directory.
    pub cert_and_key: Option<(PathBuf, PathBuf)>,
    pub max_sessions: usize,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub audit_retention: Duration,
    pub max_auth_staleness: Duration,
    /// `None`: sessions end at shutdown instead of being saved.
    pub session_file: Option<PathBuf>,
    pub device_cert_days: u32,
    pub rotation_grace: Duration,
    pub on_clone: idreg_core::ClonePolicy,
}

/// The certificate files of a node.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
    pub peer_cert: PathBuf,
    pub peer_key: PathBuf,
    pub peer_ca: PathBuf,
}

impl TlsFiles {
    /// Node `node_id`'s files in a directory made by `idreg pki init`: its
    /// node certificate on both listeners, the two CAs.
    pub fn from_pki_dir(pki: &crate::pki::PkiDir, node_id: u64) -> Self {
        let node = crate::pki::PkiDir::node_name(node_id);
        Self {
            cert: pki.cert(&node),
            key: pki.key(&node),
            client_ca: pki.cert(crate::pki::CLIENT_CA),
            peer_cert: pki.cert(&node),
            peer_key: pki.key(&node),
            peer_ca: pki.cert(crate::pki::PEER_CA),
        }
    }
}

/// How the gRPC listeners are secured.
#[derive(Debug, Clone)]
pub enum Security {
    Tls(TlsFiles),
    /// No certificate flags on a single node: a PKI generated in DATA_DIR/pki.
    DevPki,
    /// `--insecure`: plaintext, every caller is admin.
    Insecure,
}

/// Where `/metrics` is served, and whether the operator chose it (a chosen
/// address that cannot be bound stops the node; the default only warns).
#[derive(Debug, Clone, Copy)]
pub struct MetricsListen {
    pub addr: SocketAddr,
    pub chosen: bool,
}

/// The default metrics port, on --grpc-addr's host when that is loopback
/// (so several nodes on 127.0.0.x do not collide), else on 127.0.0.1.
pub const DEFAULT_METRICS_PORT: u16 = 9464;

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub grpc_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    pub health_addr: Option<SocketAddr>,
    pub metrics: Option<MetricsListen>,
    pub security: Security,
    pub snapshot_max_bytes: u64,
    /// `--wal-limit-mb`, in bytes.
    pub wal_limit_bytes: u64,
    pub front: Option<FrontSettings>,
    pub kek_file: Option<PathBuf>,
    pub node_id: u64,
    pub snapshot_every: u64,
    pub snapshot_keep_logs: u64,
    /// Founding members (empty: a cluster of one).
    pub initial_members: BTreeMap<u64, String>,
    /// Whether an empty node may found the cluster (`--initial-cluster-state new`).
    pub bootstrap: bool,
    /// Where other nodes reach this node's gRPC port.
    pub advertise_addr: String,
    pub watch_history: u64,
    /// Set with --k8s: the pod this node runs as.
    pub pod: Option<crate::k8s::PodIdentity>,
    pub api_limits: idreg_api::ApiLimits,
    /// Worker threads of the async runtime.
    pub runtime_threads: usize,
    /// Settings that still work but will go: warned about at start.
    pub deprecations: Vec<String>,
}

/// More runtime threads than this is a typo, not a machine.
const MAX_RUNTIME_THREADS: usize = 1024;

fn addr(name: &str, text: &str) -> anyhow::Result<SocketAddr> {
    text.parse()
        .with_context(|| format!("--{name} {text:?} is not a HOST:PORT socket address"))
}

fn positive<T: PartialOrd + Default + Copy>(name: &str, v: T) -> anyhow::Result<T> {
    if v <= T::default() {
        bail!("--{name} must be at least 1");
    }
    Ok(v)
}

/// The back office's bounds: each flag, else the file, else the default.
fn api_limits(args: &ServeArgs, file: &FileConfig) -> anyhow::Result<idreg_api::ApiLimits> {
    let d = idreg_api::ApiLimits::default();
    Ok(idreg_api::ApiLimits {
        max_message_bytes: positive(
            "grpc-max-message-bytes",
            args.grpc_max_message_bytes
                .or(file.grpc_max_message_bytes)
                .unwrap_or(d.max_message_bytes),
        )?,
        max_concurrent_streams: positive(
            "grpc-max-concurrent-streams",
            args.grpc_max_concurrent_streams
                .or(file.grpc_max_concurrent_streams)
                .unwrap_or(d.max_concurrent_streams),
        )?,
        max_watchers: positive(
            "max-watchers",
            args.max_watchers
                .or(file.max_watchers)
                .unwrap_or(d.max_watchers),
        )?,
        max_label_selectors: positive(
            "max-label-selectors",
            args.max_label_selectors
                .or(file.max_label_selectors)
                .unwrap_or(d.max_label_selectors),
        )?,
        max_snapshot_builds: positive(
            "max-snapshot-builds",
            args.max_snapshot_builds
                .or(file.max_snapshot_builds)
                .unwrap_or(d.max_snapshot_builds),
        )?,
    })
}

fn front_settings(
    args: &ServeArgs,
    file: &FileConfig,
    data_dir: &std::path::Path,
) -> anyhow::Result<Option<FrontSettings>> {
    let text = args
        .coap_addr
        .clone()
        .or(file.coap_addr.clone())
        .unwrap_or("0.0.0.0:5684".into());
    if text == "off" {
        return Ok(None);
    }
    let addr = addr("coap-addr", &text)?;
    let cert_and_key = match (
        args.coap_cert.clone().or(file.coap_cert.clone()),
        args.coap_key.clone().or(file.coap_key.clone()),
    ) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => bail!("--coap-cert and --coap-key go together: give both or neither"),
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let session_file = match args
        .coap_session_file
        .clone()
        .or(file.coap_session_file.clone())
    {
        Some(t) if t == "off" => None,
        Some(t) => Some(PathBuf::from(t)),
        None => Some(data_dir.join("front-sessions.sealed")),
    };
    let staleness = args
        .max_auth_staleness
        .clone()
        .or(file.max_auth_staleness.clone())
        .unwrap_or("30s".into());
    Ok(Some(FrontSettings {
        addr,
        shards: positive(
            "coap-shards",
            args.coap_shards.or(file.coap_shards).unwrap_or(cpus.min(8)),
        )?,
        cert_and_key,
        max_sessions: positive(
            "coap-max-peers",
            args.coap_max_peers
                .or(file.coap_max_peers)
                .unwrap_or(150_000),
        )?,
        handshake_timeout: Duration::from_millis(positive(
            "coap-handshake-timeout-ms",
            args.coap_handshake_timeout_ms
                .or(file.coap_handshake_timeout_ms)
                .unwrap_or(10_000),
        )?),
        idle_timeout: Duration::from_secs(positive(
            "coap-idle-timeout-secs",
            args.coap_idle_timeout_secs
                .or(file.coap_idle_timeout_secs)
                .unwrap_or(300),
        )?),
        audit_retention: Duration::from_secs(
            3600 * positive(
                "session-retention-hours",
                args.session_retention_hours
                    .or(file.session_retention_hours)
                    .unwrap_or(720),
            )?,
        ),
        max_auth_staleness: crate::time_arg::parse_duration("max-auth-staleness", &staleness)?,
        session_file,
        device_cert_days: positive(
            "device-cert-days",
            args.device_cert_days
                .or(file.device_cert_days)
                .unwrap_or(idreg_coap::FrontConfig::DEFAULT_DEVICE_CERT_DAYS),
        )?,
        on_clone: match args.on_clone.clone().or(file.on_clone.clone()) {
            None => Default::default(),
            Some(text) => idreg_core::ClonePolicy::parse(&text)
                .with_context(|| format!("--on-clone {text:?}: alert, refuse-new or end-both"))?,
        },
        rotation_grace: match args.rotation_grace.clone().or(file.rotation_grace.clone()) {
            Some(text) => crate::time_arg::parse_duration("rotation-grace", &text)?,
            None => idreg_coap::FrontConfig::DEFAULT_ROTATION_GRACE,
        },
    }))
}

/// The TLS files from --pki-dir and the single-file flags (which win).
fn tls_files(
    args: &ServeArgs,
    file: &FileConfig,
    node_id: u64,
) -> anyhow::Result<Option<TlsFiles>> {
    let pick = |flag: &Option<PathBuf>, f: &Option<PathBuf>| flag.clone().or(f.clone());
    let pki = pick(&args.pki_dir, &file.pki_dir)
        .map(|dir| TlsFiles::from_pki_dir(&crate::pki::PkiDir(dir), node_id));
    let from_pki = |field: fn(&TlsFiles) -> &PathBuf| pki.as_ref().map(|t| field(t).clone());
    let peer_cert = pick(&args.peer_cert_file, &file.peer_cert_file).or(from_pki(|t| &t.peer_cert));
    let peer_key = pick(&args.peer_key_file, &file.peer_key_file).or(from_pki(|t| &t.peer_key));
    let fields = [
        (
            "cert-file",
            pick(&args.cert_file, &file.cert_file).or(peer_cert.clone()),
        ),
        (
            "key-file",
            pick(&args.key_file, &file.key_file).or(peer_key.clone()),
        ),
        (
            "client-ca-file",
            pick(&args.client_ca_file, &file.client_ca_file).or(from_pki(|t| &t.client_ca)),
        ),
        ("peer-cert-file", peer_cert),
        ("peer-key-file", peer_key),
        (
            "peer-ca-file",
            pick(&args.peer_ca_file, &file.peer_ca_file).or(from_pki(|t| &t.peer_ca)),
        ),
    ];
    if fields.iter().all(|(_, v)| v.is_none()) {
        return Ok(None);
    }
    let missing: Vec<&str> = fields
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(n, _)| *n)
        .collect();
    if !missing.is_empty() {
        bail!(
            "TLS settings incomplete: also give --{} (or --pki-dir)",
            missing.join(", --")
        );
    }
    for (name, path) in &fields {
        let path = path.as_ref().expect("checked");
        if !path.exists() {
            bail!("--{name} {}: no such file", path.display());
        }
    }
    let [cert, key, client_ca, peer_cert, peer_key, peer_ca] =
        fields.map(|(_, v)| v.expect("checked"));
    Ok(Some(TlsFiles {
        cert,
        key,
        client_ca,
        peer_cert,
        peer_key,
        peer_ca,
    }))
}

impl ServeConfig {
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("config file {} is not valid", path.display()))?
            }
            None => FileConfig::default(),
        };
        let node_id = args.node_id.or(file.node_id).unwrap_or(1);
        if node_id == 0 {
            bail!("--node-id must be at least 1");
        }
        let snapshot_every = args
            .snapshot_every
            .or(file.snapshot_every)
            .unwrap_or(20_000);
        if snapshot_every == 0 {
            bail!("--snapshot-every must be at least 1");
        }
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("./data"));
        let front = front_settings(&args, &file, &data_dir)?;
        let mut deprecations = Vec::new();
        if let Some(c) = args.coap_cert_addr.clone().or(file.coap_cert_addr.clone()) {
            deprecations.push(format!(
                "--coap-cert-addr {c} is deprecated and ignored: certificate and raw-public-key \
                 devices now connect to --coap-addr, beside PSK devices"
            ));
        }
        let api_limits = api_limits(&args, &file)?;
        let runtime_threads = positive(
            "runtime-threads",
            args.runtime_threads
                .or(file.runtime_threads)
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        )?;
        if runtime_threads > MAX_RUNTIME_THREADS {
            bail!("--runtime-threads must be at most {MAX_RUNTIME_THREADS}");
        }
        let initial_members = match args
            .initial_cluster
            .clone()
            .or(file.initial_cluster.clone())
        {
            Some(text) => crate::initial_cluster::parse(&text)?,
            None => BTreeMap::new(),
        };
        if !initial_members.is_empty() && !initial_members.contains_key(&node_id) {
            bail!("--node-id {node_id} is not one of the members in --initial-cluster");
        }
        let bootstrap = match args
            .initial_cluster_state
            .clone()
            .or(file.initial_cluster_state.clone())
            .as_deref()
        {
            None | Some("new") => true,
            Some("existing") => false,
            Some(other) => bail!("--initial-cluster-state {other:?}: use new or existing"),
        };
        let kek_file = args.kek_file.clone().or(file.kek_file.clone());
        if (initial_members.len() > 1 || !bootstrap) && kek_file.is_none() {
            bail!(
                "the nodes of a cluster must share one key-encryption key: \
                 pass the same --kek-file to every node"
            );
        }
        let grpc_addr = addr(
            "grpc-addr",
            &args
                .grpc_addr
                .clone()
                .or(file.grpc_addr.clone())
                .unwrap_or("127.0.0.1:50051".into()),
        )?;
        let peer_addr = match args.peer_addr.clone().or(file.peer_addr.clone()) {
            Some(t) => addr("peer-addr", &t)?,
            None => SocketAddr::new(grpc_addr.ip(), 50052),
        };
        if peer_addr == grpc_addr && peer_addr.port() != 0 {
            bail!("--peer-addr must differ from --grpc-addr");
        }
        let health_addr = match args.health_addr.clone().or(file.health_addr.clone()) {
            Some(t) => Some(addr("health-addr", &t)?),
            None => None,
        };
        let metrics = match args.metrics_addr.clone().or(file.metrics_addr.clone()) {
            Some(t) if t == "off" => None,
            Some(t) => Some(MetricsListen {
                addr: addr("metrics-addr", &t)?,
                chosen: true,
            }),
            None => Some(MetricsListen {
                addr: SocketAddr::new(
                    if grpc_addr.ip().is_loopback() {
                        grpc_addr.ip()
                    } else {
                        std::net::Ipv4Addr::LOCALHOST.into()
                    },
                    DEFAULT_METRICS_PORT,
                ),
                chosen: false,
            }),
        };
        let advertise_addr = match args.advertise_addr.clone().or(file.advertise_addr.clone()) {
            Some(a) => {
                crate::initial_cluster::host_port(&a).context("--advertise-addr")?;
                a
            }
            None => initial_members
                .get(&node_id)
                .cloned()
                .unwrap_or_else(|| peer_addr.to_string()),
        };
        let pod = if args.k8s {
            let pod = crate::k8s::PodIdentity::from_env(peer_addr.port())?;
            if args.node_id.is_some_and(|n| n != pod.node_id()) {
                bail!("--k8s takes the node id from the pod ordinal; drop --node-id");
            }
            if !initial_members.is_empty() {
                bail!("--k8s finds its peers itself; drop --initial-cluster");
            }
            if kek_file.is_none() {
                bail!("--k8s needs --kek-file (the Secret every pod mounts)");
            }
            Some(pod)
        } else {
            None
        };
        let node_id = pod.as_ref().map(|p| p.node_id()).unwrap_or(node_id);
        let advertise_addr = pod.as_ref().map(|p| p.addr()).unwrap_or(advertise_addr);
        let bootstrap = pod.as_ref().map(|p| p.ordinal == 0).unwrap_or(bootstrap);
        let clustered = initial_members.len() > 1 || !bootstrap || pod.is_some();
        let security = match (args.insecure, tls_files(&args, &file, node_id)?) {
            (true, Some(_)) => bail!("--insecure and certificate flags exclude each other"),
            (true, None) => {
                let open: Vec<String> = [Some(grpc_addr), Some(peer_addr), health_addr]
                    .into_iter()
                    .flatten()
                    .filter(|a| !a.ip().is_loopback())
                    .map(|a| a.to_string())
                    .collect();
                if !open.is_empty() {
                    bail!(
                        "--insecure serves plaintext with no roles: it is refused unless every \
                         gRPC listener is on loopback (not: {})",
                        open.join(", ")
                    );
                }
                Security::Insecure
            }
            (false, Some(files)) => Security::Tls(files),
            (false, None) if clustered => bail!(
                "the nodes of a cluster authenticate each other with certificates: \
                 make them with `idreg pki init` and pass --pki-dir (or the --cert-file/--peer-* flags)"
            ),
            (false, None) => Security::DevPki,
        };
        let snapshot_max_bytes = positive(
            "snapshot-max-bytes",
            args.snapshot_max_bytes
                .or(file.snapshot_max_bytes)
                .unwrap_or(idreg_raft::snapshot_receiver::DEFAULT_MAX_SNAPSHOT_BYTES),
        )?;
        let wal_limit_mb = positive(
            "wal-limit-mb",
            args.wal_limit_mb
                .or(file.wal_limit_mb)
                .unwrap_or(idreg_store::DEFAULT_WAL_LIMIT_MB),
        )?;
        let wal_limit_bytes = wal_limit_mb
            .checked_mul(1 << 20)
            .context("--wal-limit-mb is too large")?;
        let watch_history = args.watch_history.or(file.watch_history).unwrap_or(100_000);
        if watch_history == 0 {
            bail!("--watch-history must be at least 1");
        }
        Ok(Self {
            data_dir,
            grpc_addr,
            peer_addr,
            health_addr,
            metrics,
            security,
            snapshot_max_bytes,
            wal_limit_bytes,
            front,
            kek_file,
            node_id,
            snapshot_every,
            snapshot_keep_logs: args
                .snapshot_keep_logs
                .or(file.snapshot_keep_logs)
                .unwrap_or(1000),
            initial_members,
            bootstrap,
            advertise_addr,
            watch_history,
            pod,
            api_limits,
            runtime_threads,
            deprecations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("idreg.toml");
        std::fs::write(
            &path,
            "grpc_addr = \"127.0.0.1:6000\"\nnode_id = 3\nruntime_threads = 3\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            node_id: Some(5),
            ..Default::default()
        };
        let c = ServeConfig::resolve(args).unwrap();
        assert_eq!(c.grpc_addr.port(), 6000);
        assert_eq!(c.node_id, 5);
        assert_eq!(c.runtime_threads, 3);
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!(
            ServeConfig::resolve(ServeArgs::default())
                .unwrap()
                .runtime_threads,
            cpus
        );
        for bad in [0, 5000] {
            let e = ServeConfig::resolve(ServeArgs {
                runtime_threads: Some(bad),
                ..Default::default()
            })
            .unwrap_err();
            assert!(e.to_string().contains("--runtime-threads"), "{e}");
        }
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.wal_limit_bytes, 256 << 20);
        for (bad, says) in [(0, "at least 1"), (u64::MAX, "too large")] {
            let e = ServeConfig::resolve(ServeArgs {
                wal_limit_mb: Some(bad),
                ..Default::default()
            })
            .unwrap_err();
            assert!(format!("{e:#}").contains(says), "{e:#}");
        }
        let front = c.front.unwrap();
        assert_eq!(front.addr.port(), 5684);
        assert_eq!(front.max_auth_staleness, Duration::from_secs(30));
        assert_eq!(
            front.session_file,
            Some(PathBuf::from("./data/front-sessions.sealed"))
        );
        let deprecated = ServeConfig::resolve(ServeArgs {
            coap_cert_addr: Some("0.0.0.0:5685".into()),
            coap_session_file: Some("off".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(deprecated.deprecations[0].contains("--coap-cert-addr"));
        assert_eq!(deprecated.front.unwrap().session_file, None);
        let off = ServeConfig::resolve(ServeArgs {
            coap_addr: Some("off".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(off.front.is_none());
    }

    #[test]
    fn typos_and_bad_addresses_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("idreg.toml");
        std::fs::write(&path, "grpc_adr = \"x\"\n").unwrap();
        let e = ServeConfig::resolve(ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("grpc_adr"), "{e:#}");
        let e = ServeConfig::resolve(ServeArgs {
            grpc_addr: Some("nowhere".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("grpc-addr"));
        let e = ServeConfig::resolve(ServeArgs {
            coap_cert: Some("cert.pem".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("--coap-key"), "{e}");
    }

    #[test]
    fn cluster_settings_are_checked() {
        let cluster = |node, kek: bool, state: Option<&str>| {
            ServeConfig::resolve(ServeArgs {
                node_id: Some(node),
                initial_cluster: Some("1=127.0.0.1:7001,2=127.0.0.2:7002".into()),
                initial_cluster_state: state.map(str::to_owned),
                kek_file: kek.then(|| PathBuf::from("kek")),
                insecure: true,
                ..Default::default()
            })
        };
        let c = cluster(2, true, None).unwrap();
        assert_eq!(c.advertise_addr, "127.0.0.2:7002");
        assert!(c.bootstrap);
        assert!(!cluster(2, true, Some("existing")).unwrap().bootstrap);
        let e = cluster(3, true, None).unwrap_err().to_string();
        assert!(e.contains("--node-id 3"), "{e}");
        let e = cluster(1, false, None).unwrap_err().to_string();
        assert!(e.contains("--kek-file"), "{e}");
    }

    #[test]
    fn security_defaults_and_refusals() {
        let single = ServeConfig::resolve(ServeArgs::default()).unwrap();
        assert!(matches!(single.security, Security::DevPki));
        assert_eq!(single.peer_addr.port(), 50052);
        let cluster = ServeConfig::resolve(ServeArgs {
            node_id: Some(1),
            initial_cluster: Some("1=127.0.0.1:7001,2=127.0.0.2:7002".into()),
            kek_file: Some("kek".into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(cluster.contains("--pki-dir"), "{cluster}");
        let open = ServeConfig::resolve(ServeArgs {
            insecure: true,
            grpc_addr: Some("0.0.0.0:50051".into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(open.contains("loopback"), "{open}");
        let partial = ServeConfig::resolve(ServeArgs {
            cert_file: Some("c.pem".into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(partial.contains("--key-file"), "{partial}");
    }
}
