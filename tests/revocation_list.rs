//! The signed revocation list as a gateway or an air-gapped site uses it:
//! fetched from the device front with libcoap (whole and as a delta,
//! block-wise), exported with `idreg rl export`, and checked by an
//! independent COSE/CBOR implementation (Python cbor2 + cryptography) and
//! by `idreg rl verify`; a tampered list fails both; a full list plus the
//! delta after it is the next full list.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const KEY: &str = "correct horse battery staple";

/// libcoap GET as PSK device `id`, the payload saved to `out`.
fn coap_get(tool: &Path, front: &str, id: &str, path: &str, extra: &[&str], out: &Path) -> String {
    let _ = std::fs::remove_file(out);
    let out = out.to_str().unwrap();
    let options = [&["-o", out], extra].concat();
    libcoap_psk_get(tool, front, (&format!("{id}-id"), KEY), path, &options)
}

fn python_check(python: &Path, args: &[&Path]) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/rl_verify.py");
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .expect("python");
    (out.status.success(), output_text(&out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signed_list_verifies_independently_and_deltas_add_up() {
    let (Some(tool), Some(python)) = (
        external_tool("coap-client-openssl"),
        python_with("cbor2, cryptography"),
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let file = |n: &str| -> PathBuf { tmp.path().join(n) };
    let server = Server::start(&tmp.path().join("node")).await;
    let front = server.front_addr().await.to_string();
    for id in ["d1", "d2", "d3", "d4", "reader"] {
        let mut c = server.client().await;
        c.create_device(create_req(
            id,
            vec![psk_input(&format!("{id}-id"), KEY.as_bytes())],
        ))
        .await
        .unwrap();
    }
    // The key: made by the leader at founding.
    let deadline = Instant::now() + Duration::from_secs(20);
    let key_pem = loop {
        let out = server.cli(&["rl", "key"]);
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(Instant::now() < deadline, "{}", output_text(&out));
        std::thread::sleep(Duration::from_millis(200));
    };
    std::fs::write(file("rl.pub.pem"), &key_pem).unwrap();
    // The front serves the same key.
    let log = coap_get(&tool, &front, "reader", "/rl/key", &[], &file("key.pem"));
    assert_eq!(
        std::fs::read_to_string(file("key.pem")).unwrap_or_default(),
        key_pem,
        "{log}"
    );

    cli_ok(&server, &["device", "revoke", "d1", "--reason", "stolen"]);
    cli_ok(&server, &["device", "revoke", "d2", "--reason", "stolen"]);
    cli_ok(
        &server,
        &[
            "rl",
            "export",
            "--out",
            file("full1.cose").to_str().unwrap(),
        ],
    );
    let (ok, out) = python_check(&python, &[&file("rl.pub.pem"), &file("full1.cose")]);
    assert!(ok, "{out}");
    let full1: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(full1["version"], 2);
    assert_eq!(full1["ids"], serde_json::json!(["d1", "d2"]));
    let sha = |s: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(s.as_bytes()))
    };
    assert!(
        full1["psk_hashes"]
            .as_array()
            .unwrap()
            .contains(&sha("d1-id").into()),
        "{full1}"
    );
    let verified = cli_ok(
        &server,
        &[
            "rl",
            "verify",
            file("full1.cose").to_str().unwrap(),
            "--key",
            file("rl.pub.pem").to_str().unwrap(),
        ],
    );
    assert!(
        verified.contains("valid: version 2") && verified.contains("d2"),
        "{verified}"
    );

    // A device fetches it, in 64-byte Block2 blocks: the same list.
    let log = coap_get(
        &tool,
        &front,
        "reader",
        "/rl",
        &["-b", "64"],
        &file("coap.cose"),
    );
    let (ok, out) = python_check(&python, &[&file("rl.pub.pem"), &file("coap.cose")]);
    assert!(ok, "{out}\n{log}");
    assert!(out.contains("\"ids\": [\"d1\", \"d2\"]"), "{out}");

    // Two more revocations: the delta since 2 over CoAP, the new full list
    // exported; full1 + delta == full2, checked independently.
    cli_ok(&server, &["device", "revoke", "d3", "--reason", "lost"]);
    cli_ok(&server, &["device", "revoke", "d4", "--reason", "lost"]);
    let log = coap_get(
        &tool,
        &front,
        "reader",
        "/rl?since=2",
        &[],
        &file("delta.cose"),
    );
    cli_ok(
        &server,
        &[
            "rl",
            "export",
            "--out",
            file("full2.cose").to_str().unwrap(),
        ],
    );
    let (ok, out) = python_check(
        &python,
        &[
            &file("rl.pub.pem"),
            &file("full1.cose"),
            &file("delta.cose"),
            &file("full2.cose"),
        ],
    );
    assert!(ok && out.contains("consistent"), "{out}\n{log}");
    let (_, delta) = python_check(&python, &[&file("rl.pub.pem"), &file("delta.cose")]);
    assert!(
        delta.contains("\"ids\": [\"d3\", \"d4\"]") && delta.contains("\"since\": 2"),
        "{delta}"
    );

    // Tampered: one byte of the payload changed fails both checkers.
    let mut bytes = std::fs::read(file("full2.cose")).unwrap();
    let at = bytes.windows(2).position(|w| w == b"d3").unwrap();
    bytes[at + 1] = b'9';
    std::fs::write(file("tampered.cose"), &bytes).unwrap();
    let (ok, out) = python_check(&python, &[&file("rl.pub.pem"), &file("tampered.cose")]);
    assert!(!ok && out.contains("does not verify"), "{out}");
    let out = server.cli(&[
        "rl",
        "verify",
        file("tampered.cose").to_str().unwrap(),
        "--key",
        file("rl.pub.pem").to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "{}", output_text(&out));

    // cluster status names the key and the version.
    let status = cli_ok(&server, &["cluster", "status", "-o", "json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["revocation_list_version"], 4, "{status}");
    assert_eq!(
        status["revocation_list_key_sha256"].as_str().unwrap().len(),
        64,
        "{status}"
    );
}

/// A revoke sent to node 1 reaches observers of `/rl` connected to node 3
/// (aiocoap and libcoap's `-s`) as a new list version; the delay is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observers_on_another_node_hear_of_a_revocation() {
    use std::io::BufRead;
    let (Some(tool), Some(python)) = (external_tool("coap-client-openssl"), aiocoap_python())
    else {
        return;
    };
    let cluster = common::cluster::TestCluster::start(3, &[]).await;
    let leader = cluster.wait_for_leader().await;
    // tinydtls (aiocoap) takes PSKs of at most 16 bytes.
    const SHORT: &str = "sixteen-byte-key";
    {
        let mut c = cluster.node(leader).client().await;
        for id in ["aio-obs", "lib-obs", "victim"] {
            c.create_device(create_req(
                id,
                vec![psk_input(&format!("{id}-id"), SHORT.as_bytes())],
            ))
            .await
            .unwrap();
        }
    }
    let applied = cluster.status(leader).await.applied_index;
    cluster.wait_applied(3, applied).await;
    let front3 = cluster.node(3).front_addr().await;
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/aiocoap_observe.py");
    let mut aio = Command::new(&python)
        .arg(&script)
        .arg(format!("coaps://{front3}/rl"))
        .args(["aio-obs-id", SHORT, "15"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lib = Command::new("timeout")
        .arg("30")
        .arg(&tool)
        .args([
            "-m",
            "get",
            "-s",
            "8",
            "-A",
            "0",
            "-u",
            "lib-obs-id",
            "-k",
            SHORT,
        ])
        .arg(format!("coaps://{front3}/rl"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(aio.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.ends_with("version 0 count 0"), "{first}");
    // libcoap's observation is registered too by now (a second to be sure).
    std::thread::sleep(Duration::from_secs(1));

    let revoked_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let node1 = cluster.node(1);
    node1
        .client()
        .await
        .revoke_device(idreg_client::pb::RevokeDeviceRequest {
            id: "victim".into(),
            reason: "stolen".into(),
        })
        .await
        .unwrap();
    let notified = lines.next().unwrap().unwrap();
    assert!(notified.ends_with("version 1 count 1"), "{notified}");
    let at: f64 = notified.split_whitespace().next().unwrap().parse().unwrap();
    eprintln!(
        "revocation on node 1 -> aiocoap observer on node 3: {:.1} ms",
        (at - revoked_at) * 1000.0
    );
    let _ = aio.kill();
    let _ = aio.wait();
    let out = lib.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("version 0 count 0") && text.contains("version 1 count 1"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
