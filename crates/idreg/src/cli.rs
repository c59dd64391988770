//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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

/// Where a client command connects and how it prints.
#[derive(Args, Debug)]
pub struct ClientArgs {
    /// The node to talk to (host:port).
    #[arg(
        long,
        global = true,
        env = "IDREG_ENDPOINT",
        default_value = "127.0.0.1:50051"
    )]
    pub endpoint: String,
    /// CA that issued the nodes' certificates [default: ./data/pki/peer-ca.crt].
    #[arg(long, global = true, env = "IDREG_CACERT")]
    pub cacert: Option<PathBuf>,
    /// Client certificate (its role is in it) [default: ./data/pki/admin.crt].
    #[arg(long, global = true, env = "IDREG_CERT")]
    pub cert: Option<PathBuf>,
    /// Key of --cert [default: ./data/pki/admin.key].
    #[arg(long, global = true, env = "IDREG_KEY")]
    pub key: Option<PathBuf>,
    /// Plaintext, for a node started with --insecure.
    // Boolish: IDREG_INSECURE_CLIENT=1 (or yes/on/true) works, as users write it.
    #[arg(
        long,
        global = true,
        env = "IDREG_INSECURE_CLIENT",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub insecure: bool,
    /// How to print results.
    #[arg(long, short, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
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
    /// Load generators against a running node (bounded in count and time).
    Bench {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: BenchCommand,
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

/// What a device-front benchmark connects to and how it authenticates.
#[derive(Args, Debug, Clone)]
pub struct DeviceTarget {
    /// UDP address of the DTLS server (idreg, or a peer such as libcoap's
    /// coap-server-openssl).
    #[arg(long)]
    pub target: String,
    #[arg(long, value_enum, default_value_t = HandshakeMode::Psk)]
    pub mode: HandshakeMode,
    /// PSK identity (mode psk).
    #[arg(long, default_value = "bench-device")]
    pub identity: String,
    /// PSK as text (mode psk).
    #[arg(long, default_value = "bench-secret-0123456789")]
    pub psk: String,
    /// Device certificate and PKCS#8 key, PEM (mode cert).
    #[arg(long)]
    pub device_cert: Option<PathBuf>,
    #[arg(long)]
    pub device_key: Option<PathBuf>,
    /// CoAP path to GET.
    #[arg(long, default_value = "/id")]
    pub path: String,
    /// PID of the server process: report its CPU time per operation and its
    /// resident memory (from /proc), the fair comparison on a small machine
    /// where one client saturates before the server does.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// The device-side DTLS stack: idreg's own engine (light enough for
    /// 100,000 sessions in one process) or webrtc-dtls.
    #[arg(long, value_enum, default_value_t = DeviceStack::Engine)]
    pub client: DeviceStack,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum HandshakeMode {
    Psk,
    Cert,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceStack {
    Engine,
    Webrtc,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Full DTLS handshakes per second, each followed by one GET and a close.
    Handshake {
        #[command(flatten)]
        device: DeviceTarget,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 10)]
        duration: u64,
    },
    /// CoAP GET round trips over established DTLS sessions.
    Coap {
        #[command(flatten)]
        device: DeviceTarget,
        /// Sessions to establish first (and hold: memory per idle session).
        #[arg(long, default_value_t = 16)]
        sessions: usize,
        /// Sessions that send requests concurrently.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Third octet of the 127.3.X.Y source addresses this client's
        /// sessions use, so several client processes (each under its
        /// open-file limit) can hold one large population together.
        #[arg(long, default_value_t = 0)]
        source_block: u8,
        /// Once the sessions are open, print `ready` and wait until this file
        /// exists before the timed phase (several clients start together).
        #[arg(long)]
        start_file: Option<std::path::PathBuf>,
    },
    /// CreateDevice throughput and latency (each device with one PSK).
    Register {
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// Device ids are PREFIX-00000000…; default bench-<pid>.
        #[arg(long)]
        prefix: Option<String>,
        #[arg(long, default_value_t = 600)]
        max_seconds: u64,
        /// PIDs of the server processes under load (comma-separated; every
        /// node of a cluster): report their CPU time per operation and RSS.
        #[arg(long, value_delimiter = ',')]
        server_pid: Vec<u32>,
    },
    /// Bulk registration through ImportDevices: COUNT generated devices, the
    /// even ones with a PSK, the odd ones with a P-256 public key.
    Import {
        #[arg(long, default_value_t = 100_000)]
        count: usize,
        /// Device ids are PREFIX-00000000…
        #[arg(long, default_value = "imp")]
        prefix: String,
        /// Import streams sent at once, each from its own connection.
        #[arg(long, default_value_t = 2)]
        streams: usize,
        #[arg(long, default_value_t = 3600)]
        max_seconds: u64,
        #[arg(long, value_delimiter = ',')]
        server_pid: Vec<u32>,
    },
    /// The handshake path's lookups, in process on a node's data directory
    /// opened read-only: PSK identity -> device -> unsealed PSK, and key
    /// fingerprint -> device, over devices made by `bench import --prefix P`.
    Lookup {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        kek_file: PathBuf,
        #[arg(long)]
        prefix: String,
        /// How many devices `bench import` made under the prefix.
        #[arg(long)]
        population: usize,
        #[arg(long, default_value_t = 100_000)]
        count: usize,
    },
    /// Time from RevokeDevice acknowledged to every given device front
    /// refusing the device's handshake.
    Revoke {
        /// PSK device fronts (UDP HOST:PORT) that must refuse the device,
        /// comma-separated: every node's.
        #[arg(long, value_delimiter = ',', required = true)]
        fronts: Vec<String>,
        #[arg(long, default_value_t = 100)]
        count: usize,
        #[arg(long, default_value_t = 300)]
        max_seconds: u64,
    },
    /// Firmware delivery: an upload, DEVICES sessions fetching the image
    /// block-wise at once (MB/s, server CPU per block; the same against a
    /// --peer CoAP server), and CreateDevice latency idle and during a
    /// large upload.
    Firmware {
        /// PSK device fronts (UDP HOST:PORT), comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        fronts: Vec<String>,
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        #[arg(long, default_value_t = 256)]
        image_kib: usize,
        /// Block size exponent: 2^(SZX+4) bytes (6: 1024).
        #[arg(long, default_value_t = 6)]
        szx: u8,
        #[arg(long, default_value_t = 64)]
        connect_concurrency: usize,
        /// PIDs of the idreg server processes: CPU per block.
        #[arg(long, value_delimiter = ',')]
        server_pid: Vec<u32>,
        /// Another CoAP server (DTLS PSK, any identity) serving a body of
        /// the same size at --peer-path (libcoap: PUT it to /example_data).
        #[arg(long)]
        peer: Option<String>,
        #[arg(long, default_value = "/example_data")]
        peer_path: String,
        #[arg(long, default_value = "")]
        peer_key: String,
        #[arg(long)]
        peer_pid: Option<u32>,
        /// CreateDevice clients for the write-latency phases (0: skip them).
        #[arg(long, default_value_t = 8)]
        writers: usize,
        #[arg(long, default_value_t = 10)]
        write_seconds: u64,
        /// Size of the release uploaded during the second phase.
        #[arg(long, default_value_t = 10)]
        upload_mib: usize,
    },
    /// Latency of `Firmware/Report` over DEVICES reported devices: a fresh
    /// store in DATA_DIR filled through the state machine's apply, then the
    /// report asked QUERIES times per selector (in process, no server).
    FwReport {
        #[arg(long, default_value_t = 1_000_000)]
        devices: usize,
        #[arg(long, default_value_t = 200)]
        queries: usize,
        /// A fresh directory (the store is left there; delete it after).
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Time from RevokeDevice to the `/rl` notification (RFC 7641) at every
    /// one of many observers spread over the given device fronts.
    Observe {
        /// PSK device fronts (UDP HOST:PORT), comma-separated: observers are
        /// spread over them.
        #[arg(long, value_delimiter = ',', required = true)]
        fronts: Vec<String>,
        #[arg(long, default_value_t = 1000)]
        observers: usize,
        /// Revocations, one per round.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Handshakes in flight while the observers connect.
        #[arg(long, default_value_t = 64)]
        connect_concurrency: usize,
        /// PIDs of the server processes (every node): CPU per notification.
        #[arg(long, value_delimiter = ',')]
        server_pid: Vec<u32>,
    },
    /// Size of a signed revocation list with COUNT revoked devices, and the
    /// time to make, sign and check it (in memory, the server's code).
    RlSize {
        #[arg(long, default_value_t = 1_000_000)]
        count: usize,
    },
    /// EST-coaps enrollments: COUNT devices with manufacturer certificates
    /// of a group made for the run each handshake and POST a CSR to `sen`.
    Enroll {
        /// Device fronts (UDP HOST:PORT), comma-separated; devices are
        /// spread over them.
        #[arg(long, value_delimiter = ',', required = true)]
        fronts: Vec<String>,
        #[arg(long, default_value_t = 1000)]
        count: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value_t = 300)]
        max_seconds: u64,
        /// PIDs of the server processes (every node): CPU per enrollment.
        #[arg(long, value_delimiter = ',')]
        server_pid: Vec<u32>,
    },
    /// The peer for registry writes: etcd v3 Put through its gRPC KV API, with
    /// the same client stack and concurrency as `bench register`.
    EtcdPut {
        /// etcd client address, host:port.
        #[arg(long, default_value = "127.0.0.1:2379")]
        etcd: String,
        /// Dial etcd over TLS with the client credentials given for idreg
        /// (--cacert/--cert/--key), for a TLS-against-TLS comparison.
        #[arg(long)]
        etcd_tls: bool,
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        #[arg(long, default_value_t = 256)]
        value_size: usize,
        #[arg(long, default_value_t = 600)]
        max_seconds: u64,
        /// PIDs of the server processes under load (comma-separated; every
        /// node of a cluster): report their CPU time per operation and RSS.
        #[arg(long, value_delimiter = ',')]
        server_pid: Vec<u32>,
    },
    /// Loads etcd with PREFIX-00000000… keys (64 concurrent Puts) for `etcd-get`.
    EtcdFill {
        #[arg(long, default_value = "127.0.0.1:2379")]
        etcd: String,
        /// Dial etcd over TLS with the client credentials given for idreg
        /// (--cacert/--cert/--key), for a TLS-against-TLS comparison.
        #[arg(long)]
        etcd_tls: bool,
        #[arg(long)]
        count: usize,
        #[arg(long, default_value_t = 256)]
        value_size: usize,
        #[arg(long)]
        prefix: String,
    },
    /// The peer for point reads: etcd v3 serializable Range of one key.
    EtcdGet {
        #[arg(long, default_value = "127.0.0.1:2379")]
        etcd: String,
        /// Dial etcd over TLS with the client credentials given for idreg
        /// (--cacert/--cert/--key), for a TLS-against-TLS comparison.
        #[arg(long)]
        etcd_tls: bool,
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        population: usize,
        #[arg(long, default_value_t = 600)]
        max_seconds: u64,
        /// PIDs of the server processes under load (comma-separated; every
        /// node of a cluster): report their CPU time per operation and RSS.
        #[arg(long, value_delimiter = ',')]
        server_pid: Vec<u32>,
    },
    /// GetDevice latency over devices created by `bench register --prefix P`.
    Get {
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        #[arg(long)]
        prefix: String,
        /// How many devices `bench register` created under the prefix.
        #[arg(long)]
        population: usize,
        #[arg(long, default_value_t = 600)]
        max_seconds: u64,
        /// PIDs of the server processes under load (comma-separated; every
        /// node of a cluster): report their CPU time per operation and RSS.
        #[arg(long, value_delimiter = ',')]
        server_pid: Vec<u32>,
    },
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
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
    #[arg(long, env = "IDREG_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
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

/// Where the CLI looks for credentials when none are given: the development
/// PKI that `idreg serve` makes in `./data`.
const DEV_PKI: &str = "data/pki";

impl ClientArgs {
    /// The endpoint with the caller's credentials.
    pub fn target(&self) -> anyhow::Result<idreg_client::Target> {
        use anyhow::Context;
        if self.insecure {
            return Ok(idreg_client::Target::plaintext(&self.endpoint));
        }
        let dev = std::path::Path::new(DEV_PKI);
        let ca = self
            .cacert
            .clone()
            .unwrap_or_else(|| dev.join("peer-ca.crt"));
        let cert = self.cert.clone().unwrap_or_else(|| dev.join("admin.crt"));
        let key = self.key.clone().unwrap_or_else(|| dev.join("admin.key"));
        let tls = idreg_client::ClientTls::from_files(&ca, &cert, &key).with_context(|| {
            "no client credentials: give --cacert, --cert and --key (or IDREG_CACERT, \
             IDREG_CERT, IDREG_KEY); without them the development PKI in ./data/pki is used, \
             which `idreg serve` makes on its first start"
        })?;
        Ok(idreg_client::Target::tls(&self.endpoint, tls))
    }
}
