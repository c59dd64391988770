//! Gateways (hubs) as an operator and a hub meet them: a device made a
//! gateway with the CLI lists exactly its own spokes over `/gw/spokes`
//! (libcoap and aiocoap), a device that is not one is refused, and a gateway
//! that still has spokes cannot be deleted.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// tinydtls (aiocoap) takes PSKs of at most 16 bytes.
const KEY: &str = "sixteen-byte-key";

fn add(server: &Server, id: &str, extra: &[&str]) {
    add_psk_device_cli(server, id, KEY, extra);
}

fn ids_in(json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(json.trim()).expect(json);
    v["spokes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_lists_exactly_its_own_spokes() {
    let Some(tool) = external_tool("coap-client-openssl") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("node")).await;
    let front = server.front_addr().await.to_string();
    add(&server, "hub", &["--gateway-role"]);
    add(&server, "hub-2", &["--gateway-role"]);
    for s in ["s1", "s2", "s3"] {
        add(&server, s, &["--gateway", "hub"]);
    }
    add(&server, "x1", &["--gateway", "hub-2"]);
    cli_ok(&server, &["device", "revoke", "s3", "--reason", "stolen"]);
    let shown = cli_ok(&server, &["device", "get", "hub", "-o", "json"]);
    assert!(shown.contains("\"gateway_role\": true"), "{shown}");

    let get = |id: &str| {
        let out = Command::new("timeout")
            .arg("30")
            .arg(&tool)
            .args([
                "-m",
                "get",
                "-B",
                "5",
                "-A",
                "50",
                "-u",
                &format!("{id}-id"),
                "-k",
                KEY,
            ])
            .arg(format!("coaps://{front}/gw/spokes"))
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            output_text(&out),
        )
    };
    let (json, log) = get("hub");
    assert_eq!(ids_in(&json), ["s1", "s2", "s3"], "{log}");
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["spokes"][2]["status"], "revoked");
    assert_eq!(v["spokes"][0]["credentials"][0], "psk");
    let (json, log) = get("hub-2");
    assert_eq!(ids_in(&json), ["x1"], "{log}");
    // A spoke is no gateway.
    let (_, log) = get("s1");
    assert!(log.contains("4.03"), "{log}");

    // aiocoap (independent stack) sees the same list.
    if let Some(python) = aiocoap_python() {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/aiocoap_get.py");
        let out = Command::new("timeout")
            .arg("60")
            .arg(python)
            .arg(script)
            .arg(format!("coaps://{front}/gw/spokes"))
            .args(["hub-id", KEY, "-", "50"])
            .output()
            .unwrap();
        let text = output_text(&out);
        let json = text.trim().strip_prefix("2.05 Content ").expect(&text);
        assert_eq!(ids_in(json), ["s1", "s2", "s3"], "{text}");
    }

    // Acting for a spoke: its own, active ones only.
    let act = |gateway: &str, path: &str, extra: &[&str]| {
        let mut args = vec!["-B", "5", "-u"];
        let identity = format!("{gateway}-id");
        args.push(&identity);
        args.extend(["-k", KEY]);
        args.extend(extra);
        let out = Command::new("timeout")
            .arg("30")
            .arg(&tool)
            .args(&args)
            .arg(format!("coaps://{front}{path}"))
            .output()
            .unwrap();
        output_text(&out)
    };
    let me = act("hub", "/gw/spoke/s1/id", &["-m", "get"]);
    assert!(me.contains("s1 active via-gateway"), "{me}");
    for (gw, spoke) in [("hub", "s3"), ("hub", "x1"), ("s1", "s2")] {
        let out = act(gw, &format!("/gw/spoke/{spoke}/id"), &["-m", "get"]);
        assert!(out.contains("4.03"), "{gw} for {spoke}: {out}");
    }
    // The other resources a spoke may use, through its gateway; and not
    // what only a gateway may do.
    let rl = act("hub", "/gw/spoke/s1/rl", &["-m", "get", "-A", "0"]);
    assert!(rl.contains("version") && rl.contains("count 1"), "{rl}");
    let key = act("hub", "/gw/spoke/s1/rl/key", &["-m", "get", "-A", "0"]);
    assert!(key.contains("BEGIN PUBLIC KEY"), "{key}");
    let nested = act("hub", "/gw/spoke/s1/gw/spokes", &["-m", "get"]);
    assert!(nested.contains("4.04"), "{nested}");
    let revoked = act("hub", "/gw/spoke/s3/rl", &["-m", "get", "-A", "0"]);
    assert!(revoked.contains("4.03"), "{revoked}");

    // The hub reports a session s1 had over BLE: start, then end.
    let report = tmp.path().join("report.json");
    std::fs::write(
        &report,
        r#"{"spoke":"s1","started_ms":1700000000000,"link":"ble:c4:7c:8d:6a:2e:01"}"#,
    )
    .unwrap();
    let post = |gw: &str| {
        act(
            gw,
            "/gw/sessions",
            &["-m", "post", "-t", "50", "-f", report.to_str().unwrap()],
        )
    };
    let out = post("hub");
    assert!(!out.contains("4.0"), "{out}");
    std::fs::write(&report, r#"{"spoke":"s1","started_ms":1700000000000,"ended_ms":1700000060000,"link":"ble:c4:7c:8d:6a:2e:01"}"#).unwrap();
    let out = post("hub");
    assert!(!out.contains("4.0"), "{out}");
    // Another gateway cannot report for it.
    let out = post("hub-2");
    assert!(out.contains("4.03"), "{out}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let list = cli_ok(
            &server,
            &[
                "session",
                "list",
                "--device",
                "s1",
                "--since",
                "2023-01-01T00:00:00Z",
                "-o",
                "json",
            ],
        );
        if list.contains("via gateway hub (ble:c4:7c:8d:6a:2e:01)")
            && list.contains("via-gateway")
            && list.contains("closed_by_peer")
        {
            // One record, closed by the second report.
            assert_eq!(list.matches("via gateway hub").count(), 1, "{list}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{list}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // A hub observing its spoke list hears of a new spoke (aiocoap, Observe).
    if let Some(python) = aiocoap_python() {
        use std::io::BufRead;
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/aiocoap_observe.py");
        let mut obs = Command::new(python)
            .arg(script)
            .arg(format!("coaps://{front}/gw/spokes"))
            .args(["hub-id", KEY, "15", "50"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(obs.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        assert!(
            first.contains("\"s1\"") && !first.contains("\"s4\""),
            "{first}"
        );
        add(&server, "s4", &["--gateway", "hub"]);
        let next = lines.next().unwrap().unwrap();
        let json = next.split_once(' ').unwrap().1;
        assert_eq!(ids_in(json), ["s1", "s2", "s3", "s4"], "{next}");
        let _ = obs.kill();
        let _ = obs.wait();
        cli_ok(&server, &["device", "delete", "s4"]);
    }

    // The hub still has spokes: it cannot be deleted until they go.
    let out = server.cli(&["device", "delete", "hub"]);
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("gateway of"),
        "{}",
        output_text(&out)
    );
    for s in ["s1", "s2", "s3"] {
        cli_ok(&server, &["device", "delete", s]);
    }
    cli_ok(&server, &["device", "delete", "hub"]);
}
