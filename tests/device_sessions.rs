//! Device sessions over time, on the real binary and real UDP: one port for
//! every credential (libcoap with GnuTLS presents a raw public key), a
//! Connection ID that survives a NAT rebinding, sessions that outlive a
//! restart of the node, an audit that survives `kill -9`, a removed
//! credential that ends the sessions it opened, and a node cut off from its
//! leader that stops admitting devices.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::TestCluster;
use common::*;
use idreg_client::device::{DeviceClient, DeviceCredential};
use idreg_client::engine_device::EngineDevice;
use idreg_client::pb;
use idreg_dtls::client::ClientConfig;

const KEY: &str = "0123456789abcdef";

async fn add_psk(server: &Server, id: &str) {
    server
        .client()
        .await
        .create_device(create_req(
            id,
            vec![psk_input(&format!("{id}-psk"), KEY.as_bytes())],
        ))
        .await
        .expect("create device");
}

fn psk_config(id: &str, cid: bool) -> ClientConfig {
    let mut c = ClientConfig::psk(format!("{id}-psk").as_bytes(), KEY.as_bytes());
    if cid {
        c.connection_id = Some(Vec::new());
    }
    c
}

/// Waits (bounded) until `check` holds for the device's sessions.
async fn wait_sessions(
    server: &Server,
    device: &str,
    check: impl Fn(&[pb::Session]) -> bool,
) -> Vec<pb::Session> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = sessions_of(server, device).await;
        if check(&s) || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn coap_client(tool: &Path, args: &[&str], uri: &str) -> String {
    let out = Command::new("timeout")
        .arg("30")
        .arg(tool)
        .args(["-m", "get", "-B", "5"])
        .args(args)
        .arg(uri)
        .output()
        .expect("run coap-client");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_port_serves_psk_certificates_and_raw_public_keys() {
    let (Some(openssl), Some(gnutls)) = (
        external_tool("coap-client-openssl"),
        external_tool("coap-client-gnutls"),
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("node")).await;
    let addr = server.front_addr().await;
    add_psk(&server, "psk-dev").await;
    // A device known by its raw public key only (no certificate anywhere).
    let key = p256::SecretKey::from_slice(&[0x42; 32]).unwrap();
    use p256::pkcs8::{EncodePublicKey, LineEnding};
    let public_pem = key.public_key().to_public_key_pem(LineEnding::LF).unwrap();
    let key_file = tmp.path().join("rpk.key.pem");
    std::fs::write(
        &key_file,
        key.to_sec1_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    let input = pb::CredentialInput {
        kind: Some(pb::credential_input::Kind::PublicKeyPem(public_pem)),
    };
    server
        .client()
        .await
        .create_device(create_req("rpk-dev", vec![input]))
        .await
        .unwrap();
    let uri = format!("coaps://{addr}/id");
    let psk = coap_client(&openssl, &["-u", "psk-dev-psk", "-k", KEY], &uri);
    assert!(psk.contains("psk-dev active psk"), "{psk}");
    let rpk = coap_client(&gnutls, &["-M", key_file.to_str().unwrap()], &uri);
    assert!(rpk.contains("rpk-dev active raw-public-key"), "{rpk}");
    // A raw public key nobody registered is refused.
    let stranger = tmp.path().join("stranger.key.pem");
    let other = p256::SecretKey::from_slice(&[0x43; 32]).unwrap();
    std::fs::write(
        &stranger,
        other.to_sec1_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    let refused = coap_client(&gnutls, &["-M", stranger.to_str().unwrap()], &uri);
    assert!(!refused.contains("active"), "{refused}");
    // The audit names the credential kind and the suite.
    let s = wait_sessions(&server, "rpk-dev", |s| {
        s.iter().any(|x| x.ended_at.is_some())
    })
    .await;
    assert_eq!(s[0].credential, "raw-public-key", "{s:?}");
    assert!(
        s[0].suite.starts_with("TLS_ECDHE_ECDSA_WITH_AES_128"),
        "{s:?}"
    );
    let p = wait_sessions(&server, "psk-dev", |s| {
        s.iter().any(|x| x.ended_at.is_some())
    })
    .await;
    assert!(p[0].suite.starts_with("TLS_PSK_WITH_AES_128"), "{p:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_id_session_follows_its_device_to_a_new_address() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("node")).await;
    let addr = server.front_addr().await;
    add_psk(&server, "roamer").await;
    let mut d = EngineDevice::connect(addr, psk_config("roamer", true), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        d.get("/id", None).await.unwrap().text(),
        "roamer active psk"
    );
    let before = d.local_addr().unwrap();
    // The NAT gives the device a new port: no handshake, the session moves.
    d.rebind().await.unwrap();
    let after = d.local_addr().unwrap();
    assert_ne!(before.port(), after.port());
    assert_eq!(
        d.get("/id", None).await.unwrap().text(),
        "roamer active psk"
    );
    let stats = server.front_stats().await;
    assert_eq!(stats.handshakes_ok, 1, "{stats:?}");
    assert_eq!(stats.address_changes, 1, "{stats:?}");
    let s = wait_sessions(&server, "roamer", |s| {
        s.first().is_some_and(|x| !x.address_changes.is_empty())
    })
    .await;
    assert_eq!(s.len(), 1, "{s:?}");
    assert!(s[0].connection_id, "{s:?}");
    assert_eq!(s[0].peer, format!("127.0.0.1:{}", before.port()), "{s:?}");
    assert_eq!(
        s[0].address_changes[0].peer,
        format!("127.0.0.1:{}", after.port()),
        "{s:?}"
    );
    d.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_outlive_a_restart_of_the_node() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(&tmp.path().join("node")).await;
    let addr = server.front_addr().await;
    add_psk(&server, "sleeper").await;
    let config = psk_config("sleeper", true);
    let mut d = EngineDevice::connect(addr, config.clone(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        d.get("/id", None).await.unwrap().text(),
        "sleeper active psk"
    );
    let kept = d.session().expect("established");
    drop(d);
    // A rolling upgrade: SIGTERM, then the same node comes back on the same port.
    assert!(server.terminate().success());
    let sealed = server.data_dir.join("front-sessions.sealed");
    assert!(sealed.exists(), "sessions saved at shutdown");
    let raw = std::fs::read(&sealed).unwrap();
    assert!(
        !raw.windows(7).any(|w| w == b"sleeper"),
        "the saved sessions are sealed"
    );
    server.extra_args = vec!["--coap-addr".into(), addr.to_string()];
    server.restart().await;
    assert!(!sealed.exists(), "read once");
    // The device wakes up (from another port, as after a long sleep behind a
    // NAT) and carries on without a handshake.
    let mut d = EngineDevice::resume(addr, config, kept).await.unwrap();
    assert_eq!(
        d.get("/id", None).await.unwrap().text(),
        "sleeper active psk"
    );
    let stats = server.front_stats().await;
    assert_eq!(
        (stats.sessions_restored, stats.handshakes_ok),
        (1, 0),
        "{stats:?}"
    );
    let s = sessions_of(&server, "sleeper").await;
    assert!(
        s.iter().any(|x| x.restored && x.ended_at.is_none()),
        "{s:?}"
    );
    d.close().await;
}

/// The audit of who connected reaches the WAL file at once: no raft log
/// replays it, and on a node nobody writes to, no later write would carry
/// it out of a buffer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_session_survives_kill_9() {
    let Some(tool) = external_tool("coap-client-openssl") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(&tmp.path().join("node")).await;
    let front = server.front_addr().await.to_string();
    add_psk(&server, "logger").await;
    let got = libcoap_psk_get(&tool, &front, ("logger-psk", KEY), "/id", &[]);
    assert!(got.contains("logger active psk"), "{got}");
    let before = wait_sessions(&server, "logger", |s| {
        s.iter().any(|x| x.ended_at.is_some())
    })
    .await;
    assert!(before.iter().any(|x| x.ended_at.is_some()), "{before:?}");
    server.kill9();
    server.restart().await;
    let after = sessions_of(&server, "logger").await;
    assert_eq!(after, before, "the audit after kill -9");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_credential_a_session_used_ends_that_session() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("node")).await;
    let addr = server.front_addr().await;
    add_psk(&server, "rotating").await;
    let psk = DeviceCredential::Psk {
        identity: b"rotating-psk".to_vec(),
        key: KEY.as_bytes().to_vec(),
    };
    let mut c = DeviceClient::connect(addr, psk, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        c.get("/id", None).await.unwrap().text(),
        "rotating active psk"
    );
    // The operator rotates the PSK: a new one in, the old one out. The
    // device stays active, but the session opened with the old PSK ends.
    server
        .client()
        .await
        .update_device(pb::UpdateDeviceRequest {
            id: "rotating".into(),
            add_credentials: vec![psk_input("rotating-psk-2", b"fedcba9876543210")],
            remove_psk_identities: vec![b"rotating-psk".to_vec()],
            ..Default::default()
        })
        .await
        .unwrap();
    let s = wait_sessions(&server, "rotating", |s| {
        s.iter().any(|x| x.ended_at.is_some())
    })
    .await;
    assert_eq!(s[0].end_reason, "revoked", "{s:?}");
    c.request_timeout = Duration::from_secs(3);
    assert!(
        c.get("/id", None).await.is_err(),
        "the old session still answers"
    );
    // The new PSK works.
    let fresh = DeviceCredential::Psk {
        identity: b"rotating-psk-2".to_vec(),
        key: b"fedcba9876543210".to_vec(),
    };
    let mut c2 = DeviceClient::connect(addr, fresh, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        c2.get("/id", None).await.unwrap().text(),
        "rotating active psk"
    );
    c2.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_psk_works_until_its_successor_is_used() {
    let Some(tool) = external_tool("coap-client-openssl") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("node")).await;
    let addr = server.front_addr().await;
    let uri = format!("coaps://{addr}/id");
    add_psk(&server, "meter").await;
    let old = DeviceCredential::Psk {
        identity: b"meter-psk".to_vec(),
        key: KEY.as_bytes().to_vec(),
    };
    let mut live = DeviceClient::connect(addr, old, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        live.get("/id", None).await.unwrap().text(),
        "meter active psk"
    );

    // The operator brings in a new PSK, as an operator does: from a file.
    let new_key = "fedcba9876543210-new";
    let file = tmp.path().join("new.psk");
    std::fs::write(&file, format!("{new_key}\n")).unwrap();
    let out = server.cli(&[
        "device",
        "rotate-psk",
        "meter",
        "--psk-identity",
        "meter-psk-2",
        "--psk-file",
        file.to_str().unwrap(),
        "--grace",
        "1h",
    ]);
    assert!(out.status.success(), "{}", output_text(&out));

    // Until the device uses it, the old PSK works: new handshakes and the
    // live session alike.
    let with_old = coap_client(&tool, &["-u", "meter-psk", "-k", KEY], &uri);
    assert!(with_old.contains("meter active psk"), "{with_old}");
    assert_eq!(
        live.get("/id", None).await.unwrap().text(),
        "meter active psk"
    );

    // The new one used: the old is retired, refused, its session ended.
    let with_new = coap_client(&tool, &["-u", "meter-psk-2", "-k", new_key], &uri);
    assert!(with_new.contains("meter active psk"), "{with_new}");
    let s = wait_sessions(&server, "meter", |s| {
        s.iter().any(|x| x.end_reason == "revoked")
    })
    .await;
    assert!(s.iter().any(|x| x.end_reason == "revoked"), "{s:?}");
    let with_old = coap_client(&tool, &["-u", "meter-psk", "-k", KEY], &uri);
    assert!(!with_old.contains("active"), "{with_old}");
    live.request_timeout = Duration::from_secs(3);
    assert!(
        live.get("/id", None).await.is_err(),
        "the old PSK's session still answers"
    );
    let history = server.cli(&["device", "history", "meter"]);
    let history = output_text(&history);
    assert!(
        history.contains("rotate-psk") && history.contains("complete-rotation"),
        "{history}"
    );

    // Never used, the new PSK still ends the old one's life at the grace.
    add_psk(&server, "gauge").await;
    let out = server.cli(&[
        "device",
        "rotate-psk",
        "gauge",
        "--psk-identity",
        "gauge-psk-2",
        "--psk-file",
        file.to_str().unwrap(),
        "--grace",
        "1s",
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let with_old = coap_client(&tool, &["-u", "gauge-psk", "-k", KEY], &uri);
    assert!(!with_old.contains("active"), "{with_old}");
    let with_new = coap_client(&tool, &["-u", "gauge-psk-2", "-k", new_key], &uri);
    assert!(with_new.contains("gauge active psk"), "{with_new}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_its_leader_refuses_new_handshakes() {
    let mut c = TestCluster::start(3, &["--max-auth-staleness", "2s"]).await;
    let leader = c.wait_for_leader().await;
    let survivor = (1..=3).find(|id| *id != leader).unwrap();
    add_psk(c.node(leader), "field-unit").await;
    let applied = c.status(leader).await.applied_index;
    c.wait_applied(survivor, applied).await;
    let addr = c.node(survivor).front_addr().await;
    // While the cluster is whole, the follower admits the device.
    let mut d = EngineDevice::connect(
        addr,
        psk_config("field-unit", false),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(
        d.get("/id", None).await.unwrap().text(),
        "field-unit active psk"
    );
    d.close().await;
    // Cut the survivor off: both other nodes stop. Its registry may now
    // miss revocations made elsewhere, so after --max-auth-staleness it
    // admits no one.
    for id in (1..=3).filter(|id| *id != survivor) {
        c.kill9(id);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let refused = EngineDevice::connect(
        addr,
        psk_config("field-unit", false),
        Duration::from_secs(5),
    )
    .await;
    assert!(refused.is_err(), "a stale node admitted a device");
    let stats = c.node(survivor).front_stats().await;
    assert!(stats.handshakes_refused_stale >= 1, "{stats:?}");
}

/// `idreg session clones -o json`, once `want` sightings are counted and
/// listed (5 s): the audit entry is written a moment after the count.
fn clones(server: &Server, want: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = server.cli(&["session", "clones", "-o", "json"]);
        assert!(out.status.success(), "{}", output_text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let listed = v["clones"].as_array().map_or(0, |c| c.len() as u64);
        let counted = v["detected"].as_u64().unwrap_or(0);
        if counted.min(listed) >= want || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn from(ip: [u8; 4], front: std::net::SocketAddr, config: ClientConfig) -> EngineDevice {
    let local = std::net::SocketAddr::from((ip, 0));
    EngineDevice::connect_from(local, front, config, Duration::from_secs(10))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_identity_live_from_two_addresses_is_a_clone() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("node")).await;
    let front = server.front_addr().await;
    add_psk(&server, "twin").await;
    add_psk(&server, "mover").await;
    let mut a = from([127, 0, 0, 2], front, psk_config("twin", false)).await;
    // Starts are kept in milliseconds and a tie is broken by session id:
    // a later millisecond makes `a` the first for certain.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut b = from([127, 0, 0, 3], front, psk_config("twin", false)).await;
    // Policy alert (the default): both go on, the sighting is listed.
    assert_eq!(a.get("/id", None).await.unwrap().text(), "twin active psk");
    assert_eq!(b.get("/id", None).await.unwrap().text(), "twin active psk");
    let v = clones(&server, 1);
    assert_eq!(v["on_clone"], "alert");
    assert_eq!(v["clones"][0]["device"], "twin", "{v}");
    assert_eq!(v["clones"][0]["first_address"], "127.0.0.2", "{v}");
    assert_eq!(v["clones"][0]["second_address"], "127.0.0.3", "{v}");

    // A Connection ID move is the same session, not a clone; nor is a
    // second session from the same address.
    let mut m = from([127, 0, 0, 4], front, psk_config("mover", true)).await;
    m.rebind().await.unwrap();
    assert_eq!(m.get("/id", None).await.unwrap().text(), "mover active psk");
    let mut m2 = from([127, 0, 0, 4], front, psk_config("mover", false)).await;
    assert_eq!(
        m2.get("/id", None).await.unwrap().text(),
        "mover active psk"
    );
    let v = clones(&server, 2);
    assert_eq!(v["detected"], 1, "{v}");
    for d in [a, b, m, m2] {
        d.close().await;
    }

    // refuse-new: the second session is ended, the first goes on.
    drop(server);
    let tmp2 = tempfile::tempdir().unwrap();
    let server = Server::start_with(&tmp2.path().join("node"), &["--on-clone", "refuse-new"]).await;
    let front = server.front_addr().await;
    add_psk(&server, "twin").await;
    let mut a = from([127, 0, 0, 2], front, psk_config("twin", false)).await;
    assert_eq!(a.get("/id", None).await.unwrap().text(), "twin active psk");
    // As above: in the same millisecond the session ids would decide which
    // of the two is the new one.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut b = EngineDevice::connect_from(
        std::net::SocketAddr::from(([127, 0, 0, 3], 0)),
        front,
        psk_config("twin", false),
        Duration::from_secs(10),
    )
    .await;
    if let Ok(b) = b.as_mut() {
        b.request_timeout = Duration::from_secs(3);
        assert!(
            b.get("/id", None).await.is_err(),
            "the clone's session answers"
        );
    }
    assert_eq!(a.get("/id", None).await.unwrap().text(), "twin active psk");
    let v = clones(&server, 1);
    assert_eq!(v["clones"][0]["action"], "refuse-new", "{v}");
    let s = wait_sessions(&server, "twin", |s| {
        s.iter().any(|x| x.end_reason == "clone")
    })
    .await;
    assert!(s.iter().any(|x| x.end_reason == "clone"), "{s:?}");
}

/// Waits (10 s at most) until `device` has a session on `server` matching `pred`.
async fn wait_session(
    server: &Server,
    device: &str,
    pred: impl Fn(&pb::Session) -> bool,
) -> Vec<pb::Session> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = sessions_of(server, device).await;
        if s.iter().any(&pred) || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `idreg session clones --device D -o json` on `server`, once it lists one.
fn clones_of(server: &Server, device: &str, within: Duration) -> (serde_json::Value, Duration) {
    let start = Instant::now();
    loop {
        let out = server.cli(&["session", "clones", "--device", device, "-o", "json"]);
        assert!(out.status.success(), "{}", output_text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if v["clones"].as_array().is_some_and(|c| !c.is_empty()) || start.elapsed() > within {
            return (v, start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The same PSK from two libcoap clients on two nodes of a cluster: both
/// nodes list the clone within a second (nodes announce session starts to
/// each other); a tenant's refuse-new ends the second session wherever it
/// is, a device's own end-both ends both, and a node-wide alert ends none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_across_nodes_are_seen_by_both_and_policies_apply() {
    let Some(tool) = external_tool("coap-client-openssl") else {
        return;
    };
    let cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.wait_for_leader().await;
    let admin = cluster.node(leader);
    for (id, extra) in [
        ("twin", vec![]),
        ("strict", vec!["--tenant", "acme"]),
        ("both", vec!["--tenant", "acme", "--on-clone", "end-both"]),
    ] {
        let psk = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(psk.path(), KEY).unwrap();
        let mut args = vec!["device", "add", id, "--psk-identity"];
        let identity = format!("{id}-psk");
        args.push(&identity);
        args.extend(["--psk-file", psk.path().to_str().unwrap()]);
        args.extend(extra);
        cli_ok(admin, &args);
    }
    cli_ok(
        admin,
        &["tenant", "set", "acme", "--on-clone", "refuse-new"],
    );
    let shown = cli_ok(admin, &["tenant", "show", "acme", "-o", "json"]);
    assert!(shown.contains("\"refuse-new\""), "{shown}");
    let applied = cluster.status(leader).await.applied_index;
    for n in 1..=3 {
        cluster.wait_applied(n, applied).await;
    }
    let (n1, n2, n3) = (cluster.node(1), cluster.node(2), cluster.node(3));
    let live = |s: &pb::Session| s.ended_at.is_none();

    // alert (every node's default): both sessions go on; both nodes list it.
    let mut a = libcoap_session(
        &tool,
        "127.0.0.21",
        n1.front_addr().await,
        ("twin-psk", KEY),
        6,
    );
    assert!(wait_session(n1, "twin", live).await.iter().any(live));
    let mut b = libcoap_session(
        &tool,
        "127.0.0.22",
        n2.front_addr().await,
        ("twin-psk", KEY),
        6,
    );
    assert!(wait_session(n2, "twin", live).await.iter().any(live));
    for node in [n2, n1] {
        let (v, took) = clones_of(node, "twin", Duration::from_secs(1));
        eprintln!("clone across nodes listed within {took:?}");
        let c = &v["clones"][0];
        assert_eq!(c["first_address"], "127.0.0.21", "{v}");
        assert_eq!(c["second_address"], "127.0.0.22", "{v}");
        assert_eq!(
            (c["first"]["node"].as_u64(), c["second"]["node"].as_u64()),
            (Some(1), Some(2)),
            "{v}"
        );
        assert_eq!(c["action"], "alert", "{v}");
        assert_eq!(
            v["clones"].as_array().unwrap().len(),
            1,
            "recorded once: {v}"
        );
    }
    assert!(sessions_of(n1, "twin").await.iter().any(live));
    assert!(sessions_of(n2, "twin").await.iter().any(live));

    // The tenant's refuse-new: the second session, on node 3, ends as a
    // clone; the first, on node 1, goes on.
    let mut c = libcoap_session(
        &tool,
        "127.0.0.23",
        n1.front_addr().await,
        ("strict-psk", KEY),
        6,
    );
    assert!(wait_session(n1, "strict", live).await.iter().any(live));
    let mut d = libcoap_session(
        &tool,
        "127.0.0.24",
        n3.front_addr().await,
        ("strict-psk", KEY),
        6,
    );
    let on3 = wait_session(n3, "strict", |s| s.end_reason == "clone").await;
    assert!(on3.iter().any(|s| s.end_reason == "clone"), "{on3:?}");
    let (v, _) = clones_of(n1, "strict", Duration::from_secs(2));
    assert_eq!(v["clones"][0]["action"], "refuse-new", "{v}");
    let on1 = sessions_of(n1, "strict").await;
    assert!(on1.iter().all(|s| s.end_reason.is_empty()), "{on1:?}");

    // The device's own end-both (over its tenant's refuse-new): both end.
    let mut e = libcoap_session(
        &tool,
        "127.0.0.25",
        n2.front_addr().await,
        ("both-psk", KEY),
        6,
    );
    assert!(wait_session(n2, "both", live).await.iter().any(live));
    let mut f = libcoap_session(
        &tool,
        "127.0.0.26",
        n3.front_addr().await,
        ("both-psk", KEY),
        6,
    );
    for node in [n2, n3] {
        let s = wait_session(node, "both", |s| s.end_reason == "clone").await;
        assert!(s.iter().any(|s| s.end_reason == "clone"), "{s:?}");
    }
    for child in [&mut a, &mut b, &mut c, &mut d, &mut e, &mut f] {
        let _ = child.kill();
        let _ = child.wait();
    }
}
