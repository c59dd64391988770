//! `idreg.v1.Firmware`: the vendors trusted to sign firmware manifests.

use idreg_core::credential::pem_armour;
use idreg_core::firmware_manifest::Manifest;
use idreg_core::{Command, FirmwareSigner, SignerName};
use idreg_proto::v1 as pb;
use idreg_raft::RegistryNode;
use pb::firmware_server::Firmware;
use tonic::{Request, Response, Status};

use crate::caller_auth::author;
use crate::convert::{self, now_ms};
use crate::status::{invalid, rejection, storage, write};

#[derive(Clone)]
pub struct FirmwareService {
    node: RegistryNode,
}

impl FirmwareService {
    pub fn new(node: RegistryNode) -> Self {
        Self { node }
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

#[tonic::async_trait]
impl Firmware for FirmwareService {
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
        let verdict = self
            .node
            .propose(Command::AddFirmwareSigner(signer.clone()), by)
            .await
            .map_err(write)?;
        verdict.map_err(rejection)?;
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
        let signers = self.node.reader().firmware_signers().map_err(storage)?;
        let (signer, m) = Manifest::verify(
            &req.manifest,
            signers
                .iter()
                .map(|s| (s.name.as_str(), s.public_spki.as_slice())),
        )
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let image_checked = !req.image.is_empty();
        if image_checked {
            m.check_image(&req.image)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
        }
        Ok(Response::new(pb::ManifestInfo {
            signer,
            vendor: m.vendor,
            device_class: m.class,
            version: m.version.to_string(),
            image_size: m.image_size,
            image_sha256: hex::encode(m.image_sha256),
            min_version: m.min_version.map(|v| v.to_string()).unwrap_or_default(),
            image_uri: m.image_uri.unwrap_or_default(),
            image_checked,
        }))
    }

    async fn remove_signer(
        &self,
        request: Request<pb::RemoveSignerRequest>,
    ) -> Result<Response<pb::RemoveSignerResponse>, Status> {
        let by = author(&request);
        let name = SignerName::parse("name", &request.get_ref().name).map_err(invalid)?;
        let verdict = self
            .node
            .propose(Command::RemoveFirmwareSigner { name }, by)
            .await
            .map_err(write)?;
        verdict.map_err(rejection)?;
        Ok(Response::new(pb::RemoveSignerResponse {}))
    }
}
