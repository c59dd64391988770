//! `idreg.v1.Firmware`: the vendors trusted to sign firmware manifests,
//! releases, rollouts and the report of what devices run.

use idreg_core::credential::pem_armour;
use idreg_core::firmware_manifest::Manifest;
use idreg_core::firmware_release::ReleaseState;
use idreg_core::{Command, FirmwareRelease, FirmwareSigner, RegistryView, ReleaseId, SignerName};
use idreg_proto::v1 as pb;
use idreg_raft::RegistryNode;
use pb::firmware_server::Firmware;
use tonic::{Request, Response, Status};

use crate::caller_auth::author;
use crate::convert::{self, now_ms};
use crate::firmware_report;
use crate::firmware_upload::FirmwareUploads;
use crate::status::{invalid, rejection, storage, write};

#[derive(Clone)]
pub struct FirmwareService {
    node: RegistryNode,
    uploads: FirmwareUploads,
}

impl FirmwareService {
    pub fn new(node: RegistryNode) -> Self {
        Self {
            uploads: FirmwareUploads::new(node.clone()),
            node,
        }
    }

    async fn propose(&self, command: Command, by: idreg_core::Principal) -> Result<(), Status> {
        propose(&self.node, command, by).await
    }

    fn rollout(&self, release: &ReleaseId) -> Result<idreg_core::Rollout, Status> {
        self.node
            .reader()
            .rollout(release)
            .map_err(storage)?
            .ok_or_else(|| Status::not_found(format!("no rollout of {release}")))
    }

    pub fn into_server(self) -> pb::firmware_server::FirmwareServer<Self> {
        pb::firmware_server::FirmwareServer::new(self)
    }
}

fn signer_to_proto(s: &FirmwareSigner) -> pb::FirmwareSigner {
    pb::FirmwareSigner {
        name: s.name.to_string(),
        public_key_pem: pem_armour("PUBLIC KEY", &s.public_spki),
        fingerprint: s.fingerprint(),
        added_at: Some(convert::timestamp(s.added_ms)),
    }
}

/// What the API shows of a manifest.
fn manifest_info(signer: String, m: Manifest, image_checked: bool) -> pb::ManifestInfo {
    pb::ManifestInfo {
        signer,
        vendor: m.vendor,
        device_class: m.class.to_string(),
        version: m.version.to_string(),
        image_size: m.image_size,
        image_sha256: hex::encode(m.image_sha256),
        min_version: m.min_version.map(|v| v.to_string()).unwrap_or_default(),
        image_uri: m.image_uri.unwrap_or_default(),
        image_checked,
    }
}

fn release_to_proto(r: FirmwareRelease) -> pb::Release {
    pb::Release {
        state: match r.state {
            ReleaseState::Staging => "staging",
            ReleaseState::Complete => "complete",
        }
        .into(),
        chunks: r.chunks,
        started_at: Some(convert::timestamp(r.started_ms)),
        updated_at: Some(convert::timestamp(r.updated_ms)),
        manifest: Some(manifest_info(r.signer.to_string(), r.manifest, true)),
    }
}

pub(crate) fn rollout_to_proto(r: &idreg_core::Rollout) -> pb::Rollout {
    pb::Rollout {
        device_class: r.release.class.to_string(),
        version: r.release.version.to_string(),
        labels: r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        percent: r.percent.into(),
        paused: r.paused,
        created_at: Some(convert::timestamp(r.created_ms)),
        updated_at: Some(convert::timestamp(r.updated_ms)),
    }
}

/// Proposes a firmware command; its refusal or failure as a gRPC status.
pub(crate) async fn propose(
    node: &RegistryNode,
    command: Command,
    by: idreg_core::Principal,
) -> Result<(), Status> {
    node.propose(command, by)
        .await
        .map_err(write)?
        .map_err(rejection)
        .map(|_| ())
}

/// A signed manifest checked against the registered signers: the signer's
/// name and the manifest, or INVALID_ARGUMENT saying what is wrong.
pub(crate) fn verify_manifest(
    reader: &idreg_store::RegistryReader,
    cose: &[u8],
) -> Result<(String, Manifest), Status> {
    let signers = reader.firmware_signers().map_err(storage)?;
    Manifest::verify(
        cose,
        signers
            .iter()
            .map(|s| (s.name.as_str(), s.public_spki.as_slice())),
    )
    .map_err(|e| Status::invalid_argument(e.to_string()))
}

/// A release named by class and version, checked.
pub(crate) fn release_id(class: &str, version: &str) -> Result<ReleaseId, Status> {
    Ok(ReleaseId {
        class: idreg_core::DeviceClass::parse("device_class", class).map_err(invalid)?,
        version: idreg_core::firmware_version::FirmwareVersion::parse("version", version)
            .map_err(invalid)?,
    })
}

#[tonic::async_trait]
impl Firmware for FirmwareService {
    async fn upload(
        &self,
        request: Request<tonic::Streaming<pb::UploadRequest>>,
    ) -> Result<Response<pb::Release>, Status> {
        let by = author(&request);
        let release = self.uploads.upload(by, request.into_inner()).await?;
        Ok(Response::new(release_to_proto(release)))
    }

    async fn list_releases(
        &self,
        request: Request<pb::ListReleasesRequest>,
    ) -> Result<Response<pb::ListReleasesResponse>, Status> {
        let releases = self
            .node
            .reader()
            .firmware_releases(request.get_ref().staged)
            .map_err(storage)?;
        Ok(Response::new(pb::ListReleasesResponse {
            releases: releases.into_iter().map(release_to_proto).collect(),
        }))
    }

    async fn remove_release(
        &self,
        request: Request<pb::ReleaseRef>,
    ) -> Result<Response<pb::RemoveReleaseResponse>, Status> {
        let by = author(&request);
        let r = request.get_ref();
        let release = release_id(&r.device_class, &r.version)?;
        self.propose(Command::RemoveFirmwareRelease { release }, by)
            .await?;
        Ok(Response::new(pb::RemoveReleaseResponse {}))
    }

    async fn set_rollout(
        &self,
        request: Request<pb::SetRolloutRequest>,
    ) -> Result<Response<pb::Rollout>, Status> {
        let by = author(&request);
        let req = request.into_inner();
        let release = release_id(&req.device_class, &req.version)?;
        let labels = req
            .labels
            .iter()
            .map(|l| idreg_core::labels::parse_selector("labels", l))
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        let percent = u8::try_from(req.percent)
            .ok()
            .filter(|p| (1..=100).contains(p))
            .ok_or_else(|| Status::invalid_argument("percent: 1 to 100"))?;
        let rollout = idreg_core::Rollout {
            release: release.clone(),
            labels,
            percent,
            paused: req.paused,
            created_ms: 0,
            updated_ms: 0,
        };
        self.propose(Command::SetRollout(rollout), by).await?;
        Ok(Response::new(rollout_to_proto(&self.rollout(&release)?)))
    }

    async fn set_rollout_paused(
        &self,
        request: Request<pb::SetRolloutPausedRequest>,
    ) -> Result<Response<pb::Rollout>, Status> {
        let by = author(&request);
        let req = request.into_inner();
        let release = release_id(&req.device_class, &req.version)?;
        let paused = req.paused;
        self.propose(
            Command::SetRolloutPaused {
                release: release.clone(),
                paused,
            },
            by,
        )
        .await?;
        Ok(Response::new(rollout_to_proto(&self.rollout(&release)?)))
    }

    async fn remove_rollout(
        &self,
        request: Request<pb::ReleaseRef>,
    ) -> Result<Response<pb::RemoveRolloutResponse>, Status> {
        let by = author(&request);
        let r = request.get_ref();
        let release = release_id(&r.device_class, &r.version)?;
        self.propose(Command::RemoveRollout { release }, by).await?;
        Ok(Response::new(pb::RemoveRolloutResponse {}))
    }

    async fn list_rollouts(
        &self,
        _request: Request<pb::ListRolloutsRequest>,
    ) -> Result<Response<pb::ListRolloutsResponse>, Status> {
        let rollouts = self.node.reader().rollouts().map_err(storage)?;
        Ok(Response::new(pb::ListRolloutsResponse {
            rollouts: rollouts.iter().map(rollout_to_proto).collect(),
        }))
    }

    async fn get_rollout_status(
        &self,
        request: Request<pb::ReleaseRef>,
    ) -> Result<Response<pb::RolloutStatus>, Status> {
        let r = request.get_ref();
        let release = release_id(&r.device_class, &r.version)?;
        let rollout = self.rollout(&release)?;
        let reader = self.node.reader();
        let status =
            tokio::task::spawn_blocking(move || firmware_report::rollout_status(&reader, &rollout))
                .await
                .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(status))
    }

    async fn report(
        &self,
        request: Request<pb::FirmwareReportRequest>,
    ) -> Result<Response<pb::FirmwareReportResponse>, Status> {
        let reader = self.node.reader();
        let req = request.into_inner();
        let out = tokio::task::spawn_blocking(move || firmware_report::report(&reader, &req))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(out))
    }

    async fn add_signer(
        &self,
        request: Request<pb::AddSignerRequest>,
    ) -> Result<Response<pb::FirmwareSigner>, Status> {
        let by = author(&request);
        let req = request.into_inner();
        let signer = FirmwareSigner {
            name: SignerName::parse("name", &req.name).map_err(invalid)?,
            public_spki: FirmwareSigner::key_from_pem_or_der("public_key", &req.public_key)
                .map_err(invalid)?,
            added_ms: now_ms(),
        };
        self.propose(Command::AddFirmwareSigner(signer.clone()), by)
            .await?;
        Ok(Response::new(signer_to_proto(&signer)))
    }

    async fn list_signers(
        &self,
        _request: Request<pb::ListSignersRequest>,
    ) -> Result<Response<pb::ListSignersResponse>, Status> {
        let signers = self.node.reader().firmware_signers().map_err(storage)?;
        Ok(Response::new(pb::ListSignersResponse {
            signers: signers.iter().map(signer_to_proto).collect(),
        }))
    }

    async fn check_manifest(
        &self,
        request: Request<pb::CheckManifestRequest>,
    ) -> Result<Response<pb::ManifestInfo>, Status> {
        let req = request.into_inner();
        let (signer, m) = verify_manifest(&self.node.reader(), &req.manifest)?;
        let image_checked = !req.image.is_empty();
        if image_checked {
            m.check_image(&req.image)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
        }
        Ok(Response::new(manifest_info(signer, m, image_checked)))
    }

    async fn remove_signer(
        &self,
        request: Request<pb::RemoveSignerRequest>,
    ) -> Result<Response<pb::RemoveSignerResponse>, Status> {
        let by = author(&request);
        let name = SignerName::parse("name", &request.get_ref().name).map_err(invalid)?;
        self.propose(Command::RemoveFirmwareSigner { name }, by)
            .await?;
        Ok(Response::new(pb::RemoveSignerResponse {}))
    }
}
