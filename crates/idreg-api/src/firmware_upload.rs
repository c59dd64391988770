//! `Firmware/Upload`: a release taken whole on the node the client reached
//! (any node), checked against its signed manifest, then proposed through
//! raft one chunk per command and finished — and the leader's sweep of
//! uploads abandoned half-way.

use std::sync::Arc;
use std::time::Duration;

use idreg_core::firmware_release::CHUNK_SIZE;
use idreg_core::{
    Command, FirmwareCatalog, FirmwareRelease, Principal, RegistryView, Role, SignerName,
};
use idreg_proto::v1 as pb;
use idreg_raft::RegistryNode;
use tokio::sync::Semaphore;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

use crate::convert::now_ms;
use crate::registry_backend::RegistryBackend;
use crate::status::{rejection, storage};

/// Uploads a node takes at once: each holds its image (up to
/// [`idreg_core::firmware_manifest::MAX_IMAGE_SIZE`]) in memory.
pub const MAX_CONCURRENT_UPLOADS: usize = 2;

#[derive(Clone)]
pub struct FirmwareUploads<B = RegistryNode> {
    backend: B,
    slots: Arc<Semaphore>,
}

impl<B> FirmwareUploads<B>
where
    B: RegistryBackend,
    B::Directory: FirmwareCatalog,
{
    pub fn new(backend: B) -> Self {
        Self {
            backend,
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT_UPLOADS)),
        }
    }

    /// Receives (from a `tonic::Streaming`, or any stream of messages),
    /// checks and stores one release; the stored release.
    pub async fn upload(
        &self,
        by: Principal,
        mut stream: impl Stream<Item = Result<pb::UploadRequest, Status>> + Unpin + Send,
    ) -> Result<FirmwareRelease, Status> {
        let _slot = self.slots.try_acquire().map_err(|_| {
            Status::resource_exhausted(format!(
                "this node takes {MAX_CONCURRENT_UPLOADS} uploads at a time; retry shortly"
            ))
        })?;
        let first = stream
            .next()
            .await
            .transpose()?
            .ok_or_else(|| Status::invalid_argument("empty upload: send the manifest first"))?;
        if first.manifest.is_empty() {
            return Err(Status::invalid_argument(
                "the first message carries the manifest",
            ));
        }
        let reader = self.backend.directory();
        let (signer, manifest) =
            crate::firmware_service::verify_manifest(&reader, &first.manifest)?;
        let id = idreg_core::ReleaseId {
            class: manifest.class.clone(),
            version: manifest.version.clone(),
        };
        // Refused before the image is sent, when it is known already.
        let stored = reader.firmware_release(&id).map_err(storage)?;
        if stored.is_some_and(|r| r.is_complete()) {
            return Err(rejection(idreg_core::Rejection::ReleaseExists(
                id.to_string(),
            )));
        }
        let size = manifest.image_size as usize;
        let mut image = Vec::with_capacity(size);
        let mut part = first.image;
        loop {
            if image.len() + part.len() > size {
                return Err(Status::invalid_argument(format!(
                    "the image is longer than the manifest's {size} bytes"
                )));
            }
            image.extend_from_slice(&part);
            match stream.next().await.transpose()? {
                Some(next) if next.manifest.is_empty() => part = next.image,
                Some(_) => {
                    return Err(Status::invalid_argument(
                        "only the first message carries a manifest",
                    ))
                }
                None => break,
            }
        }
        manifest
            .check_image(&image)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let signer = SignerName::parse("signer", &signer).map_err(crate::status::invalid)?;
        self.store(by, signer, first.manifest, id, &image).await
    }

    /// Stages the release, proposes its chunks in order and finishes it;
    /// on a failure part-way, aborts it (best effort: the sweep clears
    /// what an abort cannot).
    async fn store(
        &self,
        by: Principal,
        signer: SignerName,
        cose: Vec<u8>,
        id: idreg_core::ReleaseId,
        image: &[u8],
    ) -> Result<FirmwareRelease, Status> {
        let upload: u64 = rand::random();
        let begin = Command::BeginFirmwareUpload {
            signer,
            cose,
            upload,
        };
        self.backend.commit(begin, by.clone()).await?;
        let mut sent = Ok(());
        for (index, bytes) in image.chunks(CHUNK_SIZE).enumerate() {
            let put = Command::PutFirmwareChunk {
                release: id.clone(),
                upload,
                index: index as u32,
                bytes: bytes.to_vec(),
            };
            sent = self.backend.commit(put, by.clone()).await;
            if sent.is_err() {
                break;
            }
        }
        if sent.is_ok() {
            let finish = Command::FinishFirmwareUpload {
                release: id.clone(),
                upload,
            };
            sent = self.backend.commit(finish, by.clone()).await;
        }
        if let Err(e) = sent {
            let abort = Command::AbortFirmwareUpload {
                release: id.clone(),
                upload,
            };
            if let Err(a) = self.backend.commit(abort, by.clone()).await {
                tracing::warn!(release = %id, "abandoned upload not aborted ({a}); the sweep will");
            }
            return Err(e);
        }
        self.backend
            .directory()
            .firmware_release(&id)
            .map_err(storage)?
            .ok_or_else(|| Status::internal(format!("release {id} gone after its upload")))
    }
}

/// How often the leader looks for abandoned uploads.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// On the leader, every minute: aborts staged uploads that have had no
/// chunk for [`idreg_core::firmware_release::STALE_UPLOAD_MS`] (their
/// uploader crashed or gave up), so their chunks do not stay forever.
pub fn spawn_upload_sweeper(node: RegistryNode) {
    tokio::spawn(async move {
        let sweeper = Principal {
            name: "upload-sweeper".into(),
            role: Role::Admin,
        };
        loop {
            tokio::time::sleep(SWEEP_EVERY).await;
            if node.view().leader_id != Some(node.id()) {
                continue;
            }
            let staged = match FirmwareCatalog::firmware_releases(&node.reader(), true) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("upload sweep: {e}");
                    continue;
                }
            };
            let now = now_ms();
            for r in staged.into_iter().filter(|r| r.is_stale(now)) {
                let abort = Command::AbortFirmwareUpload {
                    release: r.id(),
                    upload: r.upload,
                };
                match node.propose(abort, sweeper.clone()).await {
                    Ok(_) => tracing::info!(release = %r.id(), "abandoned upload aborted"),
                    Err(e) => tracing::warn!(release = %r.id(), "upload sweep: {e}"),
                }
            }
        }
    });
}
