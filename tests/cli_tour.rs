//! The README's quick tour, run as a user runs it: the real binary and CLI.

mod common;

use common::*;

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_get_list_update_revoke_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("node")).await;
    let (_, pubkey) = p256_key();
    let key_file = tmp.path().join("key.pem");
    std::fs::write(&key_file, pubkey).unwrap();

    ok(server.cli(&[
        "device",
        "add",
        "sensor-1",
        "--psk-identity",
        "sensor-1",
        "--psk",
        "correct horse battery",
        "--label",
        "site=berlin",
    ]));
    ok(server.cli(&[
        "device",
        "add",
        "sensor-2",
        "--public-key",
        key_file.to_str().unwrap(),
        "--label",
        "site=berlin",
    ]));
    ok(server.cli(&[
        "device",
        "add",
        "sensor-3",
        "--psk-identity",
        "s3",
        "--psk-hex",
        "00112233445566778899aabbccddeeff",
        "--label",
        "site=paris",
    ]));

    let got: serde_json::Value = serde_json::from_str(&ok(
        server.cli(&["device", "get", "sensor-1", "--output", "json"])
    ))
    .unwrap();
    assert_eq!(got["id"], "sensor-1");
    assert_eq!(got["status"], "active");
    assert_eq!(got["labels"]["site"], "berlin");
    assert_eq!(got["credentials"][0]["kind"], "psk");
    assert_eq!(got["credentials"][0]["identity"], "sensor-1");
    assert!(
        !got.to_string().contains("correct horse"),
        "secret leaked: {got}"
    );

    let listed: serde_json::Value = serde_json::from_str(&ok(server.cli(&[
        "device",
        "list",
        "--label",
        "site=berlin",
        "--limit",
        "100",
        "-o",
        "json",
    ])))
    .unwrap();
    let ids: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["sensor-1", "sensor-2"]);
    let table = ok(server.cli(&["device", "list"]));
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(
        table.contains("sensor-2") && table.contains("public-key:"),
        "{table}"
    );

    ok(server.cli(&[
        "device",
        "update",
        "sensor-3",
        "--status",
        "disabled",
        "--set-label",
        "site=rome",
    ]));
    let got: serde_json::Value =
        serde_json::from_str(&ok(server.cli(&["device", "get", "sensor-3", "-o", "json"])))
            .unwrap();
    assert_eq!(got["status"], "disabled");
    assert_eq!(got["labels"]["site"], "rome");

    let revoked = ok(server.cli(&[
        "device",
        "revoke",
        "sensor-1",
        "--reason",
        "lost in the field",
    ]));
    assert!(
        revoked.contains("revoked") && revoked.contains("lost in the field"),
        "{revoked}"
    );
    let only_revoked = ok(server.cli(&["device", "list", "--status", "revoked"]));
    assert!(
        only_revoked.contains("sensor-1") && !only_revoked.contains("sensor-2"),
        "{only_revoked}"
    );

    ok(server.cli(&["device", "delete", "sensor-2"]));
    let out = server.cli(&["device", "get", "sensor-2"]);
    assert!(!out.status.success());
    // The deleted device's key is free again; the revoked device's identity is not.
    ok(server.cli(&[
        "device",
        "add",
        "sensor-4",
        "--public-key",
        key_file.to_str().unwrap(),
    ]));
    let out = server.cli(&[
        "device",
        "add",
        "sensor-5",
        "--psk-identity",
        "sensor-1",
        "--psk",
        "another long secret",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("revoked"),
        "{out:?}"
    );
}

/// grpcurl's TLS flags for the client `name` of the server's PKI.
fn grpcurl_tls(server: &Server, name: &str) -> Vec<String> {
    let pki = server.pki_dir();
    vec![
        "-cacert".into(),
        pki.join("peer-ca.crt").display().to_string(),
        "-cert".into(),
        pki.join(format!("{name}.crt")).display().to_string(),
        "-key".into(),
        pki.join(format!("{name}.key")).display().to_string(),
    ]
}

/// `grpcurl ADDR list` works with no .proto at hand (server reflection), over
/// TLS with the development PKI's admin certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_services_through_reflection() {
    let Some(grpcurl) = external_tool("grpcurl") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("node")).await;
    let tls = grpcurl_tls(&server, "admin");
    let out = std::process::Command::new(&grpcurl)
        .args(&tls)
        .args([&server.grpc_addr, "list"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("idreg.v1.DeviceRegistry"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("grpc.health.v1.Health"), "{text}");
    let out = std::process::Command::new(&grpcurl)
        .args(&tls)
        .args(["-d", r#"{"id":"via-grpcurl","credentials":[{"psk":{"identity":"dmlh","secret":"MDEyMzQ1Njc4OWFiY2RlZg=="}}]}"#])
        .args([&server.grpc_addr, "idreg.v1.DeviceRegistry/CreateDevice"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(&grpcurl)
        .args(&tls)
        .args([
            "-d",
            r#"{"service":""}"#,
            &server.grpc_addr,
            "grpc.health.v1.Health/Check",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("SERVING"),
        "{out:?}"
    );
}

/// A PSK given by file or on standard input (never on the command line) is
/// the one the device then shakes hands with; the file's final newline is
/// not part of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psks_from_a_file_or_stdin_work_for_the_handshake() {
    use idreg_client::device::{DeviceClient, DeviceCredential};
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("node")).await;
    let file = tmp.path().join("psk.txt");
    std::fs::write(&file, "file-secret-0123456789\n").unwrap();
    let out = server.cli(&[
        "device",
        "add",
        "by-file",
        "--psk-identity",
        "by-file",
        "--psk-file",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let pki = server.pki_dir();
    let mut child = std::process::Command::new(BIN)
        .args([
            "device",
            "add",
            "by-stdin",
            "--psk-identity",
            "by-stdin",
            "--psk-stdin",
        ])
        .env("IDREG_ENDPOINT", &server.grpc_addr)
        .env("IDREG_CACERT", pki.join("peer-ca.crt"))
        .env("IDREG_CERT", pki.join("admin.crt"))
        .env("IDREG_KEY", pki.join("admin.key"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"stdin-secret-0123456789\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let both = server.cli(&[
        "device",
        "add",
        "x",
        "--psk-identity",
        "x",
        "--psk",
        "a",
        "--psk-stdin",
    ]);
    assert!(!both.status.success());
    let psk_addr = server.front_addr().await;
    for (identity, key) in [
        ("by-file", "file-secret-0123456789"),
        ("by-stdin", "stdin-secret-0123456789"),
    ] {
        let cred = DeviceCredential::Psk {
            identity: identity.as_bytes().to_vec(),
            key: key.as_bytes().to_vec(),
        };
        DeviceClient::connect(psk_addr, cred, std::time::Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{identity}: {e}"));
    }
}
