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

    cli_ok(
        &server,
        &["firmware", "signer", "add", "acme", "--public-key", &acme],
    );
    let list: serde_json::Value = serde_json::from_str(&cli_ok(
        &server,
        &["firmware", "signer", "list", "-o", "json"],
    ))
    .unwrap();
    // The fingerprint is what openssl says of the key's DER.
    let der = tmp.path().join("acme.pub.der").display().to_string();
    openssl(&[
        "pkey", "-pubin", "-in", &acme, "-outform", "DER", "-out", &der,
    ]);
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
    assert!(
        output_text(&again).contains("already exists"),
        "{}",
        output_text(&again)
    );
    let (_, p384) = vendor_key(tmp.path(), "big", "secp384r1");
    let wrong = server.cli(&["firmware", "signer", "add", "big", "--public-key", &p384]);
    assert!(!wrong.status.success());
    assert!(
        output_text(&wrong).contains("P-256"),
        "{}",
        output_text(&wrong)
    );
    let junk = tmp.path().join("junk.pem");
    std::fs::write(
        &junk,
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
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
    assert!(
        output_text(&gone).contains("NotFound"),
        "{}",
        output_text(&gone)
    );
    let list = cli_ok(&server, &["firmware", "signer", "list", "-o", "json"]);
    assert_eq!(list.trim(), "[]");
}

/// A vendor signs a manifest with Python's cbor2 + cryptography (not
/// idreg's code); idreg checks it against its registered signers and the
/// image against it, storing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_signed_by_an_independent_implementation_is_checked() {
    let Some(python) = python_with("cbor2, cryptography") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("node")).await;
    let (acme_key, acme_pub) = vendor_key(tmp.path(), "acme", "prime256v1");
    let (rogue_key, _) = vendor_key(tmp.path(), "rogue", "prime256v1");
    cli_ok(
        &server,
        &[
            "firmware",
            "signer",
            "add",
            "acme",
            "--public-key",
            &acme_pub,
        ],
    );
    let image = tmp.path().join("fw.bin");
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&image, &bytes).unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/fw_manifest.py");
    let sign = |key: &str, out: &str| {
        let o = std::process::Command::new(&python)
            .arg(&script)
            .args([key, "acme", "thermo-v2", "1.4.2"])
            .arg(&image)
            .args([out, "1.2.0"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", output_text(&o));
        out.to_string()
    };
    let good = sign(&acme_key, &tmp.path().join("m.cose").display().to_string());
    let img = image.to_str().unwrap();

    let v: serde_json::Value = serde_json::from_str(&cli_ok(
        &server,
        &[
            "firmware", "manifest", "check", &good, "--image", img, "-o", "json",
        ],
    ))
    .unwrap();
    assert_eq!(v["signer"], "acme", "{v}");
    assert_eq!(v["version"], "1.4.2", "{v}");
    assert_eq!(v["min_version"], "1.2.0", "{v}");
    assert_eq!(v["image_size"], 100_000, "{v}");
    assert_eq!(v["image_checked"], true, "{v}");

    // Refused, each saying why: a changed image, a truncated one, a key no
    // one registered, a manifest with a flipped byte.
    let refused = |args: &[&str], why: &str| {
        let o = server.cli(args);
        assert!(!o.status.success(), "{args:?} was accepted");
        assert!(
            output_text(&o).contains(why),
            "{args:?}: {}",
            output_text(&o)
        );
    };
    let mut changed = bytes.clone();
    changed[5000] ^= 1;
    let changed_path = tmp.path().join("changed.bin");
    std::fs::write(&changed_path, &changed).unwrap();
    let changed_path = changed_path.display().to_string();
    refused(
        &[
            "firmware",
            "manifest",
            "check",
            &good,
            "--image",
            &changed_path,
        ],
        "SHA-256",
    );
    let short = tmp.path().join("short.bin");
    std::fs::write(&short, &bytes[..99_000]).unwrap();
    let short = short.display().to_string();
    refused(
        &["firmware", "manifest", "check", &good, "--image", &short],
        "99000 bytes",
    );
    let rogue = sign(
        &rogue_key,
        &tmp.path().join("rogue.cose").display().to_string(),
    );
    refused(
        &["firmware", "manifest", "check", &rogue],
        "not signed by a registered signer",
    );
    let mut tampered = std::fs::read(&good).unwrap();
    let n = tampered.len();
    tampered[n - 70] ^= 0x01;
    let tampered_path = tmp.path().join("tampered.cose");
    std::fs::write(&tampered_path, &tampered).unwrap();
    refused(
        &[
            "firmware",
            "manifest",
            "check",
            tampered_path.to_str().unwrap(),
        ],
        "InvalidArgument",
    );
}
