//! A [`RegistryBackend`] over [`MemRegistry`], for the services' unit tests:
//! every command is applied at once by the same `idreg_core::apply` the
//! replicated store runs, so a service's mapping of requests, verdicts and
//! pages is tested without RocksDB or raft.

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};

use idreg_core::mem::MemRegistry;
use idreg_core::{Author, Command, Principal, Proposal};
use idreg_raft::{Verdict, WriteError};
use tokio::sync::OwnedSemaphorePermit;
use tonic::Status;

use crate::registry_backend::{RegistryBackend, WatchReceiver};

#[derive(Clone, Default)]
pub struct MemBackend {
    registry: Arc<Mutex<MemRegistry>>,
}

impl MemBackend {
    /// The registry as it stands.
    pub fn registry(&self) -> MemRegistry {
        self.registry.lock().expect("not poisoned").clone()
    }
}

impl RegistryBackend for MemBackend {
    type Directory = MemRegistry;
    type ReadError = Infallible;

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
        let proposal = Proposal {
            at_ms: 1_700_000_000_000,
            by: Author {
                principal: by,
                node: 1,
            },
            command,
        };
        let verdict = self
            .registry
            .lock()
            .expect("not poisoned")
            .verdict(&proposal);
        async move { Ok(async move { Ok(verdict) }) }
    }

    async fn linearize(&self) -> Result<(), WriteError> {
        Ok(())
    }

    fn directory(&self) -> MemRegistry {
        self.registry()
    }

    fn watch(&self, _from: u64, _slot: OwnedSemaphorePermit) -> Result<WatchReceiver, Status> {
        Err(Status::unimplemented(
            "WatchDevices reads the replicated history, which the in-memory registry does not keep",
        ))
    }
}

/// A request as the admin `ops` makes it, for the services' unit tests.
pub fn as_admin<T>(message: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.extensions_mut()
        .insert(idreg_core::Caller::Client(Principal {
            name: "ops".into(),
            role: idreg_core::Role::Admin,
        }));
    req
}
