//! Printing devices for people (table) and programs (JSON).

use std::collections::BTreeMap;

use idreg_client::pb;
use serde::Serialize;

#[derive(Serialize)]
pub struct CredentialView {
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

#[derive(Serialize)]
pub struct DeviceView {
    pub id: String,
    pub tenant: String,
    pub status: String,
    pub labels: BTreeMap<String, String>,
    pub gateway: Option<String>,
    pub gateway_role: bool,
    pub credentials: Vec<CredentialView>,
    pub created_at: String,
    pub updated_at: String,
    pub revision: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// A PSK identity as text when it is printable, else as `hex:…`.
pub fn show_identity(identity: &[u8]) -> String {
    match std::str::from_utf8(identity) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => s.to_owned(),
        _ => format!("hex:{}", hex::encode(identity)),
    }
}

/// RFC 3339 (UTC) of a protobuf timestamp.
pub fn rfc3339(ts: Option<&prost_types::Timestamp>) -> String {
    let Some(ts) = ts else { return String::new() };
    let days = ts.seconds.div_euclid(86_400);
    let secs = ts.seconds.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ts.nanos / 1_000_000
    )
}

impl From<&pb::Device> for DeviceView {
    fn from(d: &pb::Device) -> Self {
        let status = pb::DeviceStatus::try_from(d.status)
            .map(|s| {
                s.as_str_name()
                    .trim_start_matches("DEVICE_STATUS_")
                    .to_lowercase()
            })
            .unwrap_or_else(|_| d.status.to_string());
        let credentials = d
            .credentials
            .iter()
            .map(|c| match &c.kind {
                Some(pb::credential::Kind::Psk(p)) => CredentialView {
                    kind: "psk".into(),
                    identity: Some(show_identity(&p.identity)),
                    fingerprint: None,
                    subject: None,
                },
                Some(pb::credential::Kind::BootstrapPsk(p)) => CredentialView {
                    kind: format!("bootstrap-psk (group {})", p.group),
                    identity: Some(show_identity(&p.identity)),
                    fingerprint: None,
                    subject: None,
                },
                Some(pb::credential::Kind::PublicKey(k)) => CredentialView {
                    kind: k.source.clone(),
                    identity: None,
                    fingerprint: Some(k.fingerprint.clone()),
                    subject: (!k.certificate_subject.is_empty())
                        .then(|| k.certificate_subject.clone()),
                },
                None => CredentialView {
                    kind: "unknown".into(),
                    identity: None,
                    fingerprint: None,
                    subject: None,
                },
            })
            .collect();
        DeviceView {
            id: d.id.clone(),
            tenant: d.tenant.clone(),
            status,
            labels: d
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            gateway: (!d.gateway.is_empty()).then(|| d.gateway.clone()),
            gateway_role: d.gateway_role,
            credentials,
            created_at: rfc3339(d.created_at.as_ref()),
            updated_at: rfc3339(d.updated_at.as_ref()),
            revision: d.revision,
            revocation_reason: (d.status == pb::DeviceStatus::Revoked as i32)
                .then(|| d.revocation_reason.clone()),
            revoked_at: d.revoked_at.as_ref().map(|t| rfc3339(Some(t))),
        }
    }
}

impl DeviceView {
    fn credentials_text(&self) -> String {
        self.credentials
            .iter()
            .map(|c| match (&c.identity, &c.fingerprint) {
                (Some(i), _) => format!("psk:{i}"),
                (_, Some(f)) => format!("{}:{}…", c.kind, &f[..16.min(f.len())]),
                _ => c.kind.clone(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    fn labels_text(&self) -> String {
        self.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One device, every field on its own line.
pub fn device_detail(d: &DeviceView) -> String {
    let mut s = String::new();
    let mut line = |k: &str, v: &str| s.push_str(&format!("{k:<12} {v}\n"));
    line("id", &d.id);
    line("tenant", &d.tenant);
    line("status", &d.status);
    line("labels", &d.labels_text());
    line("gateway", d.gateway.as_deref().unwrap_or("-"));
    if d.gateway_role {
        line("role", "gateway (hub for its spokes)");
    }
    for c in &d.credentials {
        let text = match (&c.identity, &c.fingerprint) {
            (Some(i), _) => format!("psk identity={i}"),
            (_, Some(f)) => match &c.subject {
                Some(subject) => format!("{} sha256={f} subject={subject}", c.kind),
                None => format!("{} sha256={f}", c.kind),
            },
            _ => c.kind.clone(),
        };
        line("credential", &text);
    }
    line("created", &d.created_at);
    line("updated", &d.updated_at);
    line("revision", &d.revision.to_string());
    if let Some(reason) = &d.revocation_reason {
        line(
            "revoked",
            &format!("{} ({reason})", d.revoked_at.as_deref().unwrap_or("")),
        );
    }
    s
}

pub const TABLE_HEADER: &str = "ID\tTENANT\tSTATUS\tLABELS\tGATEWAY\tCREDENTIALS";

/// One device as a tab-separated table row.
pub fn device_row(d: &DeviceView) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}",
        d.id,
        d.tenant,
        d.status,
        d.labels_text(),
        d.gateway.as_deref().unwrap_or("-"),
        d.credentials_text()
    )
}
