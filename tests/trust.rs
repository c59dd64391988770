//! Trust: every caller proves who it is. Roles over the back-office API,
//! driven by an independent client (grpcurl) with certificates from
//! `idreg pki client`; no certificate, or one from another CA, is refused.

mod common;

use common::*;

/// Runs grpcurl against `server` as `who` (None: no client certificate).
fn grpcurl(
    server: &Server,
    who: Option<&std::path::Path>,
    method: &str,
    body: &str,
) -> (bool, String) {
    let grpcurl = external_tool("grpcurl").expect("grpcurl");
    let pki = server.pki_dir();
    let mut cmd = std::process::Command::new(grpcurl);
    cmd.args(["-cacert", pki.join("peer-ca.crt").to_str().unwrap()]);
    if let Some(base) = who {
        cmd.args(["-cert", base.with_extension("crt").to_str().unwrap()]);
        cmd.args(["-key", base.with_extension("key").to_str().unwrap()]);
    }
    let out = cmd
        .args(["-max-time", "10", "-d", body, &server.grpc_addr, method])
        .output()
        .unwrap();
    let text = output_text(&out);
    (out.status.success(), text)
}

/// Every client RPC with a request body and the least role that may call it.
/// `ID` and `SUJE` in a body are made unique per caller and row ([`personal`]).
fn role_table() -> Vec<(&'static str, String, &'static str)> {
    let create = r#"{"id":"ID","credentials":[{"psk":{"identity":"SUJE","secret":"MDEyMzQ1Njc4OWFiY2RlZg=="}}]}"#;
    vec![
        (
            "idreg.v1.DeviceRegistry/GetDevice",
            r#"{"id":"none"}"#.into(),
            "reader",
        ),
        ("idreg.v1.DeviceRegistry/ListDevices", "{}".into(), "reader"),
        (
            "idreg.v1.DeviceRegistry/GetDeviceHistory",
            r#"{"id":"none"}"#.into(),
            "reader",
        ),
        (
            "idreg.v1.DeviceRegistry/WatchDevices",
            "{}".into(),
            "reader",
        ),
        ("idreg.v1.Sessions/ListSessions", "{}".into(), "reader"),
        ("idreg.v1.Sessions/GetFrontStats", "{}".into(), "reader"),
        ("idreg.v1.Cluster/GetStatus", "{}".into(), "reader"),
        (
            "idreg.v1.DeviceRegistry/CreateDevice",
            create.to_string(),
            "operator",
        ),
        (
            "idreg.v1.DeviceRegistry/UpdateDevice",
            r#"{"id":"none"}"#.into(),
            "operator",
        ),
        (
            "idreg.v1.DeviceRegistry/RevokeDevice",
            r#"{"id":"none"}"#.into(),
            "operator",
        ),
        (
            "idreg.v1.DeviceRegistry/DeleteDevice",
            r#"{"id":"none"}"#.into(),
            "operator",
        ),
        ("idreg.v1.Cluster/TriggerSnapshot", "{}".into(), "admin"),
        ("idreg.v1.Cluster/SaveSnapshot", "{}".into(), "admin"),
        ("idreg.v1.Cluster/RemoveNode", r#"{"id":9}"#.into(), "admin"),
        (
            "idreg.v1.Cluster/AddNode",
            r#"{"id":9,"addr":"nowhere"}"#.into(),
            "admin",
        ),
        ("idreg.v1.Enrollment/GetDeviceCa", "{}".into(), "reader"),
        ("idreg.v1.Enrollment/ImportDeviceCa", "{}".into(), "admin"),
    ]
}

/// The table's server-streaming methods (grpcurl waits for their end).
const STREAMING: [&str; 2] = [
    "idreg.v1.DeviceRegistry/WatchDevices",
    "idreg.v1.Cluster/SaveSnapshot",
];

/// The row of [`role_table`] that creates a device.
const CREATE_ROW: usize = 7;

/// A table body made unique to `caller` and row `i`.
fn personal(body: &str, caller: &str, i: usize) -> String {
    body.replace("ID", &format!("{caller}-{i}"))
        .replace("SUJE", &format!("{}{i:03}", &caller[..1]))
}

fn rank(role: &str) -> usize {
    ["reader", "operator", "admin"]
        .iter()
        .position(|x| *x == role)
        .unwrap()
}

/// Issues client certificates `name` with `role` from the server's PKI.
fn issue_clients(server: &Server, clients: &[(&str, &str)]) {
    for (name, role) in clients {
        let out = server.cli(&[
            "pki",
            "client",
            name,
            "--role",
            role,
            "--pki-dir",
            server.pki_dir().to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{out:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_may_do_what_it_may_and_is_refused_the_rest() {
    if external_tool("grpcurl").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("node")).await;
    issue_clients(&server, &[("ro", "reader"), ("ops", "operator")]);
    let who = |n: &str| server.pki_dir().join(n);
    let table = role_table();
    for (caller, role) in [("ro", "reader"), ("ops", "operator"), ("admin", "admin")] {
        for (i, (method, body, least)) in table.iter().enumerate() {
            // grpcurl waits for a stream to end; streams are checked with grpcio.
            if STREAMING.contains(method) {
                continue;
            }
            let body = personal(body, caller, i);
            let (_, text) = grpcurl(&server, Some(&who(caller)), method, &body);
            let denied = text.contains("PermissionDenied");
            assert_eq!(
                denied,
                rank(role) < rank(least),
                "{method} as {role}: {text}"
            );
            if denied {
                assert!(text.contains(&format!("needs role {least}")), "{text}");
            }
        }
    }
    // No certificate at all: UNAUTHENTICATED, for every method but health.
    for (method, body, _) in table.iter().filter(|(m, _, _)| !STREAMING.contains(m)) {
        let (_, text) = grpcurl(&server, None, method, body);
        assert!(text.contains("Unauthenticated"), "{method}: {text}");
    }
    // Health stays open (probes carry no certificate).
    let ca = std::fs::read(server.pki_dir().join("peer-ca.crt")).unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{}", server.grpc_addr))
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(ca))
                .domain_name("127.0.0.1"),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    // Every write is recorded under its principal and role; the reader may
    // read that history (CLI as the reader, from the PKI's files).
    let pki = server.pki_dir();
    let created = personal("ID", "ops", CREATE_ROW);
    let out = std::process::Command::new(BIN)
        .args(["device", "history", &created, "--output", "json"])
        .env("IDREG_ENDPOINT", &server.grpc_addr)
        .env("IDREG_CACERT", pki.join("peer-ca.crt"))
        .env("IDREG_CERT", pki.join("ro.crt"))
        .env("IDREG_KEY", pki.join("ro.key"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let h: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(h[0]["action"], "create", "{h}");
    assert_eq!(h[0]["principal"], "ops", "{h}");
    assert_eq!(h[0]["role"], "operator", "{h}");
    assert_eq!(h[0]["node"], 1, "{h}");
    // The reader saw what the operator created.
    let (ok, text) = grpcurl(
        &server,
        Some(&who("ro")),
        "idreg.v1.DeviceRegistry/GetDevice",
        &format!(r#"{{"id":"{created}"}}"#),
    );
    assert!(ok && text.contains(&created), "{text}");
}

/// Runs `tests/clients/grpc_calls.py` (Python grpcio, stubs generated from
/// proto/) against `server` as `who` (None: no client certificate), with
/// `calls` (method, body, padding bytes); the status code of each call.
fn grpcio_calls(
    server: &Server,
    who: Option<&str>,
    calls: &[(&str, String, usize)],
) -> Vec<(String, String)> {
    let python = external_tool("python3").expect("python3");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("calls.json");
    let specs: Vec<serde_json::Value> = calls
        .iter()
        .map(|(method, body, pad)| {
            serde_json::json!({
                "method": method,
                "request": serde_json::from_str::<serde_json::Value>(body).unwrap(),
                "pad_bytes": pad,
            })
        })
        .collect();
    std::fs::write(&file, serde_json::to_vec(&specs).unwrap()).unwrap();
    let pki = server.pki_dir();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/grpc_calls.py");
    let mut cmd = std::process::Command::new(python);
    cmd.arg(script)
        .args(["--addr", &server.grpc_addr])
        .arg("--ca")
        .arg(pki.join("peer-ca.crt"));
    if let Some(name) = who {
        cmd.arg("--cert").arg(pki.join(format!("{name}.crt")));
        cmd.arg("--key").arg(pki.join(format!("{name}.key")));
    }
    let out = cmd.arg(&file).output().unwrap();
    assert!(out.status.success(), "grpc_calls.py: {}", output_text(&out));
    let results: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results.len(), calls.len());
    results
        .iter()
        .map(|r| {
            (
                r["code"].as_str().unwrap().to_owned(),
                r["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_over_tls_gets_each_role_exactly_its_rights() {
    if external_tool("python3").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("node")).await;
    issue_clients(&server, &[("ro", "reader"), ("ops", "operator")]);
    let table = role_table();
    for (caller, role) in [("ro", "reader"), ("ops", "operator"), ("admin", "admin")] {
        let calls: Vec<_> = table
            .iter()
            .enumerate()
            .map(|(i, (m, body, _))| (*m, personal(body, caller, i), 0))
            .collect();
        let results = grpcio_calls(&server, Some(caller), &calls);
        for ((method, _, least), (code, message)) in table.iter().zip(&results) {
            if rank(role) < rank(least) {
                assert_eq!(code, "PERMISSION_DENIED", "{method} as {role}: {message}");
                assert!(
                    message.contains(&format!("needs role {least}")),
                    "{message}"
                );
            } else {
                assert_ne!(code, "PERMISSION_DENIED", "{method} as {role}: {message}");
                assert_ne!(code, "UNAUTHENTICATED", "{method} as {role}: {message}");
            }
        }
        // What each may do, it did: the reader read, the operator created.
        assert_eq!(results[0].0, "NOT_FOUND", "{results:?}");
        if rank(role) >= rank("operator") {
            assert_eq!(results[CREATE_ROW].0, "OK", "{results:?}");
        }
    }
    let calls: Vec<_> = table.iter().map(|(m, b, _)| (*m, b.clone(), 0)).collect();
    for (call, (code, message)) in calls.iter().zip(grpcio_calls(&server, None, &calls)) {
        assert_eq!(code, "UNAUTHENTICATED", "{}: {message}", call.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_back_office_bound_answers_resource_exhausted() {
    if external_tool("python3").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        &tmp.path().join("node"),
        &[
            "--grpc-max-message-bytes",
            "4096",
            "--max-watchers",
            "2",
            "--max-label-selectors",
            "2",
        ],
    )
    .await;
    let get = r#"{"id":"big"}"#.to_string();
    let list = |n: usize| {
        let labels: Vec<String> = (0..n).map(|i| format!("\"k{i}=v\"")).collect();
        format!(r#"{{"labels":[{}]}}"#, labels.join(","))
    };
    let results = grpcio_calls(
        &server,
        Some("admin"),
        &[
            ("idreg.v1.DeviceRegistry/GetDevice", get.clone(), 3000),
            ("idreg.v1.DeviceRegistry/GetDevice", get, 5000),
            ("idreg.v1.DeviceRegistry/ListDevices", list(2), 0),
            ("idreg.v1.DeviceRegistry/ListDevices", list(3), 0),
        ],
    );
    assert_eq!(results[0].0, "NOT_FOUND", "{results:?}");
    assert_eq!(results[1].0, "RESOURCE_EXHAUSTED", "{results:?}");
    assert!(
        results[1].1.contains("--grpc-max-message-bytes"),
        "{results:?}"
    );
    assert_eq!(results[2].0, "OK", "{results:?}");
    assert_eq!(results[3].0, "RESOURCE_EXHAUSTED", "{results:?}");
    assert!(
        results[3].1.contains("--max-label-selectors"),
        "{results:?}"
    );

    // Watchers: two may be live; a third is refused until one ends.
    let watch = || async {
        server
            .client()
            .await
            .watch_devices(idreg_client::pb::WatchDevicesRequest::default())
            .await
    };
    let first = watch().await.expect("first watcher");
    let _second = watch().await.expect("second watcher");
    let refused = watch().await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused}");
    assert!(refused.message().contains("--max-watchers"), "{refused}");
    drop(first);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match watch().await {
            Ok(_) => break,
            Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                assert!(std::time::Instant::now() < deadline, "slot never freed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(s) => panic!("{s}"),
        }
    }
    // The node still serves everyone else.
    let mut c = server.client().await;
    c.create_device(create_req(
        "after-limits",
        vec![psk_input("al", b"0123456789abcdef")],
    ))
    .await
    .expect("create after refusals");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused() {
    if external_tool("grpcurl").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("node")).await;
    let other = tmp.path().join("other");
    make_pki(&other, 1);
    let (ok, text) = grpcurl(
        &server,
        Some(&other.join("admin")),
        "idreg.v1.DeviceRegistry/ListDevices",
        "{}",
    );
    assert!(!ok, "{text}");
    assert!(!text.contains("devices"), "{text}");
    // The Rust client too: the TLS handshake fails, nothing is served.
    let tls = idreg_client::ClientTls::from_files(
        &server.pki_dir().join("peer-ca.crt"),
        &other.join("admin.crt"),
        &other.join("admin.key"),
    )
    .unwrap();
    let target = idreg_client::Target::tls(&server.grpc_addr, tls);
    let listed = match target.registry().await {
        Ok(mut c) => c
            .list_devices(idreg_client::pb::ListDevicesRequest::default())
            .await
            .is_ok(),
        Err(_) => false,
    };
    assert!(!listed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_is_refused_off_loopback_and_weak_keks_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    // `idreg serve ARGS` on a fresh data dir must fail saying `why`.
    let refused = |dir: &str, args: &[&str], why: &str| {
        let out = std::process::Command::new(BIN)
            .arg("serve")
            .args(args)
            .arg("--data-dir")
            .arg(tmp.path().join(dir))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(why),
            "{out:?}"
        );
    };
    refused("a", &["--insecure", "--grpc-addr", "0.0.0.0:0"], "loopback");
    let kek = tmp.path().join("kek");
    std::fs::write(&kek, "00".repeat(32)).unwrap();
    std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o600)).unwrap();
    refused("b", &["--kek-file", kek.to_str().unwrap()], "not random");
    write_kek(&kek);
    std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o644)).unwrap();
    refused("c", &["--kek-file", kek.to_str().unwrap()], "chmod 600");
}
