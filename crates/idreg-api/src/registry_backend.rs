//! What the `DeviceRegistry` service needs of the replicated registry:
//! queue a command and await its verdict, make a read linearizable, read
//! what is applied, and stream the change history. The server runs it on
//! [`RegistryNode`] (raft and RocksDB); the service's unit tests run it on an
//! in-memory registry (`mem_backend`), with no RocksDB and no raft.

use std::future::Future;

use idreg_core::{Command, DeviceDirectory, Principal};
use idreg_proto::v1 as pb;
use idreg_raft::{RegistryNode, Verdict, WriteError};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tonic::Status;

/// A `WatchDevices` stream's messages.
pub type WatchReceiver = mpsc::Receiver<Result<pb::WatchDevicesResponse, Status>>;

pub trait RegistryBackend: Clone + Send + Sync + 'static {
    /// The applied registry's reads, taken onto a blocking thread.
    type Directory: DeviceDirectory<Error = Self::ReadError> + Send + 'static;
    type ReadError: std::fmt::Display + Send + 'static;

    /// Queues one command and returns its verdict to come. Commands queued
    /// one after another from one task keep their order (an import's later
    /// line wins).
    fn enqueue(
        &self,
        command: Command,
        by: Principal,
    ) -> impl Future<
        Output = Result<
            impl Future<Output = Result<Verdict, WriteError>> + Send + 'static,
            WriteError,
        >,
    > + Send;

    /// Proposes one command and waits for its verdict.
    fn propose(
        &self,
        command: Command,
        by: Principal,
    ) -> impl Future<Output = Result<Verdict, WriteError>> + Send {
        async move { self.enqueue(command, by).await?.await }
    }

    /// Proposes one command and waits until it is applied: a write that
    /// failed, or the registry's refusal of it, as a gRPC status.
    fn commit(
        &self,
        command: Command,
        by: Principal,
    ) -> impl Future<Output = Result<(), Status>> + Send {
        async move {
            self.propose(command, by)
                .await
                .map_err(crate::status::write)?
                .map_err(crate::status::rejection)
                .map(|_| ())
        }
    }

    /// Returns once every write acknowledged before the call is applied here.
    fn linearize(&self) -> impl Future<Output = Result<(), WriteError>> + Send;

    /// The registry as this node has applied it.
    fn directory(&self) -> Self::Directory;

    /// The changes from `from_revision` on (0: from now), then each new one.
    fn watch(
        &self,
        from_revision: u64,
        slot: OwnedSemaphorePermit,
    ) -> Result<WatchReceiver, Status>;
}

impl RegistryBackend for RegistryNode {
    type Directory = idreg_store::RegistryReader;
    type ReadError = idreg_store::StoreError;

    fn enqueue(
        &self,
        command: Command,
        by: Principal,
    ) -> impl Future<
        Output = Result<
            impl Future<Output = Result<Verdict, WriteError>> + Send + 'static,
            WriteError,
        >,
    > + Send {
        RegistryNode::enqueue(self, command, by)
    }

    fn linearize(&self) -> impl Future<Output = Result<(), WriteError>> + Send {
        RegistryNode::linearize(self)
    }

    fn directory(&self) -> idreg_store::RegistryReader {
        self.reader()
    }

    fn watch(
        &self,
        from_revision: u64,
        slot: OwnedSemaphorePermit,
    ) -> Result<WatchReceiver, Status> {
        let store = self.store();
        crate::watch_stream::start(
            store.history(),
            store.applied_watch(),
            self.stopping(),
            from_revision,
            slot,
        )
    }
}
