//! Zero-touch enrollment as a device maker does it: a manufacturer CA and an
//! IDevID made with `openssl`, an enrollment group registered with the CLI,
//! and libcoap's `coap-client-openssl` enrolling over EST-coaps (`sen`,
//! PKCS#10 in 64-byte Block1 blocks), the certificate checked with `openssl
//! verify` against the device CA, then used for `/id`. The same with a
//! bootstrap PSK, used once. Every refusal is a clear CoAP error and
//! registers nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::cluster::TestCluster;
use common::*;

/// A directory of PEM/DER files a device maker keeps.
struct Workshop {
    dir: PathBuf,
}

impl Workshop {
    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }

    /// A P-256 (or other curve) key.
    fn key(&self, name: &str, curve: &str) -> String {
        let path = self.path(name);
        openssl(&[
            "ecparam", "-genkey", "-name", curve, "-noout", "-out", &path,
        ]);
        path
    }

    /// A self-signed CA.
    fn ca(&self, name: &str, cn: &str) -> (String, String) {
        let key = self.key(&format!("{name}.key"), "prime256v1");
        let cert = self.path(&format!("{name}.pem"));
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            &key,
            "-subj",
            &format!("/CN={cn}"),
            "-days",
            "3650",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            &cert,
        ]);
        (cert, key)
    }

    /// A device certificate (an IDevID) with subject CN `cn`, signed by a CA.
    fn idevid(&self, name: &str, cn: &str, ca: &(String, String)) -> (String, String) {
        let key = self.key(&format!("{name}.key"), "prime256v1");
        let csr = self.path(&format!("{name}.csr"));
        let cert = self.path(&format!("{name}.pem"));
        openssl(&[
            "req",
            "-new",
            "-key",
            &key,
            "-subj",
            &format!("/CN={cn}"),
            "-out",
            &csr,
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca.0,
            "-CAkey",
            &ca.1,
            "-set_serial",
            "4242",
            "-days",
            "3650",
            "-out",
            &cert,
        ]);
        (cert, key)
    }

    /// A DER PKCS#10 request for a new operational key.
    fn csr(&self, name: &str, cn: &str, curve: &str) -> (String, String) {
        let key = self.key(&format!("{name}.key"), curve);
        let csr = self.path(&format!("{name}.csr.der"));
        openssl(&[
            "req",
            "-new",
            "-key",
            &key,
            "-subj",
            &format!("/CN={cn}"),
            "-outform",
            "DER",
            "-out",
            &csr,
        ]);
        (csr, key)
    }

    /// DER certificate to PEM.
    fn pem_of(&self, der: &str) -> String {
        let pem = format!("{der}.pem");
        openssl(&["x509", "-inform", "DER", "-in", der, "-out", &pem]);
        pem
    }
}

fn coap_client() -> Option<PathBuf> {
    external_tool("coap-client-openssl")
}

/// Runs coap-client-openssl and returns what it printed (it exits 0 even
/// on failure, so callers assert on the text).
fn coap(tool: &Path, args: &[&str], uri: &str) -> String {
    coap_waiting(tool, 10, args, uri)
}

fn coap_waiting(tool: &Path, wait_secs: u32, args: &[&str], uri: &str) -> String {
    let out = Command::new("timeout")
        .arg("30")
        .arg(tool)
        .args(["-B", &wait_secs.to_string()])
        .args(args)
        .arg(uri)
        .output()
        .expect("run coap-client");
    format!(
        "{}\n--stderr--\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// POSTs a DER CSR to `sen` (or `sren`) in 64-byte blocks, the certificate
/// saved (DER) to `out`.
fn enroll(tool: &Path, front: &str, credential: &[&str], op: &str, csr: &str, out: &str) -> String {
    let _ = std::fs::remove_file(out);
    let mut args = credential.to_vec();
    args.extend([
        "-m", "post", "-t", "286", "-A", "287", "-b", "64", "-f", csr, "-o", out,
    ]);
    coap(
        tool,
        &args,
        &format!("coaps://{front}/.well-known/est/{op}"),
    )
}

/// A bootstrap group `group` and device `id` registered with a one-time PSK
/// (identity `identity`, secret `secret`).
fn bootstrap_device(
    server: &Server,
    shop: &Workshop,
    group: &str,
    id: &str,
    identity: &str,
    secret: &str,
) {
    let _ = server.cli(&["enrollment-group", "add", group, "--bootstrap"]);
    let psk_file = shop.path(&format!("{id}.psk"));
    std::fs::write(&psk_file, format!("{secret}\n")).unwrap();
    cli_ok(
        server,
        &[
            "device",
            "add",
            id,
            "--psk-identity",
            identity,
            "--bootstrap-psk-file",
            &psk_file,
            "--enrollment-group",
            group,
        ],
    );
}

fn device_json(server: &Server, id: &str) -> Option<serde_json::Value> {
    let out = server.cli(&["device", "get", id, "-o", "json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).expect("json"))
}

fn device_count(server: &Server) -> usize {
    let out = cli_ok(server, &["device", "list", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    v.as_array().map_or(0, Vec::len)
}

/// The device CA as a PEM file, for `openssl verify`.
fn device_ca_pem(server: &Server, shop: &Workshop) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = server.cli(&["ca", "show"]);
        if out.status.success() {
            let path = shop.path("device-ca.pem");
            std::fs::write(&path, &out.stdout).unwrap();
            return path;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            output_text(&out)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One node, its device CA as a PEM file in a workshop beside it.
struct Site {
    /// Declared (and so bound) first: dropped after the node.
    _tmp: tempfile::TempDir,
    shop: Workshop,
    server: Server,
    /// The device front's UDP address.
    front: String,
    /// The device CA's PEM file.
    device_ca: String,
}

async fn site() -> Site {
    let tmp = tempfile::tempdir().unwrap();
    let shop = Workshop {
        dir: tmp.path().to_path_buf(),
    };
    let server = Server::start(&tmp.path().join("node")).await;
    let front = server.front_addr().await.to_string();
    let device_ca = device_ca_pem(&server, &shop);
    Site {
        _tmp: tmp,
        shop,
        server,
        front,
        device_ca,
    }
}

fn verify(ca: &str, cert_pem: &str) {
    let out = openssl(&["verify", "-CAfile", ca, cert_pem]);
    assert!(out.contains(": OK"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_enrolls_with_its_manufacturer_certificate_and_then_uses_its_own() {
    let Some(tool) = coap_client() else { return };
    let Site {
        _tmp,
        shop,
        server,
        front,
        device_ca,
    } = site().await;

    let maker = shop.ca("maker", "Acme Manufacturing CA");
    cli_ok(
        &server,
        &[
            "enrollment-group",
            "add",
            "factory",
            "--ca",
            &maker.0,
            "--id-template",
            "acme-{cn}",
            "--label",
            "site=berlin",
            "--tenant",
            "acme",
            "--max-devices",
            "2",
        ],
    );
    let shown = cli_ok(
        &server,
        &["enrollment-group", "show", "factory", "-o", "json"],
    );
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["attestation"], "manufacturer-ca");
    assert_eq!(shown["enrolled"], 0);
    assert!(shown["manufacturer_ca_subject"]
        .as_str()
        .unwrap()
        .contains("Acme Manufacturing CA"));

    // Enroll: the IDevID opens the session, the CSR names the new key.
    let idevid = shop.idevid("idevid", "SN-0042", &maker);
    let idevid_flags = ["-c", &idevid.0, "-j", &idevid.1];
    let (csr, op_key) = shop.csr("op", "acme-SN-0042", "prime256v1");
    let issued = shop.path("issued.der");
    let log = enroll(&tool, &front, &idevid_flags, "sen", &csr, &issued);
    assert!(Path::new(&issued).exists(), "no certificate: {log}");
    let issued_pem = shop.pem_of(&issued);
    verify(&device_ca, &issued_pem);
    let text = openssl(&["x509", "-in", &issued_pem, "-noout", "-text"]);
    assert!(
        text.contains("CN = acme-SN-0042") || text.contains("CN=acme-SN-0042"),
        "{text}"
    );
    assert!(text.contains("TLS Web Client Authentication"), "{text}");

    // The registry has the device from the group, with the issued certificate.
    let d = device_json(&server, "acme-SN-0042").expect("enrolled device");
    assert_eq!(d["tenant"], "acme");
    assert_eq!(d["labels"]["site"], "berlin");
    assert_eq!(d["credentials"][0]["kind"], "issued-certificate");
    let history = cli_ok(&server, &["device", "history", "acme-SN-0042"]);
    assert!(history.contains("enroll"), "{history}");

    // With its new certificate and key the device is itself.
    let id = coap(
        &tool,
        &["-m", "get", "-c", &issued_pem, "-j", &op_key],
        &format!("coaps://{front}/id"),
    );
    assert!(id.contains("acme-SN-0042 active certificate"), "{id}");

    // The IDevID session reaches enrollment only.
    let id = coap(
        &tool,
        &["-m", "get", "-c", &idevid.0, "-j", &idevid.1],
        &format!("coaps://{front}/id"),
    );
    assert!(id.contains("4.03"), "{id}");

    // A retried request (a lost response) gets the same certificate back.
    let again = shop.path("again.der");
    let log = enroll(&tool, &front, &idevid_flags, "sen", &csr, &again);
    assert_eq!(
        std::fs::read(&again).unwrap_or_default(),
        std::fs::read(&issued).unwrap(),
        "{log}"
    );
    let group = cli_ok(
        &server,
        &["enrollment-group", "show", "factory", "-o", "json"],
    );
    let group: serde_json::Value = serde_json::from_str(&group).unwrap();
    assert_eq!(group["enrolled"], 1);
    assert_eq!(device_count(&server), 1);

    // Refusals, each a clear CoAP error, each registering nothing.
    let second = shop.idevid("idevid2", "SN-0043", &maker);
    let second_flags = ["-c", &second.0, "-j", &second.1];
    let out = shop.path("refused.der");
    let (p384, _) = shop.csr("p384", "acme-SN-0043", "secp384r1");
    let log = enroll(&tool, &front, &second_flags, "sen", &p384, &out);
    assert!(log.contains("4.00") && log.contains("P-256"), "{log}");

    // One byte of the subject changed: the signature no longer proves the key.
    let (good, _) = shop.csr("good", "acme-SN-0043", "prime256v1");
    let mut der = std::fs::read(&good).unwrap();
    let at = der.windows(4).position(|w| w == b"0043").unwrap();
    der[at] = b'9';
    let forged = shop.path("forged.csr.der");
    std::fs::write(&forged, &der).unwrap();
    let log = enroll(&tool, &front, &second_flags, "sen", &forged, &out);
    assert!(log.contains("4.00") && log.contains("possession"), "{log}");

    // A device certificate of another manufacturer: no session at all.
    let other_maker = shop.ca("other", "Other Manufacturing CA");
    let stranger = shop.idevid("stranger", "SN-9", &other_maker);
    let log = enroll(
        &tool,
        &front,
        &["-c", &stranger.0, "-j", &stranger.1],
        "sen",
        &good,
        &out,
    );
    assert!(!Path::new(&out).exists(), "{log}");

    // The operational certificate enrolls only its own id.
    let (other_id, _) = shop.csr("other-id", "acme-SN-9999", "prime256v1");
    let op_flags = ["-c", &issued_pem, "-j", &op_key];
    let log = enroll(&tool, &front, &op_flags, "sen", &other_id, &out);
    assert!(log.contains("4.03") && log.contains("only itself"), "{log}");

    cli_ok(&server, &["enrollment-group", "disable", "factory"]);
    let log = enroll(&tool, &front, &second_flags, "sen", &good, &out);
    assert!(log.contains("4.03") && log.contains("disabled"), "{log}");
    assert!(device_json(&server, "acme-SN-0043").is_none());
    assert_eq!(device_count(&server), 1);

    cli_ok(&server, &["enrollment-group", "enable", "factory"]);
    let log = enroll(&tool, &front, &second_flags, "sen", &good, &out);
    assert!(Path::new(&out).exists(), "{log}");
    // The group is now full (2).
    let third = shop.idevid("idevid3", "SN-0044", &maker);
    let (csr3, _) = shop.csr("third", "acme-SN-0044", "prime256v1");
    let log = enroll(
        &tool,
        &front,
        &["-c", &third.0, "-j", &third.1],
        "sen",
        &csr3,
        &out,
    );
    assert!(log.contains("4.03") && log.contains("full"), "{log}");
    assert_eq!(device_count(&server), 2);

    // A group past its expiry enrolls nobody.
    let late_maker = shop.ca("late", "Late Manufacturing CA");
    cli_ok(
        &server,
        &[
            "enrollment-group",
            "add",
            "late",
            "--ca",
            &late_maker.0,
            "--expires",
            "2s",
        ],
    );
    std::thread::sleep(Duration::from_millis(2500));
    let late = shop.idevid("late-dev", "SN-7", &late_maker);
    let (csr7, _) = shop.csr("seven", "SN-7", "prime256v1");
    let log = enroll(
        &tool,
        &front,
        &["-c", &late.0, "-j", &late.1],
        "sen",
        &csr7,
        &out,
    );
    assert!(log.contains("4.03") && log.contains("expired"), "{log}");
    assert_eq!(device_count(&server), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_psk_enrolls_once_and_is_refused_afterwards() {
    let Some(tool) = coap_client() else { return };
    let Site {
        _tmp,
        shop,
        server,
        front,
        device_ca,
    } = site().await;

    cli_ok(
        &server,
        &[
            "enrollment-group",
            "add",
            "line-2",
            "--bootstrap",
            "--label",
            "line=2",
        ],
    );
    let secret = "bootstrap-secret-0123456789";
    // The identity defaults to the device id.
    let psk_file = shop.path("boot.psk");
    std::fs::write(&psk_file, format!("{secret}\n")).unwrap();
    cli_ok(
        &server,
        &[
            "device",
            "add",
            "valve-9",
            "--bootstrap-psk-file",
            &psk_file,
            "--enrollment-group",
            "line-2",
        ],
    );
    let d = device_json(&server, "valve-9").unwrap();
    assert!(
        d["credentials"][0]["kind"]
            .as_str()
            .unwrap()
            .starts_with("bootstrap-psk"),
        "{d}"
    );

    // The bootstrap PSK reaches EST only.
    let boot = ["-u", "valve-9", "-k", secret];
    let id = coap(
        &tool,
        &[&["-m", "get"][..], &boot].concat(),
        &format!("coaps://{front}/id"),
    );
    assert!(id.contains("4.03"), "{id}");

    let (csr, key) = shop.csr("valve", "valve-9", "prime256v1");
    let issued = shop.path("valve.der");
    let log = enroll(&tool, &front, &boot, "sen", &csr, &issued);
    assert!(Path::new(&issued).exists(), "{log}");
    let issued_pem = shop.pem_of(&issued);
    verify(&device_ca, &issued_pem);
    let id = coap(
        &tool,
        &["-m", "get", "-c", &issued_pem, "-j", &key],
        &format!("coaps://{front}/id"),
    );
    assert!(id.contains("valve-9 active certificate"), "{id}");

    // Used once: the PSK is gone from the device and refused at the handshake.
    let d = device_json(&server, "valve-9").unwrap();
    assert_eq!(d["credentials"].as_array().unwrap().len(), 1, "{d}");
    assert_eq!(d["credentials"][0]["kind"], "issued-certificate");
    let again = shop.path("again.der");
    let log = enroll(&tool, &front, &boot, "sen", &csr, &again);
    assert!(!Path::new(&again).exists(), "{log}");
    let group = cli_ok(
        &server,
        &["enrollment-group", "show", "line-2", "-o", "json"],
    );
    let group: serde_json::Value = serde_json::from_str(&group).unwrap();
    assert_eq!(group["enrolled"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sren_with_a_new_key_keeps_the_old_one_until_the_new_one_is_used() {
    use idreg_client::device::{certificate_from_pem, DeviceClient, DeviceCredential};
    let Some(tool) = coap_client() else { return };
    let Site {
        _tmp,
        shop,
        server,
        front,
        device_ca,
    } = site().await;

    // Enrolled once (bootstrap PSK): key A with certificate A.
    bootstrap_device(
        &server,
        &shop,
        "boot",
        "pump-1",
        "pump-1",
        "bootstrap-secret-0123456789",
    );
    let (csr_a, key_a) = shop.csr("a", "pump-1", "prime256v1");
    let cert_a = shop.path("a.der");
    let boot = ["-u", "pump-1", "-k", "bootstrap-secret-0123456789"];
    let log = enroll(&tool, &front, &boot, "sen", &csr_a, &cert_a);
    assert!(Path::new(&cert_a).exists(), "{log}");
    let cert_a = shop.pem_of(&cert_a);
    let a_flags = ["-c", cert_a.as_str(), "-j", key_a.as_str()];
    let id_uri = format!("coaps://{front}/id");

    // A live session on key A (the Rust client on webrtc-dtls: PKCS#8 key).
    let key_a_p8 = shop.path("a.p8");
    openssl(&[
        "pkcs8", "-topk8", "-nocrypt", "-in", &key_a, "-out", &key_a_p8,
    ]);
    let credential = certificate_from_pem(
        &std::fs::read_to_string(&cert_a).unwrap(),
        &std::fs::read_to_string(&key_a_p8).unwrap(),
    )
    .unwrap();
    let mut live = DeviceClient::connect(
        server.front_addr().await,
        DeviceCredential::Certificate(Box::new(credential)),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(
        live.get("/id", None).await.unwrap().text(),
        "pump-1 active certificate"
    );

    // Re-enrollment with key B over the session of key A.
    let (csr_b, key_b) = shop.csr("b", "pump-1", "prime256v1");
    let cert_b = shop.path("b.der");
    let log = enroll(&tool, &front, &a_flags, "sren", &csr_b, &cert_b);
    assert!(Path::new(&cert_b).exists(), "{log}");
    let cert_b = shop.pem_of(&cert_b);
    verify(&device_ca, &cert_b);
    let d = device_json(&server, "pump-1").unwrap();
    assert_eq!(d["credentials"].as_array().unwrap().len(), 2, "{d}");

    // Until B is used, A still works, and its session goes on.
    let out = coap(&tool, &[&["-m", "get"][..], &a_flags].concat(), &id_uri);
    assert!(out.contains("pump-1 active certificate"), "{out}");
    assert_eq!(
        live.get("/id", None).await.unwrap().text(),
        "pump-1 active certificate"
    );

    // B used: A is retired, refused, and its live session ends.
    let out = coap(&tool, &["-m", "get", "-c", &cert_b, "-j", &key_b], &id_uri);
    assert!(out.contains("pump-1 active certificate"), "{out}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while device_json(&server, "pump-1").unwrap()["credentials"]
        .as_array()
        .unwrap()
        .len()
        != 1
    {
        assert!(std::time::Instant::now() < deadline, "key A never retired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = coap(&tool, &[&["-m", "get"][..], &a_flags].concat(), &id_uri);
    assert!(!out.contains("active"), "{out}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s = sessions_of(&server, "pump-1").await;
        if s.iter().any(|x| x.end_reason == "revoked") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    live.request_timeout = Duration::from_secs(3);
    assert!(
        live.get("/id", None).await.is_err(),
        "the old key's session still answers"
    );
    let history = cli_ok(&server, &["device", "history", "pump-1"]);
    assert!(history.contains("complete-rotation"), "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiocoap_posts_a_csr_block_wise_and_gets_its_certificate() {
    let Some(python) = aiocoap_python() else {
        return;
    };
    let Site {
        _tmp,
        shop,
        server,
        front,
        device_ca,
    } = site().await;
    // tinydtls (DTLSSocket) takes PSKs of at most 16 bytes.
    bootstrap_device(
        &server,
        &shop,
        "aio",
        "aio-7",
        "aio-7-boot",
        "sixteen-byte-key",
    );
    let (csr, _) = shop.csr("aio", "aio-7", "prime256v1");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/aiocoap_post.py");
    let out = shop.path("aio.der");
    // 32-byte blocks: the CSR takes ~8 of them, the certificate ~15.
    let log = run_text(
        Command::new("timeout")
            .arg("60")
            .arg(&python)
            .arg(&script)
            .arg(format!("coaps://{front}/.well-known/est/sen"))
            .args([
                "aio-7-boot",
                "sixteen-byte-key",
                &csr,
                "286",
                "287",
                "1",
                &out,
            ]),
    );
    assert!(log.starts_with("2.04"), "{log}");
    let pem = shop.pem_of(&out);
    verify(&device_ca, &pem);
    let d = device_json(&server, "aio-7").unwrap();
    assert_eq!(d["credentials"][0]["kind"], "issued-certificate", "{d}");
}

fn run_text(cmd: &mut Command) -> String {
    output_text(&cmd.output().expect("run"))
}

/// SHA-256 of a PEM key's SubjectPublicKeyInfo DER: the registry's
/// fingerprint of it.
fn key_fingerprint(key: &str) -> String {
    let der = format!("{key}.spki.der");
    openssl(&[
        "pkey", "-in", key, "-pubout", "-outform", "DER", "-out", &der,
    ]);
    let out = openssl(&["dgst", "-sha256", "-r", &der]);
    out.split_whitespace().next().unwrap().to_owned()
}

/// Whether libcoap saved a DER certificate to `out`: it also saves the
/// diagnostic of an error answer (a node losing its leader says 5.03), which
/// is no enrollment. Anything else is removed, so a retry starts clean.
fn holds_certificate(out: &str) -> bool {
    let der = std::fs::read(out).unwrap_or_default();
    let ok = idreg_core::device_ca::describe_certificate(&der).is_some();
    if !ok {
        let _ = std::fs::remove_file(out);
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_through_every_node_survives_a_kill_9() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let Some(tool) = coap_client() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let shop = Arc::new(Workshop {
        dir: tmp.path().to_path_buf(),
    });
    let mut cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.wait_for_leader().await;
    let maker = shop.ca("maker", "Acme Manufacturing CA");
    cli_ok(
        cluster.node(leader),
        &[
            "enrollment-group",
            "add",
            "fleet",
            "--ca",
            &maker.0,
            "--id-template",
            "{cn}",
        ],
    );
    const PER_NODE: usize = 4;
    // Device k of node n: its IDevID, CSR and key.
    let mut plan = Vec::new();
    for n in 1..=3u64 {
        for k in 0..PER_NODE {
            let name = format!("dev-{n}-{k}");
            let idevid = shop.idevid(&format!("{name}-idevid"), &name, &maker);
            let (csr, key) = shop.csr(&name, &name, "prime256v1");
            plan.push((n, name, idevid, csr, key));
        }
    }
    let fronts: Vec<String> = {
        let mut f = Vec::new();
        for n in 1..=3u64 {
            f.push(cluster.node(n).front_addr().await.to_string());
        }
        f
    };
    // Every node's devices enroll through that node, one after another;
    // the leader is killed once a few have.
    let done = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for n in 1..=3u64 {
        let mine: Vec<_> = plan.iter().filter(|p| p.0 == n).cloned().collect();
        let (tool, shop, done, front) = (
            tool.clone(),
            shop.clone(),
            done.clone(),
            fronts[n as usize - 1].clone(),
        );
        workers.push(std::thread::spawn(move || {
            let mut failed = Vec::new();
            for (_, name, idevid, csr, _) in mine {
                let out = shop.path(&format!("{name}.der"));
                let _ = std::fs::remove_file(&out);
                let mut args = vec!["-c", idevid.0.as_str(), "-j", idevid.1.as_str()];
                args.extend([
                    "-m", "post", "-t", "286", "-A", "287", "-b", "64", "-f", &csr, "-o", &out,
                ]);
                coap_waiting(
                    &tool,
                    4,
                    &args,
                    &format!("coaps://{front}/.well-known/est/sen"),
                );
                if holds_certificate(&out) {
                    done.fetch_add(1, Ordering::SeqCst);
                } else {
                    failed.push(name);
                }
            }
            failed
        }));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while done.load(Ordering::SeqCst) < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.kill9(leader);
    let mut failed: Vec<String> = Vec::new();
    for w in workers {
        failed.extend(w.join().unwrap());
    }
    assert!(!failed.is_empty(), "the kill interrupted nothing");

    // Those that got no answer try again through a survivor (bounded): the
    // same IDevID and CSR, so a write that did land is found, not repeated.
    let survivor = (1..=3).find(|n| *n != leader).unwrap();
    let front = &fronts[survivor as usize - 1];
    for name in &failed {
        let (_, _, idevid, csr, _) = plan.iter().find(|p| &p.1 == name).unwrap();
        let out = shop.path(&format!("{name}.der"));
        for _ in 0..10 {
            let log = enroll(
                &tool,
                front,
                &["-c", &idevid.0, "-j", &idevid.1],
                "sen",
                csr,
                &out,
            );
            if holds_certificate(&out) {
                break;
            }
            eprintln!("retry {name}: {log}");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert!(holds_certificate(&out), "{name} never enrolled");
    }

    // Every device once, whole: its one credential is the key it asked a
    // certificate for, and the certificate it holds is for that key.
    cluster.restart(leader, "existing").await;
    let status = cluster.status(survivor).await;
    cluster.wait_applied(leader, status.applied_index).await;
    let ids: std::collections::BTreeSet<String> = plan.iter().map(|p| p.1.clone()).collect();
    for n in 1..=3u64 {
        let held = common::cluster::all_ids_local(&cluster.node(n).grpc_addr).await;
        assert_eq!(held, ids, "node {n}");
    }
    for (_, name, _, _, key) in &plan {
        let d = device_json(cluster.node(survivor), name).unwrap();
        let creds = d["credentials"].as_array().unwrap();
        assert_eq!(creds.len(), 1, "{d}");
        assert_eq!(creds[0]["kind"], "issued-certificate", "{d}");
        let fp = key_fingerprint(key);
        assert_eq!(creds[0]["fingerprint"], fp.as_str(), "{d}");
        let cert = shop.pem_of(&shop.path(&format!("{name}.der")));
        let cert_key = shop.path(&format!("{name}.certkey.pem"));
        let pubkey = openssl(&["x509", "-in", &cert, "-noout", "-pubkey"]);
        std::fs::write(&cert_key, pubkey).unwrap();
        let der = format!("{cert_key}.der");
        openssl(&[
            "pkey", "-pubin", "-in", &cert_key, "-outform", "DER", "-out", &der,
        ]);
        let out = openssl(&["dgst", "-sha256", "-r", &der]);
        assert_eq!(out.split_whitespace().next().unwrap(), fp, "{name}");
    }
    let group = cli_ok(
        cluster.node(survivor),
        &["enrollment-group", "show", "fleet", "-o", "json"],
    );
    let group: serde_json::Value = serde_json::from_str(&group).unwrap();
    assert_eq!(group["enrolled"], plan.len(), "counted once per device");
}
