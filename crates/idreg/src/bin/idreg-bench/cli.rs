//! The command line of `idreg-bench`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
pub use idreg::client_args::{ClientArgs, OutputFormat};

#[derive(Parser, Debug)]
#[command(
    name = "idreg-bench",
    version,
    about = "Load generators for idreg nodes and their peers, bounded in count and time"
)]
pub struct Cli {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: BenchCommand,
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
    /// fingerprint -> device, over devices made by `idreg-bench import --prefix P`.
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
    /// the same client stack and concurrency as `idreg-bench register`.
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
    /// GetDevice latency over devices created by `idreg-bench register --prefix P`.
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
