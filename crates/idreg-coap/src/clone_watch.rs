//! Cloned credentials on this node: one device identity with live sessions
//! from two different IP addresses at once. A Connection ID move is the
//! same session and never counts; a device reconnecting from the address it
//! had (a reboot beside its lingering session) neither. Each sighting is
//! logged, counted and kept (the last [`MAX_SIGHTINGS`]) for `idreg
//! session clones`; the policy decides which sessions end.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use idreg_dtls::ConnId;

/// Sightings kept for the Sessions API.
pub const MAX_SIGHTINGS: usize = 1000;

/// What the front does when it sees a clone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClonePolicy {
    /// Log, count and list it; both sessions go on.
    #[default]
    Alert,
    /// End the session that came second.
    RefuseNew,
    /// End both.
    EndBoth,
}

impl ClonePolicy {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "alert" => Some(Self::Alert),
            "refuse-new" => Some(Self::RefuseNew),
            "end-both" => Some(Self::EndBoth),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alert => "alert",
            Self::RefuseNew => "refuse-new",
            Self::EndBoth => "end-both",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloneSighting {
    pub device: String,
    /// The address of the session that was there first, and of the new one.
    pub first: IpAddr,
    pub second: IpAddr,
    pub at_ms: u64,
    pub action: ClonePolicy,
}

/// A live session: its shard, its connection there, its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveRef {
    pub shard: u16,
    pub conn: ConnId,
    pub ip: IpAddr,
}

#[derive(Debug, Default)]
struct Inner {
    live: HashMap<Arc<str>, Vec<LiveRef>>,
    sightings: VecDeque<CloneSighting>,
    detected: u64,
}

#[derive(Debug, Default)]
pub struct CloneWatch {
    policy: ClonePolicy,
    inner: Mutex<Inner>,
}

impl CloneWatch {
    pub fn new(policy: ClonePolicy) -> Self {
        Self {
            policy,
            inner: Mutex::default(),
        }
    }

    pub fn policy(&self) -> ClonePolicy {
        self.policy
    }

    /// A session of `device` started: the live sessions of the same device
    /// from other addresses (a clone when not empty, recorded).
    pub fn started(&self, device: &Arc<str>, new: LiveRef, now_ms: u64) -> Vec<LiveRef> {
        let mut inner = self.inner.lock().expect("clone watch lock");
        let others: Vec<LiveRef> = inner
            .live
            .get(device)
            .into_iter()
            .flatten()
            .filter(|l| l.ip != new.ip)
            .copied()
            .collect();
        inner.live.entry(device.clone()).or_default().push(new);
        if let Some(first) = others.first() {
            inner.detected += 1;
            if inner.sightings.len() == MAX_SIGHTINGS {
                inner.sightings.pop_front();
            }
            let sighting = CloneSighting {
                device: device.to_string(),
                first: first.ip,
                second: new.ip,
                at_ms: now_ms,
                action: self.policy,
            };
            inner.sightings.push_back(sighting);
        }
        others
    }

    pub fn ended(&self, device: &Arc<str>, shard: u16, conn: ConnId) {
        let mut inner = self.inner.lock().expect("clone watch lock");
        if let Some(list) = inner.live.get_mut(device) {
            list.retain(|l| !(l.shard == shard && l.conn == conn));
            if list.is_empty() {
                inner.live.remove(device);
            }
        }
    }

    /// Sightings, oldest first, and how many there have been in all.
    pub fn sightings(&self) -> (Vec<CloneSighting>, u64) {
        let inner = self.inner.lock().expect("clone watch lock");
        (inner.sightings.iter().cloned().collect(), inner.detected)
    }
}
