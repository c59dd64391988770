//! `idreg device import FILE.csv|FILE.jsonl`: bulk registration over the
//! streaming `ImportDevices` RPC, with a progress bar.
//!
//! The file is read twice: once to check every record (a malformed line is
//! reported with its line number and nothing is imported), once to stream.
//! Devices the server refuses (a duplicate, a bad key) are listed by line; the
//! others are registered.
//!
//! Fields (CSV header names, or JSON keys): id, tenant, labels, gateway,
//! psk_identity, psk (text), psk_hex, public_key_pem, certificate_pem. In CSV,
//! labels are `k=v;k=v`; in JSON Lines, an object.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{bail, Context};
use idreg_client::pb;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;

use crate::cli::OutputFormat;
use crate::device_cmd::rpc;

/// Devices per streamed message.
const CHUNK: usize = 500;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record<L> {
    id: String,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    labels: Option<L>,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    psk_identity: Option<String>,
    #[serde(default)]
    psk: Option<String>,
    #[serde(default)]
    psk_hex: Option<String>,
    #[serde(default)]
    public_key_pem: Option<String>,
    #[serde(default)]
    certificate_pem: Option<String>,
}

fn empty_none(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

impl<L> Record<L> {
    fn into_request(
        self,
        labels: HashMap<String, String>,
    ) -> anyhow::Result<pb::CreateDeviceRequest> {
        use pb::credential_input::Kind;
        let mut credentials = Vec::new();
        let secret = match (empty_none(self.psk), empty_none(self.psk_hex)) {
            (Some(t), None) => Some(t.into_bytes()),
            (None, Some(h)) => Some(hex::decode(h.trim()).context("psk_hex: not hex digits")?),
            (None, None) => None,
            (Some(_), Some(_)) => bail!("give psk or psk_hex, not both"),
        };
        match (empty_none(self.psk_identity), secret) {
            (Some(identity), Some(secret)) => credentials.push(pb::CredentialInput {
                kind: Some(Kind::Psk(pb::PskInput {
                    identity: identity.into_bytes(),
                    secret,
                })),
            }),
            (None, None) => {}
            (Some(_), None) => bail!("psk_identity needs psk or psk_hex"),
            (None, Some(_)) => bail!("psk/psk_hex need psk_identity"),
        }
        if let Some(pem) = empty_none(self.public_key_pem) {
            credentials.push(pb::CredentialInput {
                kind: Some(Kind::PublicKeyPem(pem)),
            });
        }
        if let Some(pem) = empty_none(self.certificate_pem) {
            credentials.push(pb::CredentialInput {
                kind: Some(Kind::CertificatePem(pem)),
            });
        }
        Ok(pb::CreateDeviceRequest {
            id: self.id,
            tenant: self.tenant.unwrap_or_default(),
            labels,
            gateway: self.gateway.unwrap_or_default(),
            credentials,
        })
    }
}

fn csv_labels(text: Option<String>) -> anyhow::Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for pair in text
        .unwrap_or_default()
        .split(';')
        .filter(|p| !p.trim().is_empty())
    {
        let (k, v) = pair
            .split_once('=')
            .with_context(|| format!("labels: {pair:?} is not key=value"))?;
        out.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    Ok(out)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    JsonLines,
}

fn format_of(path: &Path) -> anyhow::Result<Format> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("csv") => Ok(Format::Csv),
        Some("jsonl") | Some("ndjson") => Ok(Format::JsonLines),
        _ => bail!(
            "{}: name the file .csv or .jsonl so its format is known",
            path.display()
        ),
    }
}

/// Calls `each(line, request)` for every record; stops at the first error.
fn read_records(
    path: &Path,
    mut each: impl FnMut(u64, pb::CreateDeviceRequest) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    match format_of(path)? {
        Format::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .trim(csv::Trim::Headers)
                .from_reader(file);
            let headers = reader
                .headers()
                .with_context(|| format!("{}: no header line", path.display()))?
                .clone();
            let mut row = csv::StringRecord::new();
            loop {
                let line = reader.position().line();
                let more = reader
                    .read_record(&mut row)
                    .with_context(|| format!("{} line {line}", path.display()))?;
                if !more {
                    break;
                }
                let line = row.position().map(|p| p.line()).unwrap_or(line);
                let rec: Record<String> = row
                    .deserialize(Some(&headers))
                    .with_context(|| format!("{} line {line}", path.display()))?;
                let labels = csv_labels(rec.labels.clone())
                    .with_context(|| format!("{} line {line}", path.display()))?;
                let req = rec
                    .into_request(labels)
                    .with_context(|| format!("{} line {line}", path.display()))?;
                each(line, req)?;
            }
        }
        Format::JsonLines => {
            for (i, line) in BufReader::new(file).lines().enumerate() {
                let n = i as u64 + 1;
                let line = line.with_context(|| format!("{} line {n}", path.display()))?;
                if line.trim().is_empty() {
                    continue;
                }
                let rec: Record<HashMap<String, String>> = serde_json::from_str(&line)
                    .with_context(|| format!("{} line {n}", path.display()))?;
                let labels = rec.labels.clone().unwrap_or_default();
                let req = rec
                    .into_request(labels)
                    .with_context(|| format!("{} line {n}", path.display()))?;
                each(n, req)?;
            }
        }
    }
    Ok(())
}

pub async fn run(
    target: &idreg_client::Target,
    output: OutputFormat,
    path: &Path,
) -> anyhow::Result<()> {
    // Pass 1: every record must parse before anything is sent.
    let mut total = 0u64;
    read_records(path, |_, _| {
        total += 1;
        Ok(())
    })?;
    let mut client = target.registry().await?;
    let bar = if output == OutputFormat::Table {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} devices sent, {per_sec}, eta {eta}")
            .expect("valid template"),
    );
    // Pass 2: stream in chunks from a reader thread.
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::ImportDevicesRequest>(8);
    let file = path.to_path_buf();
    let progress = bar.clone();
    let reader = std::thread::spawn(move || -> anyhow::Result<Vec<u64>> {
        let mut lines = Vec::new();
        let mut chunk = Vec::with_capacity(CHUNK);
        read_records(&file, |line, req| {
            lines.push(line);
            chunk.push(req);
            if chunk.len() == CHUNK {
                progress.inc(CHUNK as u64);
                tx.blocking_send(pb::ImportDevicesRequest {
                    devices: std::mem::take(&mut chunk),
                })
                .map_err(|_| anyhow::anyhow!("the import stream closed early"))?;
            }
            Ok(())
        })?;
        if !chunk.is_empty() {
            progress.inc(chunk.len() as u64);
            let _ = tx.blocking_send(pb::ImportDevicesRequest { devices: chunk });
        }
        Ok(lines)
    });
    let result = client
        .import_devices(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    let lines = reader
        .join()
        .map_err(|_| anyhow::anyhow!("file reader panicked"))??;
    let r = result.map_err(rpc)?.into_inner();
    bar.finish_and_clear();
    let line_of = |i: u64| lines.get(i as usize).copied().unwrap_or(0);
    match output {
        OutputFormat::Json => println!(
            "{}",
            serde_json::json!({
                "created": r.created,
                "failed": r.failed,
                "errors": r.errors.iter().map(|e| serde_json::json!({
                    "line": line_of(e.index),
                    "id": e.id,
                    "code": format!("{:?}", tonic::Code::from(e.code)),
                    "message": e.message,
                })).collect::<Vec<_>>(),
            })
        ),
        OutputFormat::Table => {
            println!("created {} devices, {} failed", r.created, r.failed);
            for e in &r.errors {
                println!(
                    "  line {}: {} {:?}: {}",
                    line_of(e.index),
                    e.id,
                    tonic::Code::from(e.code),
                    e.message
                );
            }
            if r.failed > r.errors.len() as u64 {
                println!("  … and {} more", r.failed - r.errors.len() as u64);
            }
        }
    }
    if r.failed > 0 {
        bail!("{} of {} devices were not imported", r.failed, total);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_jsonl_records_become_requests() {
        let dir = tempfile::tempdir().unwrap();
        let csv_path = dir.path().join("d.csv");
        std::fs::write(
            &csv_path,
            "id,psk_identity,psk,labels\ns-1,s-1,correct horse battery,site=berlin;floor=2\ns-2,,,\n",
        )
        .unwrap();
        let mut got = Vec::new();
        read_records(&csv_path, |line, r| {
            got.push((line, r));
            Ok(())
        })
        .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1.labels["floor"], "2");
        assert_eq!(got[0].1.credentials.len(), 1);
        assert!(got[1].1.credentials.is_empty());

        let jl = dir.path().join("d.jsonl");
        std::fs::write(
            &jl,
            "{\"id\":\"j-1\",\"psk_identity\":\"j\",\"psk_hex\":\"00112233445566778899aabbccddeeff\",\"labels\":{\"a\":\"b\"}}\n\n{\"id\":\"j-2\",\"colour\":\"red\"}\n",
        )
        .unwrap();
        let e = read_records(&jl, |_, _| Ok(())).unwrap_err();
        assert!(format!("{e:#}").contains("line 3"), "{e:#}");
        assert!(format!("{e:#}").contains("colour"), "{e:#}");
        assert!(format_of(Path::new("x.txt")).is_err());
    }
}
