//! `idreg.v1.Firmware`: the vendors trusted to sign firmware manifests,
//! releases, rollouts and the report of what devices run.

use idreg_core::credential::pem_armour;
use idreg_core::firmware_manifest::Manifest;
use idreg_core::firmware_release::ReleaseState;
use idreg_core::{
    Command, FirmwareCatalog, FirmwareRelease, FirmwareSigner, RegistryView, ReleaseId, SignerName,
};
use idreg_proto::v1 as pb;
use idreg_raft::RegistryNode;
use pb::firmware_server::Firmware;
use tonic::{Request, Response, Status};

use crate::caller_auth::author;
use crate::convert::{self, now_ms};
use crate::firmware_report;
use crate::firmware_upload::FirmwareUploads;
use crate::registry_backend::RegistryBackend;
use crate::status::{invalid, storage};

/// Runs on any [`RegistryBackend`] whose registry is also a
/// [`FirmwareCatalog`]: the replicated node in the server, the in-memory
/// registry in the unit tests.
#[derive(Clone)]
pub struct FirmwareService<B = RegistryNode> {
    backend: B,
    uploads: FirmwareUploads<B>,
}

impl<B> FirmwareService<B>
where
    B: RegistryBackend,
    B::Directory: FirmwareCatalog,
{
    pub fn new(backend: B) -> Self {
        Self {
            uploads: FirmwareUploads::new(backend.clone()),
            backend,
        }
    }

    fn rollout(&self, release: &ReleaseId) -> Result<idreg_core::Rollout, Status> {
        self.backend
            .directory()
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

/// A signed manifest checked against the registered signers: the signer's
/// name and the manifest, or INVALID_ARGUMENT saying what is wrong.
pub(crate) fn verify_manifest<R: FirmwareCatalog>(
    reader: &R,
    cose: &[u8],
) -> Result<(String, Manifest), Status>
where
    R::Error: std::fmt::Display,
{
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
impl<B> Firmware for FirmwareService<B>
where
    B: RegistryBackend,
    B::Directory: FirmwareCatalog,
{
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
            .backend
            .directory()
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
        self.backend
            .commit(Command::RemoveFirmwareRelease { release }, by)
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
        self.backend
            .commit(Command::SetRollout(rollout), by)
            .await?;
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
        self.backend
            .commit(
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
        self.backend
            .commit(Command::RemoveRollout { release }, by)
            .await?;
        Ok(Response::new(pb::RemoveRolloutResponse {}))
    }

    async fn list_rollouts(
        &self,
        _request: Request<pb::ListRolloutsRequest>,
    ) -> Result<Response<pb::ListRolloutsResponse>, Status> {
        let rollouts = self.backend.directory().rollouts().map_err(storage)?;
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
        let reader = self.backend.directory();
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
        let reader = self.backend.directory();
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
        self.backend
            .commit(Command::AddFirmwareSigner(signer.clone()), by)
            .await?;
        Ok(Response::new(signer_to_proto(&signer)))
    }

    async fn list_signers(
        &self,
        _request: Request<pb::ListSignersRequest>,
    ) -> Result<Response<pb::ListSignersResponse>, Status> {
        let signers = self
            .backend
            .directory()
            .firmware_signers()
            .map_err(storage)?;
        Ok(Response::new(pb::ListSignersResponse {
            signers: signers.iter().map(signer_to_proto).collect(),
        }))
    }

    async fn check_manifest(
        &self,
        request: Request<pb::CheckManifestRequest>,
    ) -> Result<Response<pb::ManifestInfo>, Status> {
        let req = request.into_inner();
        let (signer, m) = verify_manifest(&self.backend.directory(), &req.manifest)?;
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
        self.backend
            .commit(Command::RemoveFirmwareSigner { name }, by)
            .await?;
        Ok(Response::new(pb::RemoveSignerResponse {}))
    }
}

#[cfg(test)]
mod tests {
    //! The service over an in-memory registry: signers added and refused,
    //! manifests checked, an upload taken from a stream of messages (and
    //! bad ones refused with nothing stored), rollouts set and counted, and
    //! the report paged — with no RocksDB and no raft.

    use idreg_core::firmware_release::{Attempt, AttemptState, CHUNK_SIZE};
    use idreg_core::firmware_version::FirmwareVersion;
    use idreg_core::labels::CLASS_LABEL;
    use idreg_core::{DeviceClass, DeviceId, Labels, NewDevice, TenantId};
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey};
    use sha2::{Digest, Sha256};
    use tonic::Code;

    use super::*;
    use crate::mem_backend::{as_admin, MemBackend};

    fn service() -> (FirmwareService<MemBackend>, MemBackend) {
        let backend = MemBackend::default();
        (FirmwareService::new(backend.clone()), backend)
    }

    fn vendor_key(seed: u8) -> p256::SecretKey {
        p256::SecretKey::from_slice(&[seed; 32]).unwrap()
    }

    fn public_pem(key: &p256::SecretKey) -> Vec<u8> {
        key.public_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .unwrap()
            .into_bytes()
    }

    /// An image of `size` bytes for `class` `version`, and its manifest
    /// signed by `key`.
    fn signed(
        key: &p256::SecretKey,
        class: &str,
        version: &str,
        size: usize,
    ) -> (Vec<u8>, Vec<u8>) {
        let image: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        let manifest = Manifest {
            vendor: "acme".into(),
            class: DeviceClass::parse("c", class).unwrap(),
            version: FirmwareVersion::parse("v", version).unwrap(),
            image_size: size as u64,
            image_sha256: Sha256::digest(&image).into(),
            min_version: None,
            image_uri: None,
        };
        let der = key.to_pkcs8_der().unwrap();
        let cose = idreg_core::cose_sign1::sign(&manifest.encode(), der.as_bytes()).unwrap();
        (cose, image)
    }

    async fn add_acme(s: &FirmwareService<MemBackend>, key: &p256::SecretKey) {
        s.add_signer(as_admin(pb::AddSignerRequest {
            name: "acme".into(),
            public_key: public_pem(key),
        }))
        .await
        .unwrap();
    }

    /// An upload's messages: the manifest first, then the image in parts.
    fn messages(
        cose: &[u8],
        parts: &[&[u8]],
    ) -> tokio_stream::Iter<std::vec::IntoIter<Result<pb::UploadRequest, Status>>> {
        let mut out = vec![Ok(pb::UploadRequest {
            manifest: cose.to_vec(),
            image: Vec::new(),
        })];
        out.extend(parts.iter().map(|p| {
            Ok(pb::UploadRequest {
                manifest: Vec::new(),
                image: p.to_vec(),
            })
        }));
        tokio_stream::iter(out)
    }

    async fn upload(
        s: &FirmwareService<MemBackend>,
        stream: impl tokio_stream::Stream<Item = Result<pb::UploadRequest, Status>> + Unpin + Send,
    ) -> Result<FirmwareRelease, Status> {
        let by = author(&as_admin(()));
        s.uploads.upload(by, stream).await
    }

    #[tokio::test]
    async fn signers_are_added_listed_and_removed_and_manifests_checked_against_them() {
        let (s, backend) = service();
        let acme = vendor_key(7);
        let bad = s
            .add_signer(as_admin(pb::AddSignerRequest {
                name: "acme".into(),
                public_key: b"not a key".to_vec(),
            }))
            .await
            .unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
        assert!(bad.message().contains("public_key"), "{bad:?}");
        let bad_name = s
            .add_signer(as_admin(pb::AddSignerRequest {
                name: "no spaces".into(),
                public_key: public_pem(&acme),
            }))
            .await
            .unwrap_err();
        assert_eq!(bad_name.code(), Code::InvalidArgument, "{bad_name:?}");
        assert!(backend.registry().firmware_signers().unwrap().is_empty());

        add_acme(&s, &acme).await;
        let again = s
            .add_signer(as_admin(pb::AddSignerRequest {
                name: "acme".into(),
                public_key: public_pem(&acme),
            }))
            .await
            .unwrap_err();
        assert_eq!(again.code(), Code::AlreadyExists, "{again:?}");
        let listed = s
            .list_signers(as_admin(pb::ListSignersRequest {}))
            .await
            .unwrap()
            .into_inner()
            .signers;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "acme");
        assert!(listed[0].public_key_pem.contains("BEGIN PUBLIC KEY"));

        let (cose, image) = signed(&acme, "thermo", "1.2.0", 100);
        let check = |manifest: &[u8], image: &[u8]| {
            s.check_manifest(as_admin(pb::CheckManifestRequest {
                manifest: manifest.to_vec(),
                image: image.to_vec(),
            }))
        };
        let info = check(&cose, &[]).await.unwrap().into_inner();
        assert_eq!(
            (
                info.signer.as_str(),
                info.device_class.as_str(),
                info.version.as_str()
            ),
            ("acme", "thermo", "1.2.0")
        );
        assert!(!info.image_checked);
        assert!(
            check(&cose, &image)
                .await
                .unwrap()
                .into_inner()
                .image_checked
        );
        let mut other = image.clone();
        other[3] ^= 1;
        let e = check(&cose, &other).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        let (stranger, _) = signed(&vendor_key(8), "thermo", "1.2.0", 100);
        let e = check(&stranger, &[]).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        let e = check(b"garbage", &[]).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

        s.remove_signer(as_admin(pb::RemoveSignerRequest {
            name: "acme".into(),
        }))
        .await
        .unwrap();
        assert_eq!(
            check(&cose, &[]).await.unwrap_err().code(),
            Code::InvalidArgument,
            "no signer is left to check it"
        );
    }

    #[tokio::test]
    async fn an_upload_is_checked_before_anything_is_stored_then_stored_whole() {
        let (s, backend) = service();
        let acme = vendor_key(7);
        add_acme(&s, &acme).await;
        let size = CHUNK_SIZE * 2 + 77;
        let (cose, image) = signed(&acme, "thermo", "1.10.0", size);

        let refused = [
            ("empty upload", upload(&s, tokio_stream::iter(vec![])).await),
            (
                "first message carries the manifest",
                upload(&s, messages(&[], &[&image])).await,
            ),
            (
                "longer than the manifest",
                upload(&s, messages(&cose, &[&image, b"x"])).await,
            ),
            (
                "image",
                upload(&s, messages(&cose, &[&image[..size - 1]])).await,
            ),
            ("only the first message", {
                use tokio_stream::StreamExt;
                let mut parts = messages(&cose, &[&image]).collect::<Vec<_>>().await;
                parts.push(Ok(pb::UploadRequest {
                    manifest: cose.clone(),
                    image: Vec::new(),
                }));
                upload(&s, tokio_stream::iter(parts)).await
            }),
            ("broken", {
                let parts = vec![
                    Ok(pb::UploadRequest {
                        manifest: cose.clone(),
                        image: image[..100].to_vec(),
                    }),
                    Err(Status::cancelled("the client went away")),
                ];
                upload(&s, tokio_stream::iter(parts)).await
            }),
        ];
        for (what, result) in refused {
            let e = result.unwrap_err();
            assert!(
                e.message().contains(what) || e.code() == Code::Cancelled,
                "{what}: {e:?}"
            );
            let reg = backend.registry();
            assert!(reg.firmware_releases(true).unwrap().is_empty(), "{what}");
            assert_eq!(reg.firmware_chunks(), 0, "{what}");
        }

        // Split at points that are not chunk boundaries.
        let release = upload(
            &s,
            messages(
                &cose,
                &[
                    &image[..1000],
                    &image[1000..CHUNK_SIZE + 5],
                    &image[CHUNK_SIZE + 5..],
                ],
            ),
        )
        .await
        .unwrap();
        assert!(release.is_complete());
        assert_eq!(release.chunks, 3);
        let reg = backend.registry();
        assert_eq!(reg.firmware_image(&release.id()).unwrap(), image);
        let again = upload(&s, messages(&cose, &[&image])).await.unwrap_err();
        assert_eq!(again.code(), Code::AlreadyExists, "{again:?}");

        // Listed in version-text order: 1.10.0 before 1.9.0.
        let (older, older_image) = signed(&acme, "thermo", "1.9.0", 10);
        upload(&s, messages(&older, &[&older_image])).await.unwrap();
        let list = s
            .list_releases(as_admin(pb::ListReleasesRequest { staged: false }))
            .await
            .unwrap()
            .into_inner()
            .releases;
        let versions: Vec<_> = list
            .iter()
            .map(|r| r.manifest.as_ref().unwrap().version.as_str())
            .collect();
        assert_eq!(versions, ["1.10.0", "1.9.0"]);
        assert!(list.iter().all(|r| r.state == "complete"));

        s.remove_release(as_admin(pb::ReleaseRef {
            device_class: "thermo".into(),
            version: "1.9.0".into(),
        }))
        .await
        .unwrap();
        assert_eq!(backend.registry().firmware_releases(true).unwrap().len(), 1);
    }

    fn create(id: &str, class: Option<&str>, site: &str) -> Command {
        let mut labels = vec![("site", site)];
        labels.extend(class.map(|c| (CLASS_LABEL, c)));
        Command::Create(NewDevice {
            id: DeviceId::parse("id", id).unwrap(),
            tenant: TenantId::default_tenant(),
            labels: Labels::new("labels", labels).unwrap(),
            gateway: None,
            credentials: vec![],
        })
    }

    fn report(id: &str, running: &str, attempt: Option<(&str, AttemptState)>) -> Command {
        Command::ReportFirmware {
            id: DeviceId::parse("id", id).unwrap(),
            running: FirmwareVersion::parse("v", running).unwrap(),
            attempt: attempt.map(|(v, state)| Attempt {
                version: FirmwareVersion::parse("v", v).unwrap(),
                state,
            }),
        }
    }

    async fn run(backend: &MemBackend, command: Command) {
        let by = author(&as_admin(()));
        backend.propose(command, by).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn rollouts_are_set_and_counted_and_the_report_pages_through_every_device() {
        let (s, backend) = service();
        let acme = vendor_key(7);
        add_acme(&s, &acme).await;
        let (cose, image) = signed(&acme, "thermo", "2.0.0", 50);
        upload(&s, messages(&cose, &[&image])).await.unwrap();

        let rollout = |percent, labels: &[&str]| pb::SetRolloutRequest {
            device_class: "thermo".into(),
            version: "2.0.0".into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            percent,
            paused: false,
        };
        for (bad, what) in [
            (rollout(0, &[]), "percent"),
            (rollout(101, &[]), "percent"),
            (rollout(50, &["no-equals"]), "labels"),
        ] {
            let e = s.set_rollout(as_admin(bad)).await.unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
            assert!(e.message().contains(what), "{e:?}");
        }
        let mut ghost = rollout(50, &[]);
        ghost.version = "9.9.9".into();
        let e = s.set_rollout(as_admin(ghost)).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");

        let set = s
            .set_rollout(as_admin(rollout(100, &["site=north"])))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (set.percent, set.labels.as_slice()),
            (100, &["site=north".to_string()][..])
        );
        let paused = s
            .set_rollout_paused(as_admin(pb::SetRolloutPausedRequest {
                device_class: "thermo".into(),
                version: "2.0.0".into(),
                paused: true,
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(paused.paused);

        // Five thermos (four in the north), a pump, a device with no class.
        for (id, class, site) in [
            ("t1", Some("thermo"), "north"),
            ("t2", Some("thermo"), "north"),
            ("t3", Some("thermo"), "north"),
            ("t4", Some("thermo"), "north"),
            ("t5", Some("thermo"), "south"),
            ("p1", Some("pump"), "north"),
            ("bare", None, "north"),
        ] {
            run(&backend, create(id, class, site)).await;
        }
        for command in [
            report("t1", "2.0.0", None),
            report("t2", "1.0.0", Some(("2.0.0", AttemptState::Downloading))),
            report("t3", "1.0.0", Some(("2.0.0", AttemptState::Failed))),
            report("t4", "1.0.0", Some(("2.0.0", AttemptState::Downloading))),
            report("t5", "1.0.0", None),
            report("p1", "1.0.0", None),
            report("bare", "0.1.0", None),
        ] {
            run(&backend, command).await;
        }
        let status = s
            .get_rollout_status(as_admin(pb::ReleaseRef {
                device_class: "thermo".into(),
                version: "2.0.0".into(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (
                status.targeted,
                status.installed,
                status.downloading,
                status.failed
            ),
            (4, 1, 2, 1),
            "{status:?}"
        );

        // Every version of every class, two devices a page.
        let page = |token: String, version: &str| pb::FirmwareReportRequest {
            version: version.into(),
            device_class: String::new(),
            page_size: 2,
            page_token: token,
            counts_only: false,
        };
        let mut seen = Vec::new();
        let mut token = String::new();
        let mut counts = None;
        for _ in 0..10 {
            let r = s
                .report(as_admin(page(token.clone(), "")))
                .await
                .unwrap()
                .into_inner();
            if counts.is_none() {
                counts = Some(r.counts.clone());
            } else {
                assert!(r.counts.is_empty(), "counts come on the first page only");
            }
            seen.extend(
                r.devices
                    .into_iter()
                    .map(|d| format!("{}/{}/{}", d.device_class, d.version, d.id)),
            );
            token = r.next_page_token;
            if token.is_empty() {
                break;
            }
        }
        assert_eq!(
            seen,
            [
                "/0.1.0/bare",
                "pump/1.0.0/p1",
                "thermo/1.0.0/t2",
                "thermo/1.0.0/t3",
                "thermo/1.0.0/t4",
                "thermo/1.0.0/t5",
                "thermo/2.0.0/t1",
            ]
        );
        let counts: Vec<_> = counts
            .unwrap()
            .into_iter()
            .map(|c| (c.device_class, c.version, c.devices))
            .collect();
        assert_eq!(counts.len(), 4);
        assert!(
            counts.contains(&("thermo".into(), "1.0.0".into(), 4)),
            "{counts:?}"
        );

        // A selector narrows it; a token is bound to its filter.
        let newer = s
            .report(as_admin(page(String::new(), ">=2.0.0")))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(newer.devices.len(), 1);
        let first = s
            .report(as_admin(page(String::new(), "")))
            .await
            .unwrap()
            .into_inner();
        let e = s
            .report(as_admin(page(first.next_page_token, ">=2.0.0")))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        let e = s
            .report(as_admin(page(String::new(), "not a version")))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

        s.remove_rollout(as_admin(pb::ReleaseRef {
            device_class: "thermo".into(),
            version: "2.0.0".into(),
        }))
        .await
        .unwrap();
        let left = s
            .list_rollouts(as_admin(pb::ListRolloutsRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert!(left.rollouts.is_empty());
    }
}
