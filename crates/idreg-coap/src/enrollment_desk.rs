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
    IssuedKey, Kek, KeySource, Principal, PublicKeyCredential, RegistryView, Rejection, Role,
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

/// For the desks' unit tests: the reply to a request `start` makes with a
/// sink, at once when refused, else once the sink is called (bounded).
#[cfg(test)]
pub(crate) async fn answer_of(start: impl FnOnce(AnswerSink) -> Result<(), Reply>) -> Reply {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let sink: AnswerSink = Box::new(move |r| {
        let _ = tx.send(r);
    });
    match start(sink) {
        Err(now) => now,
        Ok(()) => tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .expect("answered in time")
            .expect("answered"),
    }
}

/// For the desks' unit tests: applies `command` to `reg` as the admin
/// `ops` would (it must be accepted).
#[cfg(test)]
pub(crate) fn run(reg: &mut idreg_core::mem::MemRegistry, command: Command) {
    let proposal = idreg_core::Proposal {
        at_ms: 1,
        by: idreg_core::Author::new("ops", Role::Admin, 1),
        command,
    };
    reg.execute_effect(&proposal).unwrap();
}

/// For the desks' unit tests: a writer that decides each command on
/// `target` as the store would, counting the writes in `writes`.
#[cfg(test)]
pub(crate) fn mem_writer(
    target: Arc<std::sync::Mutex<idreg_core::mem::MemRegistry>>,
    writes: Arc<std::sync::atomic::AtomicUsize>,
) -> RegistryWriter {
    Arc::new(move |command, by| {
        writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let proposal = idreg_core::Proposal {
            at_ms: 2,
            by: idreg_core::Author {
                principal: by,
                node: 1,
            },
            command,
        };
        let verdict = target.lock().unwrap().verdict(&proposal);
        Box::pin(async move { Ok(verdict) })
    })
}

/// The desk over the registry's reads: the RocksDB reader on a node,
/// `MemRegistry` in its unit tests.
#[derive(Clone)]
pub struct EnrollmentDesk<R = RegistryReader> {
    reader: R,
    kek: Kek,
    writer: RegistryWriter,
    certificate_days: u32,
    rotation_grace: Duration,
}

fn refuse(code: ResponseType, why: impl Into<String>) -> Reply {
    Reply::error(code, why)
}

impl<R> EnrollmentDesk<R>
where
    R: RegistryView + Clone + Send + Sync + 'static,
    R::Error: std::fmt::Display,
{
    pub fn new(
        reader: R,
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

#[cfg(test)]
mod tests {
    //! The desk over an in-memory registry: which session may enroll how,
    //! and the certificate it is answered with, with no RocksDB or raft.

    use std::sync::Mutex;

    use idreg_core::mem::MemRegistry;
    use idreg_core::{
        Attestation, DeviceCa, EnrollmentGroup, GroupName, Labels, NewDevice, TenantId,
    };

    use super::*;

    const KEK: [u8; 32] = [1; 32];

    /// A device `d` on bootstrap PSK `boot-1` of group `boot`; with a device
    /// CA when `with_ca`.
    fn registry(with_ca: bool) -> Arc<Mutex<MemRegistry>> {
        let mut reg = MemRegistry::default();
        if with_ca {
            let ca = DeviceCa::generate(&Kek::from_bytes(&KEK), crate::unix_ms()).unwrap();
            run(&mut reg, Command::SetDeviceCa { ca, replace: false });
        }
        let group = GroupName::parse("name", "boot").unwrap();
        run(
            &mut reg,
            Command::AddEnrollmentGroup(EnrollmentGroup {
                name: group.clone(),
                attestation: Attestation::BootstrapPsk,
                tenant: TenantId::default_tenant(),
                labels: Labels::default(),
                gateway: None,
                id_template: None,
                max_devices: None,
                expires_ms: None,
                enabled: true,
                enrolled: 0,
                created_ms: 0,
                updated_ms: 0,
            }),
        );
        run(
            &mut reg,
            Command::Create(NewDevice {
                id: DeviceId::parse("id", "d").unwrap(),
                tenant: TenantId::default_tenant(),
                labels: Labels::default(),
                gateway: None,
                credentials: vec![Credential::BootstrapPsk {
                    identity: b"boot-1".to_vec(),
                    secret: Kek::from_bytes(&KEK).seal(b"0123456789abcdef", b"d"),
                    group,
                }],
            }),
        );
        Arc::new(Mutex::new(reg))
    }

    /// A desk reading a copy of `reg` as it stands and writing into `reg`.
    fn desk(reg: &Arc<Mutex<MemRegistry>>) -> EnrollmentDesk<MemRegistry> {
        let writer = mem_writer(reg.clone(), Arc::default());
        let snapshot = reg.lock().unwrap().clone();
        EnrollmentDesk::new(
            snapshot,
            Kek::from_bytes(&KEK),
            writer,
            30,
            Duration::from_secs(60),
        )
    }

    fn csr(cn: &str) -> (Vec<u8>, [u8; 32]) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let der = params.serialize_request(&key).unwrap().der().to_vec();
        let fp = Fingerprint::of_spki_der(&rcgen::PublicKeyData::subject_public_key_info(&key));
        (der, fp.0)
    }

    fn revision(reg: &Arc<Mutex<MemRegistry>>) -> u64 {
        use idreg_core::DeviceDirectory;
        reg.lock().unwrap().applied_index().unwrap()
    }

    fn session(role: SessionRole) -> SessionDevice {
        SessionDevice {
            id: Arc::from("d"),
            audit_id: 0,
            started_ms: 0,
            role,
        }
    }

    fn bootstrap() -> (SessionDevice, AuthCredential) {
        (
            session(SessionRole::Bootstrap {
                identity: Arc::from(&b"boot-1"[..]),
            }),
            AuthCredential::Psk {
                identity: b"boot-1".to_vec().into_boxed_slice(),
            },
        )
    }

    /// The reply: at once when the desk refuses, else once the write is decided.
    async fn answer(
        desk: &EnrollmentDesk<MemRegistry>,
        (session, credential): &(SessionDevice, AuthCredential),
        csr: &[u8],
        reenroll: bool,
    ) -> Reply {
        let request = EnrollRequest {
            reenroll,
            csr,
            format: CertificateFormat::Der,
        };
        answer_of(|sink| desk.start(session, credential, &request, sink)).await
    }

    #[tokio::test]
    async fn a_bootstrap_psk_enrolls_once_for_a_certificate_of_its_key() {
        let reg = registry(true);
        let desk = desk(&reg);
        let (der, fingerprint) = csr("d");
        let reply = answer(&desk, &bootstrap(), &der, false).await;
        assert_eq!(
            reply.code,
            ResponseType::Changed,
            "{:?}",
            String::from_utf8_lossy(&reply.payload)
        );
        let (_, cert) = x509_parser::parse_x509_certificate(&reply.payload).unwrap();
        let spki = cert.tbs_certificate.subject_pki.raw;
        assert_eq!(
            Fingerprint::of_spki_der(spki).0,
            fingerprint,
            "issued for the CSR's key"
        );
        let device = reg
            .lock()
            .unwrap()
            .device(&DeviceId::parse("id", "d").unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(
            device.fingerprints().collect::<Vec<_>>(),
            [&Fingerprint(fingerprint)]
        );
        assert_eq!(
            reg.lock().unwrap().psk_owner(b"boot-1").unwrap(),
            None,
            "the PSK is retired"
        );
        // Used once: another key on the same PSK is refused by the registry.
        let desk = self::desk(&reg);
        let (other, _) = csr("d");
        let reply = answer(&desk, &bootstrap(), &other, false).await;
        assert_eq!(
            reply.code,
            ResponseType::Forbidden,
            "{:?}",
            String::from_utf8_lossy(&reply.payload)
        );
    }

    #[tokio::test]
    async fn sessions_that_may_not_enroll_are_refused_before_anything_is_written() {
        let reg = registry(true);
        let desk = desk(&reg);
        let before = revision(&reg);
        let (der, _) = csr("d");
        // A bootstrap PSK cannot re-enroll (sren needs an operational key).
        let reply = answer(&desk, &bootstrap(), &der, true).await;
        assert_eq!(reply.code, ResponseType::Forbidden);
        // A device on a PSK cannot enroll at all.
        let psk_device = (
            session(SessionRole::Device {
                finishes_rotation: false,
            }),
            AuthCredential::Psk {
                identity: b"p".to_vec().into_boxed_slice(),
            },
        );
        let reply = answer(&desk, &psk_device, &der, false).await;
        assert_eq!(reply.code, ResponseType::Forbidden);
        assert!(String::from_utf8_lossy(&reply.payload).contains("PSK session cannot enroll"));
        // A device on its key enrolls only itself.
        let keyed = (
            session(SessionRole::Device {
                finishes_rotation: false,
            }),
            AuthCredential::PublicKey {
                fingerprint: [3; 32],
                raw: false,
            },
        );
        let (someone_else, _) = csr("not-d");
        let reply = answer(&desk, &keyed, &someone_else, true).await;
        assert_eq!(reply.code, ResponseType::Forbidden);
        // Not a CSR at all.
        let reply = answer(&desk, &bootstrap(), b"junk", false).await;
        assert_eq!(reply.code, ResponseType::BadRequest);
        assert_eq!(revision(&reg), before, "nothing written");
    }

    #[tokio::test]
    async fn without_a_device_ca_the_answer_is_retry_later() {
        let reg = registry(false);
        let desk = desk(&reg);
        let (der, _) = csr("d");
        let reply = answer(&desk, &bootstrap(), &der, false).await;
        assert_eq!(reply.code, ResponseType::ServiceUnavailable);
        assert!(String::from_utf8_lossy(&reply.payload).contains("no device CA"));
        assert!(reg.lock().unwrap().psk_owner(b"boot-1").unwrap().is_some());
    }
}
