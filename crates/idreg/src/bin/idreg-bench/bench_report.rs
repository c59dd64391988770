//! `idreg-bench fw-report`: the latency of `Firmware/Report` with DEVICES
//! devices that have each reported a version. A fresh RocksDB store in
//! `--data-dir` is filled through the state machine's own apply (what every
//! node runs on committed entries: one `Create` and one `ReportFirmware`
//! per device, in entries of 512), then the report is asked with the
//! service's own function: counts per matching version and the first page
//! of 100 devices, for several selectors.

use std::path::Path;
use std::time::Instant;

use idreg_core::firmware_version::FirmwareVersion;
use idreg_core::labels::CLASS_LABEL;
use idreg_core::{
    Author, Command, DeviceId, Kek, Labels, NewDevice, Proposal, ProposalBatch, Role, TenantId,
};
use idreg_proto::v1 as pb;
use idreg_store::{Store, TypeConfig};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use serde::Serialize;

use crate::bench::percentiles;
use crate::cli::OutputFormat;

/// Versions devices run, spread evenly: 1.0.0 to 1.(VERSIONS-1).0.
const VERSIONS: u64 = 20;
const ENTRY: usize = 512;

#[derive(Serialize)]
pub struct ReportLatency {
    pub name: &'static str,
    pub devices: usize,
    pub load_seconds: f64,
    pub selector: String,
    pub queries: usize,
    pub matching_devices: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

fn entry(index: u64, proposals: Vec<Proposal>) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(ProposalBatch::from(proposals)),
    }
}

pub async fn run(
    data_dir: &Path,
    devices: usize,
    queries: usize,
    output: OutputFormat,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !data_dir.join("db").exists(),
        "--data-dir {} holds a store already: give a fresh directory",
        data_dir.display()
    );
    let kek = Kek::from_bytes(&rand::random::<[u8; 32]>());
    let store = Store::open(data_dir, &kek)?;
    let mut sm = store.state_machine()?;
    let by = Author::new("bench", Role::Admin, 1);
    let labels = Labels::new("labels", [(CLASS_LABEL, "thermo")])?;
    let started = Instant::now();
    let mut index = 1u64;
    let mut batch = Vec::with_capacity(ENTRY);
    for i in 0..devices {
        let id = DeviceId::parse("id", &format!("dev-{i:08}"))?;
        let running = FirmwareVersion::parse("v", &format!("1.{}.0", i as u64 % VERSIONS))?;
        batch.push(Proposal {
            at_ms: 1,
            by: by.clone(),
            command: Command::Create(NewDevice {
                id: id.clone(),
                tenant: TenantId::default_tenant(),
                labels: labels.clone(),
                gateway: None,
                credentials: Vec::new(),
            }),
        });
        batch.push(Proposal {
            at_ms: 2,
            by: by.clone(),
            command: Command::ReportFirmware {
                id,
                running,
                attempt: None,
            },
        });
        if batch.len() >= ENTRY || i + 1 == devices {
            sm.apply([entry(index, std::mem::take(&mut batch))])
                .await
                .map_err(|e| anyhow::anyhow!("apply: {e}"))?;
            index += 1;
        }
    }
    store.flush()?;
    let load_seconds = started.elapsed().as_secs_f64();
    let reader = store.reader();
    for selector in ["<1.4.2", "=1.7.0", ">=1.15.0"] {
        let request = pb::FirmwareReportRequest {
            version: selector.into(),
            device_class: "thermo".into(),
            page_size: 100,
            ..Default::default()
        };
        let mut lat = Vec::with_capacity(queries);
        let mut matching = 0;
        for _ in 0..queries {
            let t = Instant::now();
            let r = idreg_api::firmware_report::report(&reader, &request)
                .map_err(|s| anyhow::anyhow!("report: {}", s.message()))?;
            lat.push(t.elapsed().as_micros() as u64);
            matching = r.counts.iter().map(|c| c.devices).sum();
            anyhow::ensure!(
                r.devices.len() == 100.min(matching as usize),
                "a page of {} devices",
                r.devices.len()
            );
        }
        let (_, p50_us, _, p99_us, max_us) = percentiles(lat);
        let s = ReportLatency {
            name: "fw-report",
            devices,
            load_seconds,
            selector: selector.into(),
            queries,
            matching_devices: matching,
            p50_us,
            p99_us,
            max_us,
        };
        match output {
            OutputFormat::Json => println!("{}", serde_json::to_string(&s)?),
            OutputFormat::Table => println!(
                "fw-report: {} devices (loaded in {:.0} s); '{}' matches {}: p50 {} µs p99 {} µs max {} µs",
                s.devices, s.load_seconds, s.selector, s.matching_devices, s.p50_us, s.p99_us, s.max_us
            ),
        }
    }
    Ok(())
}
