//! `idreg.v1.Enrollment`: the cluster's device CA — shown to anyone with a
//! role, replaced by an admin with their own — and the enrollment groups. The key arrives in the clear
//! over mutual TLS and is sealed with the KEK here, before it is proposed.

use idreg_core::credential::{certificate_der_from_pem, pem_armour};
use idreg_core::device_ca::{
    check_ca_certificate, check_ca_key, describe_certificate, private_key_pkcs8_from_pem,
    DEVICE_CA_KEY_AAD,
};
use idreg_core::{CaOrigin, Command, DeviceCa, GroupName, Kek};
use idreg_proto::v1 as pb;
use idreg_raft::RegistryNode;
use pb::enrollment_server::Enrollment;
use tonic::{Request, Response, Status};

use crate::caller_auth::author;
use crate::convert::{self, now_ms};
use crate::status::{invalid, rejection, storage, write};

#[derive(Clone)]
pub struct EnrollmentService {
    node: RegistryNode,
    kek: Kek,
}

impl EnrollmentService {
    pub fn new(node: RegistryNode, kek: Kek) -> Self {
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
impl Enrollment for EnrollmentService {
    async fn get_device_ca(
        &self,
        request: Request<pb::GetDeviceCaRequest>,
    ) -> Result<Response<pb::DeviceCaInfo>, Status> {
        if request.get_ref().linearizable {
            self.node.linearize().await.map_err(write)?;
        }
        use idreg_core::RegistryView;
        match self.node.reader().device_ca().map_err(storage)? {
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
        self.node
            .propose(command, by)
            .await
            .map_err(write)?
            .map_err(rejection)?;
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
            .propose(Command::AddEnrollmentGroup(group), by)
            .await
            .map_err(write)?
            .map_err(rejection)?;
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
        let groups = self.node.reader().enrollment_groups().map_err(storage)?;
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
        self.node
            .propose(command, by)
            .await
            .map_err(write)?
            .map_err(rejection)?;
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
            .propose(Command::DeleteEnrollmentGroup { name }, by)
            .await
            .map_err(write)?
            .map_err(rejection)?;
        Ok(Response::new(pb::DeleteEnrollmentGroupResponse {}))
    }
}

impl EnrollmentService {
    /// The group as this node has it (after a write here, applied here).
    fn group(&self, name: &GroupName) -> Result<pb::EnrollmentGroup, Status> {
        use idreg_core::RegistryView;
        match self.node.reader().enrollment_group(name).map_err(storage)? {
            Some(g) => Ok(convert::enrollment_group_to_proto(&g)),
            None => Err(Status::not_found(format!(
                "enrollment group {:?} not found",
                name.as_str()
            ))),
        }
    }
}
