//! The rules of firmware commands: staging a release chunk by chunk,
//! rollouts, and what devices report.

use crate::apply::Effect;
use crate::command::{Command, Proposal};
use crate::cose_sign1;
use crate::device::DeviceStatus;
use crate::error::Rejection;
use crate::firmware_manifest::Manifest;
use crate::firmware_release::{FirmwareRelease, FirmwareReport, ReleaseId, ReleaseState};
use crate::view::RegistryView;

type Verdict = Result<Effect, Rejection>;

/// The verdict on a firmware command; `None` for any other command.
pub(super) fn apply<V: RegistryView>(
    view: &V,
    proposal: &Proposal,
) -> Result<Option<Verdict>, V::Error> {
    let at = proposal.at_ms;
    let verdict = match &proposal.command {
        Command::BeginFirmwareUpload {
            signer,
            cose,
            upload,
        } => begin(view, signer, cose, *upload, at)?,
        Command::PutFirmwareChunk {
            release,
            upload,
            index,
            bytes,
        } => put_chunk(view, release, *upload, *index, bytes, at)?,
        Command::FinishFirmwareUpload { release, upload } => staged(view, release, *upload)?
            .and_then(|mut r| {
                if r.chunks != r.chunk_count() {
                    return Err(Rejection::UploadConflict(format!(
                        "upload of {release} has {} of {} chunks",
                        r.chunks,
                        r.chunk_count()
                    )));
                }
                r.state = ReleaseState::Complete;
                r.updated_ms = at;
                Ok(release_effect(r, None, None))
            }),
        Command::AbortFirmwareUpload { release, upload } => {
            staged(view, release, *upload)?.map(|r| Effect::FirmwareRelease {
                id: release.clone(),
                after: None,
                chunk: None,
                drop_upload: Some(r.upload),
            })
        }
        Command::RemoveFirmwareRelease { release } => match view.firmware_release(release)? {
            Some(r) if r.is_complete() => {
                if view.rollout(release)?.is_some() {
                    Err(Rejection::ReleaseInRollout(release.to_string()))
                } else {
                    Ok(Effect::FirmwareRelease {
                        id: release.clone(),
                        after: None,
                        chunk: None,
                        drop_upload: Some(r.upload),
                    })
                }
            }
            _ => Err(Rejection::ReleaseNotFound(release.to_string())),
        },
        Command::SetRollout(rollout) => match view.firmware_release(&rollout.release)? {
            Some(r) if r.is_complete() => {
                let mut after = rollout.clone();
                after.created_ms = view
                    .rollout(&rollout.release)?
                    .map_or(at, |before| before.created_ms);
                after.updated_ms = at;
                Ok(Effect::Rollout {
                    release: rollout.release.clone(),
                    after: Some(after),
                })
            }
            _ => Err(Rejection::ReleaseNotFound(rollout.release.to_string())),
        },
        Command::SetRolloutPaused { release, paused } => match view.rollout(release)? {
            Some(mut r) => {
                r.paused = *paused;
                r.updated_ms = at;
                Ok(Effect::Rollout {
                    release: release.clone(),
                    after: Some(r),
                })
            }
            None => Err(Rejection::RolloutNotFound(release.to_string())),
        },
        Command::RemoveRollout { release } => match view.rollout(release)? {
            Some(_) => Ok(Effect::Rollout {
                release: release.clone(),
                after: None,
            }),
            None => Err(Rejection::RolloutNotFound(release.to_string())),
        },
        Command::ReportFirmware {
            id,
            running,
            attempt,
        } => match view.device(id)? {
            Some(d) if d.status != DeviceStatus::Revoked => Ok(Effect::FirmwareReport {
                device: id.clone(),
                before: view.firmware_report(id)?,
                after: Some(FirmwareReport {
                    class: d.labels.class(),
                    running: running.clone(),
                    // Running what it tried is success: no attempt left.
                    attempt: attempt.clone().filter(|a| a.version != *running),
                    at_ms: at,
                }),
            }),
            Some(_) => Err(Rejection::Revoked(id.to_string())),
            None => Err(Rejection::DeviceNotFound(id.to_string())),
        },
        _ => return Ok(None),
    };
    Ok(Some(verdict))
}

fn release_effect(
    r: FirmwareRelease,
    chunk: Option<(u32, Vec<u8>)>,
    drop_upload: Option<u64>,
) -> Effect {
    Effect::FirmwareRelease {
        id: r.id(),
        after: Some(r),
        chunk,
        drop_upload,
    }
}

fn begin<V: RegistryView>(
    view: &V,
    signer: &crate::SignerName,
    cose: &[u8],
    upload: u64,
    at: u64,
) -> Result<Verdict, V::Error> {
    let Some(s) = view.firmware_signer(signer)? else {
        return Ok(Err(Rejection::SignerNotFound(signer.to_string())));
    };
    let manifest = match cose_sign1::verify(cose, &s.public_spki)
        .map_err(|e| e.to_string())
        .and_then(|payload| Manifest::decode(&payload).map_err(|e| e.to_string()))
    {
        Ok(m) => m,
        Err(e) => return Ok(Err(Rejection::FirmwareRefused(format!("manifest: {e}")))),
    };
    let staged = FirmwareRelease {
        manifest,
        cose: cose.to_vec(),
        signer: signer.clone(),
        upload,
        chunks: 0,
        state: ReleaseState::Staging,
        started_ms: at,
        updated_ms: at,
    };
    let id = staged.id();
    let replaced = match view.firmware_release(&id)? {
        None => None,
        Some(r) if r.is_complete() => return Ok(Err(Rejection::ReleaseExists(id.to_string()))),
        // The same upload asked again (a retried proposal): as it is.
        Some(r) if r.upload == upload => return Ok(Ok(release_effect(r, None, None))),
        // Another upload, staged: the newer one replaces it (its uploader
        // is told at its next chunk), so a retry after a crash never waits.
        Some(r) => Some(r.upload),
    };
    Ok(Ok(release_effect(staged, None, replaced)))
}

/// The staged release `release` of upload `upload`, or why there is none.
fn staged<V: RegistryView>(
    view: &V,
    release: &ReleaseId,
    upload: u64,
) -> Result<Result<FirmwareRelease, Rejection>, V::Error> {
    Ok(match view.firmware_release(release)? {
        Some(r) if r.upload == upload && r.state == ReleaseState::Staging => Ok(r),
        Some(r) if r.upload == upload => Err(Rejection::UploadConflict(format!(
            "the upload of {release} is already finished"
        ))),
        Some(_) => Err(Rejection::UploadConflict(format!(
            "this upload of {release} was replaced by another"
        ))),
        None => Err(Rejection::ReleaseNotFound(release.to_string())),
    })
}

fn put_chunk<V: RegistryView>(
    view: &V,
    release: &ReleaseId,
    upload: u64,
    index: u32,
    bytes: &[u8],
    at: u64,
) -> Result<Verdict, V::Error> {
    let mut r = match staged(view, release, upload)? {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    if index < r.chunks {
        // A retried chunk already in: as it is.
        return Ok(Ok(release_effect(r, None, None)));
    }
    if index > r.chunks {
        return Ok(Err(Rejection::UploadConflict(format!(
            "chunk {index} of {release} before chunk {}",
            r.chunks
        ))));
    }
    if bytes.len() != r.chunk_len(index) {
        return Ok(Err(Rejection::FirmwareRefused(format!(
            "chunk {index} of {release} is {} bytes; the image's size makes it {}",
            bytes.len(),
            r.chunk_len(index)
        ))));
    }
    r.chunks += 1;
    r.updated_ms = at;
    Ok(Ok(release_effect(r, Some((index, bytes.to_vec())), None)))
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use crate::command::{Command, NewDevice, Proposal};
    use crate::error::Rejection;
    use crate::firmware_manifest::Manifest;
    use crate::firmware_release::{
        Attempt, AttemptState, ReleaseId, ReleaseState, Rollout, CHUNK_SIZE,
    };
    use crate::firmware_version::FirmwareVersion;
    use crate::labels::{Labels, CLASS_LABEL};
    use crate::mem::MemRegistry;
    use crate::names::{DeviceClass, DeviceId, SignerName, TenantId};
    use crate::view::RegistryView;
    use crate::FirmwareSigner;

    fn v(text: &str) -> FirmwareVersion {
        FirmwareVersion::parse("version", text).unwrap()
    }

    struct Vendor {
        pkcs8: Vec<u8>,
    }

    impl Vendor {
        fn new(n: u8) -> Self {
            use p256::pkcs8::EncodePrivateKey;
            let key = p256::SecretKey::from_slice(&[n; 32]).unwrap();
            Self {
                pkcs8: key.to_pkcs8_der().unwrap().as_bytes().to_vec(),
            }
        }

        fn signer(&self, name: &str) -> FirmwareSigner {
            use p256::pkcs8::{DecodePrivateKey, EncodePublicKey};
            let key = p256::SecretKey::from_pkcs8_der(&self.pkcs8).unwrap();
            FirmwareSigner {
                name: SignerName::parse("name", name).unwrap(),
                public_spki: key.public_key().to_public_key_der().unwrap().to_vec(),
                added_ms: 0,
            }
        }

        fn manifest(&self, version: &str, image: &[u8]) -> Vec<u8> {
            let m = Manifest {
                vendor: "acme".into(),
                class: DeviceClass::parse("class", "thermo").unwrap(),
                version: v(version),
                image_size: image.len() as u64,
                image_sha256: Sha256::digest(image).into(),
                min_version: None,
                image_uri: None,
            };
            crate::cose_sign1::sign(&m.encode(), &self.pkcs8).unwrap()
        }
    }

    fn at(at_ms: u64, command: Command) -> Proposal {
        Proposal {
            at_ms,
            by: crate::Author::new("tester", crate::Role::Admin, 1),
            command,
        }
    }

    fn release(version: &str) -> ReleaseId {
        ReleaseId {
            class: DeviceClass::parse("class", "thermo").unwrap(),
            version: v(version),
        }
    }

    fn acme() -> SignerName {
        SignerName::parse("signer", "acme").unwrap()
    }

    /// A registry that trusts `vendor` as "acme".
    fn registry(vendor: &Vendor) -> MemRegistry {
        let mut reg = MemRegistry::default();
        reg.execute_effect(&at(0, Command::AddFirmwareSigner(vendor.signer("acme"))))
            .unwrap();
        reg
    }

    /// Stages `image` as upload `upload` and sends its chunks.
    fn upload(reg: &mut MemRegistry, cose: &[u8], image: &[u8], upload: u64, now: u64) {
        reg.execute_effect(&at(
            now,
            Command::BeginFirmwareUpload {
                signer: acme(),
                cose: cose.to_vec(),
                upload,
            },
        ))
        .unwrap();
        let id = release("1.4.2");
        for (i, chunk) in image.chunks(CHUNK_SIZE).enumerate() {
            reg.execute_effect(&at(
                now,
                Command::PutFirmwareChunk {
                    release: id.clone(),
                    upload,
                    index: i as u32,
                    bytes: chunk.to_vec(),
                },
            ))
            .unwrap();
        }
    }

    #[test]
    fn a_release_is_visible_only_once_every_chunk_is_in() {
        let vendor = Vendor::new(7);
        let mut reg = registry(&vendor);
        let image: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let cose = vendor.manifest("1.4.2", &image);
        upload(&mut reg, &cose, &image[..CHUNK_SIZE * 2], 9, 1);
        let id = release("1.4.2");
        let finish = |upload| {
            at(
                2,
                Command::FinishFirmwareUpload {
                    release: id.clone(),
                    upload,
                },
            )
        };
        // Two of four chunks: not finishable, still staged.
        assert!(matches!(
            reg.execute_effect(&finish(9)),
            Err(Rejection::UploadConflict(m)) if m.contains("2 of 4")
        ));
        // Out of order, wrong length, another upload: refused.
        let chunk = |index, bytes: &[u8], upload| {
            at(
                2,
                Command::PutFirmwareChunk {
                    release: id.clone(),
                    upload,
                    index,
                    bytes: bytes.to_vec(),
                },
            )
        };
        assert!(reg
            .execute_effect(&chunk(3, &image[3 * CHUNK_SIZE..], 9))
            .is_err());
        assert!(matches!(
            reg.execute_effect(&chunk(2, &image[..10], 9)),
            Err(Rejection::FirmwareRefused(_))
        ));
        assert!(reg
            .execute_effect(&chunk(2, &image[2 * CHUNK_SIZE..3 * CHUNK_SIZE], 8))
            .is_err());
        // A retried chunk already in changes nothing.
        reg.execute_effect(&chunk(1, &image[CHUNK_SIZE..2 * CHUNK_SIZE], 9))
            .unwrap();
        for i in 2..4u32 {
            let s = i as usize * CHUNK_SIZE;
            reg.execute_effect(&chunk(i, &image[s..(s + CHUNK_SIZE).min(image.len())], 9))
                .unwrap();
        }
        reg.execute_effect(&finish(9)).unwrap();
        let r = reg.firmware_release(&id).unwrap().unwrap();
        assert_eq!(r.state, ReleaseState::Complete);
        assert_eq!(reg.firmware_image(&id).unwrap(), image);
        // Complete: a second upload of it is refused.
        let again = at(
            3,
            Command::BeginFirmwareUpload {
                signer: acme(),
                cose,
                upload: 10,
            },
        );
        assert!(matches!(
            reg.execute_effect(&again),
            Err(Rejection::ReleaseExists(_))
        ));
    }

    #[test]
    fn a_manifest_that_does_not_verify_stages_nothing() {
        let vendor = Vendor::new(7);
        let mut reg = registry(&vendor);
        let forged = Vendor::new(8).manifest("1.4.2", b"image");
        let begin = at(
            1,
            Command::BeginFirmwareUpload {
                signer: acme(),
                cose: forged,
                upload: 1,
            },
        );
        assert!(matches!(
            reg.execute_effect(&begin),
            Err(Rejection::FirmwareRefused(m)) if m.contains("signature")
        ));
        let unknown = at(
            1,
            Command::BeginFirmwareUpload {
                signer: SignerName::parse("s", "other").unwrap(),
                cose: vendor.manifest("1.4.2", b"image"),
                upload: 1,
            },
        );
        assert!(matches!(
            reg.execute_effect(&unknown),
            Err(Rejection::SignerNotFound(_))
        ));
        assert!(reg.firmware_release(&release("1.4.2")).unwrap().is_none());
    }

    #[test]
    fn a_new_upload_replaces_a_staged_one_and_its_chunks() {
        let vendor = Vendor::new(7);
        let mut reg = registry(&vendor);
        let image = vec![5u8; CHUNK_SIZE + 10];
        let cose = vendor.manifest("1.4.2", &image);
        upload(&mut reg, &cose, &image[..CHUNK_SIZE], 1, 1000);
        assert_eq!(reg.firmware_chunks(), 1);
        let begin = |now, upload| {
            at(
                now,
                Command::BeginFirmwareUpload {
                    signer: acme(),
                    cose: cose.clone(),
                    upload,
                },
            )
        };
        reg.execute_effect(&begin(2000, 2)).unwrap();
        assert_eq!(reg.firmware_chunks(), 0);
        // The replaced uploader's next chunk is refused.
        let late = at(
            2001,
            Command::PutFirmwareChunk {
                release: release("1.4.2"),
                upload: 1,
                index: 1,
                bytes: vec![5; 10],
            },
        );
        assert!(matches!(
            reg.execute_effect(&late),
            Err(Rejection::UploadConflict(m)) if m.contains("replaced")
        ));
        let r = reg.firmware_release(&release("1.4.2")).unwrap().unwrap();
        assert_eq!((r.upload, r.chunks), (2, 0));
        // Aborted: nothing left.
        reg.execute_effect(&at(
            5,
            Command::AbortFirmwareUpload {
                release: release("1.4.2"),
                upload: 2,
            },
        ))
        .unwrap();
        assert!(reg.firmware_release(&release("1.4.2")).unwrap().is_none());
    }

    #[test]
    fn rollouts_need_a_complete_release_and_keep_it() {
        let vendor = Vendor::new(7);
        let mut reg = registry(&vendor);
        let image = vec![1u8; 10];
        let cose = vendor.manifest("1.4.2", &image);
        upload(&mut reg, &cose, &image, 1, 1);
        let id = release("1.4.2");
        let rollout = Rollout {
            release: id.clone(),
            labels: vec![],
            percent: 10,
            paused: false,
            created_ms: 0,
            updated_ms: 0,
        };
        assert!(matches!(
            reg.execute_effect(&at(2, Command::SetRollout(rollout.clone()))),
            Err(Rejection::ReleaseNotFound(_))
        ));
        reg.execute_effect(&at(
            2,
            Command::FinishFirmwareUpload {
                release: id.clone(),
                upload: 1,
            },
        ))
        .unwrap();
        reg.execute_effect(&at(3, Command::SetRollout(rollout)))
            .unwrap();
        reg.execute_effect(&at(
            4,
            Command::SetRolloutPaused {
                release: id.clone(),
                paused: true,
            },
        ))
        .unwrap();
        let r = reg.rollout(&id).unwrap().unwrap();
        assert!(r.paused);
        assert_eq!((r.created_ms, r.updated_ms), (3, 4));
        let remove = at(
            5,
            Command::RemoveFirmwareRelease {
                release: id.clone(),
            },
        );
        assert!(matches!(
            reg.execute_effect(&remove),
            Err(Rejection::ReleaseInRollout(_))
        ));
        reg.execute_effect(&at(
            5,
            Command::RemoveRollout {
                release: id.clone(),
            },
        ))
        .unwrap();
        reg.execute_effect(&remove).unwrap();
        assert!(reg.firmware_release(&id).unwrap().is_none());
        assert_eq!(reg.firmware_chunks(), 0);
    }

    #[test]
    fn a_report_records_the_class_and_clears_a_finished_attempt() {
        let mut reg = MemRegistry::default();
        let d = DeviceId::parse("id", "d1").unwrap();
        reg.execute_effect(&at(
            1,
            Command::Create(NewDevice {
                id: d.clone(),
                tenant: TenantId::default_tenant(),
                labels: Labels::new("labels", [(CLASS_LABEL, "thermo")]).unwrap(),
                gateway: None,
                credentials: vec![],
            }),
        ))
        .unwrap();
        let report = |running: &str, attempt: Option<(&str, AttemptState)>| {
            at(
                5,
                Command::ReportFirmware {
                    id: d.clone(),
                    running: v(running),
                    attempt: attempt.map(|(version, state)| Attempt {
                        version: v(version),
                        state,
                    }),
                },
            )
        };
        reg.execute_effect(&report("1.3.0", Some(("1.4.2", AttemptState::Downloading))))
            .unwrap();
        let r = reg.firmware_report(&d).unwrap().unwrap();
        assert_eq!(r.class.unwrap().as_str(), "thermo");
        assert_eq!(r.attempt.unwrap().state, AttemptState::Downloading);
        reg.execute_effect(&report("1.4.2", Some(("1.4.2", AttemptState::Downloading))))
            .unwrap();
        let r = reg.firmware_report(&d).unwrap().unwrap();
        assert_eq!((r.running, r.attempt, r.at_ms), (v("1.4.2"), None, 5));
        // The report goes with its device.
        reg.execute_effect(&at(6, Command::Delete { id: d.clone() }))
            .unwrap();
        assert!(reg.firmware_report(&d).unwrap().is_none());
        assert!(matches!(
            reg.execute_effect(&report("1.4.2", None)),
            Err(Rejection::DeviceNotFound(_))
        ));
    }
}
