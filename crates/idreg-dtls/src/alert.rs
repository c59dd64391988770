//! Alerts (RFC 5246 §7.2): what a failed handshake tells the peer, and the
//! close_notify that ends a session.

/// The alert descriptions this engine sends or understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertDescription {
    CloseNotify,
    UnexpectedMessage,
    BadRecordMac,
    HandshakeFailure,
    BadCertificate,
    UnsupportedCertificate,
    CertificateUnknown,
    IllegalParameter,
    AccessDenied,
    DecodeError,
    DecryptError,
    ProtocolVersion,
    InternalError,
    NoRenegotiation,
    UnknownPskIdentity,
    Other(u8),
}

impl AlertDescription {
    pub fn code(self) -> u8 {
        match self {
            AlertDescription::CloseNotify => 0,
            AlertDescription::UnexpectedMessage => 10,
            AlertDescription::BadRecordMac => 20,
            AlertDescription::HandshakeFailure => 40,
            AlertDescription::BadCertificate => 42,
            AlertDescription::UnsupportedCertificate => 43,
            AlertDescription::CertificateUnknown => 46,
            AlertDescription::IllegalParameter => 47,
            AlertDescription::AccessDenied => 49,
            AlertDescription::DecodeError => 50,
            AlertDescription::DecryptError => 51,
            AlertDescription::ProtocolVersion => 70,
            AlertDescription::InternalError => 80,
            AlertDescription::NoRenegotiation => 100,
            AlertDescription::UnknownPskIdentity => 115,
            AlertDescription::Other(c) => c,
        }
    }

    pub fn from_code(code: u8) -> Self {
        [
            AlertDescription::CloseNotify,
            AlertDescription::UnexpectedMessage,
            AlertDescription::BadRecordMac,
            AlertDescription::HandshakeFailure,
            AlertDescription::BadCertificate,
            AlertDescription::UnsupportedCertificate,
            AlertDescription::CertificateUnknown,
            AlertDescription::IllegalParameter,
            AlertDescription::AccessDenied,
            AlertDescription::DecodeError,
            AlertDescription::DecryptError,
            AlertDescription::ProtocolVersion,
            AlertDescription::InternalError,
            AlertDescription::NoRenegotiation,
            AlertDescription::UnknownPskIdentity,
        ]
        .into_iter()
        .find(|a| a.code() == code)
        .unwrap_or(AlertDescription::Other(code))
    }
}

pub const WARNING: u8 = 1;
pub const FATAL: u8 = 2;

/// An alert record's body.
pub fn body(level: u8, description: AlertDescription) -> [u8; 2] {
    [level, description.code()]
}

/// (level, description) of an alert record's body.
pub fn parse(body: &[u8]) -> Option<(u8, AlertDescription)> {
    match body {
        [level, desc] => Some((*level, AlertDescription::from_code(*desc))),
        _ => None,
    }
}
