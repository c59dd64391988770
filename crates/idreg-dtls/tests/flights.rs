//! Flights over a bad network: every flight lost once, every datagram
//! duplicated, flights reordered, messages fragmented by a small MTU, and
//! the retransmission timer's back-off.

mod common;

use std::time::Duration;

use common::*;
use idreg_dtls::EndpointConfig;

fn cert_net(mtu: Option<usize>) -> (Net, usize) {
    let k = key_and_cert("dev-cert");
    let mut creds = MemCreds::default();
    creds.keys.insert(k.spki.clone(), "dev-cert".into());
    let mut config = EndpointConfig::default();
    let mut client = cert_client(&k);
    if let Some(mtu) = mtu {
        config.handshake.mtu = mtu;
        client.mtu = mtu;
    }
    let mut net = Net::new(creds, config);
    let c = net.add_client("192.0.2.1:7000", client);
    (net, c)
}

fn psk_net() -> (Net, usize) {
    let mut net = Net::new(
        creds_with_psk("d", "i", b"0123456789abcdef"),
        EndpointConfig::default(),
    );
    let c = net.add_client("192.0.2.1:7000", psk_client("i", b"0123456789abcdef"));
    (net, c)
}

#[test]
fn the_first_datagram_of_every_flight_lost_still_completes() {
    // Drop each of the first six datagrams in turn, in a fresh handshake each time.
    for lost in 0..6 {
        for make in [psk_net as fn() -> (Net, usize), || cert_net(None)] {
            let (mut net, c) = make();
            net.fault = Box::new(move |_, n, _| {
                if n == lost {
                    Delivery::Drop
                } else {
                    Delivery::Deliver
                }
            });
            net.handshake(c);
            assert!(net.clients[c].1.send(b"after loss"));
            net.run_for(Duration::from_millis(10));
            assert_eq!(
                net.data_events(),
                vec![b"after loss".to_vec()],
                "lost #{lost}"
            );
            assert_eq!(net.server.session_count(), 1);
        }
    }
}

#[test]
fn every_datagram_duplicated_completes_once() {
    for make in [psk_net as fn() -> (Net, usize), || cert_net(None)] {
        let (mut net, c) = make();
        net.fault = Box::new(|_, _, _| Delivery::Duplicate);
        net.handshake(c);
        assert_eq!(net.established().len(), 1);
        net.clients[c].1.send(b"once");
        net.run_for(Duration::from_millis(10));
        assert_eq!(
            net.data_events(),
            vec![b"once".to_vec()],
            "the duplicate was a replay"
        );
        assert!(net.server.stats().replayed >= 1);
    }
}

#[test]
fn reordered_datagrams_complete() {
    for make in [psk_net as fn() -> (Net, usize), || cert_net(Some(200))] {
        let (mut net, c) = make();
        // Hold back every other datagram until after the next one.
        net.fault = Box::new(|_, n, _| {
            if n % 2 == 0 {
                Delivery::Delay
            } else {
                Delivery::Deliver
            }
        });
        net.handshake(c);
        assert_eq!(net.established().len(), 1);
    }
}

#[test]
fn a_small_mtu_fragments_certificates_and_both_sides_reassemble() {
    for mtu in [400, 150] {
        let (mut net, c) = cert_net(Some(mtu));
        let mut largest = 0;
        let sizes = std::rc::Rc::new(std::cell::Cell::new(0usize));
        let s = sizes.clone();
        net.fault = Box::new(move |_, _, d| {
            s.set(s.get().max(d.len()));
            Delivery::Deliver
        });
        net.handshake(c);
        largest = largest.max(sizes.get());
        assert!(
            largest <= mtu,
            "a datagram of {largest} bytes over an MTU of {mtu}"
        );
    }
}

#[test]
fn flight4_is_resent_at_1_3_and_7_seconds_then_the_handshake_times_out() {
    use idreg_dtls::client::Client;
    use idreg_dtls::Endpoint;
    let t0 = std::time::Instant::now();
    let from = addr("192.0.2.9:9000");
    let mut server = Endpoint::new(
        EndpointConfig::default(),
        None,
        creds_with_psk("d", "i", b"0123456789abcdef"),
        t0,
    );
    let mut client = Client::new(psk_client("i", b"0123456789abcdef"), t0);
    server.handle(t0, from, &client.poll_transmit().unwrap());
    let hvr = server.poll_transmit().unwrap();
    assert_eq!(server.handshake_count(), 0, "no state before the cookie");
    client.handle(t0, &hvr.data);
    server.handle(t0, from, &client.poll_transmit().unwrap());
    assert_eq!(server.handshake_count(), 1);
    assert!(server.poll_transmit().is_some(), "flight 4");
    // The client goes silent: only the server's timer acts.
    let mut resent_at = Vec::new();
    for tenth in 1..=120 {
        let now = t0 + Duration::from_millis(100 * tenth);
        server.handle_timeout(now);
        while server.poll_transmit().is_some() {
            resent_at.push(tenth / 10);
        }
    }
    resent_at.dedup();
    assert_eq!(resent_at, vec![1, 3, 7]);
    assert_eq!(server.handshake_count(), 0, "timed out and forgotten");
    assert_eq!(server.stats().handshakes_timed_out, 1);
    assert_eq!(server.poll_timeout(), None, "no timer left");
}
