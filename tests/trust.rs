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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_may_do_what_it_may_and_is_refused_the_rest() {
    if external_tool("grpcurl").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("node")).await;
    for (name, role) in [("ro", "reader"), ("ops", "operator")] {
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
    let who = |n: &str| server.pki_dir().join(n);
    let create = r#"{"id":"ID","credentials":[{"psk":{"identity":"SUJE","secret":"MDEyMzQ1Njc4OWFiY2RlZg=="}}]}"#;
    // (method, body, least role); every call made by each role in turn.
    let table: Vec<(&str, String, &str)> = vec![
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
        ("idreg.v1.Cluster/RemoveNode", r#"{"id":9}"#.into(), "admin"),
        (
            "idreg.v1.Cluster/AddNode",
            r#"{"id":9,"addr":"nowhere"}"#.into(),
            "admin",
        ),
    ];
    let rank = |r: &str| {
        ["reader", "operator", "admin"]
            .iter()
            .position(|x| *x == r)
            .unwrap()
    };
    for (caller, role) in [("ro", "reader"), ("ops", "operator"), ("admin", "admin")] {
        for (i, (method, body, least)) in table.iter().enumerate() {
            let body = body
                .replace("ID", &format!("{caller}-{i}"))
                .replace("SUJE", &format!("{}{i:03}", &caller[..1]));
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
    for (method, body, _) in &table {
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
    let out = std::process::Command::new(BIN)
        .args(["device", "history", "ops-6", "--output", "json"])
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
        r#"{"id":"ops-6"}"#,
    );
    assert!(ok && text.contains("ops-6"), "{text}");
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
