//! `idreg.v1.Enrollment`: the cluster's device CA — shown to anyone with a
//! role, replaced by an admin with their own. The key arrives in the clear
//! over mutual TLS and is sealed with the KEK here, before it is proposed.

use idreg_core::credential::certificate_der_from_pem;
use idreg_core::device_ca::{
    check_ca_certificate, check_ca_key, describe_certificate, private_key_pkcs8_from_pem,
    DEVICE_CA_KEY_AAD,
};
use idreg_core::{CaOrigin, Caller, Command, DeviceCa, Kek, Principal};
use idreg_proto::v1 as pb;
use idreg_raft::RegistryNode;
use pb::enrollment_server::Enrollment;
use tonic::{Request, Response, Status};

use crate::convert;
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
        certificate_pem: pem("CERTIFICATE", &ca.certificate),
        sha256: hex::encode(ca.certificate_sha256()),
        subject,
        not_after: Some(convert::timestamp(not_after)),
        origin: ca.origin.as_str().into(),
        installed_at: Some(convert::timestamp(ca.installed_ms)),
    }
}

/// PEM armour, 64 characters a line (RFC 7468).
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
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
        let by = request
            .extensions()
            .get::<Caller>()
            .map(Caller::principal)
            .unwrap_or_else(|| Principal {
                name: "unauthenticated".into(),
                role: idreg_core::Role::Reader,
            });
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
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
