//! Bounds on what back-office callers can make one node hold at once: the
//! size of a message, HTTP/2 streams per connection, live `WatchDevices`
//! streams, label selectors per query and snapshot builds in flight. Past a
//! bound the caller gets RESOURCE_EXHAUSTED naming the setting, never a
//! slower node for everyone else.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

/// The bounds; each is a flag of `idreg serve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiLimits {
    /// Largest request message accepted, in bytes (`--grpc-max-message-bytes`).
    pub max_message_bytes: usize,
    /// HTTP/2 streams one connection may have open
    /// (`--grpc-max-concurrent-streams`); advertised in SETTINGS, so clients
    /// queue past it and a client that ignores it gets its streams refused.
    pub max_concurrent_streams: u32,
    /// Live `WatchDevices` streams on this node (`--max-watchers`).
    pub max_watchers: usize,
    /// Label selectors in one `ListDevices` (`--max-label-selectors`).
    pub max_label_selectors: usize,
    /// Snapshot builds (`TriggerSnapshot`, `SaveSnapshot` with its download)
    /// in flight on this node (`--max-snapshot-builds`).
    pub max_snapshot_builds: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: 4 << 20,
            max_concurrent_streams: 200,
            max_watchers: 1000,
            max_label_selectors: 16,
            max_snapshot_builds: 1,
        }
    }
}

/// A fixed number of places; taking one past the bound is refused at once
/// (never queued: a caller that waits holds a connection and a task).
#[derive(Clone)]
pub struct Slots {
    free: Arc<Semaphore>,
    bound: usize,
    /// The setting that raises the bound, named in the refusal.
    flag: &'static str,
    what: &'static str,
}

impl Slots {
    pub fn new(bound: usize, flag: &'static str, what: &'static str) -> Self {
        Self {
            free: Arc::new(Semaphore::new(bound)),
            bound,
            flag,
            what,
        }
    }

    /// A place, held until the permit is dropped; RESOURCE_EXHAUSTED if none
    /// is free.
    pub fn take(&self) -> Result<OwnedSemaphorePermit, Status> {
        self.free.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "{} {} already in flight on this node (the bound, {flag}); retry later or \
                 raise {flag}",
                self.bound,
                self.what,
                flag = self.flag
            ))
        })
    }
}

/// RESOURCE_EXHAUSTED for a count past its bound.
pub fn too_many(what: &str, count: usize, bound: usize, flag: &str) -> Status {
    Status::resource_exhausted(format!(
        "{what}: {count} given, at most {bound} (the bound, {flag})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_refuse_past_the_bound_and_free_on_drop() {
        let slots = Slots::new(2, "--max-watchers", "watch streams");
        let a = slots.take().unwrap();
        let _b = slots.take().unwrap();
        let refused = slots.take().unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().contains("--max-watchers"), "{refused}");
        drop(a);
        assert!(slots.take().is_ok());
    }
}
