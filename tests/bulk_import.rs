//! Bulk registration: `idreg device import` from CSV and JSON Lines over the
//! streaming ImportDevices RPC, and the import and lookup benchmarks.

mod common;

use common::*;
use idreg_client::pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_registers_good_lines_and_names_the_bad_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("node")).await;
    let (_, pub_pem) = p256_key();
    let csv = tmp.path().join("fleet.csv");
    let mut text = String::from("id,psk_identity,psk,public_key_pem,labels\n");
    text.push_str("c-1,c-1,correct horse battery,,site=berlin;floor=2\n");
    text.push_str(&format!("c-2,,,\"{pub_pem}\",site=berlin\n"));
    text.push_str("c-3,c-1,another long secret 123,,\n"); // PSK identity taken
    text.push_str("c-4,,,\"-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\",\n");
    text.push_str("c-5,,,,\n");
    std::fs::write(&csv, &text).unwrap();
    // Lines as an editor counts them (the PEM field spans several).
    let line_of = |id: &str| {
        text[..text.find(&format!("\n{id},")).unwrap()]
            .matches('\n')
            .count()
            + 2
    };

    let out = server.cli(&["device", "import", csv.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "failures must fail the command: {stdout}"
    );
    assert!(stdout.contains("created 3 devices, 2 failed"), "{stdout}");
    let c3 = format!("line {}: c-3 AlreadyExists", line_of("c-3"));
    let c4 = format!("line {}: c-4 InvalidArgument", line_of("c-4"));
    assert!(stdout.contains(&c3), "{stdout}");
    assert!(stdout.contains(&c4), "{stdout}");
    let mut c = server.client().await;
    let ids = list_all_ids(
        &mut c,
        pb::ListDevicesRequest {
            labels: vec!["site=berlin".into()],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids, ["c-1", "c-2"]);

    // A malformed line anywhere: nothing is imported, the line is named.
    let jl = tmp.path().join("more.jsonl");
    let mut text = String::new();
    for i in 0..1500 {
        text.push_str(&format!(
            "{{\"id\":\"j-{i:04}\",\"labels\":{{\"batch\":\"j\"}}}}\n"
        ));
    }
    std::fs::write(
        &jl,
        format!("{text}{{\"id\":\"j-x\",\"psk\":\"no identity here\"}}\n"),
    )
    .unwrap();
    let out = server.cli(&["device", "import", jl.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 1501") && stderr.contains("psk_identity"),
        "{stderr}"
    );
    let by_label = pb::ListDevicesRequest {
        labels: vec!["batch=j".into()],
        ..Default::default()
    };
    assert!(list_all_ids(&mut c, by_label.clone()).await.is_empty());

    // The same file without the bad line goes in whole, as JSON output says.
    std::fs::write(&jl, text).unwrap();
    let out = server.cli(&["device", "import", jl.to_str().unwrap(), "-o", "json"]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["created"], 1500);
    assert_eq!(list_all_ids(&mut c, by_label).await.len(), 1500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_and_lookup_benchmarks_find_every_device() {
    let tmp = tempfile::tempdir().unwrap();
    let kek = tmp.path().join("kek.hex");
    common::write_kek(&kek);
    let data = tmp.path().join("node");
    let server = Server::start_with(&data, &["--kek-file", kek.to_str().unwrap()]).await;
    let out = server.bench(&[
        "import",
        "--count",
        "3000",
        "--prefix",
        "bi",
        "--streams",
        "2",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["created"], 3000, "{v}");
    assert_eq!(v["failed"], 0, "{v}");
    server.client().await; // still serving
    let out = server.bench(&[
        "lookup",
        "--data-dir",
        data.to_str().unwrap(),
        "--kek-file",
        kek.to_str().unwrap(),
        "--prefix",
        "bi",
        "--population",
        "3000",
        "--count",
        "2000",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    for r in rows {
        assert_eq!(r["errors"], 0, "{r}");
        assert!(r["operations"].as_u64().unwrap() >= 1500, "{r}");
    }
}

/// Two lines of one file register the same device: the earlier line is
/// the one registered and the later one is refused, also when the import
/// goes through a follower and the two lines land in different raft
/// batches (600 lines apart, 1 200 lines per file), every time in 50 runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_follower_the_earlier_of_two_conflicting_lines_wins_every_time() {
    let cluster = common::cluster::TestCluster::start(3, &[]).await;
    let leader = cluster.wait_for_leader().await;
    let follower = cluster.node(if leader == 1 { 2 } else { 1 });
    const PAIRS: usize = 600;
    for run in 0..50 {
        let file = cluster.dir.path().join(format!("run-{run}.jsonl"));
        let mut text = String::new();
        for which in ["earlier", "later"] {
            for i in 0..PAIRS {
                text.push_str(&format!(
                    "{{\"id\":\"r{run}-d{i}\",\"labels\":{{\"line\":\"{which}\"}}}}\n"
                ));
            }
        }
        std::fs::write(&file, text).unwrap();
        let out = follower.cli(&["device", "import", file.to_str().unwrap(), "-o", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", output_text(&out)));
        assert_eq!(v["created"], PAIRS, "run {run}: {v}");
        let errors = v["errors"].as_array().unwrap();
        assert_eq!(errors.len(), PAIRS, "run {run}");
        // Lines are numbered from 1: the later copies are lines 601..=1200.
        let early: Vec<&serde_json::Value> = errors
            .iter()
            .filter(|e| e["line"].as_u64().unwrap() <= PAIRS as u64)
            .collect();
        assert!(
            early.is_empty(),
            "run {run}: an earlier line lost to a later one: {:?}",
            &early[..early.len().min(3)]
        );
    }
}
