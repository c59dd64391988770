//! Observability as an operator meets it: a real Prometheus (Debian's
//! package, started here on loopback with a generated configuration)
//! scrapes a 3-node cluster's `/metrics` while the test registers and
//! revokes devices and libcoap devices handshake; its query API must then
//! show what the test did.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::TestCluster;
use common::*;

/// tinydtls-free here, but short keys keep all clients happy.
const KEY: &str = "sixteen-byte-key";

/// A Prometheus scraping `targets` every second; killed when dropped.
struct Prometheus {
    child: Child,
    web: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(bin: &Path, dir: &Path, targets: &[String]) -> Self {
        let config = dir.join("prometheus.yml");
        let list = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: idreg\n    static_configs:\n      - targets: [{list}]\n"
            ),
        )
        .unwrap();
        if let Some(promtool) = external_tool("promtool") {
            let out = Command::new(promtool)
                .args(["check", "config"])
                .arg(&config)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", output_text(&out));
        }
        // Prometheus cannot report a port it was given as 0: probe one.
        let web = format!("127.0.0.1:{}", free_port());
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .unwrap();
        Self { child, web }
    }

    /// The query API's answer to an instant query of `expr`.
    fn api(&self, expr: &str) -> Result<serde_json::Value, String> {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "5", "-G"])
            .arg(format!("http://{}/api/v1/query", self.web))
            .arg("--data-urlencode")
            .arg(format!("query={expr}"))
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).map_err(|e| format!("{e}: {out:?}"))
    }

    /// An instant query: each series' labels and value.
    fn query(&self, expr: &str) -> Vec<(serde_json::Value, f64)> {
        let Ok(v) = self.api(expr) else {
            return Vec::new();
        };
        v["data"]["result"]
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|s| {
                        let value = s["value"][1]
                            .as_str()
                            .unwrap_or("nan")
                            .parse()
                            .unwrap_or(f64::NAN);
                        (s["metric"].clone(), value)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether Prometheus accepts `expr` (parses and evaluates it); its
    /// error otherwise.
    fn accepts(&self, expr: &str) -> Result<(), String> {
        let v = self.api(expr)?;
        match v["status"].as_str() {
            Some("success") => Ok(()),
            _ => Err(v.to_string()),
        }
    }

    /// Waits (bounded) until `expr`'s one series reaches `min`.
    async fn wait_at_least(&self, expr: &str, min: f64) {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let got = self.query(expr);
            if got.len() == 1 && got[0].1 >= min {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{expr}: want >= {min}, got {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits (bounded) until `expr` gives exactly `want` (series' values
    /// in order of their labels); the last answer on failure.
    async fn wait_for(&self, expr: &str, want: &[f64]) {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let mut got: Vec<(String, f64)> = self
                .query(expr)
                .into_iter()
                .map(|(m, v)| (m.to_string(), v))
                .collect();
            got.sort_by(|a, b| a.0.cmp(&b.0));
            let values: Vec<f64> = got.iter().map(|(_, v)| *v).collect();
            if values == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{expr}: want {want:?}, got {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sees_what_the_cluster_did() {
    let Some(prometheus) = external_tool("prometheus") else {
        return;
    };
    let Some(libcoap) = external_tool("coap-client-openssl") else {
        return;
    };
    let cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.wait_for_leader().await;
    let mut targets = Vec::new();
    for n in 1..=3 {
        targets.push(cluster.node(n).metrics_addr().await);
    }
    let dir = cluster.dir.path().join("prometheus");
    std::fs::create_dir_all(&dir).unwrap();
    let prom = Prometheus::start(&prometheus, &dir, &targets);
    prom.wait_for("up", &[1.0, 1.0, 1.0]).await;
    // One leader, seen by every node.
    prom.wait_for("sum(idreg_raft_is_leader)", &[1.0]).await;
    prom.wait_for("count(idreg_raft_has_leader == 1)", &[3.0])
        .await;
    let leader_instance = &targets[leader as usize - 1];
    prom.wait_for(
        &format!("idreg_raft_is_leader{{instance=\"{leader_instance}\"}}"),
        &[1.0],
    )
    .await;

    // Two devices; three good handshakes and one with a wrong key on
    // node 1's front; one revocation.
    let node1 = cluster.node(1);
    for id in ["m1", "m2"] {
        add_psk_device_cli(node1, id, KEY, &[]);
    }
    let front = node1.front_addr().await;
    let get = |identity: &str, key: &str| {
        Command::new("timeout")
            .arg("30")
            .arg(&libcoap)
            .args(["-m", "get", "-B", "3", "-u", identity, "-k", key])
            .arg(format!("coaps://{front}/id"))
            .output()
            .unwrap()
    };
    for _ in 0..3 {
        let out = get("m1-id", KEY);
        assert!(
            output_text(&out).contains("m1 active"),
            "{}",
            output_text(&out)
        );
    }
    get("m1-id", "wrong-sixteen-by");
    cli_ok(node1, &["device", "revoke", "m2", "--reason", "lost"]);

    let one = &targets[0];
    prom.wait_for("idreg_registry_devices", &[2.0, 2.0, 2.0])
        .await;
    prom.wait_for("idreg_registry_revocations_total", &[1.0, 1.0, 1.0])
        .await;
    prom.wait_for(
        &format!("idreg_front_handshakes_total{{instance=\"{one}\",result=\"ok\"}}"),
        &[3.0],
    )
    .await;
    prom.wait_for(
        &format!("idreg_front_handshakes_total{{instance=\"{one}\",result=\"failed\"}}"),
        &[1.0],
    )
    .await;
    // Plausible process and store figures on every node.
    prom.wait_for("count(process_resident_memory_bytes > 1e6)", &[3.0])
        .await;
    prom.wait_for(
        "count(idreg_store_column_family_bytes{cf=\"devices\"} > 0)",
        &[3.0],
    )
    .await;
    prom.wait_for("count(idreg_raft_applied_index > 3)", &[3.0])
        .await;
    // Node 1's own figures: libcoap's three handshakes timed, its three
    // sessions ended with close_notify, the three writes it took batched.
    for (expr, want) in [
        ("idreg_front_handshake_seconds_count{instance=\"ONE\"}", 3.0),
        (
            "count(idreg_front_handshake_seconds_sum{instance=\"ONE\"} > 0)",
            1.0,
        ),
        (
            "idreg_front_sessions_ended_total{instance=\"ONE\",end=\"closed_by_peer\"}",
            3.0,
        ),
        (
            "count(idreg_raft_batch_proposals_sum{instance=\"ONE\"} >= 3)",
            1.0,
        ),
    ] {
        prom.wait_for(&expr.replace("ONE", one), &[want]).await;
    }
    // Leading, node 1's apply answered the callers of every batch of its
    // own; following, none (the leader wrote them from Forward calls).
    let by_apply = format!("idreg_raft_batches_answered_by_apply_total{{instance=\"{one}\"}}");
    if leader == 1 {
        prom.wait_for(
            &format!("{by_apply} - idreg_raft_batch_proposals_count{{instance=\"{one}\"}}"),
            &[0.0],
        )
        .await;
    } else {
        prom.wait_for(&by_apply, &[0.0]).await;
    }
    // Devices by status, on every node; WAL fsyncs timed, and RocksDB's
    // block cache and stall counters present on every node.
    prom.wait_for(
        "idreg_registry_devices_by_status{status=\"active\"}",
        &[1.0, 1.0, 1.0],
    )
    .await;
    prom.wait_for(
        "idreg_registry_devices_by_status{status=\"revoked\"}",
        &[1.0, 1.0, 1.0],
    )
    .await;
    prom.wait_for("count(idreg_store_wal_fsync_seconds_count > 3)", &[3.0])
        .await;
    prom.wait_for("count(idreg_store_block_cache_total)", &[6.0])
        .await;
    prom.wait_for("count(idreg_store_write_stall_seconds_total)", &[3.0])
        .await;
    prom.wait_for("count(idreg_raft_snapshot_build_seconds_count)", &[3.0])
        .await;
    prom.wait_for("idreg_node_ready", &[1.0, 1.0, 1.0]).await;
    // Handshakes by suite add up to the completed ones.
    prom.wait_for(
        &format!("sum(idreg_front_handshakes_by_suite_total{{instance=\"{one}\"}})"),
        &[3.0],
    )
    .await;

    // A live session (libcoap observing /rl) of a device that is then
    // disabled: node 1 closes it and times the cut-off.
    add_psk_device_cli(node1, "m3", KEY, &[]);
    let mut observer = libcoap_session(&libcoap, "127.0.0.1", front, ("m3-id", KEY), 30);
    prom.wait_for(
        &format!("idreg_front_sessions_live{{instance=\"{one}\"}}"),
        &[1.0],
    )
    .await;
    cli_ok(node1, &["device", "update", "m3", "--status", "disabled"]);
    prom.wait_for(
        &format!("idreg_front_revocation_cutoff_seconds_count{{instance=\"{one}\"}}"),
        &[1.0],
    )
    .await;
    prom.wait_for(
        &format!("idreg_front_sessions_ended_total{{instance=\"{one}\",end=\"revoked\"}}"),
        &[1.0],
    )
    .await;
    prom.wait_for(
        "idreg_registry_devices_by_status{status=\"disabled\"}",
        &[1.0, 1.0, 1.0],
    )
    .await;
    // Raft commit and apply on one machine: well under a second.
    prom.wait_for(
        &format!("idreg_front_revocation_cutoff_seconds_bucket{{instance=\"{one}\",le=\"1.0\"}}"),
        &[1.0],
    )
    .await;
    let _ = observer.kill();
    let _ = observer.wait();

    // gRPC calls by method and code, on the node that took them.
    for (method, calls) in [
        ("CreateDevice", 3.0),
        ("RevokeDevice", 1.0),
        ("UpdateDevice", 1.0),
    ] {
        prom.wait_for(
            &format!(
                "idreg_grpc_requests_total{{instance=\"{one}\",method=\"{method}\",code=\"Ok\"}}"
            ),
            &[calls],
        )
        .await;
    }

    // Cardinality: 10,000 handshakes from distinct addresses (100 source
    // IPs, 100 ports each; unknown identities, so each fails).
    let series = format!("count({{instance=\"{one}\"}})");
    let failed = format!("idreg_front_handshakes_total{{instance=\"{one}\",result=\"failed\"}}");
    let before = prom.query(&series)[0].1;
    let failed_before = prom.query(&failed)[0].1;
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10_000u32 {
        let slots = slots.clone();
        let source: std::net::SocketAddr = format!("127.9.0.{}:0", 1 + i / 100).parse().unwrap();
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let cred = idreg_dtls::client::ClientConfig::psk(b"nobody-at-all", KEY.as_bytes());
            idreg_client::engine_device::EngineDevice::connect_from(
                source,
                front,
                cred,
                Duration::from_secs(10),
            )
            .await
            .is_err()
        });
    }
    let mut refused = 0;
    while let Some(r) = tasks.join_next().await {
        refused += r.unwrap() as usize;
    }
    assert_eq!(refused, 10_000);
    // UDP on a loaded loopback may lose a few datagrams: a client that
    // gave up before its ClientHello with cookie arrived left the server no
    // handshake to count. At least 99% must be counted, as unknown
    // identities, and that many may add no series.
    prom.wait_at_least(&failed, failed_before + 9_900.0).await;
    prom.wait_at_least(
        &format!(
            "idreg_front_handshake_failures_total{{instance=\"{one}\",reason=\"unknown_credential\"}}"
        ),
        9_900.0,
    )
    .await;
    assert_eq!(
        prom.query(&series)[0].1,
        before,
        "series grew with addresses"
    );

    // deploy/monitoring: the alert rules pass promtool, and every
    // expression of the rules and the dashboard is accepted by Prometheus
    // against this cluster's data; the panels the cluster feeds show data.
    let monitoring = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/monitoring");
    let rules = monitoring.join("idreg-alerts.yaml");
    if let Some(promtool) = external_tool("promtool") {
        let out = Command::new(promtool)
            .args(["check", "rules"])
            .arg(&rules)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
    }
    let mut exprs: Vec<String> = std::fs::read_to_string(&rules)
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr: "))
        .map(str::to_owned)
        .collect();
    assert_eq!(exprs.len(), 9, "{exprs:?}");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring.join("grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut panel_exprs = Vec::new();
    for p in dashboard["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            panel_exprs.push(t["expr"].as_str().unwrap().to_owned());
        }
    }
    assert!(panel_exprs.len() >= 12, "{panel_exprs:?}");
    exprs.extend(panel_exprs.iter().cloned());
    for e in &exprs {
        prom.accepts(e).unwrap_or_else(|err| panic!("{e}: {err}"));
    }
    for e in [
        "idreg_raft_is_leader",
        "max(idreg_registry_devices)",
        "sum by (result) (rate(idreg_front_handshakes_total[5m]))",
        "sum by (method) (rate(idreg_grpc_requests_total[5m]))",
        "max by (status) (idreg_registry_devices_by_status)",
        "idreg_node_ready",
    ] {
        assert!(
            panel_exprs.iter().any(|p| p == e),
            "{e} is not on the dashboard"
        );
        assert!(!prom.query(e).is_empty(), "{e} shows nothing");
    }
}

/// `--log-format json`: every line on stderr is one JSON object with a
/// level and a message, ready for a log shipper.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_with(&tmp.path().join("node"), &["--log-format", "json"]).await;
    cli_ok(
        &server,
        &[
            "device",
            "add",
            "j1",
            "--psk-identity",
            "j1-id",
            "--psk",
            KEY,
        ],
    );
    let log = server.log_text();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() > 3, "{log}");
    for l in &lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{l}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"message\":\"metrics listening\"")),
        "{log}"
    );
    let bad = server.cli(&["serve", "--log-format", "xml", "--data-dir", "/nonexistent"]);
    assert!(!bad.status.success());
    assert!(
        output_text(&bad).contains("possible values: text, json"),
        "{}",
        output_text(&bad)
    );
}
