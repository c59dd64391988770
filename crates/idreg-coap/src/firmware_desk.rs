//! Firmware on the device front: which release a device is offered (its
//! class's rollouts, what it last reported), the image read block by block
//! from the store, and the device's reports written through raft.

use coap_lite::ResponseType;
use idreg_coap_endpoint::resources::{FirmwareState, ImageWindow, Reply};
use idreg_core::firmware_release::{offer, Attempt, AttemptState};
use idreg_core::firmware_version::FirmwareVersion;
use idreg_core::{Command, DeviceId, FirmwareCatalog, FirmwareRelease, Principal, Role};
use idreg_store::RegistryReader;
use tracing::warn;

use crate::enrollment_desk::{AnswerSink, RegistryWriter};

/// The desk over the registry's firmware reads: the RocksDB reader on a
/// node, `MemRegistry` in its unit tests.
#[derive(Clone)]
pub struct FirmwareDesk<R = RegistryReader> {
    reader: R,
    /// `None`: reports are not taken (a front with no raft behind it).
    writer: Option<RegistryWriter>,
}

fn unavailable(e: impl std::fmt::Display) -> Reply {
    Reply::error(ResponseType::ServiceUnavailable, e.to_string())
}

fn changed() -> Reply {
    Reply {
        code: ResponseType::Changed,
        format: None,
        payload: Vec::new(),
    }
}

fn not_offered(why: impl Into<String>) -> Reply {
    Reply::error(ResponseType::NotFound, why)
}

impl<R> FirmwareDesk<R>
where
    R: FirmwareCatalog,
    R::Error: std::fmt::Display,
{
    pub fn new(reader: R, writer: Option<RegistryWriter>) -> Self {
        Self { reader, writer }
    }

    /// The release offered to `device`, or 4.04 saying why there is none.
    pub fn offered(&self, device: &str) -> Result<FirmwareRelease, Reply> {
        let not_registered = || not_offered("device not registered");
        let id = DeviceId::parse("id", device).map_err(|_| not_registered())?;
        let d = self
            .reader
            .device(&id)
            .map_err(unavailable)?
            .ok_or_else(not_registered)?;
        let class = d.labels.class().ok_or_else(|| {
            not_offered("the device has no class (label idreg.io/class): no firmware is offered")
        })?;
        let running = self
            .reader
            .firmware_report(&d.id)
            .map_err(unavailable)?
            .map(|r| r.running);
        let rollouts = self.reader.rollouts_of_class(&class).map_err(unavailable)?;
        offer(&d, running.as_ref(), &rollouts)
            .cloned()
            .ok_or_else(|| not_offered("no firmware update is offered to this device"))
    }

    /// `len` bytes of `release`'s image from `offset`; the tag is the
    /// start of the image's SHA-256, so it changes with the image.
    pub fn image(
        &self,
        release: &FirmwareRelease,
        offset: u64,
        len: usize,
    ) -> Result<ImageWindow, Reply> {
        let bytes = self
            .reader
            .firmware_image_range(release, offset, len)
            .map_err(unavailable)?;
        Ok(ImageWindow {
            bytes,
            total: release.manifest.image_size,
            etag: release.manifest.image_sha256[..8]
                .try_into()
                .expect("8 of 32 bytes"),
        })
    }

    /// Writes `device`'s report through raft; `answer`, when given, gets
    /// 2.04 once it is stored (or why not).
    pub fn report(
        &self,
        device: &str,
        state: &FirmwareState,
        answer: Option<AnswerSink>,
    ) -> Result<(), Reply> {
        let Some(writer) = self.writer.clone() else {
            return Err(Reply::error(
                ResponseType::NotFound,
                "firmware reports are not taken by this node",
            ));
        };
        let bad =
            |e: idreg_core::ValidationError| Reply::error(ResponseType::BadRequest, e.to_string());
        let id = DeviceId::parse("id", device).map_err(bad)?;
        let running = FirmwareVersion::parse("running", &state.running).map_err(bad)?;
        let attempt = match &state.attempt {
            None => None,
            Some((v, s)) => Some(Attempt {
                version: FirmwareVersion::parse("tried", v).map_err(bad)?,
                state: if *s == "failed" {
                    AttemptState::Failed
                } else {
                    AttemptState::Downloading
                },
            }),
        };
        let stored = self.reader.firmware_report(&id).map_err(unavailable)?;
        if stored.is_some_and(|r| r.running == running && r.attempt == attempt) {
            // Nothing new (a device polling, or repeating itself): no raft
            // write, so repeats cost the cluster a read, not a write.
            if let Some(answer) = answer {
                answer(changed());
            }
            return Ok(());
        }
        let by = Principal {
            name: format!("device:{id}"),
            role: Role::Device,
        };
        let command = Command::ReportFirmware {
            id: id.clone(),
            running,
            attempt,
        };
        tokio::spawn(async move {
            let reply = match writer(command, by).await {
                Ok(Ok(_)) => changed(),
                Ok(Err(r)) => Reply::error(ResponseType::Forbidden, r.to_string()),
                Err(e) => {
                    warn!(device = %id, error = %e, "firmware report not stored");
                    Reply::error(ResponseType::ServiceUnavailable, e)
                }
            };
            if let Some(answer) = answer {
                answer(reply);
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The desk over an in-memory registry: what a device is offered and
    //! why not, image windows across chunk boundaries, and which reports
    //! become raft writes — with no RocksDB or raft.

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use idreg_core::firmware_manifest::Manifest;
    use idreg_core::firmware_release::{ReleaseId, Rollout, CHUNK_SIZE};
    use idreg_core::labels::CLASS_LABEL;
    use idreg_core::mem::MemRegistry;
    use idreg_core::{DeviceClass, FirmwareSigner, Labels, NewDevice, SignerName, TenantId};
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey};
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::enrollment_desk::run;

    fn device(reg: &mut MemRegistry, id: &str, class: Option<&str>) {
        let labels = Labels::new("labels", class.map(|c| (CLASS_LABEL, c))).unwrap();
        run(
            reg,
            Command::Create(NewDevice {
                id: DeviceId::parse("id", id).unwrap(),
                tenant: TenantId::default_tenant(),
                labels,
                gateway: None,
                credentials: vec![],
            }),
        );
    }

    /// A registry with thermo 2.0.0 (two whole chunks and a short tail)
    /// rolled out to every thermo; devices `t1` (thermo), `bare` (no
    /// class) and `p1` (pump). Returns the image too.
    fn registry() -> (MemRegistry, Vec<u8>) {
        let mut reg = MemRegistry::default();
        let key = p256::SecretKey::from_slice(&[5; 32]).unwrap();
        let signer = FirmwareSigner {
            name: SignerName::parse("n", "acme").unwrap(),
            public_spki: key.public_key().to_public_key_der().unwrap().to_vec(),
            added_ms: 0,
        };
        let image: Vec<u8> = (0..CHUNK_SIZE * 2 + 100).map(|i| (i % 251) as u8).collect();
        let manifest = Manifest {
            vendor: "acme".into(),
            class: DeviceClass::parse("c", "thermo").unwrap(),
            version: FirmwareVersion::parse("v", "2.0.0").unwrap(),
            image_size: image.len() as u64,
            image_sha256: Sha256::digest(&image).into(),
            min_version: None,
            image_uri: None,
        };
        let cose = idreg_core::cose_sign1::sign(
            &manifest.encode(),
            key.to_pkcs8_der().unwrap().as_bytes(),
        )
        .unwrap();
        let release = ReleaseId {
            class: manifest.class.clone(),
            version: manifest.version.clone(),
        };
        run(&mut reg, Command::AddFirmwareSigner(signer.clone()));
        run(
            &mut reg,
            Command::BeginFirmwareUpload {
                signer: signer.name,
                cose,
                upload: 3,
            },
        );
        for (index, bytes) in image.chunks(CHUNK_SIZE).enumerate() {
            run(
                &mut reg,
                Command::PutFirmwareChunk {
                    release: release.clone(),
                    upload: 3,
                    index: index as u32,
                    bytes: bytes.to_vec(),
                },
            );
        }
        run(
            &mut reg,
            Command::FinishFirmwareUpload {
                release: release.clone(),
                upload: 3,
            },
        );
        run(
            &mut reg,
            Command::SetRollout(Rollout {
                release,
                labels: vec![],
                percent: 100,
                paused: false,
                created_ms: 1,
                updated_ms: 1,
            }),
        );
        device(&mut reg, "t1", Some("thermo"));
        device(&mut reg, "bare", None);
        device(&mut reg, "p1", Some("pump"));
        (reg, image)
    }

    /// A desk reading `reg` as it stands, writing into `target` and
    /// counting the writes.
    fn desk(
        reg: &MemRegistry,
        target: Arc<Mutex<MemRegistry>>,
        writes: Arc<AtomicUsize>,
    ) -> FirmwareDesk<MemRegistry> {
        let writer = crate::enrollment_desk::mem_writer(target, writes);
        FirmwareDesk::new(reg.clone(), Some(writer))
    }

    fn why(reply: Reply) -> String {
        assert_eq!(reply.code, ResponseType::NotFound, "{reply:?}");
        String::from_utf8_lossy(&reply.payload).into_owned()
    }

    #[test]
    fn a_device_is_offered_its_class_release_or_told_why_not() {
        let (reg, _) = registry();
        let d = desk(&reg, Arc::default(), Arc::default());
        let offered = d.offered("t1").unwrap();
        assert_eq!(offered.manifest.version.to_string(), "2.0.0");
        assert!(why(d.offered("bare").unwrap_err()).contains("no class"));
        assert!(why(d.offered("p1").unwrap_err()).contains("no firmware update"));
        assert!(why(d.offered("ghost").unwrap_err()).contains("not registered"));
        assert!(why(d.offered("not an id").unwrap_err()).contains("not registered"));

        // Once t1 runs 2.0.0 there is nothing newer to offer.
        let mut reg = reg;
        run(
            &mut reg,
            Command::ReportFirmware {
                id: DeviceId::parse("id", "t1").unwrap(),
                running: FirmwareVersion::parse("v", "2.0.0").unwrap(),
                attempt: None,
            },
        );
        let d = desk(&reg, Arc::default(), Arc::default());
        assert!(why(d.offered("t1").unwrap_err()).contains("no firmware update"));
    }

    #[test]
    fn image_windows_cross_chunk_boundaries_and_stop_at_the_end() {
        let (reg, image) = registry();
        let d = desk(&reg, Arc::default(), Arc::default());
        let release = d.offered("t1").unwrap();
        let sha: [u8; 32] = Sha256::digest(&image).into();
        let c = CHUNK_SIZE as u64;
        for (offset, len) in [
            (0, 1024),
            (c - 10, 1024),
            (2 * c - 1, 2),
            (2 * c + 50, 1024),
        ] {
            let w = d.image(&release, offset, len).unwrap();
            let end = (offset as usize + len).min(image.len());
            assert_eq!(w.bytes, image[offset as usize..end], "at {offset}");
            assert_eq!(w.total, image.len() as u64);
            assert_eq!(w.etag[..], sha[..8]);
        }
        assert!(d
            .image(&release, image.len() as u64, 64)
            .unwrap()
            .bytes
            .is_empty());
        // The whole image, block by block, is the image.
        let mut whole = Vec::new();
        while let Ok(w) = d.image(&release, whole.len() as u64, 1024) {
            if w.bytes.is_empty() {
                break;
            }
            whole.extend(w.bytes);
        }
        assert_eq!(Sha256::digest(&whole)[..], sha[..]);
    }

    async fn report(d: &FirmwareDesk<MemRegistry>, running: &str) -> Reply {
        let state = FirmwareState {
            running: running.into(),
            attempt: None,
        };
        crate::enrollment_desk::answer_of(|sink| d.report("t1", &state, Some(sink))).await
    }

    #[tokio::test]
    async fn a_new_report_is_written_and_a_repeated_one_is_not() {
        let (reg, _) = registry();
        let target = Arc::new(Mutex::new(reg.clone()));
        let writes = Arc::new(AtomicUsize::new(0));
        let d = desk(&reg, target.clone(), writes.clone());
        assert_eq!(report(&d, "1.0.0").await.code, ResponseType::Changed);
        assert_eq!(writes.load(Ordering::SeqCst), 1);
        let stored = target.lock().unwrap().clone();
        let id = DeviceId::parse("id", "t1").unwrap();
        use idreg_core::RegistryView;
        assert_eq!(
            stored
                .firmware_report(&id)
                .unwrap()
                .unwrap()
                .running
                .to_string(),
            "1.0.0"
        );
        // The same report again, read by a desk that sees it stored: 2.04
        // with no write.
        let d = desk(&stored, target.clone(), writes.clone());
        assert_eq!(report(&d, "1.0.0").await.code, ResponseType::Changed);
        assert_eq!(writes.load(Ordering::SeqCst), 1);
        // A version that does not parse: 4.00, nothing written.
        let bad = report(&d, "not a version").await;
        assert_eq!(bad.code, ResponseType::BadRequest, "{bad:?}");
        assert_eq!(writes.load(Ordering::SeqCst), 1);
        // A front with no raft behind it takes no reports.
        let d = FirmwareDesk::new(stored, None);
        assert_eq!(report(&d, "1.0.1").await.code, ResponseType::NotFound);
    }
}
