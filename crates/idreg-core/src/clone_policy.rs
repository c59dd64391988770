//! What the device front does when one identity is live from two addresses
//! at once (a cloned credential), and which of the two sessions ends. The
//! decision is a pure function of the two sessions, so two nodes that each
//! hold one of them decide the same way without talking it over.

use serde::{Deserialize, Serialize};

use crate::labels::Labels;
use crate::session_news::SessionStart;

/// The reserved label that sets a device's own policy
/// (`idreg.io/on-clone=refuse-new`), over its tenant's and the node's.
pub const CLONE_POLICY_LABEL: &str = "idreg.io/on-clone";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ClonePolicy {
    /// Log, count and record it; both sessions go on.
    #[default]
    Alert,
    /// End the session that started second.
    RefuseNew,
    /// End both.
    EndBoth,
}

impl ClonePolicy {
    pub const NAMES: &'static str = "alert, refuse-new or end-both";

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

    /// The device's own policy, if its labels set one.
    pub fn of_labels(labels: &Labels) -> Option<Self> {
        labels.get(CLONE_POLICY_LABEL).and_then(Self::parse)
    }

    /// Whether session `ours` ends, seen beside its clone `theirs`. Under
    /// refuse-new the later start ends; equal starts are ordered by node and
    /// session id, so exactly one of the two ends wherever this is asked.
    pub fn ends(self, ours: &SessionStart, theirs: &SessionStart) -> bool {
        match self {
            Self::Alert => false,
            Self::EndBoth => true,
            Self::RefuseNew => ours.order_key() > theirs.order_key(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(node: u64, session: u64, started_ms: u64) -> SessionStart {
        SessionStart {
            device: "d".into(),
            ip: [127, 0, 0, node as u8].into(),
            node,
            session,
            started_ms,
        }
    }

    #[test]
    fn refuse_new_ends_exactly_the_later_session_from_either_side() {
        let p = ClonePolicy::RefuseNew;
        let (a, b) = (start(1, 9, 100), start(2, 1, 200));
        assert!(!p.ends(&a, &b) && p.ends(&b, &a));
        // A tie in time: node, then session id, decide, the same both ways.
        let (a, b) = (start(1, 9, 100), start(2, 1, 100));
        assert!(!p.ends(&a, &b) && p.ends(&b, &a));
        let (a, b) = (start(1, 1, 100), start(1, 2, 100));
        assert!(!p.ends(&a, &b) && p.ends(&b, &a));
    }

    #[test]
    fn alert_ends_none_and_end_both_ends_both() {
        let (a, b) = (start(1, 1, 100), start(2, 2, 200));
        assert!(!ClonePolicy::Alert.ends(&a, &b) && !ClonePolicy::Alert.ends(&b, &a));
        assert!(ClonePolicy::EndBoth.ends(&a, &b) && ClonePolicy::EndBoth.ends(&b, &a));
    }

    #[test]
    fn names_round_trip_and_labels_set_a_device_policy() {
        for p in [
            ClonePolicy::Alert,
            ClonePolicy::RefuseNew,
            ClonePolicy::EndBoth,
        ] {
            assert_eq!(ClonePolicy::parse(p.as_str()), Some(p));
        }
        assert_eq!(ClonePolicy::parse("kill"), None);
        let labels = Labels::new("labels", [(CLONE_POLICY_LABEL, "end-both")]).unwrap();
        assert_eq!(ClonePolicy::of_labels(&labels), Some(ClonePolicy::EndBoth));
        assert_eq!(ClonePolicy::of_labels(&Labels::default()), None);
        assert!(Labels::new("labels", [(CLONE_POLICY_LABEL, "kill")]).is_err());
    }
}
