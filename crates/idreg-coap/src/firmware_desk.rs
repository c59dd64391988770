//! Firmware on the device front: which release a device is offered (its
//! class's rollouts, what it last reported), the image read block by block
//! from the store, and the device's reports written through raft.

use coap_lite::ResponseType;
use idreg_coap_endpoint::resources::{FirmwareState, ImageWindow, Reply};
use idreg_core::firmware_release::{offer, Attempt, AttemptState};
use idreg_core::firmware_version::FirmwareVersion;
use idreg_core::{Command, DeviceId, FirmwareRelease, Principal, RegistryView, Role};
use idreg_store::RegistryReader;
use tracing::warn;

use crate::enrollment_desk::{AnswerSink, RegistryWriter};

#[derive(Clone)]
pub struct FirmwareDesk {
    reader: RegistryReader,
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

impl FirmwareDesk {
    pub fn new(reader: RegistryReader, writer: Option<RegistryWriter>) -> Self {
        Self { reader, writer }
    }

    /// The release offered to `device`, or 4.04 saying why there is none.
    pub fn offered(&self, device: &str) -> Result<FirmwareRelease, Reply> {
        let d = self
            .reader
            .get(device)
            .map_err(unavailable)?
            .ok_or_else(|| not_offered("device not registered"))?;
        let class = d.labels.class().ok_or_else(|| {
            not_offered("the device has no class (label idreg.io/class): no firmware is offered")
        })?;
        let running = self
            .reader
            .firmware_report(&d.id)
            .map_err(unavailable)?
            .map(|r| r.running);
        let rollouts = self
            .reader
            .rollouts_of_class(class.as_str())
            .map_err(unavailable)?;
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
