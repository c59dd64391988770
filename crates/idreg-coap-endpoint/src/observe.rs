//! Observe (RFC 7641) for one session: who asked to be told when a
//! resource changes, with what token and representation, and which of our
//! notifications are still unconfirmed. Most notifications are NON; every
//! [`CON_EVERY`]th is CON, and an observer that has not acknowledged the
//! last CON by the next notification is taken for gone and dropped (as is
//! one that answers a notification with RST).

use coap_lite::ContentFormat;

/// Observations one session may hold (the node bounds its total too).
pub const MAX_PER_SESSION: usize = 4;
/// One notification in this many is confirmable.
pub const CON_EVERY: u32 = 8;

#[derive(Debug, Clone)]
pub struct Observation {
    pub token: Vec<u8>,
    pub path: Vec<String>,
    pub query: Vec<String>,
    pub accept: Option<ContentFormat>,
    /// The block size the observer asked for (Block2 SZX), if any.
    pub szx: Option<u8>,
    /// The last Observe sequence number sent.
    pub seq: u32,
    /// Notifications sent.
    pub sent: u32,
    /// Message id of a CON notification not yet acknowledged.
    pub awaiting: Option<u16>,
    /// Message id of the last notification (an RST to it ends the
    /// observation).
    pub last_message_id: Option<u16>,
}

#[derive(Debug, Default)]
pub struct Observations {
    list: Vec<Observation>,
}

impl Observations {
    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Adds (or, for a token already observing, replaces) an observation;
    /// false when the session holds its maximum.
    pub fn register(&mut self, observation: Observation) -> bool {
        if let Some(o) = self.list.iter_mut().find(|o| o.token == observation.token) {
            *o = observation;
            return true;
        }
        if self.list.len() >= MAX_PER_SESSION {
            return false;
        }
        self.list.push(observation);
        true
    }

    /// Whether `token` already observes (a re-registration takes no new
    /// room).
    pub fn register_again(&self, token: &[u8]) -> bool {
        self.list.iter().any(|o| o.token == token)
    }

    pub fn cancel(&mut self, token: &[u8]) {
        self.list.retain(|o| o.token != token);
    }

    /// An ACK or RST from the device: an ACK confirms a CON notification;
    /// an RST to a notification ends that observation.
    pub fn answered(&mut self, message_id: u16, reset: bool) {
        if reset {
            self.list.retain(|o| {
                o.last_message_id != Some(message_id) && o.awaiting != Some(message_id)
            });
            return;
        }
        for o in &mut self.list {
            if o.awaiting == Some(message_id) {
                o.awaiting = None;
            }
        }
    }

    /// The observations of `path`, for a notification; those that left a
    /// CON unacknowledged are dropped first.
    pub fn of_path(&mut self, path: &[&str]) -> Vec<Observation> {
        let observes = |o: &Observation| o.path.iter().eq(path.iter());
        self.list.retain(|o| !(o.awaiting.is_some() && observes(o)));
        self.list.iter().filter(|o| observes(o)).cloned().collect()
    }
}
