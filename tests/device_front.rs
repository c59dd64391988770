//! The device front as devices see it: CoAP over DTLS 1.2 on the real binary,
//! driven by independent clients (libcoap with OpenSSL and GnuTLS, aiocoap with
//! DTLSSocket) and by idreg's own Rust client.

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use idreg_client::device::{certificate_from_pem, DeviceClient, DeviceCredential};
use idreg_client::pb;

const KEY: &str = "correct horse battery staple";

async fn add_psk_device(server: &Server, id: &str, identity: &str, key: &str) {
    server
        .client()
        .await
        .create_device(create_req(id, vec![psk_input(identity, key.as_bytes())]))
        .await
        .expect("create device");
}

async fn revoke(server: &Server, id: &str) {
    server
        .client()
        .await
        .revoke_device(pb::RevokeDeviceRequest {
            id: id.into(),
            reason: "test".into(),
        })
        .await
        .expect("revoke");
}

/// A self-signed P-256 certificate: (cert PEM, key PEM).
fn device_certificate(name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

async fn add_cert_device(server: &Server, id: &str, cert_pem: &str) {
    let input = pb::CredentialInput {
        kind: Some(pb::credential_input::Kind::CertificatePem(cert_pem.into())),
    };
    server
        .client()
        .await
        .create_device(create_req(id, vec![input]))
        .await
        .expect("create device");
}

/// Runs a libcoap client and returns what it printed (it exits 0 even when
/// the handshake fails, so callers assert on the text).
fn coap_client(tool: &Path, args: &[&str], uri: &str) -> String {
    let out = Command::new("timeout")
        .arg("30")
        .arg(tool)
        .args(["-m", "get", "-B", "5"])
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

/// libcoap's clients built on OpenSSL and on GnuTLS, those installed.
fn libcoap_clients() -> Vec<std::path::PathBuf> {
    ["coap-client-openssl", "coap-client-gnutls"]
        .iter()
        .filter_map(|t| external_tool(t))
        .collect()
}

fn stdout_part(out: &str) -> &str {
    out.split("\n--stderr--\n").next().unwrap_or("")
}

/// Waits (bounded) until `device` has `n` ended sessions and returns them.
async fn ended_sessions(server: &Server, device: &str, n: usize) -> Vec<pb::Session> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all = sessions_of(server, device).await;
        let ended: Vec<_> = all.into_iter().filter(|s| s.ended_at.is_some()).collect();
        if ended.len() >= n || Instant::now() > deadline {
            return ended;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libcoap_psk_with_openssl_and_gnutls() {
    let tools = libcoap_clients();
    if tools.is_empty() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // On one runtime thread: the node and its front need no more.
    let server = Server::start_with(&tmp.path().join("node"), &["--runtime-threads", "1"]).await;
    let log = strip_ansi(&server.log_text());
    assert!(log.contains("runtime threads=1"), "{log}");
    let psk_addr = server.front_addr().await;
    add_psk_device(&server, "sensor-psk", "sensor-psk-id", KEY).await;
    add_psk_device(&server, "sensor-gone", "sensor-gone-id", KEY).await;
    revoke(&server, "sensor-gone").await;
    let uri = format!("coaps://{psk_addr}/id");

    for tool in &tools {
        let ok = coap_client(tool, &["-u", "sensor-psk-id", "-k", KEY], &uri);
        assert!(
            stdout_part(&ok).contains("sensor-psk active psk"),
            "{}: {ok}",
            tool.display()
        );
        let wrong_key = coap_client(
            tool,
            &["-u", "sensor-psk-id", "-k", "not the right key!!"],
            &uri,
        );
        assert!(
            !stdout_part(&wrong_key).contains("sensor-psk"),
            "{wrong_key}"
        );
        let unknown = coap_client(tool, &["-u", "nobody", "-k", KEY], &uri);
        assert!(!stdout_part(&unknown).contains("active"), "{unknown}");
        let revoked = coap_client(tool, &["-u", "sensor-gone-id", "-k", KEY], &uri);
        assert!(!stdout_part(&revoked).contains("sensor-gone"), "{revoked}");
    }
    // /.well-known/core and /rl through a real client too.
    let core = coap_client(
        &tools[0],
        &["-u", "sensor-psk-id", "-k", KEY],
        &format!("coaps://{psk_addr}/.well-known/core"),
    );
    assert!(stdout_part(&core).contains("</id>"), "{core}");
    let rl = coap_client(
        &tools[0],
        &["-u", "sensor-psk-id", "-k", KEY, "-A", "0"],
        &format!("coaps://{psk_addr}/rl"),
    );
    assert!(stdout_part(&rl).contains("version 1 count 1"), "{rl}");
    // Block-wise (RFC 7959) with 16-byte blocks: a Block2 response in five
    // blocks, and a Block1 request body in three, which reaches the resource
    // whole (and is refused there: /id takes only GET).
    let core16 = coap_client(
        &tools[0],
        &["-u", "sensor-psk-id", "-k", KEY, "-b", "16"],
        &format!("coaps://{psk_addr}/.well-known/core"),
    );
    assert!(
        stdout_part(&core16).contains(idreg_coap::resources::WELL_KNOWN_CORE),
        "{core16}"
    );
    let body = tmp.path().join("body");
    std::fs::write(&body, [b'x'; 40]).unwrap();
    let post16 = coap_client(
        &tools[0],
        &[
            "-u",
            "sensor-psk-id",
            "-k",
            KEY,
            "-b",
            "16",
            "-m",
            "post",
            "-f",
            body.to_str().unwrap(),
        ],
        &format!("coaps://{psk_addr}/id"),
    );
    assert!(post16.contains("4.05"), "{post16}");

    // The audit has every successful session, ended, with the device and peer.
    let sessions = ended_sessions(&server, "sensor-psk", tools.len() + 4).await;
    assert_eq!(sessions.len(), tools.len() + 4, "{sessions:?}");
    for s in &sessions {
        assert_eq!(s.credential, "psk");
        assert!(s.peer.starts_with("127.0.0.1:"), "{s:?}");
        assert!(
            !s.end_reason.is_empty() && s.bytes_in > 0 && s.bytes_out > 0,
            "{s:?}"
        );
    }
    assert!(sessions_of(&server, "sensor-gone").await.is_empty());
    let stats = server.front_stats().await;
    assert!(
        stats.handshakes_failed >= 3 * tools.len() as u64,
        "{stats:?}"
    );
    assert!(stats
        .top_failing_sources
        .iter()
        .any(|f| f.address == "127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libcoap_certificate_of_a_registered_key() {
    let tools = libcoap_clients();
    if tools.is_empty() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("node")).await;
    let cert_addr = server.front_addr().await;
    let (cert, key) = device_certificate("meter-7");
    add_cert_device(&server, "meter-7", &cert).await;
    let (other_cert, other_key) = device_certificate("intruder");
    let dir = tmp.path();
    for (name, text) in [
        ("cert.pem", &cert),
        ("key.pem", &key),
        ("other-cert.pem", &other_cert),
        ("other-key.pem", &other_key),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let path = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let uri = format!("coaps://{cert_addr}/id");
    for tool in &tools {
        let ok = coap_client(
            tool,
            &["-c", &path("cert.pem"), "-j", &path("key.pem")],
            &uri,
        );
        assert!(
            stdout_part(&ok).contains("meter-7 active certificate"),
            "{}: {ok}",
            tool.display()
        );
        let refused = coap_client(
            tool,
            &["-c", &path("other-cert.pem"), "-j", &path("other-key.pem")],
            &uri,
        );
        assert!(!stdout_part(&refused).contains("active"), "{refused}");
    }
    let sessions = ended_sessions(&server, "meter-7", tools.len()).await;
    assert_eq!(sessions.len(), tools.len());
    assert!(sessions.iter().all(|s| s.credential == "certificate"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiocoap_psk() {
    let Some(python) = aiocoap_python() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("node")).await;
    let psk_addr = server.front_addr().await;
    // tinydtls (DTLSSocket) refuses PSKs longer than 16 bytes with an
    // internal_error alert, so this device gets a 16-byte key.
    const AIO_KEY: &str = "sixteen-byte-key";
    add_psk_device(&server, "aio-1", "aio-1-id", AIO_KEY).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/aiocoap_get.py");
    let get = |path: &str, identity: &str, key: &str, szx: &[&str]| {
        let out = Command::new("timeout")
            .arg("60")
            .arg(&python)
            .arg(&script)
            .args([&format!("coaps://{psk_addr}{path}"), identity, key])
            .args(szx)
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let ok = get("/id", "aio-1-id", AIO_KEY, &[]);
    assert!(ok.contains("2.05 Content aio-1 active psk"), "{ok}");
    let bad = get("/id", "aio-1-id", "wrong-16-byte-ky", &[]);
    assert!(!bad.contains("aio-1 active"), "{bad}");
    // Block-wise with an independent CoAP stack: 16-byte Block2 blocks asked
    // for up front, reassembled by aiocoap.
    let core = get("/.well-known/core", "aio-1-id", AIO_KEY, &["0"]);
    assert!(
        core.contains(idreg_coap::resources::WELL_KNOWN_CORE),
        "{core}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_psk_cert_and_revocation_of_a_live_session() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("node")).await;
    let psk_addr = server.front_addr().await;
    let cert_addr = psk_addr;
    add_psk_device(&server, "rs-1", "rs-1-id", KEY).await;
    let (cert, key) = device_certificate("rs-2");
    add_cert_device(&server, "rs-2", &cert).await;
    let psk = DeviceCredential::Psk {
        identity: b"rs-1-id".to_vec(),
        key: KEY.as_bytes().to_vec(),
    };
    let hs = Duration::from_secs(10);

    let mut c = DeviceClient::connect(psk_addr, psk.clone(), hs)
        .await
        .unwrap();
    let r = c.get("/id", Some(50)).await.unwrap();
    assert_eq!(r.code, "2.05");
    let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
    assert_eq!(v["id"], "rs-1");
    assert_eq!(v["credential"], "psk");
    assert_eq!(c.get("/nothing", None).await.unwrap().code, "4.04");
    let cbor = c.get("/rl", Some(60)).await.unwrap();
    assert_eq!(cbor.content_format, Some(60));

    let cert_cred =
        DeviceCredential::Certificate(Box::new(certificate_from_pem(&cert, &key).unwrap()));
    let mut c2 = DeviceClient::connect(cert_addr, cert_cred, hs)
        .await
        .unwrap();
    assert_eq!(
        c2.get("/id", None).await.unwrap().text(),
        "rs-2 active certificate"
    );
    c2.close().await;

    // Revoke while the session is live: the session ends, the next request on
    // it fails, and a new handshake is refused.
    revoke(&server, "rs-1").await;
    c.request_timeout = Duration::from_secs(3);
    assert!(
        c.get("/id", None).await.is_err(),
        "request on a revoked session answered"
    );
    let again = DeviceClient::connect(psk_addr, psk, Duration::from_secs(5)).await;
    assert!(again.is_err(), "handshake of a revoked device succeeded");

    let s = ended_sessions(&server, "rs-1", 1).await;
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0].end_reason, "revoked");
    let s = ended_sessions(&server, "rs-2", 1).await;
    assert_eq!(s[0].end_reason, "closed_by_peer");

    // The same audit through the CLI.
    let out = server.cli(&[
        "session", "list", "--device", "rs-1", "--since", "1h", "-o", "json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["device"], "rs-1");
    assert_eq!(listed[0]["end_reason"], "revoked");
    let table = server.cli(&["session", "list"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("rs-1") && text.contains("rs-2"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_coap_without_dtls_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("node")).await;
    let psk_addr = server.front_addr().await;
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // CON GET /id, token 0xAA, message id 0x1234.
    sock.send_to(&[0x41, 0x01, 0x12, 0x34, 0xAA, 0xB2, b'i', b'd'], psk_addr)
        .unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    assert_eq!(
        &buf[..n],
        &[0x61, 0x81, 0x12, 0x34, 0xAA],
        "expected ACK 4.01"
    );
}

/// A DTLS 1.2 ClientHello record offering TLS_PSK_WITH_AES_128_CCM_8, with no
/// cookie (so a server answers with HelloVerifyRequest and keeps waiting).
fn client_hello(random: u8) -> Vec<u8> {
    let mut body = vec![0xfe, 0xfd];
    body.extend([random; 32]); // random
    body.push(0); // session id
    body.push(0); // cookie
    body.extend([0, 2, 0xc0, 0xa8]); // cipher suites
    body.extend([1, 0]); // compression: null
    let len = body.len() as u32;
    let mut hs = vec![1]; // client_hello
    hs.extend(&len.to_be_bytes()[1..]);
    hs.extend([0, 0]); // message_seq
    hs.extend([0, 0, 0]); // fragment offset
    hs.extend(&len.to_be_bytes()[1..]); // fragment length
    hs.extend(body);
    let mut rec = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0];
    rec.extend((hs.len() as u16).to_be_bytes());
    rec.extend(hs);
    rec
}

/// Resident memory of a process, from /proc.
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_leave_no_state_and_a_real_device_still_connects() {
    const SPOOFED: u32 = 100_000;
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        &tmp.path().join("node"),
        &[
            "--coap-max-peers",
            "200",
            "--coap-handshake-timeout-ms",
            "2000",
        ],
    )
    .await;
    let psk_addr = server.front_addr().await;
    add_psk_device(&server, "survivor", "survivor-id", KEY).await;
    let pid = server.child.as_ref().unwrap().id();
    let rss_before = rss_kb(pid);

    let flood = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        // 10,000 random datagrams from a few ports.
        let socks: Vec<UdpSocket> = (0..8)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let mut seed = 0x9e37_79b9u32;
        for i in 0..10_000usize {
            let len = 1 + i % 300;
            let d: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                })
                .collect();
            let _ = socks[i % 8].send_to(&d, psk_addr);
        }
        // Truncated ClientHellos, each from its own port.
        let hello = client_hello(7);
        for cut in 1..hello.len() {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            let _ = s.send_to(&hello[..cut], psk_addr);
        }
        // ClientHellos from 100,000 distinct source addresses (127.1.0.0/16
        // and beyond), as a spoofed flood would come: none can answer the
        // cookie.
        for i in 0..SPOOFED {
            let src = std::net::Ipv4Addr::new(127, 1 + (i >> 16) as u8, (i >> 8) as u8, i as u8);
            if let Ok(s) = UdpSocket::bind((src, 0)) {
                let _ = s.send_to(&client_hello(i as u8), psk_addr);
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "flood loop too slow"
            );
        }
    });
    // While the flood runs, the server holds no state for any of it.
    let mut max_peers = 0;
    while !flood.is_finished() {
        max_peers = max_peers.max(server.front_stats().await.peers);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    flood.await.unwrap();
    // Every hello is answered (or dropped when the socket queue overflows),
    // none remembered.
    let deadline = Instant::now() + Duration::from_secs(30);
    let during = loop {
        let s = server.front_stats().await;
        if s.cookies_sent >= u64::from(SPOOFED) / 2 || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("after the flood: {during:?}");
    assert_eq!(max_peers, 0, "a cookie-less hello made state");
    assert_eq!((during.peers, during.handshaking), (0, 0), "{during:?}");
    assert!(during.cookies_sent >= u64::from(SPOOFED) / 2, "{during:?}");
    assert!(during.datagrams_dropped > 0, "{during:?}");
    // Memory stays flat: nothing is kept per hello (100,000 of them at even
    // 100 bytes each would be 10 MB).
    let grown_kb = rss_kb(pid).saturating_sub(rss_before);
    assert!(
        grown_kb < 6 * 1024,
        "RSS grew by {grown_kb} kB during the flood"
    );

    // A real device still authenticates (a bounded handshake timeout, not a
    // timed assertion: the point is that it is not stuck behind the flood).
    let psk = DeviceCredential::Psk {
        identity: b"survivor-id".to_vec(),
        key: KEY.as_bytes().to_vec(),
    };
    let mut c = DeviceClient::connect(psk_addr, psk, Duration::from_secs(15))
        .await
        .expect("a device authenticates after the flood");
    assert_eq!(
        c.get("/id", None).await.unwrap().text(),
        "survivor active psk"
    );
    let after = server.front_stats().await;
    assert_eq!((after.peers, after.sessions_live), (1, 1), "{after:?}");
    c.close().await;
}
