//! `idreg pki`: the cluster's certificates, made with rcgen. A PKI directory
//! holds two CAs and the certificates they issue:
//!
//! | file | what |
//! | --- | --- |
//! | `peer-ca.crt/.key` | signs node certificates; clients trust it for the server |
//! | `client-ca.crt/.key` | signs back-office client certificates (a role each) |
//! | `node-N.crt/.key` | node N: its host names, `urn:idreg:node:N`; server and client auth |
//! | `NAME.crt/.key` | a client: CN = NAME, `urn:idreg:role:ROLE`; client auth |
//!
//! Keys are P-256, written mode 0600 and never over an existing file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use idreg_core::principal::NODE_URI_PREFIX;
use idreg_core::Role;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

pub const PEER_CA: &str = "peer-ca";
pub const CLIENT_CA: &str = "client-ca";
/// The client certificate `pki init` makes for the operator.
pub const ADMIN: &str = "admin";

/// Years a CA is valid; leaf certificates get fewer.
const CA_YEARS: i32 = 10;
const LEAF_YEARS: i32 = 2;

/// The files of one PKI directory.
#[derive(Debug, Clone)]
pub struct PkiDir(pub PathBuf);

impl PkiDir {
    pub fn cert(&self, name: &str) -> PathBuf {
        self.0.join(format!("{name}.crt"))
    }

    pub fn key(&self, name: &str) -> PathBuf {
        self.0.join(format!("{name}.key"))
    }

    pub fn node_name(id: u64) -> String {
        format!("node-{id}")
    }

    pub fn exists(&self) -> bool {
        self.cert(PEER_CA).exists() && self.cert(CLIENT_CA).exists()
    }
}

fn this_year() -> i32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    1970 + (secs / 31_556_952) as i32
}

fn validity(p: &mut CertificateParams, years: i32) {
    let y = this_year();
    // From the start of last year: clocks in a fleet disagree.
    p.not_before = rcgen::date_time_ymd(y - 1, 1, 1);
    p.not_after = rcgen::date_time_ymd(y + years, 1, 1);
}

fn new_key() -> anyhow::Result<KeyPair> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("cannot generate a P-256 key")
}

fn write_pair(dir: &PkiDir, name: &str, cert_pem: &str, key: &KeyPair) -> anyhow::Result<()> {
    crate::private_file::create(&dir.key(name), key.serialize_pem().as_bytes())?;
    std::fs::write(dir.cert(name), cert_pem)
        .with_context(|| format!("cannot write {}", dir.cert(name).display()))
}

/// The subject of each CA: an issuer is rebuilt from it and the CA's key,
/// so issuing needs no certificate parsing.
fn ca_common_name(name: &str) -> &'static str {
    if name == PEER_CA {
        "idreg peer CA"
    } else {
        "idreg client CA"
    }
}

fn ca_params(name: &str) -> anyhow::Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name
        .push(DnType::CommonName, ca_common_name(name));
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut p, CA_YEARS);
    Ok(p)
}

fn make_ca(dir: &PkiDir, name: &str) -> anyhow::Result<()> {
    let p = ca_params(name)?;
    let key = new_key()?;
    let cert = p.self_signed(&key)?;
    write_pair(dir, name, &cert.pem(), &key)
}

fn issuer(dir: &PkiDir, ca: &str) -> anyhow::Result<Issuer<'static, KeyPair>> {
    let read = |p: PathBuf| {
        std::fs::read_to_string(&p).with_context(|| {
            format!(
                "cannot read {} (make the PKI with idreg pki init)",
                p.display()
            )
        })
    };
    let key = KeyPair::from_pem(&read(dir.key(ca))?).context("CA key")?;
    Ok(Issuer::new(ca_params(ca)?, key))
}

/// Issues node `id`'s certificate for `hosts` (DNS names or IPs).
pub fn issue_node(dir: &PkiDir, id: u64, hosts: &[String]) -> anyhow::Result<()> {
    if id == 0 {
        bail!("node ids start at 1");
    }
    if hosts.is_empty() {
        bail!("node {id}: give at least one host name or address");
    }
    let issuer = issuer(dir, PEER_CA)?;
    let mut p = CertificateParams::new(hosts.to_vec())
        .with_context(|| format!("node {id}: host names {hosts:?}"))?;
    p.distinguished_name
        .push(DnType::CommonName, format!("idreg node {id}"));
    p.subject_alt_names
        .push(SanType::URI(format!("{NODE_URI_PREFIX}{id}").try_into()?));
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut p, LEAF_YEARS);
    let key = new_key()?;
    let cert = p.signed_by(&key, &issuer)?;
    write_pair(dir, &PkiDir::node_name(id), &cert.pem(), &key)
}

/// Issues a back-office client certificate: CN `name`, role `role`.
pub fn issue_client(dir: &PkiDir, out: &PkiDir, name: &str, role: Role) -> anyhow::Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
    {
        bail!("client name {name:?}: use ASCII letters, digits and - _ . @");
    }
    let issuer = issuer(dir, CLIENT_CA)?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name.push(DnType::CommonName, name);
    p.subject_alt_names
        .push(SanType::URI(role.uri().try_into()?));
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut p, LEAF_YEARS);
    let key = new_key()?;
    let cert = p.signed_by(&key, &issuer)?;
    write_pair(out, name, &cert.pem(), &key)
}

/// `idreg pki init`: both CAs, every node's certificate and an admin client.
pub fn init(dir: &Path, nodes: &BTreeMap<u64, Vec<String>>) -> anyhow::Result<PkiDir> {
    let pki = PkiDir(dir.to_path_buf());
    if pki.cert(PEER_CA).exists() || pki.cert(CLIENT_CA).exists() {
        bail!(
            "{} already holds a PKI; use idreg pki node / client to add to it",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    make_ca(&pki, PEER_CA)?;
    make_ca(&pki, CLIENT_CA)?;
    for (id, hosts) in nodes {
        issue_node(&pki, *id, hosts)?;
    }
    issue_client(&pki, &pki, ADMIN, Role::Admin)?;
    Ok(pki)
}

/// Parses `ID=HOST[,HOST…]`.
pub fn parse_node_arg(text: &str) -> anyhow::Result<(u64, Vec<String>)> {
    let (id, hosts) = text
        .split_once('=')
        .with_context(|| format!("--node {text:?}: expected ID=HOST[,HOST…]"))?;
    let id = crate::initial_cluster::node_id(id)
        .with_context(|| format!("--node {text:?}: the node id must be a number from 1"))?;
    let hosts: Vec<String> = hosts
        .split(',')
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .collect();
    if hosts.is_empty() {
        bail!("--node {text:?}: name at least one host");
    }
    Ok((id, hosts))
}

/// Runs `idreg pki …`.
pub fn run(command: crate::cli::PkiCommand) -> anyhow::Result<()> {
    use crate::cli::PkiCommand;
    match command {
        PkiCommand::Init { out, nodes } => {
            let mut map = BTreeMap::new();
            for n in &nodes {
                let (id, hosts) = parse_node_arg(n)?;
                if map.insert(id, hosts).is_some() {
                    bail!("--node {id} given twice");
                }
            }
            let pki = init(&out, &map)?;
            println!(
                "made a PKI in {}: peer-ca, client-ca, {} and admin (role admin).\n\
                 Nodes: idreg serve --pki-dir {} …   Clients: --cacert {} --cert {} --key {}",
                out.display(),
                map.keys()
                    .map(|id| PkiDir::node_name(*id))
                    .collect::<Vec<_>>()
                    .join(", "),
                out.display(),
                pki.cert(PEER_CA).display(),
                pki.cert(ADMIN).display(),
                pki.key(ADMIN).display()
            );
        }
        PkiCommand::Client {
            name,
            role,
            pki_dir,
            out,
        } => {
            let role = Role::parse(&role).context("--role: reader, operator or admin")?;
            let pki = PkiDir(pki_dir);
            let out = PkiDir(out.unwrap_or_else(|| pki.0.clone()));
            issue_client(&pki, &out, &name, role)?;
            println!(
                "issued {} (role {role}) and {}",
                out.cert(&name).display(),
                out.key(&name).display()
            );
        }
        PkiCommand::Node { node, pki_dir } => {
            let (id, hosts) = parse_node_arg(&node)?;
            let pki = PkiDir(pki_dir);
            issue_node(&pki, id, &hosts)?;
            println!("issued {}", pki.cert(&PkiDir::node_name(id)).display());
        }
    }
    Ok(())
}

/// The development PKI in `DATA_DIR/pki`: made on first start for node
/// `node_id` on `hosts`, reused after (with a certificate added for another
/// node id, should a single node be started under one). Returns it and
/// whether anything was just made.
pub fn dev_pki(data_dir: &Path, node_id: u64, hosts: &[String]) -> anyhow::Result<(PkiDir, bool)> {
    let pki = PkiDir(data_dir.join("pki"));
    if !pki.exists() {
        let nodes = BTreeMap::from([(node_id, hosts.to_vec())]);
        return Ok((init(&pki.0, &nodes)?, true));
    }
    if pki.cert(&PkiDir::node_name(node_id)).exists() {
        return Ok((pki, false));
    }
    issue_node(&pki, node_id, hosts)?;
    Ok((pki, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_makes_cas_nodes_and_an_admin_whose_names_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let nodes = BTreeMap::from([
            (1, vec!["127.0.0.1".to_string(), "localhost".into()]),
            (2, vec!["idreg-1.peers".to_string()]),
        ]);
        let pki = init(&dir.path().join("pki"), &nodes).unwrap();
        for f in ["peer-ca", "client-ca", "node-1", "node-2", "admin"] {
            assert!(pki.cert(f).exists() && pki.key(f).exists(), "{f}");
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(pki.key("admin"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let identity = |name: &str| {
            idreg_core::CertIdentity::from_pem(&std::fs::read(pki.cert(name)).unwrap())
        };
        let admin = identity("admin").unwrap();
        assert_eq!(admin.principal().unwrap().role, Role::Admin);
        assert_eq!(admin.common_name.as_deref(), Some("admin"));
        let node = identity("node-2").unwrap();
        assert_eq!(node.node_id(), Some(2));
        assert_eq!(node.role, None);
        assert!(init(&pki.0, &nodes).is_err(), "never over an existing PKI");
        issue_client(&pki, &pki, "billing", Role::Reader).unwrap();
        assert!(issue_client(&pki, &pki, "billing", Role::Reader).is_err());
        assert!(issue_client(&pki, &pki, "a b", Role::Reader).is_err());
    }

    #[test]
    fn the_development_pki_follows_the_node_id() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = vec!["127.0.0.1".to_string()];
        let (pki, made) = dev_pki(dir.path(), 1, &hosts).unwrap();
        assert!(made && pki.cert("node-1").exists());
        assert!(!dev_pki(dir.path(), 1, &hosts).unwrap().1, "reused");
        let (pki, made) = dev_pki(dir.path(), 5, &hosts).unwrap();
        assert!(made && pki.cert("node-5").exists() && pki.cert("node-1").exists());
    }

    #[test]
    fn node_arguments() {
        assert_eq!(
            parse_node_arg("3=a.example,10.0.0.3").unwrap(),
            (3, vec!["a.example".into(), "10.0.0.3".into()])
        );
        assert!(parse_node_arg("0=a").is_err());
        assert!(parse_node_arg("x=a").is_err());
        assert!(parse_node_arg("3=").is_err());
        assert!(parse_node_arg("3").is_err());
    }
}
