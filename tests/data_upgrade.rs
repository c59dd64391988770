//! Upgrading across a data format: a data directory and a backup written by
//! the last build of data format 1 (bincode values; tests/fixtures, made by
//! `make_format_1.sh`) are opened by this build as an operator would — `idreg
//! serve` on the old directory, `idreg cluster snapshot restore` of the old
//! backup — and everything in them reads back through the CLI and the
//! device front (libcoap), and the node goes on writing.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// The PSK of the fixture's devices (`tests/fixtures/make_format_1.sh`).
const PSK: &str = "sixteen-byte-key";

/// The fixture unpacked in `into`: `into/data` (the node's directory, with
/// its development PKI and KEK) and `into/backup.snap`.
fn unpack_format_1(into: &Path) {
    let archive =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/data-format-1.tar.gz");
    let out = Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(into)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
}

fn json(server: &Server, args: &[&str]) -> serde_json::Value {
    let mut with = args.to_vec();
    with.extend(["-o", "json"]);
    let text = cli_ok(server, &with);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
}

fn ids(list: &serde_json::Value) -> Vec<String> {
    list["devices"]
        .as_array()
        .or(list.as_array())
        .unwrap_or_else(|| panic!("no device list in {list}"))
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_1_directory_is_migrated_on_start_and_serves_as_before() {
    let tool = external_tool("coap-client-openssl");
    let tmp = tempfile::tempdir().unwrap();
    unpack_format_1(tmp.path());
    let mut server = Server::start(&tmp.path().join("data")).await;
    let log = server.log_text();
    assert!(log.contains("data directory migrated to format 2"), "{log}");

    // The registry: devices of every credential kind, the gateway and its
    // spoke, the revoked one, labels as last updated.
    let list = json(&server, &["device", "list"]);
    assert_eq!(
        ids(&list),
        ["hub-1", "late-1", "sensor-1", "sensor-2", "spoke-1", "stolen-1"],
        "{list}"
    );
    let sensor = json(&server, &["device", "get", "sensor-1"]);
    assert_eq!(sensor["labels"]["site"], "south", "{sensor}");
    assert_eq!(sensor["labels"]["idreg.io/class"], "thermo", "{sensor}");
    assert_eq!(
        json(&server, &["device", "get", "stolen-1"])["status"],
        "revoked"
    );
    assert_eq!(
        json(&server, &["device", "get", "spoke-1"])["gateway"],
        "hub-1"
    );
    // Audit kept after delete.
    let history = cli_ok(&server, &["device", "history", "gone-1"]);
    assert!(
        history.contains("create") && history.contains("delete"),
        "{history}"
    );

    // Cluster records and firmware.
    assert!(cli_ok(&server, &["tenant", "show", "acme"]).contains("refuse-new"));
    assert!(cli_ok(&server, &["enrollment-group", "list"]).contains("line-1"));
    assert!(cli_ok(&server, &["firmware", "signer", "list"]).contains("acme"));
    let releases = cli_ok(&server, &["firmware", "release", "list"]);
    assert!(
        releases.contains("2.0.0") && releases.contains("complete"),
        "{releases}"
    );
    let status = cli_ok(
        &server,
        &[
            "firmware", "rollout", "status", "2.0.0", "--class", "thermo",
        ],
    );
    assert!(status.contains("installed 1"), "{status}");

    // The node's session audit and its clone sighting.
    let sessions = cli_ok(&server, &["session", "list"]);
    assert_eq!(sessions.lines().count(), 5, "{sessions}");
    assert!(sessions.contains("clone"), "{sessions}");
    let clones = cli_ok(&server, &["session", "clones"]);
    assert!(
        clones.contains("hub-1") && clones.contains("refuse-new"),
        "{clones}"
    );

    // Devices authenticate with credentials stored in format 1; the revoked
    // one does not.
    if let Some(tool) = &tool {
        let front = server.front_addr().await;
        let got = libcoap_psk_get(tool, &front.to_string(), ("sensor-1-id", PSK), "/id", &[]);
        assert!(got.contains("sensor-1 active psk"), "{got}");
        let refused = libcoap_psk_get(tool, &front.to_string(), ("stolen-1-id", PSK), "/id", &[]);
        assert!(!refused.contains("stolen-1 active"), "{refused}");
    }

    // It goes on writing, and a restart neither migrates again nor loses
    // what was written since.
    add_psk_device_cli(&server, "new-1", PSK, &[]);
    cli_ok(&server, &["device", "revoke", "sensor-2"]);
    server.terminate();
    server.restart().await;
    let log = server.log_text();
    assert_eq!(log.matches("migrated to format").count(), 1, "{log}");
    let list = json(&server, &["device", "list"]);
    assert_eq!(ids(&list).len(), 7, "{list}");
    assert_eq!(
        json(&server, &["device", "get", "sensor-2"])["status"],
        "revoked"
    );
    // The signed revocation list, signed with the migrated key, names both.
    let rl = tmp.path().join("rl.cose");
    cli_ok(&server, &["rl", "export", "--out", rl.to_str().unwrap()]);
    let key = tmp.path().join("rl.pem");
    std::fs::write(&key, cli_ok(&server, &["rl", "key"])).unwrap();
    let verified = cli_ok(
        &server,
        &[
            "rl",
            "verify",
            rl.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    );
    assert!(
        verified.contains("stolen-1") && verified.contains("sensor-2"),
        "{verified}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_1_backup_restores_into_a_new_directory() {
    let tmp = tempfile::tempdir().unwrap();
    unpack_format_1(tmp.path());
    let fresh = tmp.path().join("restored");
    let kek = tmp.path().join("data/dev-kek.hex");
    let out = Command::new(env!("CARGO_BIN_EXE_idreg"))
        .args(["cluster", "snapshot", "restore", "--data-dir"])
        .arg(&fresh)
        .arg("--kek-file")
        .arg(&kek)
        .arg(tmp.path().join("backup.snap"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let server = Server::start_with(&fresh, &["--kek-file", kek.to_str().unwrap()]).await;
    // The backup was saved before late-1 was added.
    let list = json(&server, &["device", "list"]);
    assert_eq!(
        ids(&list),
        ["hub-1", "sensor-1", "sensor-2", "spoke-1", "stolen-1"],
        "{list}"
    );
    assert_eq!(
        json(&server, &["device", "get", "stolen-1"])["status"],
        "revoked"
    );
    assert!(cli_ok(&server, &["enrollment-group", "list"]).contains("line-1"));

    // A backup whose MAC does not match is refused whole, as before.
    let mut damaged = std::fs::read(tmp.path().join("backup.snap")).unwrap();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 1;
    let bad = tmp.path().join("damaged.snap");
    std::fs::write(&bad, damaged).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_idreg"))
        .args(["cluster", "snapshot", "restore", "--data-dir"])
        .arg(tmp.path().join("other"))
        .arg("--kek-file")
        .arg(&kek)
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", output_text(&out));
}
