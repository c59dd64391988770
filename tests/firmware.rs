//! Firmware updates as a vendor and an operator meet them. So far: the
//! vendors trusted to sign manifests, with keys made by openssl.

mod common;

use common::*;

/// A P-256 (or other curve) key pair made by openssl: (private, public PEM paths).
fn vendor_key(dir: &std::path::Path, name: &str, curve: &str) -> (String, String) {
    let key = dir.join(format!("{name}.key")).display().to_string();
    let public = dir.join(format!("{name}.pub.pem")).display().to_string();
    openssl(&["ecparam", "-name", curve, "-genkey", "-noout", "-out", &key]);
    openssl(&["pkey", "-in", &key, "-pubout", "-out", &public]);
    (key, public)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendors_are_trusted_by_name_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("node")).await;
    let (_, acme) = vendor_key(tmp.path(), "acme", "prime256v1");

    cli_ok(&server, &["firmware", "signer", "add", "acme", "--public-key", &acme]);
    let list: serde_json::Value = serde_json::from_str(&cli_ok(
        &server,
        &["firmware", "signer", "list", "-o", "json"],
    ))
    .unwrap();
    // The fingerprint is what openssl says of the key's DER.
    let der = tmp.path().join("acme.pub.der").display().to_string();
    openssl(&["pkey", "-pubin", "-in", &acme, "-outform", "DER", "-out", &der]);
    let sha = openssl(&["dgst", "-sha256", "-r", &der]);
    assert_eq!(list[0]["name"], "acme", "{list}");
    assert_eq!(
        list[0]["fingerprint"].as_str(),
        sha.split_whitespace().next(),
        "{list}"
    );

    // Refused, each with a clear error, nothing stored: the name again, a
    // P-384 key, a file that is no key.
    let again = server.cli(&["firmware", "signer", "add", "acme", "--public-key", &acme]);
    assert!(!again.status.success());
    assert!(output_text(&again).contains("already exists"), "{}", output_text(&again));
    let (_, p384) = vendor_key(tmp.path(), "big", "secp384r1");
    let wrong = server.cli(&["firmware", "signer", "add", "big", "--public-key", &p384]);
    assert!(!wrong.status.success());
    assert!(output_text(&wrong).contains("P-256"), "{}", output_text(&wrong));
    let junk = tmp.path().join("junk.pem");
    std::fs::write(&junk, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").unwrap();
    let junk = server.cli(&[
        "firmware",
        "signer",
        "add",
        "junk",
        "--public-key",
        junk.to_str().unwrap(),
    ]);
    assert!(!junk.status.success(), "{}", output_text(&junk));
    let list = cli_ok(&server, &["firmware", "signer", "list", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");

    cli_ok(&server, &["firmware", "signer", "remove", "acme"]);
    let gone = server.cli(&["firmware", "signer", "remove", "acme"]);
    assert!(output_text(&gone).contains("NotFound"), "{}", output_text(&gone));
    let list = cli_ok(&server, &["firmware", "signer", "list", "-o", "json"]);
    assert_eq!(list.trim(), "[]");
}
