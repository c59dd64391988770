//! The cipher suites this engine speaks: RFC 7925's mandatory two (PSK and
//! ECDHE-ECDSA with AES-128-CCM_8) and their 16-byte-tag and GCM siblings.
//! All use the SHA-256 PRF, a 16-byte key, a 4-byte implicit IV and an
//! 8-byte explicit nonce.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CipherSuite {
    PskAes128Ccm8,
    PskAes128Ccm,
    PskAes128GcmSha256,
    EcdheEcdsaAes128Ccm8,
    EcdheEcdsaAes128Ccm,
    EcdheEcdsaAes128GcmSha256,
}

/// How records of a suite are protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aead {
    Ccm8,
    Ccm16,
    Gcm,
}

impl Aead {
    pub fn tag_len(self) -> usize {
        match self {
            Aead::Ccm8 => 8,
            Aead::Ccm16 | Aead::Gcm => 16,
        }
    }
}

/// Bytes a protected record adds to its plaintext: explicit nonce and tag.
pub const EXPLICIT_NONCE_LEN: usize = 8;

impl CipherSuite {
    /// The server's order of preference: the smallest records first, PSK
    /// (no public-key work) before ECDHE.
    pub const PREFERENCE: [CipherSuite; 6] = [
        CipherSuite::PskAes128Ccm8,
        CipherSuite::PskAes128Ccm,
        CipherSuite::PskAes128GcmSha256,
        CipherSuite::EcdheEcdsaAes128Ccm8,
        CipherSuite::EcdheEcdsaAes128Ccm,
        CipherSuite::EcdheEcdsaAes128GcmSha256,
    ];

    pub fn id(self) -> u16 {
        match self {
            CipherSuite::PskAes128Ccm8 => 0xc0a8,
            CipherSuite::PskAes128Ccm => 0xc0a4,
            CipherSuite::PskAes128GcmSha256 => 0x00a8,
            CipherSuite::EcdheEcdsaAes128Ccm8 => 0xc0ae,
            CipherSuite::EcdheEcdsaAes128Ccm => 0xc0ac,
            CipherSuite::EcdheEcdsaAes128GcmSha256 => 0xc02b,
        }
    }

    pub fn from_id(id: u16) -> Option<Self> {
        Self::PREFERENCE.into_iter().find(|s| s.id() == id)
    }

    /// Its place in [`Self::PREFERENCE`]: an index for per-suite counters.
    pub fn index(self) -> usize {
        Self::PREFERENCE
            .iter()
            .position(|s| *s == self)
            .expect("every suite is in PREFERENCE")
    }

    pub fn is_psk(self) -> bool {
        matches!(
            self,
            CipherSuite::PskAes128Ccm8
                | CipherSuite::PskAes128Ccm
                | CipherSuite::PskAes128GcmSha256
        )
    }

    pub fn aead(self) -> Aead {
        match self {
            CipherSuite::PskAes128Ccm8 | CipherSuite::EcdheEcdsaAes128Ccm8 => Aead::Ccm8,
            CipherSuite::PskAes128Ccm | CipherSuite::EcdheEcdsaAes128Ccm => Aead::Ccm16,
            CipherSuite::PskAes128GcmSha256 | CipherSuite::EcdheEcdsaAes128GcmSha256 => Aead::Gcm,
        }
    }

    /// Bytes a protected record adds to its plaintext.
    pub fn overhead(self) -> usize {
        EXPLICIT_NONCE_LEN + self.aead().tag_len()
    }

    /// The IANA name, for logs and the session audit.
    pub fn name(self) -> &'static str {
        match self {
            CipherSuite::PskAes128Ccm8 => "TLS_PSK_WITH_AES_128_CCM_8",
            CipherSuite::PskAes128Ccm => "TLS_PSK_WITH_AES_128_CCM",
            CipherSuite::PskAes128GcmSha256 => "TLS_PSK_WITH_AES_128_GCM_SHA256",
            CipherSuite::EcdheEcdsaAes128Ccm8 => "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8",
            CipherSuite::EcdheEcdsaAes128Ccm => "TLS_ECDHE_ECDSA_WITH_AES_128_CCM",
            CipherSuite::EcdheEcdsaAes128GcmSha256 => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_unknown_ids_are_none() {
        for s in CipherSuite::PREFERENCE {
            assert_eq!(CipherSuite::from_id(s.id()), Some(s));
        }
        assert_eq!(CipherSuite::from_id(0x002f), None);
        assert_eq!(CipherSuite::PskAes128Ccm8.overhead(), 16);
        assert_eq!(CipherSuite::EcdheEcdsaAes128GcmSha256.overhead(), 24);
    }
}
