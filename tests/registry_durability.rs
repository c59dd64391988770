//! Every acknowledged registration survives `kill -9`, also through WAL
//! files RocksDB reuses; SIGTERM stops cleanly.

mod common;

use std::collections::BTreeSet;

use common::*;
use idreg_client::pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_devices_survive_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(&tmp.path().join("node")).await;
    acknowledged_writes_survive_kill_9(&mut server, 100, |_| true).await;
}

/// The same with the node killed while it writes a WAL file RocksDB reused:
/// the file still holds an older log's records past the new ones, and the
/// restart must stop where the new records end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_devices_survive_kill_9_in_a_recycled_wal() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(&tmp.path().join("node"), &["--wal-limit-mb", "1"]).await;
    acknowledged_writes_survive_kill_9(&mut server, 200, writes_a_reused_wal).await;
}

/// Whether the node's current WAL file is a reused one, from RocksDB's own
/// log: it says "reusing log N from recycle list" just before switching the
/// memtables to the file it reused.
fn writes_a_reused_wal(server: &Server) -> bool {
    let log = std::fs::read_to_string(server.data_dir.join("db/LOG")).unwrap_or_default();
    let switches: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("from recycle list") || l.contains("created with log file: #"))
        .collect();
    let Some(newest) = switches.last().and_then(|l| l.rsplit_once('#')) else {
        return false;
    };
    let file = format!("#{}", newest.1.split('.').next().unwrap_or(""));
    let first = switches.iter().position(|l| l.contains(&file)).unwrap();
    first > 0 && switches[first - 1].contains("from recycle list")
}

/// Rounds of 16 concurrent writers of `each` devices until `ready` holds
/// (at most 20 rounds); then `kill -9`, and every acknowledged device is
/// there after a restart.
async fn acknowledged_writes_survive_kill_9(
    server: &mut Server,
    each: usize,
    ready: impl Fn(&Server) -> bool,
) {
    let mut acked = BTreeSet::new();
    let mut rounds = 0;
    let mut killable = false;
    while !killable && rounds < 20 {
        acked.extend(write_round(server, rounds, each).await);
        rounds += 1;
        killable = ready(server);
    }
    assert!(killable, "not ready to be killed after {rounds} rounds");
    assert_eq!(
        acked.len(),
        16 * each * rounds,
        "every create on a healthy node is acknowledged"
    );
    server.kill9();
    server.restart().await;

    let mut client = server.client().await;
    let listed: BTreeSet<String> = list_all_ids(&mut client, pb::ListDevicesRequest::default())
        .await
        .into_iter()
        .collect();
    assert_eq!(listed.len(), acked.len(), "devices after the restart");
    let missing: Vec<_> = acked.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged devices lost, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    let d = client
        .get_device(pb::GetDeviceRequest {
            id: "r0-w3-dev42".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.credentials.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_and_restart_keeps_data() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(&tmp.path().join("node")).await;
    let mut client = server.client().await;
    client
        .create_device(create_req("keep-me", vec![]))
        .await
        .unwrap();
    let status = server.terminate();
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        server.log_text()
    );
    assert!(
        server.log_text().contains("SIGTERM"),
        "{}",
        server.log_text()
    );
    server.restart().await;
    let mut client = server.client().await;
    assert_eq!(
        client
            .get_device(pb::GetDeviceRequest {
                id: "keep-me".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .id,
        "keep-me"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_kek_is_a_clear_start_up_error() {
    let tmp = tempfile::tempdir().unwrap();
    let kek_a = tmp.path().join("kek-a");
    let kek_b = tmp.path().join("kek-b");
    common::write_kek(&kek_a);
    common::write_kek(&kek_b);
    let data = tmp.path().join("node");
    let mut server = Server::start_with(&data, &["--kek-file", kek_a.to_str().unwrap()]).await;
    server.terminate();

    let out = std::process::Command::new(BIN)
        .args([
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--kek-file",
            kek_b.to_str().unwrap(),
        ])
        // Refused before it listens; were it not, ports bound as 0 collide with nothing.
        .args(["--grpc-addr", "127.0.0.1:0", "--peer-addr", "127.0.0.1:0"])
        .args(["--coap-addr", "127.0.0.1:0", "--metrics-addr", "off"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("key-encryption key") && err.contains("not the one"),
        "{err}"
    );

    let bad = tmp.path().join("kek-bad");
    std::fs::write(&bad, "too short").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let out = std::process::Command::new(BIN)
        .args([
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--kek-file",
            bad.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("KEK must be 32 bytes"));
}

/// Clients that hang must not keep their node from stopping: a watcher
/// that stopped reading (its backlog fills the stream's flow-control
/// window), and an import whose client opened the stream and never ends it
/// (its handler waits for the next line for ever, and a graceful server
/// waits for the handler). The node stops within its drain limit and says
/// it closed the streams still open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_node_whose_clients_hang() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(&tmp.path().join("node")).await;
    // ~8 MB of history: 2 000 devices with 32 labels of 63 + 63 bytes,
    // several times the client's window (2 MiB per stream).
    let file = tmp.path().join("big.jsonl");
    let value = "v".repeat(63);
    let lines: Vec<String> = (0..2000)
        .map(|i| {
            let labels: serde_json::Map<String, serde_json::Value> = (0..32)
                .map(|l| (format!("{l:02}{}", "k".repeat(61)), value.clone().into()))
                .collect();
            serde_json::json!({ "id": format!("big-{i:04}"), "labels": labels }).to_string()
        })
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = server.cli(&["device", "import", file.to_str().unwrap(), "-o", "json"]);
    assert!(out.status.success(), "{}", output_text(&out));

    let mut client = server.client().await;
    let _unread = client
        .watch_devices(pb::WatchDevicesRequest { from_revision: 1 })
        .await
        .unwrap()
        .into_inner();
    // An import stream that is opened and never ended.
    let mut importer = server.client().await;
    let _half_open = tokio::spawn(async move {
        importer
            .import_devices(tokio_stream::pending::<pb::ImportDevicesRequest>())
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let status = server.terminate();
        (status, server.log_text())
    })
    .await
    .unwrap();
    let (status, log) = status;
    assert!(status.success(), "exit status {status}; log:\n{log}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(25),
        "stopped after {:?}",
        started.elapsed()
    );
    assert!(log.contains("closing them"), "{log}");
}

/// 16 concurrent writers of `each` devices named after `round`: the ids
/// acknowledged.
async fn write_round(server: &Server, round: usize, each: usize) -> Vec<String> {
    let mut tasks = Vec::new();
    for w in 0..16 {
        let mut client = server.client().await;
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..each {
                let id = format!("r{round}-w{w}-dev{i}");
                let secret = format!("secret-of-{id}-padding");
                let req = create_req(&id, vec![psk_input(&id, secret.as_bytes())]);
                if client.create_device(req).await.is_ok() {
                    acked.push(id);
                }
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    acked
}
