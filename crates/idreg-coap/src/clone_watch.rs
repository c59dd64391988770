//! Cloned credentials: one device identity with live sessions from two
//! different IP addresses at once, on this node or on two. Session starts
//! are announced to the peers and their answers come back here (see
//! `idreg_core::session_news`), so a clone is seen wherever its halves
//! landed. A Connection ID move is the same session and never counts; a
//! device reconnecting from the address it had (a reboot beside its
//! lingering session) neither.
//!
//! Each sighting is logged, counted and written to the session audit; the
//! policy (the device's label, else its tenant's, else the node's
//! `--on-clone`) decides which sessions end, the same way on every node.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use idreg_core::{
    CloneAnswer, ClonePolicy, CloneSighting, PeerSessions, SessionAnnouncer, SessionStart,
};
use idreg_dtls::ConnId;
use tokio::sync::mpsc;
use tracing::warn;

use crate::front_shard::ShardCommand;

/// A device's own policy or its tenant's, looked up when a clone is seen.
pub type PolicyLookup = Box<dyn Fn(&str) -> Option<ClonePolicy> + Send + Sync>;

/// Pairs remembered so the same clone is recorded once, however many ways
/// (our start, their answer, their start) it is learned.
const REMEMBERED_PAIRS: usize = 4096;

/// A live session: its shard, its connection there, its address, and its
/// audit id and start (for the other nodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveRef {
    pub shard: u16,
    pub conn: ConnId,
    pub ip: IpAddr,
    pub session: u64,
    pub started_ms: u64,
}

type PairKey = ((u64, u64), (u64, u64));

/// A device's live sessions on this node: nearly always one, kept in the
/// map entry itself (no allocation per device).
#[derive(Debug, Clone)]
enum Lives {
    One(LiveRef),
    Many(Vec<LiveRef>),
}

impl Lives {
    fn as_slice(&self) -> &[LiveRef] {
        match self {
            Lives::One(l) => std::slice::from_ref(l),
            Lives::Many(v) => v,
        }
    }

    fn push(&mut self, l: LiveRef) {
        match self {
            Lives::One(first) => *self = Lives::Many(vec![*first, l]),
            Lives::Many(v) => v.push(l),
        }
    }

    /// Removes a session; whether any remain.
    fn remove(&mut self, shard: u16, conn: ConnId) -> bool {
        let gone = |l: &LiveRef| l.shard == shard && l.conn == conn;
        match self {
            Lives::One(l) => !gone(l),
            Lives::Many(v) => {
                v.retain(|l| !gone(l));
                let left = !v.is_empty();
                if let [only] = v.as_slice() {
                    let only = *only;
                    *self = Lives::One(only);
                }
                left
            }
        }
    }
}

#[derive(Default)]
struct Inner {
    live: HashMap<Arc<str>, Lives>,
    recorded: HashSet<PairKey>,
    recorded_order: VecDeque<PairKey>,
    next_id: u64,
}

pub struct CloneWatch {
    node: u64,
    default_policy: ClonePolicy,
    policy_of: PolicyLookup,
    shards: Arc<Vec<mpsc::Sender<ShardCommand>>>,
    sightings: mpsc::Sender<CloneSighting>,
    announce: Option<Arc<dyn SessionAnnouncer>>,
    detected: AtomicU64,
    inner: Mutex<Inner>,
}

impl CloneWatch {
    pub fn new(
        node: u64,
        default_policy: ClonePolicy,
        policy_of: PolicyLookup,
        shards: Arc<Vec<mpsc::Sender<ShardCommand>>>,
        sightings: mpsc::Sender<CloneSighting>,
        announce: Option<Arc<dyn SessionAnnouncer>>,
    ) -> Self {
        Self {
            node,
            default_policy,
            policy_of,
            shards,
            sightings,
            announce,
            detected: AtomicU64::new(0),
            inner: Mutex::default(),
        }
    }

    /// The node's policy (`--on-clone`), for devices and tenants with none.
    pub fn default_policy(&self) -> ClonePolicy {
        self.default_policy
    }

    /// Clones seen by this node since it started.
    pub fn detected(&self) -> u64 {
        self.detected.load(Ordering::Relaxed)
    }

    fn start_of(&self, device: &str, l: &LiveRef) -> SessionStart {
        SessionStart {
            device: device.to_owned(),
            ip: l.ip,
            node: self.node,
            session: l.session,
            started_ms: l.started_ms,
        }
    }

    /// A session of `device` started here: it is announced to the peers,
    /// and checked against this node's live sessions of the device. Returns
    /// the sessions (the new one among them, perhaps) the policy ends.
    ///
    /// One identity shared by a botnet must not cost a sighting per pair:
    /// a new session is recorded once, against the earliest live session
    /// from another address; end-both ends all of them.
    pub fn started(&self, device: &Arc<str>, new: LiveRef) -> Vec<LiveRef> {
        let earlier = {
            let mut inner = self.inner.lock().expect("clone watch lock");
            match inner.live.get_mut(device) {
                None => {
                    inner.live.insert(device.clone(), Lives::One(new));
                    None
                }
                Some(lives) => {
                    let earlier = lives.as_slice().iter().find(|l| l.ip != new.ip).copied();
                    lives.push(new);
                    earlier
                }
            }
        };
        if let Some(herald) = self.announce.as_ref().filter(|h| h.has_peers()) {
            herald.announce(self.start_of(device, &new));
        }
        let Some(earlier) = earlier else {
            return Vec::new();
        };
        let new_start = self.start_of(device, &new);
        let policy = self.policy_for(device);
        let earlier_start = self.start_of(device, &earlier);
        self.sighted(&earlier_start, &new_start, policy);
        if policy == ClonePolicy::EndBoth {
            return self.live_of(device);
        }
        let mut ending = Vec::new();
        if policy.ends(&earlier_start, &new_start) {
            ending.push(earlier);
        }
        if policy.ends(&new_start, &earlier_start) {
            ending.push(new);
        }
        ending
    }

    pub fn ended(&self, device: &Arc<str>, shard: u16, conn: ConnId) {
        let mut inner = self.inner.lock().expect("clone watch lock");
        if let Some(lives) = inner.live.get_mut(device) {
            if !lives.remove(shard, conn) {
                inner.live.remove(device);
            }
        }
    }

    fn policy_for(&self, device: &str) -> ClonePolicy {
        (self.policy_of)(device).unwrap_or(self.default_policy)
    }

    /// Records one clone (once, however it was learned): counted, logged,
    /// written to the session audit.
    fn sighted(&self, a: &SessionStart, b: &SessionStart, policy: ClonePolicy) {
        let (first, second) = if a.order_key() <= b.order_key() {
            (a, b)
        } else {
            (b, a)
        };
        let key = ((first.node, first.session), (second.node, second.session));
        let id = {
            let mut inner = self.inner.lock().expect("clone watch lock");
            if !inner.recorded.insert(key) {
                return;
            }
            inner.recorded_order.push_back(key);
            if inner.recorded_order.len() > REMEMBERED_PAIRS {
                if let Some(old) = inner.recorded_order.pop_front() {
                    inner.recorded.remove(&old);
                }
            }
            inner.next_id += 1;
            inner.next_id
        };
        let n = self.detected.fetch_add(1, Ordering::Relaxed) + 1;
        // Every one while they are few; then every hundredth, so a botnet
        // sharing one identity cannot flood the log.
        if n <= 10 || n.is_multiple_of(100) {
            warn!(device = %first.device, first = %first.ip, first_node = first.node, second = %second.ip, second_node = second.node, action = policy.as_str(), detected = n, "cloned credential: one identity live from two addresses");
        }
        let sighting = CloneSighting {
            first: first.clone(),
            second: second.clone(),
            at_ms: crate::unix_ms(),
            policy,
            id,
        };
        if self.sightings.try_send(sighting).is_err() {
            warn!("clone sighting queue full; an audit entry was dropped");
        }
    }

    /// Ends a live session of this node through its shard.
    fn end(&self, l: &LiveRef) {
        if let Some(shard) = self.shards.get(l.shard as usize) {
            let _ = shard.try_send(ShardCommand::EndClone(l.conn));
        }
    }

    fn live_of(&self, device: &str) -> Vec<LiveRef> {
        let inner = self.inner.lock().expect("clone watch lock");
        inner
            .live
            .get(device)
            .map(|l| l.as_slice().to_vec())
            .unwrap_or_default()
    }
}

impl PeerSessions for CloneWatch {
    fn heard(&self, starts: &[SessionStart]) -> Vec<CloneAnswer> {
        let mut answers = Vec::new();
        for (i, theirs) in starts.iter().enumerate() {
            let live = self.live_of(&theirs.device);
            // Answered with our earliest clone of it; the policy applies to
            // each (end-both ends them all).
            let Some(earliest) = live.iter().find(|l| l.ip != theirs.ip) else {
                continue;
            };
            let policy = self.policy_for(&theirs.device);
            let ours = self.start_of(&theirs.device, earliest);
            self.sighted(&ours, theirs, policy);
            for l in live.iter().filter(|l| l.ip != theirs.ip) {
                if policy.ends(&self.start_of(&theirs.device, l), theirs) {
                    self.end(l);
                }
            }
            answers.push(CloneAnswer {
                start: i as u32,
                live: ours,
            });
        }
        answers
    }

    fn answered(&self, pairs: Vec<(SessionStart, SessionStart)>) {
        for (ours, theirs) in pairs {
            // Ours may have ended since it was announced.
            let Some(l) = self
                .live_of(&ours.device)
                .into_iter()
                .find(|l| l.session == ours.session)
            else {
                continue;
            };
            let policy = self.policy_for(&ours.device);
            self.sighted(&ours, &theirs, policy);
            if policy.ends(&ours, &theirs) {
                self.end(&l);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what would go to the peers.
    struct Announced(Arc<Mutex<Vec<SessionStart>>>);

    impl SessionAnnouncer for Announced {
        fn has_peers(&self) -> bool {
            true
        }
        fn announce(&self, start: SessionStart) {
            self.0.lock().unwrap().push(start);
        }
    }

    struct Node {
        watch: CloneWatch,
        sightings: mpsc::Receiver<CloneSighting>,
        shard: mpsc::Receiver<ShardCommand>,
        announced: Arc<Mutex<Vec<SessionStart>>>,
    }

    fn node(id: u64, policy: ClonePolicy, per_device: Option<(&'static str, ClonePolicy)>) -> Node {
        let (tx, sightings) = mpsc::channel(64);
        let (shard_tx, shard) = mpsc::channel(64);
        let announced: Arc<Mutex<Vec<SessionStart>>> = Default::default();
        let lookup: PolicyLookup =
            Box::new(move |d| per_device.and_then(|(name, p)| (d == name).then_some(p)));
        let watch = CloneWatch::new(
            id,
            policy,
            lookup,
            Arc::new(vec![shard_tx]),
            tx,
            Some(Arc::new(Announced(announced.clone()))),
        );
        Node {
            watch,
            sightings,
            shard,
            announced,
        }
    }

    fn live(conn: u32, ip: u8, session: u64, started_ms: u64) -> LiveRef {
        LiveRef {
            shard: 0,
            conn: ConnId::from_u64(conn as u64),
            ip: [10, 0, 0, ip].into(),
            session,
            started_ms,
        }
    }

    fn ended(shard: &mut mpsc::Receiver<ShardCommand>) -> Vec<ConnId> {
        let mut out = Vec::new();
        while let Ok(c) = shard.try_recv() {
            if let ShardCommand::EndClone(conn) = c {
                out.push(conn);
            }
        }
        out
    }

    #[test]
    fn same_node_clone_is_recorded_once_and_refuse_new_ends_the_second() {
        let mut n = node(1, ClonePolicy::RefuseNew, None);
        let d: Arc<str> = Arc::from("twin");
        assert!(n.watch.started(&d, live(1, 1, 11, 100)).is_empty());
        // The same address again is a reconnect, not a clone.
        assert!(n.watch.started(&d, live(2, 1, 12, 150)).is_empty());
        let ending = n.watch.started(&d, live(3, 2, 13, 200));
        assert_eq!(ending, [live(3, 2, 13, 200)]);
        // One sighting, against the earliest session from the other address.
        let s = n.sightings.try_recv().unwrap();
        assert_eq!((s.first.session, s.second.session), (11, 13));
        assert_eq!(s.policy, ClonePolicy::RefuseNew);
        assert!(n.sightings.try_recv().is_err());
        assert_eq!(n.watch.detected(), 1);
        assert_eq!(n.announced.lock().unwrap().len(), 3);
    }

    #[test]
    fn clones_on_two_nodes_are_seen_by_both_and_each_ends_its_own() {
        let mut a = node(1, ClonePolicy::RefuseNew, None);
        let mut b = node(2, ClonePolicy::RefuseNew, None);
        let d: Arc<str> = Arc::from("twin");
        a.watch.started(&d, live(1, 1, 11, 100));
        b.watch.started(&d, live(7, 2, 21, 200));
        // B announces its start; A answers with its live session.
        let announced = b.announced.lock().unwrap().clone();
        let answers = a.watch.heard(&announced);
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].live.node, 1);
        // A's session came first: A ends nothing; B ends its own.
        assert!(ended(&mut a.shard).is_empty());
        b.watch
            .answered(vec![(announced[0].clone(), answers[0].live.clone())]);
        assert_eq!(ended(&mut b.shard), [ConnId::from_u64(7)]);
        for n in [&mut a, &mut b] {
            let s = n.sightings.try_recv().unwrap();
            assert_eq!((s.first.node, s.second.node), (1, 2));
        }
        // Learned again the other way (announcements crossed): no new entry.
        let a_start = a.announced.lock().unwrap()[0].clone();
        assert_eq!(b.watch.heard(&[a_start]).len(), 1);
        assert!(b.sightings.try_recv().is_err());
    }

    #[test]
    fn a_device_policy_overrides_the_node_and_ended_sessions_are_not_clones() {
        let mut a = node(
            1,
            ClonePolicy::Alert,
            Some(("strict", ClonePolicy::EndBoth)),
        );
        let strict: Arc<str> = Arc::from("strict");
        a.watch.started(&strict, live(1, 1, 11, 100));
        let theirs = SessionStart {
            device: "strict".into(),
            ip: [10, 0, 0, 9].into(),
            node: 2,
            session: 5,
            started_ms: 50,
        };
        a.watch.heard(std::slice::from_ref(&theirs));
        assert_eq!(ended(&mut a.shard), [ConnId::from_u64(1)]);
        a.watch.ended(&strict, 0, ConnId::from_u64(1));
        assert!(a.watch.heard(&[theirs]).is_empty());

        let loose: Arc<str> = Arc::from("loose");
        a.watch.started(&loose, live(2, 1, 12, 100));
        assert!(a.watch.started(&loose, live(3, 2, 13, 200)).is_empty());
        assert_eq!(a.sightings.try_recv().unwrap().policy, ClonePolicy::EndBoth);
        assert_eq!(a.sightings.try_recv().unwrap().policy, ClonePolicy::Alert);
    }

    #[test]
    fn a_device_back_to_one_session_is_watched_as_before() {
        let mut n = node(1, ClonePolicy::Alert, None);
        let d: Arc<str> = Arc::from("d");
        n.watch.started(&d, live(1, 1, 11, 100));
        n.watch.started(&d, live(2, 1, 12, 110));
        n.watch.ended(&d, 0, ConnId::from_u64(1));
        n.watch.ended(&d, 0, ConnId::from_u64(1));
        // The one left still counts: a clone from elsewhere is seen.
        n.watch.started(&d, live(3, 2, 13, 120));
        assert_eq!(n.sightings.try_recv().unwrap().first.session, 12);
        n.watch.ended(&d, 0, ConnId::from_u64(2));
        n.watch.ended(&d, 0, ConnId::from_u64(3));
        assert!(n.watch.live_of("d").is_empty());
    }
}
