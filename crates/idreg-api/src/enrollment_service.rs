//! `idreg.v1.Enrollment`: the cluster's device CA — shown to anyone with a
//! role, replaced by an admin with their own — and the enrollment groups.
//! The key arrives in the clear over mutual TLS and is sealed with the KEK
//! here, before it is proposed.

use idreg_core::credential::{certificate_der_from_pem, pem_armour};
use idreg_core::device_ca::{
    check_ca_certificate, check_ca_key, describe_certificate, private_key_pkcs8_from_pem,
    DEVICE_CA_KEY_AAD,
};
use idreg_core::{CaOrigin, Command, DeviceCa, DeviceDirectory, GroupName, Kek, RegistryView};
use idreg_proto::v1 as pb;
use idreg_raft::RegistryNode;
use pb::enrollment_server::Enrollment;
use tonic::{Request, Response, Status};

use crate::caller_auth::author;
use crate::convert::{self, now_ms};
use crate::registry_backend::RegistryBackend;
use crate::status::{invalid, storage, write};

/// The service over a registry backend: the replicated [`RegistryNode`] in
/// the server, the in-memory one in its unit tests.
#[derive(Clone)]
pub struct EnrollmentService<B = RegistryNode> {
    node: B,
    kek: Kek,
}

impl<B: RegistryBackend> EnrollmentService<B> {
    pub fn new(node: B, kek: Kek) -> Self {
        Self { node, kek }
    }

    pub fn into_server(self) -> pb::enrollment_server::EnrollmentServer<Self> {
        pb::enrollment_server::EnrollmentServer::new(self)
    }
}

/// The protobuf view of a device CA (never its key).
pub fn device_ca_info(ca: &DeviceCa) -> pb::DeviceCaInfo {
    let (subject, not_after) = describe_certificate(&ca.certificate).unwrap_or_default();
    pb::DeviceCaInfo {
        certificate_pem: pem_armour("CERTIFICATE", &ca.certificate),
        sha256: hex::encode(ca.certificate_sha256()),
        subject,
        not_after: Some(convert::timestamp(not_after)),
        origin: ca.origin.as_str().into(),
        installed_at: Some(convert::timestamp(ca.installed_ms)),
    }
}

#[tonic::async_trait]
impl<B: RegistryBackend> Enrollment for EnrollmentService<B> {
    async fn get_device_ca(
        &self,
        request: Request<pb::GetDeviceCaRequest>,
    ) -> Result<Response<pb::DeviceCaInfo>, Status> {
        if request.get_ref().linearizable {
            self.node.linearize().await.map_err(write)?;
        }
        match self.node.directory().device_ca().map_err(storage)? {
            Some(ca) => Ok(Response::new(device_ca_info(&ca))),
            None => Err(Status::not_found(
                "the cluster has no device CA yet (its leader makes one at founding)",
            )),
        }
    }

    async fn import_device_ca(
        &self,
        request: Request<pb::ImportDeviceCaRequest>,
    ) -> Result<Response<pb::DeviceCaInfo>, Status> {
        let by = author(&request);
        let req = request.into_inner();
        let certificate =
            certificate_der_from_pem("certificate_pem", &req.certificate_pem).map_err(invalid)?;
        let spki = check_ca_certificate("certificate_pem", &certificate).map_err(invalid)?;
        let key =
            private_key_pkcs8_from_pem("private_key_pem", &req.private_key_pem).map_err(invalid)?;
        check_ca_key("private_key_pem", &key, &spki).map_err(invalid)?;
        let ca = DeviceCa {
            certificate,
            sealed_key: self.kek.seal(&key, DEVICE_CA_KEY_AAD),
            origin: CaOrigin::Imported,
            installed_ms: now_ms(),
        };
        let info = device_ca_info(&ca);
        let command = Command::SetDeviceCa { ca, replace: true };
        self.node.commit(command, by).await?;
        Ok(Response::new(info))
    }

    async fn create_enrollment_group(
        &self,
        request: Request<pb::CreateEnrollmentGroupRequest>,
    ) -> Result<Response<pb::EnrollmentGroup>, Status> {
        let by = author(&request);
        let Some(group) = &request.get_ref().group else {
            return Err(Status::invalid_argument("group: required"));
        };
        let group = convert::enrollment_group(group, now_ms()).map_err(invalid)?;
        let name = group.name.clone();
        self.node
            .commit(Command::AddEnrollmentGroup(group), by)
            .await?;
        // Read back once this node has applied the write (it may follow).
        self.node.linearize().await.map_err(write)?;
        self.group(&name).map(Response::new)
    }

    async fn get_enrollment_group(
        &self,
        request: Request<pb::GetEnrollmentGroupRequest>,
    ) -> Result<Response<pb::EnrollmentGroup>, Status> {
        let name = GroupName::parse("name", &request.get_ref().name).map_err(invalid)?;
        self.group(&name).map(Response::new)
    }

    async fn list_enrollment_groups(
        &self,
        _: Request<pb::ListEnrollmentGroupsRequest>,
    ) -> Result<Response<pb::ListEnrollmentGroupsResponse>, Status> {
        let groups = self.node.directory().enrollment_groups().map_err(storage)?;
        Ok(Response::new(pb::ListEnrollmentGroupsResponse {
            groups: groups
                .iter()
                .map(convert::enrollment_group_to_proto)
                .collect(),
        }))
    }

    async fn set_enrollment_group_enabled(
        &self,
        request: Request<pb::SetEnrollmentGroupEnabledRequest>,
    ) -> Result<Response<pb::EnrollmentGroup>, Status> {
        let by = author(&request);
        let req = request.into_inner();
        let name = GroupName::parse("name", &req.name).map_err(invalid)?;
        let command = Command::SetEnrollmentGroupEnabled {
            name: name.clone(),
            enabled: req.enabled,
        };
        self.node.commit(command, by).await?;
        // Read back once this node has applied the write (it may follow).
        self.node.linearize().await.map_err(write)?;
        self.group(&name).map(Response::new)
    }

    async fn delete_enrollment_group(
        &self,
        request: Request<pb::DeleteEnrollmentGroupRequest>,
    ) -> Result<Response<pb::DeleteEnrollmentGroupResponse>, Status> {
        let by = author(&request);
        let name = GroupName::parse("name", &request.get_ref().name).map_err(invalid)?;
        self.node
            .commit(Command::DeleteEnrollmentGroup { name }, by)
            .await?;
        Ok(Response::new(pb::DeleteEnrollmentGroupResponse {}))
    }
}

impl<B: RegistryBackend> EnrollmentService<B> {
    /// The group as this node has it (after a write here, applied here).
    fn group(&self, name: &GroupName) -> Result<pb::EnrollmentGroup, Status> {
        match self
            .node
            .directory()
            .enrollment_group(name)
            .map_err(storage)?
        {
            Some(g) => Ok(convert::enrollment_group_to_proto(&g)),
            None => Err(Status::not_found(format!(
                "enrollment group {:?} not found",
                name.as_str()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The service over an in-memory registry: the device CA shown and
    //! imported (and bad imports refused), enrollment groups made, read,
    //! listed, disabled and deleted — with no RocksDB and no raft.

    use tonic::Code;

    use super::*;
    use crate::mem_backend::{as_admin, MemBackend};

    const KEK: [u8; 32] = [4; 32];

    fn service() -> EnrollmentService<MemBackend> {
        EnrollmentService::new(MemBackend::default(), Kek::from_bytes(&KEK))
    }

    /// A CA made the way a founding leader makes one: its certificate and
    /// key as PEM.
    fn ca_pem() -> (String, String) {
        let kek = Kek::from_bytes(&KEK);
        let ca = DeviceCa::generate(&kek, 1).unwrap();
        let key = kek.open(&ca.sealed_key, DEVICE_CA_KEY_AAD).unwrap();
        (
            pem_armour("CERTIFICATE", &ca.certificate),
            pem_armour("PRIVATE KEY", &key),
        )
    }

    #[tokio::test]
    async fn the_device_ca_is_shown_once_imported_and_a_bad_one_refused() {
        let s = service();
        let e = s
            .get_device_ca(Request::new(pb::GetDeviceCaRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e}");

        let (cert, key) = ca_pem();
        let (_, other_key) = ca_pem();
        let refused = [
            (
                "not a certificate".to_owned(),
                key.clone(),
                "certificate_pem",
            ),
            (cert.clone(), "not a key".to_owned(), "private_key_pem"),
            // A key that is not the certificate's.
            (cert.clone(), other_key, "private_key_pem"),
        ];
        for (certificate_pem, private_key_pem, field) in refused {
            let e = s
                .import_device_ca(as_admin(pb::ImportDeviceCaRequest {
                    certificate_pem,
                    private_key_pem,
                }))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{e}");
            assert!(e.message().contains(field), "{field}: {e}");
        }
        assert_eq!(
            s.get_device_ca(Request::new(pb::GetDeviceCaRequest::default()))
                .await
                .unwrap_err()
                .code(),
            Code::NotFound,
            "nothing stored by a refused import"
        );

        let imported = s
            .import_device_ca(as_admin(pb::ImportDeviceCaRequest {
                certificate_pem: cert.clone(),
                private_key_pem: key,
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(imported.origin, "imported");
        assert_eq!(imported.certificate_pem, cert);
        let shown = s
            .get_device_ca(Request::new(pb::GetDeviceCaRequest { linearizable: true }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(shown, imported);
        // The key is stored sealed with the cluster's KEK: it opens with
        // that key and no other.
        let stored = s.node.registry().device_ca().unwrap().unwrap();
        let kek = Kek::from_bytes(&KEK);
        assert!(kek.open(&stored.sealed_key, DEVICE_CA_KEY_AAD).is_ok());
        let other = Kek::from_bytes(&[5; 32]);
        assert!(other.open(&stored.sealed_key, DEVICE_CA_KEY_AAD).is_err());
    }

    fn group(name: &str) -> pb::CreateEnrollmentGroupRequest {
        pb::CreateEnrollmentGroupRequest {
            group: Some(pb::EnrollmentGroup {
                name: name.into(),
                attestation: Some(pb::enrollment_group::Attestation::BootstrapPsk(true)),
                max_devices: 5,
                ..Default::default()
            }),
        }
    }

    #[tokio::test]
    async fn enrollment_groups_are_made_read_listed_disabled_and_deleted() {
        let s = service();
        let made = s
            .create_enrollment_group(as_admin(group("line-b")))
            .await
            .unwrap()
            .into_inner();
        assert!(made.enabled);
        assert_eq!(made.tenant, "default");
        assert_eq!(made.max_devices, 5);
        s.create_enrollment_group(as_admin(group("line-a")))
            .await
            .unwrap();
        let again = s
            .create_enrollment_group(as_admin(group("line-a")))
            .await
            .unwrap_err();
        assert_eq!(again.code(), Code::AlreadyExists, "{again}");
        let bad = s
            .create_enrollment_group(as_admin(group("no spaces")))
            .await
            .unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument, "{bad}");

        let list = s
            .list_enrollment_groups(Request::new(pb::ListEnrollmentGroupsRequest {}))
            .await
            .unwrap()
            .into_inner();
        let names: Vec<&str> = list.groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["line-a", "line-b"]);

        let off = s
            .set_enrollment_group_enabled(as_admin(pb::SetEnrollmentGroupEnabledRequest {
                name: "line-a".into(),
                enabled: false,
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(!off.enabled);
        let read = s
            .get_enrollment_group(Request::new(pb::GetEnrollmentGroupRequest {
                name: "line-a".into(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(read, off);

        s.delete_enrollment_group(as_admin(pb::DeleteEnrollmentGroupRequest {
            name: "line-a".into(),
        }))
        .await
        .unwrap();
        for e in [
            s.get_enrollment_group(Request::new(pb::GetEnrollmentGroupRequest {
                name: "line-a".into(),
            }))
            .await
            .unwrap_err(),
            s.delete_enrollment_group(as_admin(pb::DeleteEnrollmentGroupRequest {
                name: "line-a".into(),
            }))
            .await
            .unwrap_err(),
        ] {
            assert_eq!(e.code(), Code::NotFound, "{e}");
        }
    }
}
