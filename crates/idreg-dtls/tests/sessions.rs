//! What happens around handshakes: ClientHellos without a cookie leave no
//! state; a new handshake beside an established session; Connection IDs
//! moving a session; replays; idle sessions; budgets; eviction; and
//! malformed records of every kind.

mod common;

use std::time::{Duration, Instant};

use common::*;
use idreg_dtls::client::Client;
use idreg_dtls::{CloseReason, Endpoint, EndpointConfig, Event};

const KEY: &[u8] = b"0123456789abcdef";

fn psk_net() -> Net {
    Net::new(creds_with_psk("dev", "id", KEY), EndpointConfig::default())
}

fn closed_reasons(net: &Net) -> Vec<CloseReason> {
    net.events
        .iter()
        .filter_map(|e| match e {
            Event::Closed { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect()
}

#[test]
fn client_hellos_without_a_valid_cookie_leave_no_state() {
    let t0 = Instant::now();
    let mut server = Endpoint::new(
        EndpointConfig::default(),
        None,
        creds_with_psk("d", "i", KEY),
        t0,
    );
    let hello = Client::new(psk_client("i", KEY), t0)
        .poll_transmit()
        .unwrap();
    for i in 0..20_000u32 {
        let from =
            std::net::SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 5000));
        server.handle(t0, from, &hello);
        let hvr = server.poll_transmit().expect("a HelloVerifyRequest");
        assert_eq!(hvr.to, from);
        assert!(hvr.data.len() <= hello.len(), "no amplification");
    }
    assert_eq!(server.handshake_count(), 0);
    assert_eq!(server.session_count(), 0);
    assert_eq!(server.stats().cookies_sent, 20_000);
    assert_eq!(server.poll_timeout(), None, "no timers either");
    // A cookie made for one address is worthless from another.
    let mut c = Client::new(psk_client("i", KEY), t0);
    let from = addr("192.0.2.1:1");
    server.handle(t0, from, &c.poll_transmit().unwrap());
    c.handle(t0, &server.poll_transmit().unwrap().data);
    server.handle(t0, addr("192.0.2.2:1"), &c.poll_transmit().unwrap());
    assert_eq!(server.handshake_count(), 0);
}

#[test]
fn a_new_handshake_beside_an_established_session_replaces_it_only_when_done() {
    let mut net = psk_net();
    let old = net.add_client("192.0.2.5:5000", psk_client("id", KEY));
    net.handshake(old);
    // Someone (a spoofer, or the device after a reboot) starts a handshake
    // from the same address; it never finishes.
    let spoof = net.add_client("192.0.2.5:5000", psk_client("id", b"wrong key 012345"));
    net.run_for(Duration::from_millis(50));
    // The old session still works meanwhile, and afterwards.
    assert!(net.clients[old].1.send(b"still here"));
    net.run_for(Duration::from_secs(20));
    assert!(net.data_events().contains(&b"still here".to_vec()));
    assert!(closed_reasons(&net).is_empty(), "{:?}", net.events);
    assert!(!net.clients[spoof].1.is_established());
    // A handshake that completes from that address does replace it.
    net.clients.remove(spoof);
    let renewed = net.add_client("192.0.2.5:5000", psk_client("id", KEY));
    net.handshake(renewed);
    assert_eq!(closed_reasons(&net), vec![CloseReason::Replaced]);
    assert_eq!(net.server.session_count(), 1);
}

#[test]
fn a_cid_record_from_a_new_address_moves_the_session_without_a_handshake() {
    let mut net = psk_net();
    let mut cfg = psk_client("id", KEY);
    cfg.connection_id = Some(vec![]);
    let c = net.add_client("192.0.2.7:4000", cfg);
    net.handshake(c);
    assert!(matches!(
        net.established()[0],
        Event::Established { cid: true, .. }
    ));
    assert_eq!(
        net.clients[c].1.session().unwrap().server_cid[0],
        1,
        "node id first"
    );
    // The NAT rebinds: same client, new port.
    net.clients[c].0 = addr("198.51.100.9:61000");
    net.clients[c].1.send(b"from behind a new mapping");
    net.run_for(Duration::from_millis(10));
    assert!(net
        .data_events()
        .contains(&b"from behind a new mapping".to_vec()));
    let moved: Vec<_> = net
        .events
        .iter()
        .filter(|e| matches!(e, Event::AddressChanged { .. }))
        .collect();
    assert_eq!(moved.len(), 1);
    // The server answers at the new address.
    let conn = match net.established()[0] {
        Event::Established { conn, .. } => *conn,
        _ => unreachable!(),
    };
    assert!(net.server.send(conn, b"reply"));
    net.run_for(Duration::from_millis(10));
    assert_eq!(net.clients[c].1.poll_data().unwrap(), b"reply");
    assert_eq!(net.established().len(), 1, "no second handshake");
}

#[test]
fn without_a_cid_a_new_address_is_a_stranger() {
    let mut net = psk_net();
    let c = net.add_client("192.0.2.8:4000", psk_client("id", KEY));
    net.handshake(c);
    net.clients[c].0 = addr("198.51.100.10:61000");
    net.clients[c].1.send(b"lost");
    net.run_for(Duration::from_millis(10));
    assert!(net.data_events().is_empty());
    assert_eq!(net.server.stats().no_peer, 1);
}

#[test]
fn an_old_cid_record_replayed_from_elsewhere_moves_nothing() {
    let mut net = psk_net();
    let mut cfg = psk_client("id", KEY);
    cfg.connection_id = Some(vec![]);
    let c = net.add_client("192.0.2.7:4000", cfg);
    net.handshake(c);
    let captured = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let cap = captured.clone();
    net.fault = Box::new(move |dir, _, d| {
        if dir == Direction::ToServer {
            cap.borrow_mut().push(d.to_vec());
        }
        Delivery::Deliver
    });
    net.clients[c].1.send(b"one");
    net.clients[c].1.send(b"two");
    net.run_for(Duration::from_millis(10));
    // An attacker replays the first record from its own address.
    let first = captured.borrow()[0].clone();
    net.server.handle(net.now, addr("203.0.113.66:1"), &first);
    assert!(!net
        .events
        .iter()
        .any(|e| matches!(e, Event::AddressChanged { .. })));
    assert_eq!(net.data_events(), vec![b"one".to_vec(), b"two".to_vec()]);
}

#[test]
fn replayed_records_are_dropped() {
    let mut net = psk_net();
    let c = net.add_client("192.0.2.9:4000", psk_client("id", KEY));
    net.handshake(c);
    let captured = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let cap = captured.clone();
    net.fault = Box::new(move |_, _, d| {
        cap.borrow_mut().push(d.to_vec());
        Delivery::Deliver
    });
    net.clients[c].1.send(b"pay 10");
    net.run_for(Duration::from_millis(10));
    let record = captured.borrow()[0].clone();
    for _ in 0..3 {
        net.server.handle(net.now, addr("192.0.2.9:4000"), &record);
    }
    net.step();
    assert_eq!(net.data_events(), vec![b"pay 10".to_vec()]);
    assert_eq!(net.server.stats().replayed, 3);
}

#[test]
fn idle_sessions_end_with_close_notify() {
    let config = EndpointConfig {
        idle_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    let mut net = Net::new(creds_with_psk("dev", "id", KEY), config);
    let c = net.add_client("192.0.2.10:4000", psk_client("id", KEY));
    net.handshake(c);
    net.run_for(Duration::from_secs(30));
    net.clients[c].1.send(b"keepalive");
    net.run_for(Duration::from_secs(45));
    assert_eq!(
        net.server.session_count(),
        1,
        "activity extends the idle deadline"
    );
    net.run_for(Duration::from_secs(20));
    assert_eq!(net.server.session_count(), 0);
    assert_eq!(closed_reasons(&net), vec![CloseReason::Idle]);
    assert!(net.clients[c].1.is_closed(), "the client got close_notify");
}

#[test]
fn a_client_close_notify_ends_the_session() {
    let mut net = psk_net();
    let c = net.add_client("192.0.2.11:4000", psk_client("id", KEY));
    net.handshake(c);
    net.clients[c].1.close();
    net.run_for(Duration::from_millis(10));
    assert_eq!(closed_reasons(&net), vec![CloseReason::ClosedByPeer]);
    assert_eq!(net.server.session_count(), 0);
}

#[test]
fn handshakes_in_flight_are_budgeted_per_address() {
    let config = EndpointConfig {
        max_handshakes_per_address: 2,
        ..Default::default()
    };
    let mut net = Net::new(creds_with_psk("dev", "id", KEY), config);
    // Four clients on one host whose flight 5 never arrives.
    for port in 1..=4 {
        net.add_client(
            &format!("192.0.2.12:{port}"),
            psk_client("id", b"wrong-key-wrong!"),
        );
    }
    net.fault = Box::new(|dir, _, d| {
        // Let hellos through; drop the clients' key exchange flights.
        if dir == Direction::ToServer && d[0] == 22 && d.len() > 13 && d[13] == 16 {
            Delivery::Drop
        } else {
            Delivery::Deliver
        }
    });
    net.run_for(Duration::from_millis(500));
    assert_eq!(net.server.handshake_count(), 2);
    assert!(net.server.stats().over_budget >= 2);
}

#[test]
fn a_full_table_evicts_the_least_recently_heard() {
    let config = EndpointConfig {
        max_sessions: 3,
        ..Default::default()
    };
    let mut net = Net::new(creds_with_psk("dev", "id", KEY), config);
    for i in 0..4 {
        let c = net.add_client(&format!("192.0.2.20:{}", 100 + i), psk_client("id", KEY));
        net.handshake(c);
        net.run_for(Duration::from_secs(1));
    }
    assert_eq!(net.server.session_count(), 3);
    assert_eq!(closed_reasons(&net), vec![CloseReason::Evicted]);
}

#[test]
fn malformed_records_of_every_kind_change_nothing() {
    let mut net = psk_net();
    let c = net.add_client("192.0.2.30:4000", psk_client("id", KEY));
    // Capture a real handshake's datagrams to mutate.
    let captured = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let cap = captured.clone();
    net.fault = Box::new(move |dir, _, d| {
        if dir == Direction::ToServer {
            cap.borrow_mut().push(d.to_vec());
        }
        Delivery::Deliver
    });
    net.handshake(c);
    net.clients[c].1.send(b"data");
    net.run_for(Duration::from_millis(10));
    let samples = captured.borrow().clone();
    let attacker = addr("192.0.2.30:4000"); // the victim's own address
    let stranger = addr("203.0.113.1:1");
    let mut rng_state = 0x1234_5678_u32;
    let mut rnd = move || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 17;
        rng_state ^= rng_state << 5;
        rng_state
    };
    for sample in &samples {
        for cut in 0..sample.len() {
            net.server.handle(net.now, attacker, &sample[..cut]);
            net.server.handle(net.now, stranger, &sample[..cut]);
        }
        for _ in 0..200 {
            let mut m = sample.clone();
            let flips = 1 + rnd() as usize % 4;
            for _ in 0..flips {
                let i = rnd() as usize % m.len();
                m[i] ^= 1 << (rnd() % 8);
            }
            net.server.handle(net.now, attacker, &m);
            net.server.handle(net.now, stranger, &m);
        }
    }
    let junk: Vec<Vec<u8>> = (0..2000)
        .map(|n| (0..(n % 300)).map(|_| rnd() as u8).collect())
        .collect();
    for j in &junk {
        net.server.handle(net.now, stranger, j);
    }
    while net.server.poll_transmit().is_some() {}
    // The real session is untouched and still works.
    assert_eq!(net.server.session_count(), 1);
    net.clients[c].1.send(b"after the storm");
    net.run_for(Duration::from_millis(10));
    assert!(net.data_events().contains(&b"after the storm".to_vec()));
}

#[test]
fn saved_sessions_answer_after_a_restart_without_a_handshake() {
    let mut net = psk_net();
    let mut with_cid = psk_client("id", KEY);
    with_cid.connection_id = Some(vec![7, 7]);
    let a = net.add_client("192.0.2.40:4000", with_cid);
    let b = net.add_client("192.0.2.41:4000", psk_client("id", KEY));
    net.handshake(a);
    net.handshake(b);
    let wall = 1_700_000_000_000u64;
    let saved = net
        .server
        .save_sessions(net.now, wall, |d| d.as_bytes().to_vec());
    // A new server process: same credentials, nothing else.
    let later = net.now + Duration::from_secs(5);
    let mut restarted = Endpoint::new(
        EndpointConfig::default(),
        Some(server_identity()),
        creds_with_psk("dev", "id", KEY),
        later,
    );
    let n = restarted
        .restore_sessions(later, wall + 5_000, &saved, |b| {
            String::from_utf8(b.to_vec()).ok()
        })
        .unwrap();
    assert_eq!(n, 2);
    net.server = restarted;
    net.now = later;
    net.events.clear();
    net.step();
    assert_eq!(
        net.events
            .iter()
            .filter(|e| matches!(e, Event::Established { restored: true, .. }))
            .count(),
        2
    );
    for c in [a, b] {
        assert!(net.clients[c].1.send(b"after the restart"));
    }
    net.run_for(Duration::from_millis(10));
    assert_eq!(net.data_events().len(), 2);
    let conns: Vec<_> = net
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Established { conn, .. } => Some(*conn),
            _ => None,
        })
        .collect();
    for conn in conns {
        assert!(net.server.send(conn, b"welcome back"));
    }
    net.run_for(Duration::from_millis(10));
    for c in [a, b] {
        assert_eq!(net.clients[c].1.poll_data().unwrap(), b"welcome back");
    }
    assert_eq!(net.server.stats().handshakes_started, 0);
    // Sessions idle past the timeout are not taken back; junk is an error.
    let mut fresh = Endpoint::new(EndpointConfig::default(), None, MemCreds::default(), later);
    let down_too_long = wall + EndpointConfig::default().idle_timeout.as_millis() as u64;
    assert_eq!(
        fresh.restore_sessions(later, down_too_long, &saved, |b| String::from_utf8(
            b.to_vec()
        )
        .ok()),
        Ok(0)
    );
    assert!(fresh
        .restore_sessions(later, wall, &saved[..saved.len() - 3], |b| {
            String::from_utf8(b.to_vec()).ok()
        })
        .is_err());
}
