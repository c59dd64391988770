//! What the engine asks of its owner during a handshake: the PSK of an
//! identity, whether a public key may authenticate, and the server's own
//! certificate and key. Called synchronously, once per handshake, so each
//! answer should be a local lookup.

use p256::ecdsa::SigningKey;
use p256::pkcs8::EncodePublicKey;
use zeroize::Zeroizing;

/// Why a credential may not finish a handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("unknown credential")]
    Unknown,
    #[error("{0}")]
    NotAllowed(String),
    /// The store cannot decide now (e.g. this node has lost its leader for
    /// too long to trust its copy of the registry).
    #[error("cannot decide: {0}")]
    Unavailable(String),
}

/// The owner's registry of device credentials.
pub trait CredentialStore {
    /// Who a credential belongs to, carried in the session and its events.
    type Device: Clone + std::fmt::Debug;

    /// The PSK for `identity`, and its device, if it may authenticate now.
    fn psk(&self, identity: &[u8]) -> Result<(Self::Device, Zeroizing<Vec<u8>>), Refusal>;

    /// The device whose public key (`spki_der`: a P-256 SubjectPublicKeyInfo,
    /// from an X.509 certificate or a raw public key) may authenticate now.
    fn public_key(&self, spki_der: &[u8]) -> Result<Self::Device, Refusal>;

    /// The device presenting an X.509 certificate chain (leaf first, DER,
    /// as sent: unverified) whose leaf key is `spki_der`. By default, the
    /// key alone decides; a store that admits certificates by issuer (a
    /// manufacturer CA) looks at the chain.
    fn certificate(&self, spki_der: &[u8], chain: &[&[u8]]) -> Result<Self::Device, Refusal> {
        let _ = chain;
        self.public_key(spki_der)
    }
}

/// The server's certificate chain (leaf first, DER) and its P-256 key; also
/// its raw public key for RFC 7250 clients.
#[derive(Clone)]
pub struct ServerIdentity {
    pub chain: Vec<Vec<u8>>,
    pub key: SigningKey,
    pub spki: Vec<u8>,
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerIdentity({} certificates)", self.chain.len())
    }
}

impl ServerIdentity {
    pub fn new(chain: Vec<Vec<u8>>, key: SigningKey) -> Self {
        let spki = key
            .verifying_key()
            .to_public_key_der()
            .expect("a P-256 key has a SubjectPublicKeyInfo")
            .into_vec();
        Self { chain, key, spki }
    }
}
