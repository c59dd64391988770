//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use idreg::client_args::{ClientArgs, OutputFormat};

#[derive(Parser, Debug)]
#[command(
    name = "idreg",
    version,
    about = "Replicated device-identity registry for IoT fleets"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Commands,
}

#[derive(Subcommand, Debug)]
pub enum Commands {
    /// Run an idreg node.
    Serve(Box<ServeArgs>),
    /// Register, look up, list, update, revoke and delete devices.
    Device {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// The session audit of a node's device front: who connected, from where,
    /// for how long.
    Session {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: SessionCommand,
    },
    /// The cluster: members, leader, lag; adding and removing nodes; snapshots.
    Cluster {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Enrollment groups: which devices may enroll over EST-coaps with no
    /// operator (manufacturer certificates or bootstrap PSKs), and what they
    /// become.
    EnrollmentGroup {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// Firmware updates: the vendors trusted to sign manifests.
    Firmware {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: FirmwareCommand,
    },
    /// A tenant's policies: what the device front does when one of its
    /// devices is live from two addresses at once.
    Tenant {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// The signed revocation list: export it for gateways and air-gapped
    /// sites, and check one offline.
    Rl {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: RlCommand,
    },
    /// The device CA that enrolling devices get their certificates from.
    Ca {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: CaCommand,
    },
    /// The cluster's certificates: CAs, node certificates, client
    /// certificates with roles.
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Create a group with one attestation: --ca (devices whose certificate
    /// chains to this manufacturer CA) or --bootstrap (devices registered
    /// with `device add ID --bootstrap-psk-file F --enrollment-group NAME`).
    Add {
        name: String,
        /// PEM manufacturer CA certificate.
        #[arg(
            long,
            conflicts_with = "bootstrap",
            required_unless_present = "bootstrap"
        )]
        ca: Option<PathBuf>,
        #[arg(long)]
        bootstrap: bool,
        /// The device id made from a manufacturer certificate: {cn},
        /// {subject-serial}, {serial} (hex), {fingerprint} (16 hex digits).
        #[arg(long, default_value = "{cn}", conflicts_with = "bootstrap")]
        id_template: String,
        #[arg(long)]
        tenant: Option<String>,
        /// key=value; repeatable.
        #[arg(long = "label")]
        labels: Vec<String>,
        #[arg(long)]
        gateway: Option<String>,
        /// Most devices the group enrolls.
        #[arg(long)]
        max_devices: Option<u64>,
        /// When the group stops enrolling: RFC 3339 or a duration from now
        /// (e.g. 30d, 12h).
        #[arg(long)]
        expires: Option<String>,
    },
    List,
    Show {
        name: String,
    },
    Enable {
        name: String,
    },
    /// Stop enrolling through the group (enrolled devices stay).
    Disable {
        name: String,
    },
    Delete {
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum RlCommand {
    /// Write the signed list (COSE_Sign1 over CBOR) to FILE.
    Export {
        #[arg(long)]
        out: PathBuf,
        /// Only the revocations after this list version (a delta).
        #[arg(long)]
        since: Option<u64>,
    },
    /// Print the list's signing key (PEM), for `rl verify --key`.
    Key,
    /// Check a signed list offline against the signing key and print what
    /// it says (no node needed).
    Verify {
        file: PathBuf,
        /// The signing key, PEM (`idreg rl key > rl.pub.pem`).
        #[arg(long)]
        key: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum CaCommand {
    /// Print the device CA's certificate (PEM), or its details with -o json.
    Show {
        /// Read through the leader.
        #[arg(long)]
        linearizable: bool,
    },
    /// Replace the device CA with your own: a P-256 CA certificate and its
    /// key (sealed with the KEK before it is replicated). Devices enrolled
    /// under the old CA keep their certificates until they expire. (Not
    /// `--cert/--key`: those are the caller's own client certificate.)
    Import {
        /// PEM CA certificate (basicConstraints CA:TRUE, P-256 key).
        #[arg(long)]
        certificate: PathBuf,
        /// Its PEM private key (PKCS#8 or SEC1).
        #[arg(long)]
        private_key: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum PkiCommand {
    /// Make a client CA, a peer CA, a certificate per node and an admin
    /// client certificate in a new directory.
    Init {
        /// The directory to create (it must not hold a PKI yet).
        #[arg(long)]
        out: PathBuf,
        /// A node and the host names / addresses its certificate is for:
        /// ID=HOST[,HOST…]; repeat per node.
        #[arg(long = "node", required = true)]
        nodes: Vec<String>,
    },
    /// Issue a back-office client certificate: CN = NAME, with a role.
    Client {
        name: String,
        #[arg(long, value_parser = ["reader", "operator", "admin"])]
        role: String,
        /// The PKI directory holding client-ca.key [default: ./data/pki].
        #[arg(long, default_value = "data/pki")]
        pki_dir: PathBuf,
        /// Where to write NAME.crt and NAME.key [default: --pki-dir].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Issue a node certificate (for a node about to be added).
    Node {
        /// ID=HOST[,HOST…]
        node: String,
        /// The PKI directory holding peer-ca.key [default: ./data/pki].
        #[arg(long, default_value = "data/pki")]
        pki_dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Members, leader, term, log and applied index, each member's lag.
    Status {
        /// Only the answering node's view (no replication lag from the leader).
        #[arg(long)]
        local: bool,
    },
    /// Add a node (as a learner; promoted to voter once it has caught up).
    AddNode {
        id: u64,
        /// The node's gRPC address as the other nodes reach it (HOST:PORT).
        addr: String,
        /// Keep it a learner: it replicates but does not vote.
        #[arg(long)]
        learner: bool,
    },
    /// Remove a node from the cluster.
    RemoveNode { id: u64 },
    /// Remove the node at --endpoint from the cluster (a pod's preStop hook).
    Leave {
        /// As a StatefulSet pod's preStop: speak for this pod's own node,
        /// with its node certificate (IDREG_PKI_DIR, node id from the ordinal
        /// in HOSTNAME) on its own peer port (the port of IDREG_PEER_ADDR).
        #[arg(long)]
        k8s: bool,
    },
    /// Build a snapshot on the node now and purge the log behind it; or save
    /// it to a file, or restore a saved one into an empty data directory.
    Snapshot {
        #[command(subcommand)]
        action: Option<SnapshotAction>,
    },
}

impl ClusterCommand {
    /// Whether the command needs the caller's client credentials: not a
    /// restore (no server) nor a pod leaving as its node.
    pub fn needs_client_credentials(&self) -> bool {
        !matches!(
            self,
            ClusterCommand::Snapshot {
                action: Some(SnapshotAction::Restore { .. })
            } | ClusterCommand::Leave { k8s: true }
        )
    }
}

#[derive(Subcommand, Debug)]
pub enum SnapshotAction {
    /// Build a snapshot on the node and write it to FILE (a backup).
    Save { file: PathBuf },
    /// Load FILE into the empty data directory of a stopped node; then start
    /// that node alone (`idreg serve --data-dir DIR`) and add the others.
    Restore {
        file: PathBuf,
        #[arg(long)]
        data_dir: PathBuf,
        /// The KEK of the cluster that made the backup: it checks the
        /// backup's MAC and opens its sealed secrets.
        #[arg(long)]
        kek_file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum FirmwareCommand {
    /// The vendors whose signed manifests are accepted.
    #[command(subcommand)]
    Signer(SignerCommand),
    /// Signed manifests.
    #[command(subcommand)]
    Manifest(ManifestCommand),
    /// Upload a release: a signed manifest and its image (admin role). The
    /// signature, the image's size and its SHA-256 are checked before
    /// anything is stored; the image is visible only once whole.
    Upload {
        #[arg(long)]
        manifest: PathBuf,
        #[arg(long)]
        image: PathBuf,
    },
    /// The stored releases.
    #[command(subcommand)]
    Release(ReleaseCommand),
    /// Offering a release to devices.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Devices running matching versions, from the per-version index.
    Report {
        /// A version or a comparison: 1.4.2, '<1.4.2', '>=2.0.0'; all if absent.
        #[arg(long)]
        version: Option<String>,
        #[arg(long)]
        class: Option<String>,
        /// Devices to list at most (counts per version are always whole).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Counts per version only.
        #[arg(long)]
        counts: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ReleaseCommand {
    /// List releases (with --staged, uploads under way too).
    List {
        #[arg(long)]
        staged: bool,
    },
    /// Delete a release and its image (admin role); not while a rollout offers it.
    Remove {
        version: String,
        #[arg(long)]
        class: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum RolloutCommand {
    /// Offer a release to the devices of its class (label idreg.io/class)
    /// that match every --label, PERCENT of them (operator role). Replaces
    /// the release's rollout if it has one.
    Create {
        version: String,
        #[arg(long)]
        class: String,
        /// key=value, repeatable.
        #[arg(long = "label")]
        labels: Vec<String>,
        #[arg(long, default_value_t = 100)]
        percent: u32,
        /// Create it paused.
        #[arg(long)]
        paused: bool,
    },
    Pause {
        version: String,
        #[arg(long)]
        class: String,
    },
    Resume {
        version: String,
        #[arg(long)]
        class: String,
    },
    Remove {
        version: String,
        #[arg(long)]
        class: String,
    },
    List,
    /// Targeted, downloading, installed and failed devices.
    Status {
        version: String,
        #[arg(long)]
        class: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ManifestCommand {
    /// Check a signed manifest (COSE_Sign1) against the registered signers,
    /// and an image against it; nothing is stored (operator role).
    Check {
        manifest: PathBuf,
        #[arg(long)]
        image: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum SignerCommand {
    /// Trust a vendor's P-256 key (admin role).
    Add {
        name: String,
        /// PEM SubjectPublicKeyInfo (`openssl pkey -pubout`).
        #[arg(long)]
        public_key: PathBuf,
    },
    /// List the trusted signers with their key fingerprints.
    List,
    /// Stop trusting a signer (admin role).
    Remove { name: String },
}

#[derive(Subcommand, Debug)]
pub enum TenantCommand {
    /// Set a tenant's policy (operator role).
    Set {
        tenant: String,
        /// When one of the tenant's devices is live from two addresses at
        /// once: alert, refuse-new (end the second session), end-both; or
        /// default (the node's --on-clone). A device's own label
        /// idreg.io/on-clone wins.
        #[arg(long, value_parser = ["alert", "refuse-new", "end-both", "default"])]
        on_clone: String,
    },
    /// Show a tenant's policy.
    Show {
        tenant: String,
        /// Read through the leader (see every acknowledged write).
        #[arg(long)]
        linearizable: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum SessionCommand {
    /// List the node's recorded sessions, oldest first.
    List {
        /// Only this device's sessions.
        #[arg(long)]
        device: Option<String>,
        /// Sessions that started at or after this time: RFC 3339 UTC
        /// (2026-11-22T10:00:00Z) or an age (90s, 15m, 2h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Sessions that started before this time (same forms as --since).
        #[arg(long)]
        until: Option<String>,
        /// Stop after this many sessions.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Device-front counters: peers, handshakes, failures by source.
    Stats,
    /// Cloned credentials this node has seen: one device identity live from
    /// two addresses at once, on this node or with another (kept as long as
    /// the session audit).
    Clones {
        /// Only this device's sightings.
        #[arg(long)]
        device: Option<String>,
        /// Stop after this many sightings.
        #[arg(long)]
        limit: Option<u64>,
    },
}

/// Flags of `idreg serve`. Each may also come from the environment (`IDREG_…`)
/// or from the TOML file given with `--config`; a flag beats the environment,
/// which beats the file, which beats the default.
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (keys as the flags, with _ for -).
    #[arg(long, env = "IDREG_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where RocksDB and snapshots live [default: ./data].
    #[arg(long, env = "IDREG_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Back-office gRPC listen address (TLS, client certificates)
    /// [default: 127.0.0.1:50051].
    #[arg(long, env = "IDREG_GRPC_ADDR")]
    pub grpc_addr: Option<String>,
    /// Node-to-node listen address (raft; TLS with node certificates only)
    /// [default: --grpc-addr's host, port 50052].
    #[arg(long, env = "IDREG_PEER_ADDR")]
    pub peer_addr: Option<String>,
    /// Plaintext gRPC health listener for probes that cannot present a
    /// certificate (Kubernetes' gRPC probe); serves health only [default: none].
    #[arg(long, env = "IDREG_HEALTH_ADDR")]
    pub health_addr: Option<String>,
    /// HTTP address of `/metrics` (Prometheus text format), or "off"
    /// [default: --grpc-addr's host if loopback, else 127.0.0.1; port 9464].
    #[arg(long, env = "IDREG_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// A directory made by `idreg pki init`: node-N.crt/.key, peer-ca.crt and
    /// client-ca.crt. Without it or the files below, a single node makes a
    /// development PKI in DATA_DIR/pki.
    #[arg(long, env = "IDREG_PKI_DIR")]
    pub pki_dir: Option<PathBuf>,
    /// Certificate the client listener presents [default: the node certificate].
    #[arg(long, env = "IDREG_CERT_FILE")]
    pub cert_file: Option<PathBuf>,
    /// Key of --cert-file.
    #[arg(long, env = "IDREG_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// CA (bundle) whose client certificates the client listener accepts.
    #[arg(long, env = "IDREG_CLIENT_CA_FILE")]
    pub client_ca_file: Option<PathBuf>,
    /// This node's certificate (urn:idreg:node:N) for the peer listener and
    /// for connecting to peers.
    #[arg(long, env = "IDREG_PEER_CERT_FILE")]
    pub peer_cert_file: Option<PathBuf>,
    /// Key of --peer-cert-file.
    #[arg(long, env = "IDREG_PEER_KEY_FILE")]
    pub peer_key_file: Option<PathBuf>,
    /// CA that issued every node's certificate.
    #[arg(long, env = "IDREG_PEER_CA_FILE")]
    pub peer_ca_file: Option<PathBuf>,
    /// Development only: plaintext gRPC and no roles. Refused unless every
    /// gRPC listener is on loopback.
    #[arg(long, env = "IDREG_INSECURE")]
    pub insecure: bool,
    /// Largest snapshot accepted from a leader, in bytes [default: 64 GiB].
    #[arg(long, env = "IDREG_SNAPSHOT_MAX_BYTES")]
    pub snapshot_max_bytes: Option<u64>,
    /// Write-ahead log kept live, in MiB: past it RocksDB writes out the
    /// memtables that hold the oldest file, which bounds what a restart
    /// replays [default: 256].
    #[arg(long, env = "IDREG_WAL_LIMIT_MB")]
    pub wal_limit_mb: Option<u64>,
    /// Device front: UDP address for CoAP over DTLS, or "off". PSK,
    /// certificate and raw-public-key devices all use it [default: 0.0.0.0:5684].
    #[arg(long, env = "IDREG_COAP_ADDR")]
    pub coap_addr: Option<String>,
    /// Deprecated: certificate devices now use --coap-addr too. Accepted (and
    /// ignored, with a warning) for one release.
    #[arg(long, env = "IDREG_COAP_CERT_ADDR")]
    pub coap_cert_addr: Option<String>,
    /// PEM certificate (chain) the DTLS server presents; with --coap-key.
    /// Without both, a self-signed one is generated into the data directory.
    #[arg(long, env = "IDREG_COAP_CERT")]
    pub coap_cert: Option<PathBuf>,
    /// PEM P-256 private key of --coap-cert.
    #[arg(long, env = "IDREG_COAP_KEY")]
    pub coap_key: Option<PathBuf>,
    /// Established device sessions on this node [default: 150000].
    #[arg(long, env = "IDREG_COAP_MAX_PEERS")]
    pub coap_max_peers: Option<usize>,
    /// Sockets (SO_REUSEPORT) serving --coap-addr, each with its own loop
    /// [default: the number of CPUs, at most 8].
    #[arg(long, env = "IDREG_COAP_SHARDS")]
    pub coap_shards: Option<usize>,
    /// A DTLS handshake not finished within this many milliseconds is dropped
    /// [default: 10000].
    #[arg(long, env = "IDREG_COAP_HANDSHAKE_TIMEOUT_MS")]
    pub coap_handshake_timeout_ms: Option<u64>,
    /// A device session silent for this many seconds is closed [default: 300].
    #[arg(long, env = "IDREG_COAP_IDLE_TIMEOUT_SECS")]
    pub coap_idle_timeout_secs: Option<u64>,
    /// Validity in days of the certificates devices get at enrollment
    /// (EST-coaps) [default: 90].
    #[arg(long, env = "IDREG_DEVICE_CERT_DAYS")]
    pub device_cert_days: Option<u32>,
    /// After a re-enrollment with a new key, how long the old key stays
    /// valid if the new one is not used (it is retired at the new key's
    /// first use) [default: 24h].
    #[arg(long, env = "IDREG_ROTATION_GRACE")]
    pub rotation_grace: Option<String>,
    /// When one device identity is live from two addresses at once on this
    /// node: alert (log and list it: `idreg session clones`), refuse-new
    /// (end the second session) or end-both [default: alert].
    #[arg(long, env = "IDREG_ON_CLONE")]
    pub on_clone: Option<String>,
    /// Where live device sessions are saved (sealed with the KEK) on shutdown
    /// and taken back at start, so devices need no new handshake after a
    /// restart; "off" ends them instead [default: DATA_DIR/front-sessions.sealed].
    #[arg(long, env = "IDREG_COAP_SESSION_FILE")]
    pub coap_session_file: Option<String>,
    /// Refuse new device handshakes while this node has not heard from a raft
    /// leader for this long (seconds, or 500ms, 30s, 2m): its registry may
    /// miss revocations [default: 30s].
    #[arg(long, env = "IDREG_MAX_AUTH_STALENESS")]
    pub max_auth_staleness: Option<String>,
    /// Session audit records are kept this many hours [default: 720].
    #[arg(long, env = "IDREG_SESSION_RETENTION_HOURS")]
    pub session_retention_hours: Option<u64>,
    /// File holding the 32-byte key-encryption key (raw, hex or base64). Without
    /// it a development key is generated into the data directory.
    #[arg(long, env = "IDREG_KEK_FILE")]
    pub kek_file: Option<PathBuf>,
    /// This node's raft id [default: 1].
    #[arg(long, env = "IDREG_NODE_ID")]
    pub node_id: Option<u64>,
    /// Build a snapshot after this many log entries [default: 20000].
    #[arg(long, env = "IDREG_SNAPSHOT_EVERY")]
    pub snapshot_every: Option<u64>,
    /// Log entries kept behind a snapshot, for lagging followers [default: 1000].
    #[arg(long, env = "IDREG_SNAPSHOT_KEEP_LOGS")]
    pub snapshot_keep_logs: Option<u64>,
    /// Founding members of a cluster: ID=HOST:PORT,… (this node among them).
    /// Without it the node is a cluster of one.
    #[arg(long, env = "IDREG_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// "new": an empty node founds the cluster from --initial-cluster.
    /// "existing": an empty node waits to be added (`idreg cluster add-node`)
    /// [default: new].
    #[arg(long, env = "IDREG_INITIAL_CLUSTER_STATE", value_parser = ["new", "existing"])]
    pub initial_cluster_state: Option<String>,
    /// The address other nodes reach this node's gRPC port at [default: this
    /// node's entry in --initial-cluster, else --grpc-addr].
    #[arg(long, env = "IDREG_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,
    /// Run as a StatefulSet pod: node id from the ordinal in HOSTNAME, peers
    /// from the headless Service IDREG_K8S_PEER_SERVICE in POD_NAMESPACE;
    /// ordinal 0 founds the cluster, the others ask to be added.
    #[arg(long, env = "IDREG_K8S")]
    pub k8s: bool,
    /// Log lines as text, or json (one object per line, for log shippers).
    #[arg(long, env = "IDREG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Revisions of change history kept for WatchDevices [default: 100000].
    #[arg(long, env = "IDREG_WATCH_HISTORY")]
    pub watch_history: Option<u64>,
    /// Largest gRPC request message accepted on the client listener, in
    /// bytes; larger ones get RESOURCE_EXHAUSTED [default: 4194304].
    #[arg(long, env = "IDREG_GRPC_MAX_MESSAGE_BYTES")]
    pub grpc_max_message_bytes: Option<usize>,
    /// HTTP/2 streams one client connection may have open at once (clients
    /// queue past it) [default: 200].
    #[arg(long, env = "IDREG_GRPC_MAX_CONCURRENT_STREAMS")]
    pub grpc_max_concurrent_streams: Option<u32>,
    /// Live WatchDevices streams on this node; more get RESOURCE_EXHAUSTED
    /// [default: 1000].
    #[arg(long, env = "IDREG_MAX_WATCHERS")]
    pub max_watchers: Option<usize>,
    /// Label selectors in one ListDevices; more get RESOURCE_EXHAUSTED
    /// [default: 16].
    #[arg(long, env = "IDREG_MAX_LABEL_SELECTORS")]
    pub max_label_selectors: Option<usize>,
    /// Snapshot builds and backup downloads in flight on this node; more get
    /// RESOURCE_EXHAUSTED [default: 1].
    #[arg(long, env = "IDREG_MAX_SNAPSHOT_BUILDS")]
    pub max_snapshot_builds: Option<usize>,
    /// Worker threads of the node's async runtime (gRPC, raft, the device
    /// front's shards). Fewer than the CPUs suits a machine shared with
    /// other nodes or their clients: fewer threads hand each other less
    /// work [default: the CPUs this process may use].
    #[arg(long, env = "IDREG_RUNTIME_THREADS")]
    pub runtime_threads: Option<usize>,
}

#[derive(Args, Debug, Default)]
pub struct CredentialArgs {
    /// PSK identity (text) of a pre-shared-key credential.
    #[arg(long)]
    pub psk_identity: Option<String>,
    /// The PSK as text (16–64 bytes).
    #[arg(long, conflicts_with = "psk_hex")]
    pub psk: Option<String>,
    /// The PSK as hex digits.
    #[arg(long)]
    pub psk_hex: Option<String>,
    /// Read the PSK (as text; one trailing newline dropped) from FILE, so it
    /// never sits in `ps` or shell history.
    #[arg(long)]
    pub psk_file: Option<PathBuf>,
    /// Read the PSK (as text; one trailing newline dropped) from standard input.
    #[arg(long)]
    pub psk_stdin: bool,
    /// PEM file with a P-256 public key (SubjectPublicKeyInfo). Repeatable.
    #[arg(long = "public-key")]
    pub public_keys: Vec<PathBuf>,
    /// PEM file with a certificate whose key is P-256. Repeatable. (Not
    /// --cert: that is the caller's own client certificate.)
    #[arg(long = "certificate")]
    pub certs: Vec<PathBuf>,
    /// Read a one-time bootstrap PSK (text, 16–64 bytes) from FILE: the
    /// device may use it only to enroll over EST-coaps, once. Its identity
    /// is --psk-identity, or the device id. Needs --enrollment-group.
    #[arg(long, requires = "enrollment_group")]
    pub bootstrap_psk_file: Option<PathBuf>,
    /// The bootstrap enrollment group the bootstrap PSK enrolls through.
    #[arg(long, requires = "bootstrap_psk_file")]
    pub enrollment_group: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum DeviceCommand {
    /// Register a device.
    Add {
        id: String,
        #[arg(long)]
        tenant: Option<String>,
        /// key=value; repeatable.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// The hub that may act for this device.
        #[arg(long)]
        gateway: Option<String>,
        /// Make it a gateway (hub): it may list its spokes on the device
        /// front (the label idreg.io/role=gateway).
        #[arg(long)]
        gateway_role: bool,
        /// The device's own clone policy, over its tenant's and the node's:
        /// alert, refuse-new or end-both (the label idreg.io/on-clone).
        #[arg(long, value_parser = ["alert", "refuse-new", "end-both"])]
        on_clone: Option<String>,
        #[command(flatten)]
        credentials: CredentialArgs,
    },
    /// Replace a device's PSK with a new one (its own identity): both work
    /// until the device first uses the new one, or until --grace passes.
    RotatePsk {
        id: String,
        /// The new PSK's identity.
        #[arg(long)]
        psk_identity: String,
        /// Read the new PSK (text; one trailing newline dropped) from FILE.
        #[arg(long, required_unless_present = "psk_stdin")]
        psk_file: Option<PathBuf>,
        /// Read the new PSK from standard input.
        #[arg(long)]
        psk_stdin: bool,
        /// The identity of the PSK to replace (default: the device's only PSK).
        #[arg(long)]
        replaces: Option<String>,
        /// How long the old PSK stays valid if the new one is not used.
        #[arg(long, default_value = "24h")]
        grace: String,
    },
    /// Show one device.
    Get {
        id: String,
        /// Confirm with the leader's quorum first: see every write
        /// acknowledged before this read.
        #[arg(long)]
        linearizable: bool,
    },
    /// List devices, page by page, in id order.
    List {
        #[arg(long, value_parser = ["active", "disabled", "revoked"])]
        status: Option<String>,
        /// key=value; repeatable, all must match.
        #[arg(long = "label")]
        labels: Vec<String>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        gateway: Option<String>,
        /// Stop after this many devices.
        #[arg(long)]
        limit: Option<u64>,
        /// Devices fetched per request (1–1000).
        #[arg(long, default_value_t = 500)]
        page_size: u32,
        /// Confirm with the leader's quorum first (see `get --linearizable`).
        #[arg(long)]
        linearizable: bool,
    },
    /// Register devices in bulk from FILE.csv or FILE.jsonl (fields: id,
    /// tenant, labels, gateway, psk_identity, psk, psk_hex, public_key_pem,
    /// certificate_pem). Every line is checked before anything is sent.
    Import { file: PathBuf },
    /// Who did what to a device: every create, update, revoke and delete with
    /// its time, principal, role and node (kept after revoke and delete).
    History {
        id: String,
        /// Confirm with the leader's quorum first.
        #[arg(long)]
        linearizable: bool,
    },
    /// Follow changes (create, update, revoke, delete) as they are applied.
    Watch {
        /// Start at this revision (raft log index); default: from now on.
        #[arg(long, default_value_t = 0)]
        from_revision: u64,
        /// Stop after this many changes.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Change labels, status, gateway or credentials.
    Update {
        id: String,
        /// Replace all labels with these key=value pairs (repeatable).
        #[arg(long = "set-label")]
        set_labels: Vec<String>,
        /// Remove all labels.
        #[arg(long, conflicts_with = "set_labels")]
        clear_labels: bool,
        #[arg(long, value_parser = ["active", "disabled"])]
        status: Option<String>,
        #[arg(long)]
        gateway: Option<String>,
        #[arg(long, conflicts_with = "gateway")]
        clear_gateway: bool,
        /// Add the credentials given with --psk-identity/--psk/--public-key/--cert.
        #[command(flatten)]
        add: CredentialArgs,
        /// Remove the PSK credential with this identity (repeatable).
        #[arg(long)]
        remove_psk_identity: Vec<String>,
        /// Remove the key with this SHA-256 fingerprint (repeatable).
        #[arg(long)]
        remove_fingerprint: Vec<String>,
    },
    /// Revoke a device for good.
    Revoke {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Delete a device record.
    Delete { id: String },
}

/// How `idreg serve` writes its log lines on stderr.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Text for people.
    #[default]
    Text,
    /// One JSON object per line, fields as keys, for log shippers.
    Json,
}
