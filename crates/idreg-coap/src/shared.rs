//! State every socket and session of the device front shares.

use std::sync::Arc;

use idreg_core::SessionCredential;
use idreg_store::SessionLog;
use webrtc_dtls::cipher_suite::CipherSuiteId;
use webrtc_dtls::config::{ClientAuthType, Config, ExtendedMasterSecretType};
use webrtc_dtls::crypto::Certificate;
use webrtc_dtls::Error as DtlsError;

use crate::authenticator::Authenticator;
use crate::front_config::FrontConfig;
use crate::live_sessions::LiveSessions;
use crate::stats::FrontStats;

/// Which credentials a socket accepts: one webrtc-dtls `Config` cannot carry
/// both PSK and certificates, so each family has its own socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialFamily {
    Psk,
    Certificate,
}

impl CredentialFamily {
    pub fn session_credential(self) -> SessionCredential {
        match self {
            CredentialFamily::Psk => SessionCredential::Psk,
            CredentialFamily::Certificate => SessionCredential::Certificate,
        }
    }
}

pub struct FrontShared {
    pub config: FrontConfig,
    pub auth: Authenticator,
    pub live: LiveSessions,
    pub stats: FrontStats,
    pub audit: SessionLog,
    psk_config: Config,
    cert_config: Option<Config>,
}

impl FrontShared {
    pub fn new(
        config: FrontConfig,
        auth: Authenticator,
        audit: SessionLog,
        server_cert: Option<Certificate>,
    ) -> Arc<Self> {
        let psk_config = psk_config(auth.clone());
        let cert_config = server_cert.map(|c| cert_config(auth.clone(), c));
        Arc::new(Self {
            config,
            auth,
            live: LiveSessions::default(),
            stats: FrontStats::default(),
            audit,
            psk_config,
            cert_config,
        })
    }

    /// A fresh handshake configuration for `family` (webrtc-dtls consumes one
    /// per connection).
    pub fn dtls_config(&self, family: CredentialFamily) -> Config {
        match family {
            CredentialFamily::Psk => self.psk_config.clone(),
            CredentialFamily::Certificate => self
                .cert_config
                .clone()
                .expect("certificate socket exists only with a server certificate"),
        }
    }
}

fn psk_config(auth: Authenticator) -> Config {
    Config {
        psk: Some(Arc::new(move |identity: &[u8]| {
            // webrtc-dtls takes a plain Vec and keeps it for the handshake;
            // our own copy is wiped here.
            auth.psk(identity).map(|(_, key)| key.to_vec()).map_err(|e| {
                tracing::debug!(identity = %String::from_utf8_lossy(identity), error = %e, "PSK refused");
                DtlsError::Other(e.to_string())
            })
        })),
        cipher_suites: vec![
            CipherSuiteId::Tls_Psk_With_Aes_128_Ccm_8,
            CipherSuiteId::Tls_Psk_With_Aes_128_Ccm,
            CipherSuiteId::Tls_Psk_With_Aes_128_Gcm_Sha256,
        ],
        extended_master_secret: ExtendedMasterSecretType::Request,
        ..Default::default()
    }
}

fn cert_config(auth: Authenticator, server: Certificate) -> Config {
    Config {
        certificates: vec![server],
        cipher_suites: vec![
            CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Ccm_8,
            CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Ccm,
            CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Gcm_Sha256,
        ],
        // Any certificate may be offered; the registry, not a CA, decides.
        client_auth: ClientAuthType::RequireAnyClientCert,
        verify_peer_certificate: Some(Arc::new(move |certs: &[Vec<u8>], _chains| {
            let leaf = certs
                .first()
                .ok_or_else(|| DtlsError::Other("no client certificate".into()))?;
            auth.certificate(leaf).map(|_| ()).map_err(|e| {
                tracing::debug!(error = %e, "certificate refused");
                DtlsError::Other(e.to_string())
            })
        })),
        extended_master_secret: ExtendedMasterSecretType::Request,
        ..Default::default()
    }
}
