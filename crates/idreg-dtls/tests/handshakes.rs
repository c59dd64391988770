//! Full handshakes in memory: PSK, X.509 certificate and raw public key,
//! every suite, and each way a handshake is refused.

mod common;

use common::*;
use idreg_dtls::alert::AlertDescription;
use idreg_dtls::client::ClientError;
use idreg_dtls::server_handshake::FailReason;
use idreg_dtls::{AuthCredential, CipherSuite, EndpointConfig, Event};
use std::time::Duration;

fn exchange(net: &mut Net, i: usize) {
    assert!(net.clients[i].1.send(b"ping"));
    net.run_for(Duration::from_millis(10));
    let (conn, _) = match net.established().last().unwrap() {
        Event::Established { conn, device, .. } => (*conn, device.clone()),
        _ => unreachable!(),
    };
    assert_eq!(net.data_events().last().unwrap(), b"ping");
    assert!(net.server.send(conn, b"pong"));
    net.run_for(Duration::from_millis(10));
    assert_eq!(net.clients[i].1.poll_data().unwrap(), b"pong");
}

#[test]
fn psk_handshake_with_every_psk_suite_then_data_both_ways() {
    for suite in [
        CipherSuite::PskAes128Ccm8,
        CipherSuite::PskAes128Ccm,
        CipherSuite::PskAes128GcmSha256,
    ] {
        let mut net = Net::new(
            creds_with_psk("dev-1", "id-1", b"0123456789abcdef"),
            EndpointConfig::default(),
        );
        let mut cfg = psk_client("id-1", b"0123456789abcdef");
        cfg.suites = vec![suite];
        let c = net.add_client("192.0.2.10:4000", cfg);
        net.handshake(c);
        assert_eq!(net.clients[c].1.suite(), Some(suite));
        match net.established()[0] {
            Event::Established {
                device,
                credential,
                suite: s,
                ..
            } => {
                assert_eq!(device, "dev-1");
                assert_eq!(
                    credential,
                    &AuthCredential::Psk {
                        identity: b"id-1"[..].into()
                    }
                );
                assert_eq!(*s, suite);
            }
            _ => unreachable!(),
        }
        exchange(&mut net, c);
        assert_eq!(net.server.session_count(), 1);
        assert_eq!(net.server.handshake_count(), 0, "no handshake state left");
    }
}

#[test]
fn certificate_handshake_with_every_ecdhe_suite() {
    for suite in [
        CipherSuite::EcdheEcdsaAes128Ccm8,
        CipherSuite::EcdheEcdsaAes128Ccm,
        CipherSuite::EcdheEcdsaAes128GcmSha256,
    ] {
        let k = key_and_cert("dev-cert");
        let mut creds = MemCreds::default();
        creds.keys.insert(k.spki.clone(), "dev-cert".into());
        let mut net = Net::new(creds, EndpointConfig::default());
        let mut cfg = cert_client(&k);
        cfg.suites = vec![suite];
        let c = net.add_client("192.0.2.11:4000", cfg);
        net.handshake(c);
        match net.established()[0] {
            Event::Established {
                device, credential, ..
            } => {
                assert_eq!(device, "dev-cert");
                assert!(matches!(
                    credential,
                    AuthCredential::PublicKey { raw: false, .. }
                ));
            }
            _ => unreachable!(),
        }
        exchange(&mut net, c);
    }
}

#[test]
fn raw_public_key_handshake() {
    let k = key_and_cert("dev-rpk");
    let mut creds = MemCreds::default();
    creds.keys.insert(k.spki.clone(), "dev-rpk".into());
    let mut net = Net::new(creds, EndpointConfig::default());
    let c = net.add_client("192.0.2.12:4000", rpk_client(&k));
    net.handshake(c);
    match net.established()[0] {
        Event::Established { credential, .. } => {
            assert!(
                matches!(credential, AuthCredential::PublicKey { raw: true, .. }),
                "{credential:?}"
            );
        }
        _ => unreachable!(),
    }
    exchange(&mut net, c);
}

fn failed_reasons(net: &Net) -> Vec<String> {
    net.events
        .iter()
        .filter_map(|e| match e {
            Event::HandshakeFailed { reason, .. } => Some(reason.label().to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn unknown_refused_and_wrong_key_handshakes_fail_with_an_alert() {
    let mut creds = creds_with_psk("dev-1", "id-1", b"0123456789abcdef");
    creds.psks.insert(
        b"id-2".to_vec(),
        ("dev-2".into(), b"fedcba9876543210".to_vec()),
    );
    creds.refused.push("dev-2".into());
    let mut net = Net::new(creds, EndpointConfig::default());
    let unknown = net.add_client("192.0.2.20:1", psk_client("nobody", b"0123456789abcdef"));
    let revoked = net.add_client("192.0.2.21:1", psk_client("id-2", b"fedcba9876543210"));
    let wrong = net.add_client("192.0.2.22:1", psk_client("id-1", b"not-the-right-key"));
    net.run_for(Duration::from_secs(2));
    for c in [unknown, revoked, wrong] {
        assert!(!net.clients[c].1.is_established());
    }
    assert_eq!(
        net.clients[unknown].1.error(),
        Some(&ClientError::Alert(AlertDescription::UnknownPskIdentity))
    );
    assert_eq!(
        net.clients[revoked].1.error(),
        Some(&ClientError::Alert(AlertDescription::AccessDenied))
    );
    assert_eq!(
        net.clients[wrong].1.error(),
        Some(&ClientError::Alert(AlertDescription::BadRecordMac))
    );
    let mut reasons = failed_reasons(&net);
    reasons.sort();
    assert_eq!(reasons, ["bad_finished", "refused", "unknown_credential"]);
    assert_eq!(net.server.session_count(), 0);
    assert_eq!(net.server.handshake_count(), 0);
}

#[test]
fn an_unregistered_certificate_or_key_is_refused() {
    let k = key_and_cert("stranger");
    let mut net = Net::new(MemCreds::default(), EndpointConfig::default());
    let c = net.add_client("192.0.2.30:1", cert_client(&k));
    let r = net.add_client("192.0.2.31:1", rpk_client(&k));
    net.run_for(Duration::from_secs(2));
    assert!(!net.clients[c].1.is_established() && !net.clients[r].1.is_established());
    assert_eq!(
        failed_reasons(&net),
        ["unknown_credential", "unknown_credential"]
    );
}

#[test]
fn a_client_without_extended_master_secret_is_refused() {
    let mut net = Net::new(
        creds_with_psk("d", "i", b"0123456789abcdef"),
        EndpointConfig::default(),
    );
    let mut cfg = psk_client("i", b"0123456789abcdef");
    cfg.extended_master_secret = false;
    let c = net.add_client("192.0.2.40:1", cfg);
    net.run_for(Duration::from_secs(2));
    assert_eq!(
        net.clients[c].1.error(),
        Some(&ClientError::Alert(AlertDescription::HandshakeFailure))
    );
    assert_eq!(failed_reasons(&net), ["no_extended_master_secret"]);
}

#[test]
fn psk_suites_need_no_server_identity_and_ecdhe_offers_need_one() {
    // A PSK-only client against a server with an identity: PSK chosen.
    let mut net = Net::new(
        creds_with_psk("d", "i", b"0123456789abcdef"),
        EndpointConfig::default(),
    );
    let mut cfg = psk_client("i", b"0123456789abcdef");
    cfg.suites = vec![
        CipherSuite::EcdheEcdsaAes128Ccm8,
        CipherSuite::PskAes128Ccm8,
    ];
    let c = net.add_client("192.0.2.41:1", cfg);
    net.handshake(c);
    assert_eq!(net.clients[c].1.suite(), Some(CipherSuite::PskAes128Ccm8));
}

#[test]
fn a_failed_handshake_reason_is_reported_once() {
    let mut net = Net::new(MemCreds::default(), EndpointConfig::default());
    net.add_client("192.0.2.50:1", psk_client("nobody", b"0123456789abcdef"));
    net.run_for(Duration::from_secs(30));
    let failures = net
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::HandshakeFailed {
                    reason: FailReason::Refused(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(failures, 1);
}
