//! Bulk registration behind `ImportDevices`: every device is proposed on its
//! own (so one bad or duplicate device fails alone), many at once, and the
//! proposer packs them into large raft entries.

use idreg_core::{Command, NewDevice};
use idreg_proto::v1 as pb;
use tokio::task::JoinSet;
use tonic::Status;

use crate::registry_backend::RegistryBackend;
use crate::status::{rejection, write};

/// Most devices in one ImportDevicesRequest.
pub const MAX_CHUNK: usize = 1000;
/// Proposals in flight at once: enough to fill several batches.
const IN_FLIGHT: usize = 4096;
/// Failures reported in detail.
const MAX_ERRORS: usize = 1000;

pub struct Importer<B> {
    node: B,
    by: idreg_core::Principal,
    in_flight: JoinSet<(u64, String, Result<(), Status>)>,
    next_index: u64,
    response: pb::ImportDevicesResponse,
}

impl<B: RegistryBackend> Importer<B> {
    pub fn new(node: B, by: idreg_core::Principal) -> Self {
        Self {
            node,
            by,
            in_flight: JoinSet::new(),
            next_index: 0,
            response: pb::ImportDevicesResponse::default(),
        }
    }

    /// Devices received so far.
    pub fn seen(&self) -> u64 {
        self.next_index
    }

    fn record(&mut self, index: u64, id: String, result: Result<(), Status>) {
        match result {
            Ok(()) => self.response.created += 1,
            Err(s) => {
                self.response.failed += 1;
                if self.response.errors.len() < MAX_ERRORS {
                    self.response.errors.push(pb::ImportError {
                        index,
                        id,
                        code: s.code() as i32,
                        message: s.message().to_owned(),
                    });
                }
            }
        }
    }

    /// Proposes one device (or records why it could not be).
    pub async fn submit(&mut self, device: Result<NewDevice, (String, Status)>) {
        let index = self.next_index;
        self.next_index += 1;
        let new = match device {
            Ok(n) => n,
            Err((id, status)) => return self.record(index, id, Err(status)),
        };
        while self.in_flight.len() >= IN_FLIGHT {
            self.reap_one().await;
        }
        // Queued here, in stream order; only the verdicts are awaited apart.
        let id = new.id.to_string();
        let verdict = match self
            .node
            .enqueue(Command::Create(new), self.by.clone())
            .await
        {
            Ok(v) => v,
            Err(e) => return self.record(index, id, Err(write(e))),
        };
        self.in_flight.spawn(async move {
            let result = match verdict.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(r)) => Err(rejection(r)),
                Err(e) => Err(write(e)),
            };
            (index, id, result)
        });
    }

    async fn reap_one(&mut self) {
        match self.in_flight.join_next().await {
            Some(Ok((index, id, result))) => self.record(index, id, result),
            Some(Err(e)) => self.record(
                u64::MAX,
                String::new(),
                Err(Status::internal(e.to_string())),
            ),
            None => {}
        }
    }

    /// Waits for every proposal and returns the tally, failures in stream order.
    pub async fn finish(mut self) -> pb::ImportDevicesResponse {
        while !self.in_flight.is_empty() {
            self.reap_one().await;
        }
        self.response.errors.sort_by_key(|e| e.index);
        self.response
    }
}
