//! Enrollment as an operator and a device maker meet it: the cluster's
//! device CA (made at founding, replicated, replaceable with one's own), read
//! with `idreg ca show`, checked with `openssl`, and fetched by a device over
//! EST-coaps (`/.well-known/est/crts`) with libcoap, block-wise too.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::TestCluster;
use common::*;

const KEY: &str = "correct horse battery staple";

/// `idreg ca show -o json` until the CA is there (the leader makes it just
/// after founding), bounded.
fn ca_json(server: &Server) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = server.cli(&["ca", "show", "-o", "json"]);
        if out.status.success() {
            return serde_json::from_slice(&out.stdout).expect("json");
        }
        let text = output_text(&out);
        assert!(text.contains("NotFound"), "{text}");
        assert!(Instant::now() < deadline, "no device CA: {text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// SHA-256 fingerprint as `openssl x509 -fingerprint` prints it, as lower
/// hex without colons.
fn der_fingerprint(der_file: &Path) -> String {
    let out = openssl(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        der_file.to_str().unwrap(),
        "-noout",
        "-fingerprint",
        "-sha256",
    ]);
    out.trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_lowercase()
}

async fn add_psk_device(server: &Server, id: &str) {
    server
        .client()
        .await
        .create_device(create_req(id, vec![psk_input(id, KEY.as_bytes())]))
        .await
        .expect("create device");
}

/// GETs `path` from the device front as PSK device `id`, saving the payload.
fn coap_get(front: &str, id: &str, path: &str, extra: &[&str], out: &Path) -> String {
    let tool = external_tool("coap-client-openssl").expect("coap-client-openssl");
    let _ = std::fs::remove_file(out);
    let out = out.to_str().unwrap();
    let options = [&["-o", out], extra].concat();
    libcoap_psk_get(&tool, front, (id, KEY), path, &options)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_ca_is_made_at_founding_served_over_est_and_replaceable() {
    if external_tool("coap-client-openssl").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("node")).await;
    let ca = ca_json(&server);
    assert_eq!(ca["origin"], "generated");
    assert!(ca["subject"].as_str().unwrap().contains("idreg device CA"));

    // The PEM `idreg ca show` prints is a P-256 CA, as openssl reads it.
    let pem_out = server.cli(&["ca", "show"]);
    assert!(pem_out.status.success(), "{}", output_text(&pem_out));
    let ca_pem = tmp.path().join("ca.pem");
    std::fs::write(&ca_pem, &pem_out.stdout).unwrap();
    let text = openssl(&["x509", "-in", ca_pem.to_str().unwrap(), "-noout", "-text"]);
    assert!(text.contains("CA:TRUE"), "{text}");
    assert!(text.contains("prime256v1"), "{text}");
    assert!(text.contains("Certificate Sign"), "{text}");

    // A device fetches it over EST-coaps: DER on request (287), the same
    // certificate; PKCS#7 certs-only by default (281), in 64-byte blocks.
    add_psk_device(&server, "sensor-1").await;
    let front = server.front_addr().await.to_string();
    let der = tmp.path().join("crts.der");
    let log = coap_get(
        &front,
        "sensor-1",
        "/.well-known/est/crts",
        &["-A", "287"],
        &der,
    );
    assert!(der.exists(), "{log}");
    assert_eq!(
        der_fingerprint(&der),
        ca["sha256"].as_str().unwrap(),
        "{log}"
    );
    let p7 = tmp.path().join("crts.p7");
    let log = coap_get(
        &front,
        "sensor-1",
        "/.well-known/est/crts",
        &["-b", "64"],
        &p7,
    );
    assert!(p7.exists(), "{log}");
    let certs = openssl(&[
        "pkcs7",
        "-inform",
        "DER",
        "-in",
        p7.to_str().unwrap(),
        "-print_certs",
    ]);
    assert!(certs.contains("idreg device CA"), "{certs}");
    // Discoverable by its resource type (RFC 9148 §5).
    let core = tmp.path().join("core");
    coap_get(&front, "sensor-1", "/.well-known/core", &[], &core);
    let core = std::fs::read_to_string(&core).unwrap_or_default();
    assert!(core.contains("rt=\"ace.est.crts\""), "{core}");

    // An operator's own CA, made with openssl (SEC1 key with parameters, as
    // `openssl ecparam -genkey` writes it).
    let own_key = tmp.path().join("own-ca.key");
    let own_crt = tmp.path().join("own-ca.crt");
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-out",
        own_key.to_str().unwrap(),
    ]);
    let make_cert = |out: &Path, key: &Path, constraints: &str| {
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            key.to_str().unwrap(),
            "-subj",
            "/CN=Acme device CA",
            "-days",
            "365",
            "-addext",
            constraints,
            "-out",
            out.to_str().unwrap(),
        ]);
    };
    make_cert(&own_crt, &own_key, "basicConstraints=critical,CA:TRUE");
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let import = |cert: &Path, key: &Path| {
        let out = server.cli(&[
            "ca",
            "import",
            "--certificate",
            &s(cert),
            "--private-key",
            &s(key),
        ]);
        (out.status.success(), output_text(&out))
    };

    // Refused, with the field named, and nothing changed: a leaf certificate,
    // a key that is not the certificate's, a reader's call.
    let leaf = tmp.path().join("leaf.crt");
    make_cert(&leaf, &own_key, "basicConstraints=critical,CA:FALSE");
    let (ok, text) = import(&leaf, &own_key);
    assert!(!ok && text.contains("InvalidArgument"), "{text}");
    assert!(
        text.contains("certificate_pem") && text.contains("not a CA"),
        "{text}"
    );
    let other_key = tmp.path().join("other.key");
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-out",
        &s(&other_key),
    ]);
    let (_, text) = import(&own_crt, &other_key);
    assert!(
        text.contains("private_key_pem") && text.contains("does not belong"),
        "{text}"
    );
    let issue = server.cli(&[
        "pki",
        "client",
        "ro",
        "--role",
        "reader",
        "--pki-dir",
        server.pki_dir().to_str().unwrap(),
    ]);
    assert!(issue.status.success(), "{}", output_text(&issue));
    let pki = server.pki_dir();
    let as_reader = Command::new(env!("CARGO_BIN_EXE_idreg"))
        .args([
            "ca",
            "import",
            "--certificate",
            &s(&own_crt),
            "--private-key",
            &s(&own_key),
        ])
        .env("IDREG_ENDPOINT", server_grpc(&server))
        .env("IDREG_CACERT", pki.join("peer-ca.crt"))
        .env("IDREG_CERT", pki.join("ro.crt"))
        .env("IDREG_KEY", pki.join("ro.key"))
        .output()
        .unwrap();
    let text = output_text(&as_reader);
    assert!(
        text.contains("PermissionDenied") && text.contains("admin"),
        "{text}"
    );
    assert_eq!(ca_json(&server)["sha256"], ca["sha256"], "unchanged");

    // The import: shown, and served to devices at once.
    let (ok, text) = import(&own_crt, &own_key);
    assert!(ok, "{text}");
    let now = ca_json(&server);
    assert_eq!(now["origin"], "imported");
    assert!(now["subject"].as_str().unwrap().contains("Acme device CA"));
    let own_der = tmp.path().join("own.der");
    openssl(&[
        "x509",
        "-in",
        &s(&own_crt),
        "-outform",
        "DER",
        "-out",
        &s(&own_der),
    ]);
    assert_eq!(now["sha256"].as_str().unwrap(), der_fingerprint(&own_der));
    coap_get(
        &front,
        "sensor-1",
        "/.well-known/est/crts",
        &["-A", "287"],
        &der,
    );
    assert_eq!(
        std::fs::read(&der).unwrap(),
        std::fs::read(&own_der).unwrap()
    );

    // The key went into raft and RocksDB sealed: no PKCS#8 body of it in
    // any file of the data directory.
    let key_der = tmp.path().join("own.pk8");
    openssl(&[
        "pkey",
        "-in",
        &s(&own_key),
        "-outform",
        "DER",
        "-out",
        &s(&key_der),
    ]);
    let key_der = std::fs::read(&key_der).unwrap();
    // ECPrivateKey { version 1, privateKey OCTET STRING (32) … }.
    let at = key_der
        .windows(5)
        .position(|w| w == [0x02, 0x01, 0x01, 0x04, 0x20])
        .expect("an ECPrivateKey inside the PKCS#8")
        + 5;
    let secret = &key_der[at..at + 32];
    drop(server);
    assert_no_file_holds(&tmp.path().join("node"), secret);
}

fn server_grpc(server: &Server) -> String {
    server.grpc_addr.clone()
}

/// Fails if any file under `dir` contains `needle`.
fn assert_no_file_holds(dir: &Path, needle: &[u8]) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_no_file_holds(&path, needle);
        } else if let Ok(bytes) = std::fs::read(&path) {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds the CA key in the clear",
                path.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_founding_nodes_share_one_device_ca() {
    let cluster = TestCluster::start(3, &[]).await;
    let fingerprints: Vec<String> = (1..=3)
        .map(|id| {
            ca_json(cluster.node(id))["sha256"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        fingerprints.iter().all(|f| f == &fingerprints[0]),
        "{fingerprints:?}"
    );
}
