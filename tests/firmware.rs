//! Firmware updates as a vendor, an operator and a device meet them: the
//! vendors trusted to sign manifests (keys made by openssl), manifests
//! signed with Python's cbor2 + cryptography, uploads and their refusals,
//! rollouts, and an aiocoap device that fetches, checks and reports.

mod common;

use std::path::Path;
use std::process::Command;

use common::cluster::TestCluster;
use common::*;

/// tinydtls (aiocoap) takes PSKs of at most 16 bytes.
const KEY: &str = "sixteen-byte-key";

/// A manifest signed by `key` with tests/clients/fw_manifest.py (cbor2 +
/// cryptography): its path.
fn vendor_manifest(
    python: &Path,
    key: &str,
    (class, version, min): (&str, &str, Option<&str>),
    image: &Path,
    out: &Path,
) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/fw_manifest.py");
    let o = Command::new(python)
        .arg(&script)
        .args([key, "acme", class, version])
        .arg(image)
        .arg(out)
        .args(min)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    out.display().to_string()
}

/// A 3 MiB `thermo` image (96 chunks of 32 KiB, each its own raft entry)
/// whose bytes follow `(step, modulus)`, and its manifest signed by `key`:
/// (image, manifest) paths.
fn three_mib_release(
    python: &Path,
    key: &str,
    version: &str,
    (step, modulus): (u32, u32),
    dir: &Path,
) -> (std::path::PathBuf, String) {
    let bytes: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i * step % modulus) as u8)
        .collect();
    let image = dir.join("fw.bin");
    std::fs::write(&image, &bytes).unwrap();
    let manifest = vendor_manifest(
        python,
        key,
        ("thermo", version, None),
        &image,
        &dir.join("m.cose"),
    );
    (image, manifest)
}

/// `firmware rollout status 1.4.2 --class thermo`, as JSON.
fn rollout_status(server: &Server) -> serde_json::Value {
    serde_json::from_str(&cli_ok(
        server,
        &[
            "firmware", "rollout", "status", "1.4.2", "--class", "thermo", "-o", "json",
        ],
    ))
    .unwrap()
}

fn releases(server: &Server) -> serde_json::Value {
    serde_json::from_str(&cli_ok(
        server,
        &["firmware", "release", "list", "--staged", "-o", "json"],
    ))
    .unwrap()
}

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
    let sign = |key: &str, out: &str| {
        vendor_manifest(
            &python,
            key,
            ("thermo-v2", "1.4.2", Some("1.2.0")),
            &image,
            Path::new(out),
        )
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

/// The whole path of an update: a vendor's upload (refused ones store
/// nothing), a rollout to one site, an aiocoap device that reports what it
/// runs, verifies the manifest with the vendor's key, downloads the image
/// block-wise across two DTLS sessions (interrupted, then resumed), checks
/// its SHA-256 and reports the new version; libcoap devices report with a
/// query on /id. Devices outside the rollout, on a newer version or below
/// the minimum are offered nothing (4.04).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_updates_through_a_rollout() {
    let Some(python) = python_with("aiocoap, DTLSSocket, cbor2, cryptography") else {
        return;
    };
    let Some(libcoap) = external_tool("coap-client-openssl") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("node")).await;
    let front = server.front_addr().await;
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
    // 100,000 bytes: four chunks in the store, 98 blocks of 1 KiB.
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let image = tmp.path().join("fw.bin");
    std::fs::write(&image, &bytes).unwrap();
    let manifest = vendor_manifest(
        &python,
        &acme_key,
        ("thermo", "1.4.2", Some("1.2.0")),
        &image,
        &tmp.path().join("m.cose"),
    );
    let img = image.to_str().unwrap();

    // Refused, each saying why, and nothing stored, staged or not.
    let refused = |manifest: &str, image: &str, why: &str| {
        let o = server.cli(&[
            "firmware",
            "upload",
            "--manifest",
            manifest,
            "--image",
            image,
        ]);
        assert!(!o.status.success(), "{manifest} {image} was accepted");
        assert!(output_text(&o).contains(why), "{}", output_text(&o));
        assert_eq!(releases(&server), serde_json::json!([]));
    };
    let rogue = vendor_manifest(
        &python,
        &rogue_key,
        ("thermo", "1.4.2", None),
        &image,
        &tmp.path().join("rogue.cose"),
    );
    refused(&rogue, img, "not signed by a registered signer");
    let mut changed = bytes.clone();
    changed[70_000] ^= 1;
    let changed_path = tmp.path().join("changed.bin");
    std::fs::write(&changed_path, &changed).unwrap();
    refused(&manifest, changed_path.to_str().unwrap(), "SHA-256");
    let short = tmp.path().join("short.bin");
    std::fs::write(&short, &bytes[..60_000]).unwrap();
    refused(&manifest, short.to_str().unwrap(), "60000 bytes");

    let uploaded: serde_json::Value = serde_json::from_str(&cli_ok(
        &server,
        &[
            "firmware",
            "upload",
            "--manifest",
            &manifest,
            "--image",
            img,
            "-o",
            "json",
        ],
    ))
    .unwrap();
    assert_eq!(uploaded[0]["state"], "complete", "{uploaded}");
    assert_eq!(uploaded[0]["chunks"], 4, "{uploaded}");
    let again = server.cli(&[
        "firmware",
        "upload",
        "--manifest",
        &manifest,
        "--image",
        img,
    ]);
    assert!(
        output_text(&again).contains("already exists"),
        "{}",
        output_text(&again)
    );

    // Devices: two in Berlin (one will be on 2.0.0), one in Paris, one of
    // another class, one below the minimum.
    let add = |id: &str, labels: &[&str]| {
        let extra: Vec<&str> = labels.iter().flat_map(|l| ["--label", *l]).collect();
        add_psk_device_cli(&server, id, KEY, &extra);
    };

    add("t1", &["idreg.io/class=thermo", "site=berlin"]);
    add("t2", &["idreg.io/class=thermo", "site=paris"]);
    add("t4", &["idreg.io/class=thermo", "site=berlin"]);
    add("t5", &["idreg.io/class=thermo", "site=berlin"]);
    add("o1", &["idreg.io/class=other", "site=berlin"]);
    let coap = |id: &str, path: &str| {
        libcoap_psk_get(
            &libcoap,
            &front.to_string(),
            (&format!("{id}-id"), KEY),
            path,
            &[],
        )
    };
    // The smallest devices report with a query on /id.
    assert!(coap("t4", "/id?fw=2.0.0").contains("t4 active"), "t4");
    // Saying the same again writes nothing (the report is stored in the
    // background: wait until it is, bounded).
    let applied = || -> u64 {
        let v: serde_json::Value =
            serde_json::from_str(&cli_ok(&server, &["cluster", "status", "-o", "json"])).unwrap();
        v["applied_index"].as_u64().unwrap()
    };
    let reported = || {
        let v: serde_json::Value = serde_json::from_str(&cli_ok(
            &server,
            &["firmware", "report", "--version", "2.0.0", "-o", "json"],
        ))
        .unwrap();
        v["devices"].as_array().unwrap().len() == 1
    };
    for _ in 0..100 {
        if reported() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(reported(), "t4's report is not stored");
    let before = applied();
    assert!(coap("t4", "/id?fw=2.0.0").contains("t4 active"), "t4 again");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(applied(), before, "a repeated report wrote");
    assert!(coap("t5", "/id?fw=1.1.0").contains("t5 active"), "t5");

    cli_ok(
        &server,
        &[
            "firmware",
            "rollout",
            "create",
            "1.4.2",
            "--class",
            "thermo",
            "--label",
            "site=berlin",
            "--percent",
            "100",
        ],
    );
    let update = |id: &str, running: &str, partial: &Path, stop: Option<&str>| {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/aiocoap_fw_update.py");
        let out = Command::new("timeout")
            .arg("120")
            .arg(&python)
            .arg(&script)
            .args([
                &format!("coaps://{front}"),
                &format!("{id}-id"),
                KEY,
                &acme_pub,
                running,
            ])
            .arg(partial)
            .args(stop)
            .output()
            .unwrap();
        output_text(&out)
    };
    let partial = tmp.path().join("t1.partial");
    let first = update("t1", "1.3.0", &partial, Some("40"));
    assert!(first.contains("MANIFEST 1.4.2 100000"), "{first}");
    assert!(first.contains("INTERRUPTED 40"), "{first}");
    assert_eq!(std::fs::metadata(&partial).unwrap().len(), 40 * 1024);
    let status = rollout_status(&server);
    assert_eq!(
        (
            &status["targeted"],
            &status["downloading"],
            &status["installed"]
        ),
        (
            &serde_json::json!(3),
            &serde_json::json!(1),
            &serde_json::json!(0)
        ),
        "{status}"
    );
    let second = update("t1", "1.3.0", &partial, None);
    assert!(second.contains("RESUMED-AT 40 FETCHED 58"), "{second}");
    let sha = openssl(&["dgst", "-sha256", "-r", img]);
    assert!(
        second.contains(&format!(
            "VERIFIED {}",
            sha.split_whitespace().next().unwrap()
        )),
        "{second}"
    );
    assert!(second.contains("REPORTED 2.04 Changed"), "{second}");

    // Outside the selector, another class, a newer version, below the
    // minimum: nothing offered.
    for (id, running) in [
        ("t2", "1.3.0"),
        ("o1", "1.3.0"),
        ("t4", "2.0.0"),
        ("t5", "1.1.0"),
    ] {
        let out = update(id, running, &tmp.path().join(format!("{id}.partial")), None);
        assert!(out.contains("NO-MANIFEST 4.04"), "{id}: {out}");
    }
    // t1 runs 1.4.2 now: nothing more to offer.
    assert!(coap("t1", "/fw/manifest").contains("4.04"), "t1 after");

    let status = rollout_status(&server);
    assert_eq!(
        (
            &status["downloading"],
            &status["installed"],
            &status["failed"]
        ),
        (
            &serde_json::json!(0),
            &serde_json::json!(1),
            &serde_json::json!(0)
        ),
        "{status}"
    );
    let report = |version: &str| -> serde_json::Value {
        serde_json::from_str(&cli_ok(
            &server,
            &[
                "firmware",
                "report",
                "--version",
                version,
                "--class",
                "thermo",
                "-o",
                "json",
            ],
        ))
        .unwrap()
    };
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let on_new = report("1.4.2");
    assert_eq!(ids(&on_new), ["t1"], "{on_new}");
    let vulnerable = report("<1.4.2");
    // In version order, then id.
    assert_eq!(ids(&vulnerable), ["t5", "t2"], "{vulnerable}");
    assert_eq!(
        vulnerable["counts"],
        serde_json::json!([
            {"device_class": "thermo", "version": "1.1.0", "devices": 1},
            {"device_class": "thermo", "version": "1.3.0", "devices": 1},
        ]),
        "{vulnerable}"
    );

    // Paused: offered to nobody; a release in a rollout cannot be removed.
    cli_ok(
        &server,
        &["firmware", "rollout", "pause", "1.4.2", "--class", "thermo"],
    );
    let held = server.cli(&[
        "firmware", "release", "remove", "1.4.2", "--class", "thermo",
    ]);
    assert!(
        output_text(&held).contains("remove the rollout first"),
        "{}",
        output_text(&held)
    );
    cli_ok(
        &server,
        &[
            "firmware", "rollout", "remove", "1.4.2", "--class", "thermo",
        ],
    );
    cli_ok(
        &server,
        &[
            "firmware", "release", "remove", "1.4.2", "--class", "thermo",
        ],
    );
    assert_eq!(releases(&server), serde_json::json!([]));
}

/// Three nodes; an upload through a follower, which is killed with kill -9
/// part-way. The release is then on no node (a staged upload is never
/// listed nor offered); retried through another node it is complete on
/// every node, and libcoap fetches the same bytes from each node's front.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_by_kill_9_is_whole_everywhere_or_nowhere() {
    let Some(python) = python_with("cbor2, cryptography") else {
        return;
    };
    let Some(libcoap) = external_tool("coap-client-openssl") else {
        return;
    };
    let mut cluster = TestCluster::start(3, &[]).await;
    let tmp = cluster.dir.path().to_path_buf();
    let leader = cluster.wait_for_leader().await;
    let follower = (1..=3).find(|n| *n != leader).unwrap();
    let other = (1..=3).find(|n| *n != leader && *n != follower).unwrap();
    let (key, public) = vendor_key(&tmp, "acme", "prime256v1");
    cli_ok(
        cluster.node(follower),
        &["firmware", "signer", "add", "acme", "--public-key", &public],
    );
    let (image, manifest) = three_mib_release(&python, &key, "2.0.0", (31, 253), &tmp);
    let img = image.to_str().unwrap();
    let listed = |node: &Server, staged: bool| -> serde_json::Value {
        let mut args = vec!["firmware", "release", "list", "-o", "json"];
        if staged {
            args.push("--staged");
        }
        serde_json::from_str(&cli_ok(node, &args)).unwrap()
    };

    let upload = cluster
        .node(follower)
        .cli_command(&[
            "firmware",
            "upload",
            "--manifest",
            &manifest,
            "--image",
            img,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (bounded) until the leader holds part of it, then kill the
    // node the upload came through.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let staged = listed(cluster.node(leader), true);
        let chunks = staged[0]["chunks"].as_u64().unwrap_or(0);
        if staged[0]["state"] == "staging" && chunks >= 8 {
            break;
        }
        assert!(
            staged[0]["state"] != "complete",
            "the upload finished before the kill: make the image larger"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no chunk arrived: {staged}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    cluster.kill9(follower);
    let out = upload.wait_with_output().unwrap();
    assert!(!out.status.success(), "the upload survived its node");

    // Nowhere: not listed, and the part that arrived is staged only.
    for n in [leader, other] {
        assert_eq!(
            listed(cluster.node(n), false),
            serde_json::json!([]),
            "node {n}"
        );
    }
    let staged = listed(cluster.node(leader), true);
    assert_eq!(staged[0]["state"], "staging", "{staged}");
    cluster.restart(follower, "existing").await;
    cluster.wait_for_leader().await;

    // Retried through the third node: it replaces the staged upload.
    cli_ok(
        cluster.node(other),
        &[
            "firmware",
            "upload",
            "--manifest",
            &manifest,
            "--image",
            img,
        ],
    );
    let last = cluster.status(leader).await.applied_index;
    for n in 1..=3 {
        cluster.wait_applied(n, last).await;
        let all = listed(cluster.node(n), true);
        assert_eq!(all.as_array().unwrap().len(), 1, "node {n}: {all}");
        assert_eq!(all[0]["state"], "complete", "node {n}: {all}");
        assert_eq!(all[0]["chunks"], 96, "node {n}: {all}");
    }

    // Every node serves the same bytes to a device offered the release.
    add_psk_device_cli(
        cluster.node(leader),
        "t1",
        KEY,
        &["--label", "idreg.io/class=thermo"],
    );
    cli_ok(
        cluster.node(leader),
        &[
            "firmware", "rollout", "create", "2.0.0", "--class", "thermo",
        ],
    );
    let last = cluster.status(leader).await.applied_index;
    let sha = openssl(&["dgst", "-sha256", "-r", img]);
    for n in 1..=3 {
        cluster.wait_applied(n, last).await;
        let front = cluster.node(n).front_addr().await;
        let got = tmp.join(format!("got-{n}.bin"));
        let out = Command::new("timeout")
            .arg("120")
            .arg(&libcoap)
            .args([
                "-m", "get", "-b", "1024", "-B", "60", "-u", "t1-id", "-k", KEY, "-o",
            ])
            .arg(&got)
            .arg(format!("coaps://{front}/fw/image"))
            .output()
            .unwrap();
        assert!(got.exists(), "node {n}: {}", output_text(&out));
        let got_sha = openssl(&["dgst", "-sha256", "-r", got.to_str().unwrap()]);
        assert_eq!(
            got_sha.split_whitespace().next(),
            sha.split_whitespace().next(),
            "node {n}"
        );
    }
}

/// openraft gives an AppendEntries its heartbeat interval (150 ms) to land.
/// 64 firmware chunks once made one 2 MiB request, which a follower behind
/// a slow link never took in time: the same request went again from the
/// start, and the follower fell behind for good. Requests are now cut to a
/// byte budget, so such a follower still gets the whole upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_on_a_slow_link_gets_a_whole_upload() {
    let Some(python) = python_with("cbor2, cryptography") else {
        return;
    };
    let mut cluster = TestCluster::start_with_proxies(3, &[]).await;
    let tmp = cluster.dir.path().to_path_buf();
    let leader = cluster.wait_for_leader().await;
    let slow = (1..=3).find(|n| *n != leader).unwrap();
    let (key, public) = vendor_key(&tmp, "acme", "prime256v1");
    cli_ok(
        cluster.node(leader),
        &["firmware", "signer", "add", "acme", "--public-key", &public],
    );
    let (image, manifest) = three_mib_release(&python, &key, "3.0.0", (17, 251), &tmp);
    // The follower is down during the upload, then comes back on a slow
    // link with the whole upload to catch up on.
    cluster.kill9(slow);
    cli_ok(
        cluster.node(leader),
        &[
            "firmware",
            "upload",
            "--manifest",
            &manifest,
            "--image",
            image.to_str().unwrap(),
        ],
    );
    // 8 MiB/s: 256 KiB crosses in 31 ms, 2 MiB in a quarter second.
    cluster.proxies[&slow].throttle(8 << 20);
    cluster.restart(slow, "existing").await;
    let last = cluster.status(leader).await.applied_index;
    cluster.wait_applied(slow, last).await;
    let listed: serde_json::Value = serde_json::from_str(&cli_ok(
        cluster.node(slow),
        &["firmware", "release", "list", "-o", "json"],
    ))
    .unwrap();
    assert_eq!(listed[0]["state"], "complete", "{listed}");
    assert_eq!(listed[0]["chunks"], 96, "{listed}");
}
