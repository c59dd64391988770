//! Test harness: runs the real `idreg` binary on loopback in a temp dir.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use idreg_client::pb;
use idreg_client::pb::device_registry_client::DeviceRegistryClient;
use idreg_client::pb::sessions_client::SessionsClient;
use tonic::transport::Channel;

pub mod cluster;
pub mod fault_proxy;
pub mod linearizability;

pub const BIN: &str = env!("CARGO_BIN_EXE_idreg");
/// The load generators (`idreg-bench`), built beside it.
pub const BENCH_BIN: &str = env!("CARGO_BIN_EXE_idreg-bench");

/// Client credentials per client address of every node this test process
/// started, so helpers that are given an address can connect to it.
static CREDENTIALS: std::sync::Mutex<std::collections::BTreeMap<String, PathBuf>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Remembers that the node at `addr` trusts the PKI in `pki_dir`.
pub fn register_pki(addr: &str, pki_dir: &Path) {
    CREDENTIALS
        .lock()
        .unwrap()
        .insert(addr.to_owned(), pki_dir.to_path_buf());
}

/// The PKI the node at `addr` uses.
pub fn pki_of(addr: &str) -> PathBuf {
    CREDENTIALS
        .lock()
        .unwrap()
        .get(addr)
        .cloned()
        .unwrap_or_else(|| panic!("no node of this test listens on {addr}"))
}

/// The node at `addr` with `name`'s certificate from its PKI.
pub fn target_as(addr: &str, name: &str) -> idreg_client::Target {
    let tls = idreg_client::ClientTls::from_pki_dir(&pki_of(addr), name).expect("credentials");
    idreg_client::Target::tls(addr, tls)
}

/// The node at `addr`, as its admin.
pub fn target(addr: &str) -> idreg_client::Target {
    target_as(addr, "admin")
}

pub async fn connect(
    addr: &str,
) -> Result<DeviceRegistryClient<Channel>, idreg_client::ConnectError> {
    target(addr).registry().await
}

pub async fn channel(addr: &str) -> Result<Channel, idreg_client::ConnectError> {
    target(addr).channel().await
}

pub async fn connect_sessions(
    addr: &str,
) -> Result<SessionsClient<Channel>, idreg_client::ConnectError> {
    target(addr).sessions().await
}

/// A random KEK, owner-only (idreg refuses weak or exposed ones).
pub fn write_kek(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, idreg_core::Kek::generate_hex()).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// `idreg pki init` into `dir` for `nodes`: (id, host names).
pub fn make_pki_for(dir: &Path, nodes: &[(u64, String)]) {
    let mut args = vec!["pki".to_string(), "init".into(), "--out".into()];
    args.push(dir.display().to_string());
    for (id, hosts) in nodes {
        args.push("--node".into());
        args.push(format!("{id}={hosts}"));
    }
    let out = Command::new(BIN).args(&args).output().unwrap();
    assert!(out.status.success(), "pki init: {out:?}");
}

/// `idreg pki init` for nodes 1..=`nodes` on 127.0.0.N, into `dir`.
pub fn make_pki(dir: &Path, nodes: u64) {
    let nodes: Vec<_> = (1..=nodes)
        .map(|id| (id, format!("127.0.0.{id},localhost")))
        .collect();
    make_pki_for(dir, &nodes);
}

/// A command's stdout and stderr as one text, for assertions and messages.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    free_port_on("127.0.0.1")
}

/// A port that was free a moment ago on `host` (127.0.0.x). Checked on the
/// host itself: nodes bind their outgoing connections to their own 127.0.0.x,
/// so a port free on 127.0.0.1 may be an ephemeral source port on another.
pub fn free_port_on(host: &str) -> u16 {
    TcpListener::bind((host, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port free on every one of `hosts` a moment ago.
pub fn free_port_on_all(hosts: &[String]) -> u16 {
    loop {
        let p = free_port_on(&hosts[0]);
        if hosts[1..]
            .iter()
            .all(|h| TcpListener::bind((h.as_str(), p)).is_ok())
        {
            return p;
        }
    }
}

/// A running `idreg serve`.
pub struct Server {
    pub child: Option<Child>,
    pub data_dir: PathBuf,
    pub grpc_addr: String,
    /// Where the other nodes reach this node (raft).
    pub peer_addr: String,
    /// The PKI whose certificates this node uses; `None`: its development
    /// PKI in the data directory.
    pub pki: Option<PathBuf>,
    pub log: PathBuf,
    pub extra_args: Vec<String>,
    /// Loopback address the device front binds (127.0.0.x).
    pub host: String,
    /// Extra environment for the process.
    pub env: Vec<(String, String)>,
}

impl Server {
    /// Starts a node on `data_dir` and waits until it answers.
    pub async fn start(data_dir: &Path) -> Server {
        Self::start_with(data_dir, &[]).await
    }

    pub async fn start_with(data_dir: &Path, extra: &[&str]) -> Server {
        let mut s = Server {
            child: None,
            data_dir: data_dir.to_path_buf(),
            // Port 0: the node takes free ports and says which in its log;
            // a restart comes back on the same ones.
            grpc_addr: "127.0.0.1:0".into(),
            peer_addr: "127.0.0.1:0".into(),
            pki: None,
            log: data_dir.with_extension("log"),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            host: "127.0.0.1".into(),
            env: Vec::new(),
        };
        s.spawn().await;
        s
    }

    /// Starts a node with its gRPC port at `grpc_addr` (host 127.0.0.x) and
    /// its device front on the same host.
    pub async fn start_at(data_dir: &Path, grpc_addr: &str, extra: &[String]) -> Server {
        Self::start_at_with_env(data_dir, grpc_addr, extra, &[]).await
    }

    /// As [`Server::start_at`], with extra environment variables.
    pub async fn start_at_with_env(
        data_dir: &Path,
        grpc_addr: &str,
        extra: &[String],
        env: &[(String, String)],
    ) -> Server {
        let host = grpc_addr.rsplit_once(':').unwrap().0.to_owned();
        let arg = |name: &str| {
            extra
                .iter()
                .position(|a| a == name)
                .map(|i| extra[i + 1].clone())
        };
        let mut s = Server {
            child: None,
            data_dir: data_dir.to_path_buf(),
            grpc_addr: grpc_addr.to_owned(),
            peer_addr: arg("--peer-addr").unwrap_or_else(|| format!("{host}:0")),
            pki: arg("--pki-dir").map(PathBuf::from),
            log: data_dir.with_extension("log"),
            extra_args: extra.to_vec(),
            host,
            env: env.to_vec(),
        };
        s.spawn().await;
        s
    }

    async fn spawn(&mut self) {
        // Where this run's lines begin: the log is kept across restarts.
        let log_start = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0) as usize;
        let mut peer_flag = Vec::new();
        if !self.extra_args.iter().any(|a| a == "--peer-addr") {
            peer_flag = vec!["--peer-addr".to_string(), self.peer_addr.clone()];
        }
        // The device front on this node's host, port picked by the kernel,
        // unless the test names it (to come back on the same port).
        let mut coap_flag = Vec::new();
        if !self.extra_args.iter().any(|a| a == "--coap-addr") {
            coap_flag = vec!["--coap-addr".to_string(), format!("{}:0", self.host)];
        }
        // /metrics likewise (the default port would collide between tests).
        if !self.extra_args.iter().any(|a| a == "--metrics-addr") {
            coap_flag.extend(["--metrics-addr".to_string(), format!("{}:0", self.host)]);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--grpc-addr", &self.grpc_addr])
            .args(&coap_flag)
            .args(&peer_flag)
            .args(&self.extra_args)
            .env("IDREG_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start idreg");
        self.child = Some(child);
        if self.grpc_addr.ends_with(":0") || self.peer_addr.ends_with(":0") {
            self.read_bound_addrs(log_start).await;
        }
        register_pki(&self.grpc_addr, &self.pki_dir());
        self.wait_ready().await;
    }

    /// The addresses this run of the node bound, from its "gRPC listening"
    /// line (bounded wait; fails if the node exits first).
    async fn read_bound_addrs(&mut self, log_start: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read(&self.log).unwrap_or_default();
            let log = strip_ansi(&String::from_utf8_lossy(&text[log_start.min(text.len())..]));
            // Text (`client=ADDR`) or JSON (`"client":"ADDR"`) logs.
            let field = |line: &str, name: &str| {
                let text = line.split(&format!("{name}=")).nth(1).and_then(|a| {
                    a.split_whitespace()
                        .next()
                        .map(|a| a.trim_matches('"').to_owned())
                });
                let json = || {
                    line.split(&format!("\"{name}\":\""))
                        .nth(1)
                        .and_then(|a| a.split('"').next().map(str::to_owned))
                };
                text.or_else(json)
            };
            if let Some(line) = log.lines().rev().find(|l| l.contains("gRPC listening")) {
                if let (Some(client), Some(peer)) = (field(line, "client"), field(line, "peer")) {
                    self.grpc_addr = client;
                    self.peer_addr = peer;
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("idreg exited with {status} before listening; log:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "no 'gRPC listening' in 60 s; log:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (bounded) until a request succeeds end to end.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "idreg exited with {status} before it was ready; log:\n{}",
                    self.log_text()
                );
            }
            let pki = self.pki_dir();
            let client = match pki.join("admin.crt").exists() {
                true => connect(&self.grpc_addr).await.ok(),
                false => None,
            };
            if let Some(mut c) = client {
                let probe = c
                    .get_device(pb::GetDeviceRequest {
                        id: "readiness-probe".into(),
                        ..Default::default()
                    })
                    .await;
                if matches!(&probe, Err(s) if s.code() == tonic::Code::NotFound) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "idreg not ready in 60 s; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The PKI this node's certificates come from.
    pub fn pki_dir(&self) -> PathBuf {
        self.pki
            .clone()
            .unwrap_or_else(|| self.data_dir.join("pki"))
    }

    /// This node as the client `name` of its PKI.
    pub fn target_as(&self, name: &str) -> idreg_client::Target {
        target_as(&self.grpc_addr, name)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where this run of the node serves /metrics, as its log says (the
    /// last "metrics listening" line; bounded wait).
    #[allow(dead_code)]
    pub async fn metrics_addr(&self) -> String {
        for _ in 0..200 {
            let log = strip_ansi(&self.log_text());
            let found = log
                .lines()
                .rev()
                .find(|l| l.contains("metrics listening"))
                .and_then(|l| l.split("addr=").nth(1))
                .and_then(|a| a.split_whitespace().next())
                .map(|a| a.trim_matches('"').to_string());
            if let Some(addr) = found {
                return addr;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("no 'metrics listening' in the log:\n{}", self.log_text());
    }

    pub async fn client(&self) -> DeviceRegistryClient<Channel> {
        connect(&self.grpc_addr).await.expect("connect")
    }

    pub async fn sessions(&self) -> SessionsClient<Channel> {
        connect_sessions(&self.grpc_addr).await.expect("connect")
    }

    pub async fn front_stats(&self) -> pb::FrontStats {
        self.sessions()
            .await
            .get_front_stats(pb::GetFrontStatsRequest {})
            .await
            .expect("front stats")
            .into_inner()
    }

    /// The device front's UDP address (every kind of credential).
    pub async fn front_addr(&self) -> SocketAddr {
        let s = self.front_stats().await;
        assert!(s.enabled, "device front is off");
        s.psk_addr.parse().unwrap()
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM, then wait (bounded) for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                c.kill().unwrap();
                panic!("idreg did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        self.spawn().await;
    }

    /// Runs `idreg <args>` against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_command(args).output().expect("run idreg")
    }

    /// `idreg <args>` against this server as an admin, to run or spawn.
    pub fn cli_command(&self, args: &[&str]) -> Command {
        self.as_admin(BIN, args)
    }

    /// `idreg-bench <args>` against this server as an admin.
    #[allow(dead_code)]
    pub fn bench(&self, args: &[&str]) -> Output {
        self.as_admin(BENCH_BIN, args)
            .output()
            .expect("run idreg-bench")
    }

    fn as_admin(&self, program: &str, args: &[&str]) -> Command {
        let pki = self.pki_dir();
        let mut c = Command::new(program);
        c.args(args)
            .env("IDREG_ENDPOINT", &self.grpc_addr)
            .env("IDREG_CACERT", pki.join("peer-ca.crt"))
            .env("IDREG_CERT", pki.join("admin.crt"))
            .env("IDREG_KEY", pki.join("admin.key"));
        c
    }
}

impl Server {
    /// Runs `idreg <args>` with only this node's own environment (as a
    /// command inside its pod would run), no client credentials.
    pub fn cli_in_env(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env_remove("IDREG_CACERT")
            .env_remove("IDREG_CERT")
            .env_remove("IDREG_KEY")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run idreg")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn psk_input(identity: &str, secret: &[u8]) -> pb::CredentialInput {
    pb::CredentialInput {
        kind: Some(pb::credential_input::Kind::Psk(pb::PskInput {
            identity: identity.as_bytes().to_vec(),
            secret: secret.to_vec(),
        })),
    }
}

pub fn create_req(id: &str, creds: Vec<pb::CredentialInput>) -> pb::CreateDeviceRequest {
    pb::CreateDeviceRequest {
        id: id.into(),
        credentials: creds,
        ..Default::default()
    }
}

/// Every device id the server lists, following page tokens.
pub async fn list_all_ids(
    client: &mut DeviceRegistryClient<Channel>,
    mut req: pb::ListDevicesRequest,
) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..1_000_000 {
        let page = client
            .list_devices(req.clone())
            .await
            .expect("list")
            .into_inner();
        ids.extend(page.devices.into_iter().map(|d| d.id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        req.page_token = page.next_page_token;
    }
    panic!("listing did not end");
}

/// A P-256 key pair as (private key PEM, public key PEM).
pub fn p256_key() -> (String, String) {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    (kp.serialize_pem(), kp.public_key_pem())
}

/// An external client program from PATH or the project's `.venv`. Missing, it
/// fails the test when `IDREG_REQUIRE_EXTERNAL=1` (as `.ci/run` sets) and skips
/// it loudly otherwise.
pub fn external_tool(name: &str) -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.venv/bin")
        .join(name);
    let found = if venv.exists() {
        Some(venv)
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        })
    };
    if found.is_none() {
        if std::env::var("IDREG_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
            panic!("{name} is required (IDREG_REQUIRE_EXTERNAL=1) but not installed; .ci/run installs it");
        }
        eprintln!("SKIPPED: {name} is not installed; run .ci/run to install the external clients");
    }
    found
}

/// Python with aiocoap and DTLSSocket (the project's `.venv`, as `.ci/run`
/// makes it). Missing, it fails the test under `IDREG_REQUIRE_EXTERNAL=1`
/// and skips it loudly otherwise.
#[allow(dead_code)]
pub fn aiocoap_python() -> Option<PathBuf> {
    python_with("aiocoap, DTLSSocket")
}

/// Python that can `import MODULES` (comma-separated), or `None` as for
/// [`external_tool`].
#[allow(dead_code)]
pub fn python_with(modules: &str) -> Option<PathBuf> {
    let python = external_tool("python3")?;
    let ok = std::process::Command::new(&python)
        .args(["-c", &format!("import {modules}")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var("IDREG_REQUIRE_EXTERNAL").as_deref() != Ok("1"),
            "python modules {modules} are required (IDREG_REQUIRE_EXTERNAL=1); .ci/run installs them"
        );
        eprintln!("SKIPPED: python modules {modules} not installed; run .ci/run");
        return None;
    }
    Some(python)
}

/// `text` without ANSI colour sequences (ESC [ ... m), as a log file holds them.
#[allow(dead_code)]
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `idreg device add ID --psk-identity ID-id --psk KEY EXTRA…` against
/// `server`, as an operator registers a PSK device.
#[allow(dead_code)]
pub fn add_psk_device_cli(server: &Server, id: &str, key: &str, extra: &[&str]) {
    let identity = format!("{id}-id");
    let mut args = vec![
        "device",
        "add",
        id,
        "--psk-identity",
        &identity,
        "--psk",
        key,
    ];
    args.extend(extra);
    cli_ok(server, &args);
}

/// `idreg ARGS` against `server`; its stdout. Fails the test if it fails.
#[allow(dead_code)]
pub fn cli_ok(server: &Server, args: &[&str]) -> String {
    let out = server.cli(args);
    assert!(
        out.status.success(),
        "idreg {args:?}: {}",
        output_text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `openssl` with `args`; its stdout. Fails the test if it fails.
#[allow(dead_code)]
pub fn openssl(args: &[&str]) -> String {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        output_text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The session audit of `device` on `server` (its first page).
#[allow(dead_code)]
pub async fn sessions_of(server: &Server, device: &str) -> Vec<pb::Session> {
    server
        .sessions()
        .await
        .list_sessions(pb::ListSessionsRequest {
            device_id: device.into(),
            ..Default::default()
        })
        .await
        .expect("list sessions")
        .into_inner()
        .sessions
}

/// libcoap's `coap-client` GET of `coaps://{front}{path}` as PSK
/// `identity` with `key`, five seconds to answer (`-B 5`), `extra` options
/// before the URI (`-o FILE`, `-A 50`, …): what it printed. libcoap exits 0
/// even when it fails, so callers assert on the text.
#[allow(dead_code)]
pub fn libcoap_psk_get(
    tool: &Path,
    front: &str,
    (identity, key): (&str, &str),
    path: &str,
    extra: &[&str],
) -> String {
    let out = Command::new("timeout")
        .arg("30")
        .arg(tool)
        .args(["-m", "get", "-B", "5", "-u", identity, "-k", key])
        .args(extra)
        .arg(format!("coaps://{front}{path}"))
        .output()
        .expect("coap-client");
    output_text(&out)
}

/// libcoap observing `/rl` as PSK `identity` with `key` from `local_ip`
/// for `secs`: a session that stays live that long.
#[allow(dead_code)]
pub fn libcoap_session(
    tool: &Path,
    local_ip: &str,
    front: std::net::SocketAddr,
    (identity, key): (&str, &str),
    secs: u32,
) -> std::process::Child {
    Command::new("timeout")
        .arg(format!("{}", secs + 20))
        .arg(tool)
        .args([
            "-m",
            "get",
            "-s",
            &secs.to_string(),
            "-A",
            "0",
            "-a",
            local_ip,
        ])
        .args(["-u", identity, "-k", key])
        .arg(format!("coaps://{front}/rl"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("coap-client")
}
