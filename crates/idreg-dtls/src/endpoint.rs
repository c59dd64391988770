//! The server endpoint: every peer of one socket (shard), sans I/O.
//! `handle(now, from, datagram)` feeds it; `poll_transmit`, `poll_event` and
//! `poll_timeout`/`handle_timeout` drain it. Peers are plain data in a slab,
//! found by address or by Connection ID; there is no task per peer.
//!
//! What it guarantees:
//! - a ClientHello without a valid cookie costs a HelloVerifyRequest and no
//!   memory;
//! - handshakes in flight are budgeted per address and network;
//! - a ClientHello from the address of an established session starts a new
//!   handshake beside it; the old session ends only when the new one
//!   completes (RFC 6347 §4.2.8);
//! - an authenticated, newest record with our CID from a new address moves
//!   its session there (RFC 9146 §6);
//! - an established session is only the record layer's state.

use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::alert::{self, AlertDescription};
use crate::cipher_suite::CipherSuite;
use crate::cookie_jar::CookieJar;
use crate::credentials::{CredentialStore, ServerIdentity};
use crate::endpoint_config::EndpointConfig;
use crate::handshake_budget::HandshakeBudget;
use crate::handshake_codec::{self as codec, ClientHello, HandshakeType};
use crate::record::{self, ContentType, Record};
use crate::server_handshake::{FailReason, Failure, Progress, ServerHandshake};
use crate::session::{AuthCredential, Cid, Session, CID_LEN};

/// A peer's handle: slot index and generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

impl ConnId {
    fn new(index: u32, generation: u32) -> Self {
        ConnId((u64::from(generation) << 32) | u64::from(index))
    }
    fn index(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }
    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
    pub fn as_u64(self) -> u64 {
        self.0
    }
    /// A handle from [`as_u64`](Self::as_u64), for tables kept outside the
    /// engine (and their tests). It names a live peer only if that peer
    /// gave it out.
    pub fn from_u64(v: u64) -> Self {
        ConnId(v)
    }
}

/// Why an established session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent close_notify or a fatal alert.
    ClosedByPeer,
    Idle,
    /// A new handshake from its address completed.
    Replaced,
    /// The session table was full.
    Evicted,
    /// The owner closed it (revocation, shutdown, …).
    Local,
}

#[derive(Debug)]
pub enum Event<D> {
    Established {
        conn: ConnId,
        addr: SocketAddr,
        device: D,
        credential: AuthCredential,
        suite: CipherSuite,
        cid: bool,
        /// Read back from a saved session rather than handshaken now.
        restored: bool,
        /// From the ClientHello that began the handshake to the session
        /// (zero for a restored one).
        handshake_time: Duration,
    },
    Data {
        conn: ConnId,
        data: Vec<u8>,
    },
    AddressChanged {
        conn: ConnId,
        from: SocketAddr,
        to: SocketAddr,
    },
    /// The session is gone from the endpoint; here is what it was (device,
    /// credential, addresses, byte counts) for the owner's records.
    Closed {
        conn: ConnId,
        reason: CloseReason,
        session: Box<Session<D>>,
    },
    HandshakeFailed {
        addr: SocketAddr,
        reason: FailReason,
    },
}

/// A datagram (or a record in it) this endpoint has no peer for: the caller
/// may know another endpoint (socket shard) that has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    UnknownCid(Cid),
    UnknownAddress,
}

/// A datagram to send.
#[derive(Debug)]
pub struct Transmit {
    pub to: SocketAddr,
    pub data: Vec<u8>,
}

/// Counters of what the endpoint did and refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    pub cookies_sent: u64,
    pub handshakes_started: u64,
    pub handshakes_completed: u64,
    pub handshakes_failed: u64,
    pub handshakes_timed_out: u64,
    pub over_budget: u64,
    pub malformed: u64,
    pub unknown_cid: u64,
    pub no_peer: u64,
    pub replayed: u64,
    pub bad_records: u64,
    pub address_changes: u64,
    pub evicted: u64,
}

enum Peer<D> {
    Free,
    Handshake(Box<ServerHandshake<D>>),
    Session(Box<Session<D>>),
}

struct Slot<D> {
    generation: u32,
    peer: Peer<D>,
    /// The time of this slot's live timer-heap entry, if any.
    timer_at: Option<Instant>,
}

pub struct Endpoint<C: CredentialStore> {
    config: EndpointConfig,
    identity: Option<ServerIdentity>,
    creds: C,
    cookies: CookieJar,
    slots: Vec<Slot<C::Device>>,
    free: Vec<u32>,
    sessions_by_addr: HashMap<SocketAddr, u32>,
    handshakes_by_addr: HashMap<SocketAddr, u32>,
    by_cid: HashMap<Cid, u32>,
    sessions: usize,
    budget: HandshakeBudget,
    timers: BinaryHeap<std::cmp::Reverse<(Instant, u32, u32)>>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event<C::Device>>,
    stats: EndpointStats,
    /// Reused for opening records.
    plain: Vec<u8>,
}

impl<C: CredentialStore> Endpoint<C> {
    pub fn new(
        config: EndpointConfig,
        identity: Option<ServerIdentity>,
        creds: C,
        now: Instant,
    ) -> Self {
        let budget = HandshakeBudget::new(
            config.max_handshakes,
            config.max_handshakes_per_address,
            config.max_handshakes_per_network,
        );
        Self {
            config,
            identity,
            creds,
            cookies: CookieJar::new(now),
            slots: Vec::new(),
            free: Vec::new(),
            sessions_by_addr: HashMap::new(),
            handshakes_by_addr: HashMap::new(),
            by_cid: HashMap::new(),
            sessions: 0,
            budget,
            timers: BinaryHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: EndpointStats::default(),
            plain: Vec::new(),
        }
    }

    pub fn credentials(&self) -> &C {
        &self.creds
    }

    pub fn credentials_mut(&mut self) -> &mut C {
        &mut self.creds
    }

    pub fn stats(&self) -> EndpointStats {
        self.stats
    }

    /// Established sessions.
    pub fn session_count(&self) -> usize {
        self.sessions
    }

    /// Handshakes past the cookie round trip.
    pub fn handshake_count(&self) -> usize {
        self.budget.in_flight()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event<C::Device>> {
        self.events.pop_front()
    }

    /// The earliest time `handle_timeout` has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|std::cmp::Reverse((t, _, _))| *t)
    }

    /// The session behind `conn`, if it is still established.
    pub fn session(&self, conn: ConnId) -> Option<&Session<C::Device>> {
        match &self.slots.get(conn.index())?.peer {
            Peer::Session(s) if self.slots[conn.index()].generation == conn.generation() => Some(s),
            _ => None,
        }
    }

    fn session_mut(&mut self, conn: ConnId) -> Option<&mut Session<C::Device>> {
        let slot = self.slots.get_mut(conn.index())?;
        match &mut slot.peer {
            Peer::Session(s) if slot.generation == conn.generation() => Some(s),
            _ => None,
        }
    }

    fn conn_id(&self, index: u32) -> ConnId {
        ConnId::new(index, self.slots[index as usize].generation)
    }

    /// Sends application data on an established session.
    pub fn send(&mut self, conn: ConnId, data: &[u8]) -> bool {
        let Some(session) = self.session_mut(conn) else {
            return false;
        };
        let mut out = Vec::with_capacity(data.len() + 48);
        session.seal(ContentType::ApplicationData, data, &mut out);
        let to = session.addr;
        self.transmits.push_back(Transmit { to, data: out });
        true
    }

    /// Ends a session with close_notify.
    pub fn close(&mut self, conn: ConnId, reason: CloseReason) -> bool {
        if self.session(conn).is_none() {
            return false;
        }
        self.end_session(conn.index() as u32, reason, true);
        true
    }

    /// Every established session, for a sweep (e.g. re-checking credentials).
    pub fn sessions(&self) -> impl Iterator<Item = (ConnId, &Session<C::Device>)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match &s.peer {
                Peer::Session(session) => Some((ConnId::new(i as u32, s.generation), &**session)),
                _ => None,
            })
    }

    /// Writes every established session (its device as `device` bytes) for
    /// a restart; see [`crate::saved_session`]. `wall_ms` (the wall clock,
    /// in ms) lets the restart count the time the node was down. The caller
    /// encrypts the result.
    pub fn save_sessions(
        &self,
        now: Instant,
        wall_ms: u64,
        device: impl Fn(&C::Device) -> Vec<u8>,
    ) -> Vec<u8> {
        let mut out = wall_ms.to_be_bytes().to_vec();
        for (_, s) in self.sessions() {
            crate::saved_session::encode(s, &device(&s.device), now, &mut out);
        }
        out
    }

    /// Takes back sessions written by [`Endpoint::save_sessions`], skipping
    /// those idle too long and those whose address or CID is taken; each
    /// becomes an `Established { restored: true }` event. Returns how many.
    pub fn restore_sessions(
        &mut self,
        now: Instant,
        wall_ms: u64,
        saved: &[u8],
        device: impl Fn(&[u8]) -> Option<C::Device>,
    ) -> Result<usize, crate::reader::DecodeError> {
        let mut r = crate::reader::Reader::new(saved);
        let saved_at = u64::from_be_bytes(r.array()?);
        // The sessions aged while the node was down.
        let down = std::time::Duration::from_millis(wall_ms.saturating_sub(saved_at));
        let back_then = now.checked_sub(down).unwrap_or(now);
        let mut restored = 0;
        while !r.is_empty() {
            let session = crate::saved_session::decode(&mut r, back_then, &device)?;
            let idle = now.saturating_duration_since(session.last_heard);
            let taken = self.sessions_by_addr.contains_key(&session.addr)
                || session
                    .our_cid
                    .is_some_and(|c| self.by_cid.contains_key(&c));
            if idle >= self.config.idle_timeout || taken {
                continue;
            }
            let (addr, cid, device, credential, suite) = (
                session.addr,
                session.our_cid,
                session.device.clone(),
                session.credential.clone(),
                session.suite,
            );
            let idle_at = session.last_heard + self.config.idle_timeout;
            let index = self.insert(Peer::Session(Box::new(session)));
            self.sessions_by_addr.insert(addr, index);
            if let Some(cid) = cid {
                self.by_cid.insert(cid, index);
            }
            self.sessions += 1;
            self.schedule(index, idle_at);
            let conn = self.conn_id(index);
            self.events.push_back(Event::Established {
                conn,
                addr,
                device,
                credential,
                suite,
                cid: cid.is_some(),
                restored: true,
                handshake_time: Duration::ZERO,
            });
            restored += 1;
        }
        Ok(restored)
    }

    // ---- datagrams in ----

    /// Takes a datagram from `from`. Returns what it could not place: a
    /// record with a CID it did not issue, or one from an address with no
    /// peer (the first such record decides; nothing after it is read).
    pub fn handle(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> Option<Miss> {
        let cid_len = if self.config.connection_ids {
            CID_LEN
        } else {
            0
        };
        for record in record::split_records(datagram, cid_len) {
            let Ok(record) = record else {
                self.stats.malformed += 1;
                return None;
            };
            let raw = raw_record(datagram, &record);
            if let Some(miss) = self.handle_record(now, from, &record, raw) {
                return Some(miss);
            }
        }
        None
    }

    fn handle_record(
        &mut self,
        now: Instant,
        from: SocketAddr,
        record: &Record<'_>,
        raw: &[u8],
    ) -> Option<Miss> {
        if record.content_type == ContentType::Tls12Cid {
            let cid: Cid = record.cid.try_into().expect("framed with CID_LEN");
            match self.by_cid.get(&cid).copied() {
                Some(i) => self.route_to_slot(now, i, from, record, raw),
                None => {
                    self.stats.unknown_cid += 1;
                    return Some(Miss::UnknownCid(cid));
                }
            }
            return None;
        }
        if record.epoch == 0
            && record.content_type == ContentType::Handshake
            && is_client_hello(record.body)
        {
            self.on_client_hello(now, from, record);
            return None;
        }
        let hs = self.handshakes_by_addr.get(&from).copied();
        let session = self.sessions_by_addr.get(&from).copied();
        // Beside an established session, epoch-1 application data and alerts
        // are the session's; handshake records are the new handshake's.
        let target = match (hs, session) {
            (Some(h), Some(s)) => match (record.epoch, record.content_type) {
                (0, _) | (_, ContentType::Handshake) => h,
                _ => s,
            },
            (Some(h), None) => h,
            (None, Some(s)) => s,
            (None, None) => {
                self.stats.no_peer += 1;
                return Some(Miss::UnknownAddress);
            }
        };
        self.route_to_slot(now, target, from, record, raw);
        None
    }

    fn route_to_slot(
        &mut self,
        now: Instant,
        index: u32,
        from: SocketAddr,
        record: &Record<'_>,
        raw: &[u8],
    ) {
        match &mut self.slots[index as usize].peer {
            Peer::Handshake(hs) if hs.addr == from => {
                hs.bytes_in += raw.len() as u64;
                self.handshake_record(now, index, record, raw)
            }
            Peer::Session(s) => {
                s.bytes_in += raw.len() as u64;
                self.session_record(now, index, from, record)
            }
            Peer::Handshake(_) | Peer::Free => self.stats.no_peer += 1,
        }
    }

    fn on_client_hello(&mut self, now: Instant, from: SocketAddr, record: &Record<'_>) {
        let Some(Ok(fragment)) = codec::fragments(record.body).next() else {
            self.stats.malformed += 1;
            return;
        };
        // A ClientHello must come whole: reassembling one would mean state
        // before the cookie.
        if !fragment.is_whole() {
            self.stats.malformed += 1;
            return;
        }
        let Ok(hello) = ClientHello::parse(fragment.body) else {
            self.stats.malformed += 1;
            return;
        };
        if !self.cookies.verify(now, from, &hello) {
            let cookie = self.cookies.cookie(now, from, &hello);
            let body = codec::hello_verify_request_body(&cookie);
            let mut out = Vec::with_capacity(64);
            record::put_header(
                &mut out,
                ContentType::Handshake,
                0,
                record.sequence,
                &[],
                codec::HANDSHAKE_HEADER_LEN + body.len(),
            );
            codec::put_header(
                &mut out,
                HandshakeType::HelloVerifyRequest,
                fragment.message_seq,
                body.len(),
            );
            out.extend_from_slice(&body);
            self.stats.cookies_sent += 1;
            self.transmits.push_back(Transmit {
                to: from,
                data: out,
            });
            return;
        }
        // The same hello again (our flight 4 was lost): send it again.
        if let Some(i) = self.handshakes_by_addr.get(&from).copied() {
            if let Peer::Handshake(hs) = &mut self.slots[i as usize].peer {
                if hs.client_random == hello.random {
                    for data in hs.flight4_datagrams() {
                        self.transmits.push_back(Transmit { to: from, data });
                    }
                    return;
                }
            }
            // A new hello from the same address replaces its handshake.
            self.end_handshake(i, None);
        }
        if self.budget.take(from.ip()).is_err() {
            self.stats.over_budget += 1;
            return;
        }
        let our_cid = match hello.extensions.connection_id.is_some() && self.config.connection_ids {
            true => Some(self.fresh_cid()),
            false => None,
        };
        let started = ServerHandshake::start(
            now,
            from,
            &hello,
            fragment.message_seq,
            record.sequence,
            self.identity.as_ref(),
            our_cid,
            &self.config.handshake,
        );
        match started {
            Ok((hs, datagrams)) => {
                self.stats.handshakes_started += 1;
                let deadline = hs.deadline();
                let cid = hs.our_cid;
                let index = self.insert(Peer::Handshake(Box::new(hs)));
                self.handshakes_by_addr.insert(from, index);
                if let Some(cid) = cid {
                    self.by_cid.insert(cid, index);
                }
                self.schedule(index, deadline);
                for data in datagrams {
                    self.transmits.push_back(Transmit { to: from, data });
                }
            }
            Err(failure) => {
                self.budget.give_back(from.ip());
                self.fail_handshake(from, failure, record.sequence);
            }
        }
    }

    fn fresh_cid(&self) -> Cid {
        loop {
            let mut cid = [0u8; CID_LEN];
            cid[0] = self.config.node_id;
            cid[1] = self.config.shard;
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut cid[2..]);
            if !self.by_cid.contains_key(&cid) {
                return cid;
            }
        }
    }

    fn handshake_record(&mut self, now: Instant, index: u32, record: &Record<'_>, raw: &[u8]) {
        let Peer::Handshake(hs) = &mut self.slots[index as usize].peer else {
            return;
        };
        let addr = hs.addr;
        match hs.handle_record(now, record, raw, &self.creds) {
            Ok(Progress::Waiting) => {}
            Ok(Progress::Repeat) => {
                for data in hs.flight4_datagrams() {
                    self.transmits.push_back(Transmit { to: addr, data });
                }
            }
            Ok(Progress::Established(session, flight6)) => {
                let took = now.saturating_duration_since(hs.started_at());
                self.transmits.push_back(Transmit {
                    to: addr,
                    data: flight6,
                });
                self.establish(now, index, session, took);
            }
            Err(failure) => {
                self.end_handshake(index, None);
                self.fail_handshake(addr, failure, 0);
            }
        }
    }

    fn fail_handshake(&mut self, addr: SocketAddr, failure: Failure, sequence: u64) {
        self.stats.handshakes_failed += 1;
        if let Some(desc) = failure.alert {
            let mut out = Vec::with_capacity(16);
            record::put_header(&mut out, ContentType::Alert, 0, sequence, &[], 2);
            out.extend_from_slice(&alert::body(alert::FATAL, desc));
            self.transmits.push_back(Transmit {
                to: addr,
                data: out,
            });
        }
        self.events.push_back(Event::HandshakeFailed {
            addr,
            reason: failure.reason,
        });
    }

    fn establish(
        &mut self,
        now: Instant,
        index: u32,
        session: Box<Session<C::Device>>,
        handshake_time: Duration,
    ) {
        let addr = session.addr;
        self.handshakes_by_addr.remove(&addr);
        self.budget.give_back(addr.ip());
        // RFC 6347 §4.2.8: the old association at this address ends now.
        if let Some(old) = self.sessions_by_addr.get(&addr).copied() {
            self.end_session(old, CloseReason::Replaced, false);
        }
        self.stats.handshakes_completed += 1;
        self.events.push_back(Event::Established {
            conn: self.conn_id(index),
            addr,
            device: session.device.clone(),
            credential: session.credential.clone(),
            suite: session.suite,
            cid: session.our_cid.is_some(),
            restored: false,
            handshake_time,
        });
        self.slots[index as usize].peer = Peer::Session(session);
        self.sessions_by_addr.insert(addr, index);
        self.sessions += 1;
        self.schedule(index, now + self.config.idle_timeout);
        if self.sessions > self.config.max_sessions {
            self.evict_one(index);
        }
    }

    /// Closes the least recently heard of a few sessions picked at random
    /// (never `keep`): an LRU approximation that costs no list per packet.
    fn evict_one(&mut self, keep: u32) {
        let mut victim: Option<(Instant, u32)> = None;
        let n = self.slots.len();
        for _ in 0..8 {
            let i = rand::random_range(0..n) as u32;
            if i == keep {
                continue;
            }
            if let Peer::Session(s) = &self.slots[i as usize].peer {
                if victim.is_none_or(|(t, _)| s.last_heard < t) {
                    victim = Some((s.last_heard, i));
                }
            }
        }
        if let Some((_, i)) = victim {
            self.stats.evicted += 1;
            self.end_session(i, CloseReason::Evicted, true);
        }
    }

    fn session_record(&mut self, now: Instant, index: u32, from: SocketAddr, record: &Record<'_>) {
        let conn = self.conn_id(index);
        let Peer::Session(session) = &mut self.slots[index as usize].peer else {
            return;
        };
        if record.epoch == 0 {
            // A retransmitted flight 5: our flight 6 was lost.
            if let (Some(fin), true) = (session.finished_to_resend, from == session.addr) {
                let mut out = Vec::with_capacity(96);
                session.write_flight6(&fin, &mut out);
                self.transmits.push_back(Transmit {
                    to: from,
                    data: out,
                });
            }
            return;
        }
        let newest = session.replay.is_newest(record.sequence);
        let content_type = match session.open(record, &mut self.plain) {
            Ok(t) => t,
            Err(crate::session::RecordDrop::Replayed) => {
                self.stats.replayed += 1;
                return;
            }
            Err(_) => {
                self.stats.bad_records += 1;
                return;
            }
        };
        session.last_heard = now;
        // Only an authenticated CID record that is the newest yet may move a
        // session (RFC 9146 §6); an older one from elsewhere changes nothing.
        let moved =
            (from != session.addr && record.content_type == ContentType::Tls12Cid && newest)
                .then(|| std::mem::replace(&mut session.addr, from));
        let to = session.addr;
        let mut reply = Vec::new();
        let mut closes = false;
        match content_type {
            ContentType::ApplicationData => {
                session.finished_to_resend = None;
                let data = std::mem::take(&mut self.plain);
                self.events.push_back(Event::Data { conn, data });
            }
            ContentType::Alert => {
                closes = matches!(alert::parse(&self.plain),
                    Some((level, desc)) if level == alert::FATAL || desc == AlertDescription::CloseNotify);
            }
            // Its Finished again (our flight 6 was lost), or an attempt at
            // renegotiation, which we do not do.
            ContentType::Handshake => match session.finished_to_resend {
                Some(fin) => session.write_flight6(&fin, &mut reply),
                None => session.seal(
                    ContentType::Alert,
                    &alert::body(alert::WARNING, AlertDescription::NoRenegotiation),
                    &mut reply,
                ),
            },
            ContentType::ChangeCipherSpec | ContentType::Tls12Cid => {}
        }
        if !reply.is_empty() {
            self.transmits.push_back(Transmit { to, data: reply });
        }
        if let Some(old) = moved {
            self.sessions_by_addr.remove(&old);
            self.sessions_by_addr.insert(from, index);
            self.stats.address_changes += 1;
            self.events.push_back(Event::AddressChanged {
                conn,
                from: old,
                to: from,
            });
        }
        if closes {
            self.end_session(index, CloseReason::ClosedByPeer, false);
        }
    }

    // ---- timers ----

    fn schedule(&mut self, index: u32, at: Instant) {
        let slot = &mut self.slots[index as usize];
        if slot.timer_at.is_none_or(|t| at < t) {
            slot.timer_at = Some(at);
            self.timers
                .push(std::cmp::Reverse((at, index, slot.generation)));
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(std::cmp::Reverse((at, index, generation))) = self.timers.peek().copied() {
            if at > now {
                return;
            }
            self.timers.pop();
            let slot = &mut self.slots[index as usize];
            if slot.generation != generation || slot.timer_at != Some(at) {
                continue; // superseded
            }
            slot.timer_at = None;
            let idle_timeout = self.config.idle_timeout;
            let next = match &mut slot.peer {
                Peer::Handshake(hs) if now >= hs.expires_at => {
                    let addr = hs.addr;
                    self.stats.handshakes_timed_out += 1;
                    self.end_handshake(index, None);
                    self.events.push_back(Event::HandshakeFailed {
                        addr,
                        reason: FailReason::TimedOut,
                    });
                    continue;
                }
                Peer::Handshake(hs) => {
                    if now >= hs.retransmit_at {
                        let addr = hs.addr;
                        for data in hs.on_retransmit_timer(now) {
                            self.transmits.push_back(Transmit { to: addr, data });
                        }
                    }
                    hs.deadline()
                }
                Peer::Session(s) if now >= s.last_heard + idle_timeout => {
                    self.end_session(index, CloseReason::Idle, true);
                    continue;
                }
                Peer::Session(s) => s.last_heard + idle_timeout,
                Peer::Free => continue,
            };
            self.schedule(index, next);
        }
    }

    // ---- slots ----

    fn insert(&mut self, peer: Peer<C::Device>) -> u32 {
        match self.free.pop() {
            Some(i) => {
                let slot = &mut self.slots[i as usize];
                slot.peer = peer;
                slot.timer_at = None;
                i
            }
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    peer,
                    timer_at: None,
                });
                (self.slots.len() - 1) as u32
            }
        }
    }

    fn release(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        slot.peer = Peer::Free;
        slot.generation = slot.generation.wrapping_add(1);
        slot.timer_at = None;
        self.free.push(index);
    }

    fn end_handshake(&mut self, index: u32, _why: Option<FailReason>) {
        if let Peer::Handshake(hs) = &self.slots[index as usize].peer {
            let (addr, cid) = (hs.addr, hs.our_cid);
            if self.handshakes_by_addr.get(&addr) == Some(&index) {
                self.handshakes_by_addr.remove(&addr);
            }
            if let Some(cid) = cid {
                self.by_cid.remove(&cid);
            }
            self.budget.give_back(addr.ip());
            self.release(index);
        }
    }

    fn end_session(&mut self, index: u32, reason: CloseReason, notify: bool) {
        let conn = self.conn_id(index);
        let slot = &mut self.slots[index as usize];
        let Peer::Session(session) = std::mem::replace(&mut slot.peer, Peer::Free) else {
            return;
        };
        let mut session = session;
        if notify {
            let mut out = Vec::with_capacity(48);
            session.seal(
                ContentType::Alert,
                &alert::body(alert::WARNING, AlertDescription::CloseNotify),
                &mut out,
            );
            let to = session.addr;
            self.transmits.push_back(Transmit { to, data: out });
        }
        let (addr, cid) = (session.addr, session.our_cid);
        if self.sessions_by_addr.get(&addr) == Some(&index) {
            self.sessions_by_addr.remove(&addr);
        }
        if let Some(cid) = cid {
            if self.by_cid.get(&cid) == Some(&index) {
                self.by_cid.remove(&cid);
            }
        }
        self.sessions -= 1;
        self.release(index);
        self.events.push_back(Event::Closed {
            conn,
            reason,
            session,
        });
    }
}

fn is_client_hello(body: &[u8]) -> bool {
    body.first() == Some(&HandshakeType::ClientHello.code())
}

/// The bytes of `record` within `datagram` (for buffering it whole).
fn raw_record<'a>(datagram: &'a [u8], record: &Record<'_>) -> &'a [u8] {
    let end = record.body.as_ptr() as usize + record.body.len() - datagram.as_ptr() as usize;
    let header = record::HEADER_LEN + record.cid.len();
    let start = end - record.body.len() - header;
    &datagram[start..end]
}
