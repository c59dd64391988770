//! Which devices run which firmware: `Firmware/Report` from the
//! per-version index, and a rollout's status counts.

use idreg_core::firmware_catalog::VersionCount;
use idreg_core::firmware_release::{bucket, AttemptState};
use idreg_core::firmware_version::{FirmwareVersion, VersionSelector};
use idreg_core::labels::CLASS_LABEL;
use idreg_core::{DeviceDirectory, DeviceFilter, FirmwareCatalog, Rollout};
use idreg_proto::v1 as pb;
use tonic::Status;

use crate::convert;
use crate::firmware_service::rollout_to_proto;
use crate::page_token;
use crate::status::{invalid, storage};

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// Counts per matching version and a page of the devices running them, in
/// (class, version, id) order.
pub fn report<R: FirmwareCatalog>(
    reader: &R,
    req: &pb::FirmwareReportRequest,
) -> Result<pb::FirmwareReportResponse, Status>
where
    R::Error: std::fmt::Display,
{
    let selector = match req.version.trim() {
        "" => None,
        v => Some(VersionSelector::parse("version", v).map_err(invalid)?),
    };
    let class = match req.device_class.as_str() {
        "" => None,
        c => Some(
            idreg_core::DeviceClass::parse("device_class", c)
                .map_err(invalid)?
                .to_string(),
        ),
    };
    let mut counts: Vec<(VersionCount, FirmwareVersion)> = reader
        .firmware_version_counts(class.as_deref())
        .map_err(storage)?
        .into_iter()
        .filter_map(|c| {
            let v = FirmwareVersion::parse("version", &c.version).ok()?;
            selector
                .as_ref()
                .is_none_or(|s| s.matches(&v))
                .then_some((c, v))
        })
        .collect();
    counts.sort_by(|a, b| (&a.0.class, &a.1).cmp(&(&b.0.class, &b.1)));

    let filter = page_token::filter_digest(&["firmware-report", &req.version, &req.device_class]);
    // Where the last page stopped: class, version, device.
    let from = match req.page_token.as_str() {
        "" => None,
        t => {
            let last = page_token::decode(filter, t).map_err(Status::invalid_argument)?;
            let mut parts = last.splitn(3, '\0');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(c), Some(v), Some(id)) => Some((c.to_owned(), v.to_owned(), id.to_owned())),
                _ => return Err(Status::invalid_argument("page_token: malformed")),
            }
        }
    };
    let mut out = pb::FirmwareReportResponse {
        counts: if from.is_none() {
            counts
                .iter()
                .map(|(c, _)| pb::VersionCount {
                    device_class: c.class.clone(),
                    version: c.version.clone(),
                    devices: c.devices,
                })
                .collect()
        } else {
            Vec::new()
        },
        ..Default::default()
    };
    if req.counts_only {
        return Ok(out);
    }
    let page = match req.page_size as usize {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    let start = match &from {
        Some((c, v, _)) => counts
            .iter()
            .position(|(k, _)| (&k.class, &k.version) == (c, v))
            .unwrap_or(counts.len()),
        None => 0,
    };
    for (c, _) in &counts[start..] {
        let after = from
            .as_ref()
            .filter(|(fc, fv, _)| (fc, fv) == (&c.class, &c.version))
            .map(|(_, _, id)| id.as_str());
        let want = page - out.devices.len();
        let devices = reader
            .devices_on_version(&c.class, &c.version, after, want)
            .map_err(storage)?;
        out.devices
            .extend(devices.into_iter().map(|d| pb::ReportedDevice {
                id: d.id,
                device_class: c.class.clone(),
                version: c.version.clone(),
                reported_at: Some(convert::timestamp(d.at_ms)),
            }));
        if out.devices.len() >= page {
            let last = out.devices.last().expect("a full page");
            out.next_page_token = page_token::encode(
                filter,
                &format!("{}\0{}\0{}", last.device_class, last.version, last.id),
            );
            break;
        }
    }
    Ok(out)
}

/// A rollout's counts. Targeted walks the devices of its class (through
/// the label index); the others are counts the reports keep.
pub fn rollout_status<R: FirmwareCatalog + DeviceDirectory>(
    reader: &R,
    rollout: &Rollout,
) -> Result<pb::RolloutStatus, Status>
where
    R::Error: std::fmt::Display,
{
    let class = rollout.release.class.as_str();
    let version = rollout.release.version.to_string();
    let mut labels = vec![(CLASS_LABEL.to_owned(), class.to_owned())];
    labels.extend(rollout.labels.iter().cloned());
    let filter = DeviceFilter {
        labels,
        ..Default::default()
    };
    let mut targeted = 0u64;
    let mut after: Option<String> = None;
    loop {
        let page = reader
            .list(&filter, after.as_deref(), 1000)
            .map_err(storage)?;
        targeted += page
            .devices
            .iter()
            .filter(|d| bucket(d.id.as_str()) < rollout.percent)
            .count() as u64;
        match (page.more, page.devices.last()) {
            (true, Some(d)) => after = Some(d.id.to_string()),
            _ => break,
        }
    }
    let installed = reader
        .firmware_version_counts(Some(class))
        .map_err(storage)?
        .into_iter()
        .find(|c| c.version == version)
        .map_or(0, |c| c.devices);
    let attempts = |state| {
        reader
            .firmware_attempts(class, &version, state)
            .map_err(storage)
    };
    Ok(pb::RolloutStatus {
        rollout: Some(rollout_to_proto(rollout)),
        targeted,
        downloading: attempts(AttemptState::Downloading)?,
        installed,
        failed: attempts(AttemptState::Failed)?,
    })
}
