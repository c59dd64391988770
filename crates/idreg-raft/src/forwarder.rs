//! Getting a batch of proposals written, and a read index, from whichever node
//! currently leads: locally when this node leads, otherwise over
//! `idreg.v1.Raft/Forward` and `/ReadIndex` to the leader. Clients never need
//! to know the leader.
//!
//! A batch is retried only when it certainly was not written: the leader said
//! it does not lead, or no connection to it could be made. When a forwarded
//! batch's reply is lost, its fate is unknown and the caller is told so.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use idreg_core::ProposalBatch;
use idreg_proto::v1::raft_client::RaftClient;
use idreg_proto::v1::{RaftPayload, ReadIndexRequest};
use idreg_store::{BatchOutcome, NodeId, TypeConfig};
use openraft::error::ClientWriteError;
use openraft::Raft;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::error::WriteError;
use crate::forwarded_batch::ForwardedBatch;
use crate::grpc_network::{raft_client, PeerDialer};
use crate::wire;

/// How long a write or read index may wait for a leader to be known and reachable.
pub const LEADER_WAIT: Duration = Duration::from_secs(10);
/// How long a follower waits to apply a forwarded write before answering.
const LOCAL_APPLY_WAIT: Duration = Duration::from_secs(2);
/// How long this node, leading, waits for a quorum to commit a batch. Beyond
/// it (a leader cut off from its followers) the outcome is unknown.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a forwarded batch may take at the leader.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a leader did not write a forwarded batch (it was not written). The
/// leader's reply is `Result<(log index, BatchOutcome), ForwardRefusal>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardRefusal {
    NotLeader { leader: Option<NodeId> },
    Failed(String),
}

#[derive(Clone)]
pub struct Forwarder {
    raft: Raft<TypeConfig>,
    node_id: NodeId,
    dialer: PeerDialer,
    clients: Arc<Mutex<HashMap<String, RaftClient<Channel>>>>,
}

enum Route {
    Local,
    Remote(String),
}

/// What a Forward call's reply says of the batch: written at this log index
/// (`Some`), certainly not written so it may be sent again (`None`), or an
/// error. Only a refused connection or a leader saying it does not lead mean
/// "not written"; a call that failed after it may have been sent (a reset, a
/// timeout, an unreadable reply) has an unknown outcome and is never resent.
pub(crate) fn forward_verdict(
    addr: &str,
    reply: Result<RaftPayload, tonic::Status>,
) -> Result<Option<(u64, BatchOutcome)>, WriteError> {
    let reply = match reply {
        Ok(r) => r,
        Err(s) if never_connected(&s) => return Ok(None),
        Err(s) => {
            return Err(WriteError::OutcomeUnknown(format!(
                "the leader at {addr} did not answer ({})",
                s.message()
            )))
        }
    };
    let result: Result<(u64, BatchOutcome), ForwardRefusal> = wire::decode_payload(&reply)
        .map_err(|e| WriteError::OutcomeUnknown(format!("undecodable reply from {addr}: {e}")))?;
    match result {
        Ok(written) => Ok(Some(written)),
        Err(ForwardRefusal::NotLeader { .. }) => Ok(None),
        Err(ForwardRefusal::Failed(why)) => Err(WriteError::Raft(why)),
    }
}

/// True when the status says no connection was made at all (nothing was sent).
fn never_connected(status: &tonic::Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::AddrNotAvailable
            );
        }
        source = e.source();
    }
    false
}

impl Forwarder {
    pub fn new(raft: Raft<TypeConfig>, node_id: NodeId, dialer: PeerDialer) -> Self {
        Self {
            raft,
            node_id,
            dialer,
            clients: Arc::default(),
        }
    }

    fn client(&self, addr: &str) -> Result<RaftClient<Channel>, WriteError> {
        let mut clients = self.clients.lock().expect("client cache lock");
        if let Some(c) = clients.get(addr) {
            return Ok(c.clone());
        }
        let channel = self
            .dialer
            .channel(addr)
            .map_err(|e| WriteError::Raft(format!("leader address {addr}: {e}")))?;
        let c = raft_client(channel);
        clients.insert(addr.to_owned(), c.clone());
        Ok(c)
    }

    /// Where the leader is, waiting (until `deadline`) while none is known.
    async fn route(&self, deadline: Instant) -> Result<Route, WriteError> {
        let mut metrics = self.raft.metrics();
        loop {
            {
                let m = metrics.borrow_and_update();
                if m.running_state.is_err() {
                    return Err(WriteError::ShuttingDown);
                }
                match m.current_leader {
                    Some(l) if l == self.node_id => return Ok(Route::Local),
                    Some(l) => {
                        if let Some(node) = m.membership_config.membership().get_node(&l) {
                            return Ok(Route::Remote(node.addr.clone()));
                        }
                    }
                    None => {}
                }
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(WriteError::ShuttingDown),
                Err(_) => return Err(WriteError::NoLeader),
            }
        }
    }

    /// Writes `batch` through the leader and returns its verdicts.
    /// `handed_over` is signalled once the batch's place in the log is
    /// settled, so the proposer hands the next batch over only then and
    /// batches reach the log in the order it formed them. Here, leading,
    /// that is as soon as raft has queued it, and commits overlap. Through a
    /// remote leader it is when the leader has answered: concurrent Forward
    /// calls could reach raft there in any order.
    /// When `write` returns, `handed_over` is dropped if not yet sent, which
    /// lets the next batch go too.
    pub async fn write(
        &self,
        batch: ProposalBatch,
        mut handed_over: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<BatchOutcome, WriteError> {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            let written = match self.route(deadline).await? {
                Route::Local => {
                    let queued = self.raft.client_write_ff(batch.clone()).await;
                    if let Some(h) = handed_over.take() {
                        let _ = h.send(());
                    }
                    let reply = queued.map_err(|_| WriteError::ShuttingDown)?;
                    match tokio::time::timeout(COMMIT_TIMEOUT, reply)
                        .await
                        .map_err(|_| {
                            WriteError::OutcomeUnknown(format!(
                                "no quorum confirmed the write within {} s",
                                COMMIT_TIMEOUT.as_secs()
                            ))
                        })? {
                        Ok(Ok(r)) => Some(r.data),
                        // Lost leadership before appending: not written, go again.
                        Ok(Err(ClientWriteError::ForwardToLeader(_))) => None,
                        Ok(Err(e)) => return Err(WriteError::Raft(e.to_string())),
                        // The responder was dropped: raft stopped.
                        Err(_) => return Err(WriteError::ShuttingDown),
                    }
                }
                // Not handed over before the leader answers (see above); a
                // batch certainly not written is sent again first.
                Route::Remote(addr) => self.forward(&addr, &batch).await?,
            };
            if let Some(outcome) = written {
                return Ok(outcome);
            }
            if Instant::now() >= deadline {
                return Err(WriteError::NoLeader);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `batch` to the leader at `addr`: `Some` verdicts when written,
    /// `None` when certainly not written (try again).
    async fn forward(
        &self,
        addr: &str,
        batch: &ProposalBatch,
    ) -> Result<Option<BatchOutcome>, WriteError> {
        let data = ForwardedBatch::encode(batch)
            .and_then(|b| wire::encode(&b))
            .map_err(|e| WriteError::Raft(format!("encode batch: {e}")))?;
        let mut req = tonic::Request::new(wire::payload(data));
        req.set_timeout(FORWARD_TIMEOUT);
        let reply = self.client(addr)?.forward(req).await;
        match forward_verdict(addr, reply.map(|r| r.into_inner()))? {
            None => Ok(None),
            Some((index, outcome)) => {
                // Read-your-writes on the node the client talks to, and a
                // revocation cuts off this node's sessions before the client
                // hears it was done. Bounded: a slow replica delays, not fails.
                let _ = self
                    .raft
                    .wait(Some(LOCAL_APPLY_WAIT))
                    .applied_index_at_least(Some(index), "forwarded write applied here")
                    .await;
                Ok(Some(outcome))
            }
        }
    }

    /// The log index this node must have applied before a linearizable read.
    pub async fn read_index(&self) -> Result<u64, WriteError> {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            match self.route(deadline).await? {
                Route::Local => match self.raft.get_read_log_id().await {
                    Ok((read, _)) => return Ok(read.map(|l| l.index).unwrap_or(0)),
                    Err(e) => return Err(WriteError::Raft(format!("read index: {e}"))),
                },
                Route::Remote(addr) => {
                    let mut c = self.client(&addr)?;
                    let mut req = tonic::Request::new(ReadIndexRequest {});
                    req.set_timeout(FORWARD_TIMEOUT);
                    match c.read_index(req).await {
                        Ok(r) => return Ok(r.into_inner().index),
                        Err(s) if never_connected(&s) && Instant::now() < deadline => {
                            tokio::time::sleep(Duration::from_millis(50)).await
                        }
                        Err(s) => {
                            return Err(WriteError::Raft(format!(
                                "read index from leader: {}",
                                s.message()
                            )))
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(
        reply: &Result<(u64, BatchOutcome), ForwardRefusal>,
    ) -> Result<RaftPayload, tonic::Status> {
        Ok(wire::payload(wire::encode(reply).unwrap()))
    }

    #[test]
    fn only_a_refused_connection_or_a_leader_that_does_not_lead_means_send_again() {
        let mut refused = tonic::Status::unavailable("connect");
        refused.set_source(Arc::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert!(matches!(forward_verdict("l", Err(refused)), Ok(None)));
        let not_leader = payload(&Err(ForwardRefusal::NotLeader { leader: Some(3) }));
        assert!(matches!(forward_verdict("l", not_leader), Ok(None)));
    }

    #[test]
    fn a_call_that_may_have_been_sent_has_an_unknown_outcome() {
        // A reset after sending, a timeout, a reply that does not decode.
        let mut reset = tonic::Status::unavailable("reset");
        reset.set_source(Arc::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        for reply in [
            Err(reset),
            Err(tonic::Status::deadline_exceeded("timeout")),
            Ok(wire::payload(vec![0xff; 3])),
        ] {
            assert!(
                matches!(
                    forward_verdict("l", reply),
                    Err(WriteError::OutcomeUnknown(_))
                ),
                "must not be resent"
            );
        }
    }

    #[test]
    fn a_written_batch_brings_its_index_and_a_failure_its_reason() {
        let outcome = BatchOutcome(vec![Ok(None)]);
        let written = payload(&Ok((42, outcome.clone())));
        assert!(matches!(
            forward_verdict("l", written),
            Ok(Some((42, o))) if o == outcome
        ));
        let failed = payload(&Err(ForwardRefusal::Failed("no space".into())));
        assert!(matches!(
            forward_verdict("l", failed),
            Err(WriteError::Raft(why)) if why == "no space"
        ));
    }
}
