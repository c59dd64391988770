//! Who a caller is: a back-office principal with a role, or a cluster node,
//! read from the SAN URIs of its certificate (SPIFFE-style names):
//! `urn:idreg:role:reader|operator|admin` and `urn:idreg:node:N`.
//!
//! Roles nest: `reader` ⊂ `operator` ⊂ `admin`. A certificate naming more
//! than one role gets the largest; a node certificate names exactly one node.

use std::fmt;

use serde::{Deserialize, Serialize};

/// SAN URI prefix of a role.
pub const ROLE_URI_PREFIX: &str = "urn:idreg:role:";
/// SAN URI prefix of a node id.
pub const NODE_URI_PREFIX: &str = "urn:idreg:node:";

/// Ordered by what a role may do: `Device < Reader < Operator < Admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    Reader,
    Operator,
    Admin,
    /// A device acting for itself on the device front (enrollment). Never
    /// read from a back-office certificate; it may call no RPC.
    Device,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Device => "device",
        }
    }

    fn rank(self) -> u8 {
        match self {
            Role::Device => 0,
            Role::Reader => 1,
            Role::Operator => 2,
            Role::Admin => 3,
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "reader" => Some(Role::Reader),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn uri(self) -> String {
        format!("{ROLE_URI_PREFIX}{}", self.as_str())
    }
}

// Declared after the others so stored records keep their encoding; ranked
// below them.
impl PartialOrd for Role {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Role {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A back-office caller: the certificate's subject CN and its role.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

/// Who sent a request, as the transport authenticated it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Caller {
    /// A back-office client with a role.
    Client(Principal),
    /// A cluster node, by its node certificate.
    Node(u64),
    /// `--insecure` (development): nobody was authenticated.
    Insecure,
}

impl Caller {
    /// The principal recorded for a write this caller makes.
    pub fn principal(&self) -> Principal {
        match self {
            Caller::Client(p) => p.clone(),
            Caller::Node(id) => Principal {
                name: format!("node-{id}"),
                role: Role::Admin,
            },
            Caller::Insecure => Principal {
                name: "insecure".into(),
                role: Role::Admin,
            },
        }
    }
}

/// What a certificate says about its holder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertIdentity {
    pub common_name: Option<String>,
    /// The largest role named, if any.
    pub role: Option<Role>,
    /// Node ids named (a valid node certificate names one).
    pub node_ids: Vec<u64>,
}

impl CertIdentity {
    /// Reads a DER certificate. Only names are read: the chain was already
    /// verified by TLS.
    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("unreadable certificate: {e}"))?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        let mut id = CertIdentity {
            common_name,
            ..Default::default()
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let x509_parser::extensions::GeneralName::URI(uri) = name {
                    id.note_uri(uri);
                }
            }
        }
        Ok(id)
    }

    /// Reads the first certificate of a PEM document.
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let (_, p) = x509_parser::pem::parse_x509_pem(pem)
            .map_err(|e| format!("not a PEM certificate: {e}"))?;
        Self::from_der(&p.contents)
    }

    fn note_uri(&mut self, uri: &str) {
        if let Some(role) = uri.strip_prefix(ROLE_URI_PREFIX).and_then(Role::parse) {
            self.role = self.role.max(Some(role));
        } else if let Some(n) = uri
            .strip_prefix(NODE_URI_PREFIX)
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|n| *n > 0)
        {
            self.node_ids.push(n);
        }
    }

    /// The back-office principal, when the certificate names a role.
    pub fn principal(&self) -> Option<Principal> {
        Some(Principal {
            name: self.common_name.clone().unwrap_or_else(|| "?".into()),
            role: self.role?,
        })
    }

    /// The node, when the certificate names exactly one.
    pub fn node_id(&self) -> Option<u64> {
        match self.node_ids.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: &str, uris: &[&str]) -> Vec<u8> {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        for u in uris {
            p.subject_alt_names
                .push(rcgen::SanType::URI((*u).try_into().unwrap()));
        }
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        p.self_signed(&kp).unwrap().der().to_vec()
    }

    #[test]
    fn roles_nest() {
        assert!(Role::Reader < Role::Operator && Role::Operator < Role::Admin);
        assert!(Role::Device < Role::Reader);
        for r in [Role::Reader, Role::Operator, Role::Admin] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn a_client_certificate_names_its_principal() {
        let id = CertIdentity::from_der(&cert("billing", &["urn:idreg:role:operator"])).unwrap();
        assert_eq!(
            id.principal(),
            Some(Principal {
                name: "billing".into(),
                role: Role::Operator
            })
        );
        assert_eq!(id.node_id(), None);
        let two = cert("x", &["urn:idreg:role:reader", "urn:idreg:role:admin"]);
        assert_eq!(
            CertIdentity::from_der(&two).unwrap().role,
            Some(Role::Admin)
        );
    }

    #[test]
    fn no_role_or_an_unknown_one_is_no_principal() {
        for uris in [
            &[][..],
            &["urn:idreg:role:root"][..],
            &["urn:other:role:admin"][..],
        ] {
            let id = CertIdentity::from_der(&cert("x", uris)).unwrap();
            assert_eq!(id.principal(), None, "{uris:?}");
        }
    }

    #[test]
    fn a_node_certificate_names_one_node() {
        let id = CertIdentity::from_der(&cert("node-3", &["urn:idreg:node:3"])).unwrap();
        assert_eq!(id.node_id(), Some(3));
        let two = cert("n", &["urn:idreg:node:1", "urn:idreg:node:2"]);
        assert_eq!(CertIdentity::from_der(&two).unwrap().node_id(), None);
        let zero = cert("n", &["urn:idreg:node:0"]);
        assert_eq!(CertIdentity::from_der(&zero).unwrap().node_id(), None);
        assert!(CertIdentity::from_der(b"garbage").is_err());
    }
}
