//! EST-coaps enrollment on the device front (RFC 9148 `sen`/`sren`): the
//! request checked on the shard's loop (the CSR parses and proves
//! possession, the session's credential may enroll this id), then, off the
//! loop, a certificate issued under the device CA and the device recorded
//! with it through raft — one `Enroll` command, so the registration and the
//! issuance are one atomic write, and a retried request finds the device it
//! made. The answer goes back to the shard, which sends it in the ACK the
//! device waits for.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use coap_lite::ResponseType;
use idreg_coap_endpoint::est::{certificate_reply, CertificateFormat, EnrollRequest};
use idreg_coap_endpoint::resources::Reply;
use idreg_core::certificate_issuer::{check_csr, issue, CheckedCsr};
use idreg_core::device_ca::DEVICE_CA_KEY_AAD;
use idreg_core::{
    Command, Credential, CredentialRef, Device, DeviceId, EnrollVia, Enrollment, Fingerprint,
    IssuedKey, Kek, KeySource, Principal, PublicKeyCredential, Rejection, Role,
};
use idreg_dtls::AuthCredential;
use idreg_store::RegistryReader;
use tracing::{info, warn};

use crate::registry_credentials::{SessionDevice, SessionRole};

/// A raft write from the device front: the verdict (the device after the
/// command, or why it was refused), or why the write's fate is unknown.
pub type WriteFuture =
    Pin<Box<dyn Future<Output = Result<Result<Option<Device>, Rejection>, String>> + Send>>;
pub type RegistryWriter = Arc<dyn Fn(Command, Principal) -> WriteFuture + Send + Sync>;

/// Where an enrollment's answer goes: the shard's queue, with the session.
pub type AnswerSink = Box<dyn FnOnce(Reply) + Send>;

#[derive(Clone)]
pub struct EnrollmentDesk {
    reader: RegistryReader,
    kek: Kek,
    writer: RegistryWriter,
    certificate_days: u32,
    rotation_grace: Duration,
}

fn refuse(code: ResponseType, why: impl Into<String>) -> Reply {
    Reply::error(code, why)
}

impl EnrollmentDesk {
    pub fn new(
        reader: RegistryReader,
        kek: Kek,
        writer: RegistryWriter,
        certificate_days: u32,
        rotation_grace: Duration,
    ) -> Self {
        Self {
            reader,
            kek,
            writer,
            certificate_days,
            rotation_grace,
        }
    }

    /// Checks an enrollment and starts it; `answer` gets the reply once the
    /// registry has decided. An `Err` is the reply now (nothing started).
    pub fn start(
        &self,
        session: &SessionDevice,
        credential: &AuthCredential,
        request: &EnrollRequest<'_>,
        answer: AnswerSink,
    ) -> Result<(), Reply> {
        let csr = check_csr("CSR", request.csr)
            .map_err(|e| refuse(ResponseType::BadRequest, e.to_string()))?;
        let id = DeviceId::parse("id", &session.id)
            .map_err(|e| refuse(ResponseType::BadRequest, e.to_string()))?;
        let via = self.attestation(session, credential, request, &csr)?;
        if let EnrollVia::ManufacturerCertificate { group } = &via {
            // A quick answer for a closed group; apply decides for good.
            use idreg_core::RegistryView;
            match self.reader.enrollment_group(group) {
                Ok(Some(g)) => {
                    if let Some(why) = g.closed_reason(crate::unix_ms()) {
                        return Err(refuse(ResponseType::Forbidden, why));
                    }
                }
                Ok(None) => {
                    return Err(refuse(
                        ResponseType::Forbidden,
                        format!("enrollment group {:?} no longer exists", group.as_str()),
                    ))
                }
                Err(e) => return Err(refuse(ResponseType::ServiceUnavailable, e.to_string())),
            }
        }
        let desk = self.clone();
        let format = request.format;
        tokio::spawn(async move {
            let reply = desk.enroll(id, via, csr, format).await;
            answer(reply);
        });
        Ok(())
    }

    /// Retires the key or PSK `new` replaced, in the background: a failed
    /// write is retried at the device's next handshake with the new one.
    pub fn finish_rotation(&self, id: DeviceId, new: CredentialRef) {
        let writer = self.writer.clone();
        tokio::spawn(async move {
            let by = Principal {
                name: format!("device:{id}"),
                role: Role::Device,
            };
            let command = Command::CompleteRotation {
                id: id.clone(),
                new,
            };
            match writer(command, by).await {
                Ok(Ok(_)) => info!(device = %id, "key rotation finished: the old key is retired"),
                Ok(Err(r)) => warn!(device = %id, rejection = %r, "key rotation not finished"),
                Err(e) => {
                    warn!(device = %id, error = %e, "key rotation not finished; retried at the next handshake")
                }
            }
        });
    }

    /// How the session's credential entitles it to enroll.
    fn attestation(
        &self,
        session: &SessionDevice,
        credential: &AuthCredential,
        request: &EnrollRequest<'_>,
        csr: &CheckedCsr,
    ) -> Result<EnrollVia, Reply> {
        match (&session.role, credential) {
            (SessionRole::Manufacturer { .. } | SessionRole::Bootstrap { .. }, _)
                if request.reenroll =>
            {
                Err(refuse(
                    ResponseType::Forbidden,
                    "sren needs the device's operational certificate; enroll with sen",
                ))
            }
            (SessionRole::Manufacturer { group }, _) => Ok(EnrollVia::ManufacturerCertificate {
                group: group.clone(),
            }),
            (SessionRole::Bootstrap { identity }, _) => Ok(EnrollVia::BootstrapPsk {
                identity: identity.to_vec(),
            }),
            (SessionRole::Device { .. }, AuthCredential::PublicKey { fingerprint, .. }) => {
                if let Some(cn) = csr.common_name.as_deref().filter(|cn| *cn != &*session.id) {
                    return Err(refuse(
                        ResponseType::Forbidden,
                        format!("a device enrolls only itself, not {cn:?}"),
                    ));
                }
                Ok(EnrollVia::Operational {
                    current: Fingerprint(*fingerprint),
                    grace_ms: self.rotation_grace.as_millis() as u64,
                })
            }
            (SessionRole::Device { .. }, AuthCredential::Psk { .. }) => Err(refuse(
                ResponseType::Forbidden,
                "a PSK session cannot enroll; register a bootstrap PSK for enrollment",
            )),
        }
    }

    async fn enroll(
        &self,
        id: DeviceId,
        via: EnrollVia,
        csr: CheckedCsr,
        format: CertificateFormat,
    ) -> Reply {
        let issued = match self.issue(&id, &csr) {
            Ok(i) => i,
            Err(reply) => return reply,
        };
        let command = Command::Enroll(Enrollment {
            id: id.clone(),
            via,
            key: PublicKeyCredential {
                spki_der: csr.spki_der.clone(),
                fingerprint: csr.fingerprint,
                source: KeySource::Issued(issued),
            },
        });
        let by = Principal {
            name: format!("device:{id}"),
            role: Role::Device,
        };
        match (self.writer)(command, by).await {
            Ok(Ok(Some(device))) => match issued_certificate(&device, &csr.fingerprint) {
                Some(der) => {
                    info!(device = %id, fingerprint = %csr.fingerprint, "device enrolled (EST-coaps)");
                    certificate_reply(der, format)
                }
                None => refuse(
                    ResponseType::InternalServerError,
                    "the device was recorded without its certificate",
                ),
            },
            Ok(Ok(None)) => refuse(ResponseType::InternalServerError, "no device recorded"),
            Ok(Err(rejection)) => {
                info!(device = %id, %rejection, "enrollment refused");
                refuse(rejection_code(&rejection), rejection.to_string())
            }
            Err(e) => {
                warn!(device = %id, error = %e, "enrollment write failed");
                refuse(
                    ResponseType::ServiceUnavailable,
                    format!("the registry could not record the enrollment ({e}); retry"),
                )
            }
        }
    }

    fn issue(&self, id: &DeviceId, csr: &CheckedCsr) -> Result<IssuedKey, Reply> {
        use idreg_core::RegistryView;
        let ca = match self.reader.device_ca() {
            Ok(Some(ca)) => ca,
            Ok(None) => {
                return Err(refuse(
                    ResponseType::ServiceUnavailable,
                    "the cluster has no device CA yet",
                ))
            }
            Err(e) => return Err(refuse(ResponseType::ServiceUnavailable, e.to_string())),
        };
        let key = self
            .kek
            .open(&ca.sealed_key, DEVICE_CA_KEY_AAD)
            .map_err(|_| {
                refuse(
                    ResponseType::InternalServerError,
                    "the device CA key cannot be opened with this node's KEK",
                )
            })?;
        let issued = issue(
            &ca,
            &key,
            csr,
            id,
            crate::unix_ms(),
            self.certificate_days,
            rand::random(),
        )
        .map_err(|e| refuse(ResponseType::InternalServerError, e.to_string()))?;
        Ok(IssuedKey {
            der: issued.der,
            serial: issued.serial,
            not_after_ms: issued.not_after_ms,
            replaces: None,
        })
    }
}

/// The certificate the registry holds for the device's key: the one just
/// issued, or for a retried request the one issued the first time.
fn issued_certificate<'a>(device: &'a Device, fingerprint: &Fingerprint) -> Option<&'a [u8]> {
    device.credentials.iter().find_map(|c| match c {
        Credential::PublicKey(PublicKeyCredential {
            fingerprint: f,
            source: KeySource::Issued(i),
            ..
        }) if f == fingerprint => Some(i.der.as_slice()),
        _ => None,
    })
}

fn rejection_code(r: &Rejection) -> ResponseType {
    match r {
        Rejection::Malformed(_) => ResponseType::BadRequest,
        Rejection::TooManyCredentials(..) => ResponseType::Conflict,
        _ => ResponseType::Forbidden,
    }
}
