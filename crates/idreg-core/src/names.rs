//! Validated names: device ids, tenants and firmware signers. A value of these types is always
//! well formed, so code past the API edge never re-checks it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::limits::{MAX_ID_LEN, MAX_TENANT_LEN};

/// Characters allowed in ids: printable ASCII without spaces, quotes, slashes
/// or the NUL byte the store uses as a key separator.
fn id_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@')
}

fn check_name(field: &str, value: &str, max: usize) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(ValidationError::new(
            field,
            format!("is {} bytes long; the limit is {max}", value.len()),
        ));
    }
    if let Some(bad) = value.chars().find(|c| !id_char_ok(*c)) {
        return Err(ValidationError::new(
            field,
            format!("contains {bad:?}; allowed are ASCII letters, digits and - _ . : @"),
        ));
    }
    Ok(())
}

/// A validated name type: serialized as its text, checked when parsed and
/// when deserialized (a replicated or forwarded command can carry only
/// well-formed names, whoever encoded it).
macro_rules! validated_name {
    ($(#[$doc:meta])* $name:ident, $field:literal, |$f:ident, $v:ident| $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(into = "String", try_from = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(field: &str, value: &str) -> Result<Self, ValidationError> {
                Self::check(field, value)?;
                Ok(Self(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            fn check($f: &str, $v: &str) -> Result<(), ValidationError> {
                $check
            }
        }

        impl TryFrom<String> for $name {
            type Error = ValidationError;
            fn try_from(value: String) -> Result<Self, ValidationError> {
                Self::check($field, &value)?;
                Ok(Self(value))
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr) => {
        validated_name!($(#[$doc])* $name, $field, |field, value| check_name(field, value, $max));
    };
}

validated_name!(
    /// A device id: 1 to 128 bytes of `[A-Za-z0-9-_.:@]`.
    DeviceId,
    "id",
    MAX_ID_LEN
);

validated_name!(
    /// A tenant: 1 to 64 bytes of the same alphabet as device ids.
    TenantId,
    "tenant",
    MAX_TENANT_LEN
);

impl TenantId {
    pub const DEFAULT: &'static str = "default";

    /// The tenant for requests that name none.
    pub fn default_tenant() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

validated_name!(
    /// A firmware signer (a vendor): 1 to 64 bytes of the same alphabet.
    SignerName,
    "signer",
    MAX_TENANT_LEN
);

validated_name!(
    /// A device class (the firmware a device takes): 1 to 63 bytes of ASCII
    /// letters, digits and `-_.`, so it is also a label value
    /// ([`crate::labels::CLASS_LABEL`]).
    DeviceClass,
    "class",
    |field, value| {
        check_name(field, value, 63)?;
        match value.chars().find(|c| matches!(c, ':' | '@')) {
            Some(bad) => Err(ValidationError::new(
                field,
                format!("contains {bad:?}; allowed are ASCII letters, digits and - _ ."),
            )),
            None => Ok(()),
        }
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_the_documented_alphabet() {
        for ok in ["a", "sensor-1", "site:berlin.floor_2@x", &"x".repeat(128)] {
            assert!(DeviceId::parse("id", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn ids_refuse_empty_long_and_odd_characters() {
        let e = DeviceId::parse("id", "").unwrap_err();
        assert_eq!(e.field, "id");
        assert!(e.message.contains("empty"));
        let e = DeviceId::parse("id", &"x".repeat(129)).unwrap_err();
        assert!(e.message.contains("limit is 128"), "{e}");
        assert!(DeviceId::parse("id", &"x".repeat(300)).is_err());
        for bad in ["a b", "a/b", "a\0b", "é", "a\"b"] {
            assert!(DeviceId::parse("id", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn deserializing_checks_like_parsing() {
        let ok: DeviceId = serde_json::from_str("\"sensor-1\"").unwrap();
        assert_eq!(ok.as_str(), "sensor-1");
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"sensor-1\"");
        for bad in ["\"a b\"", "\"\"", "\"a\\u0000b\""] {
            assert!(serde_json::from_str::<DeviceId>(bad).is_err(), "{bad}");
        }
        let long = format!("\"{}\"", "t".repeat(65));
        assert!(serde_json::from_str::<TenantId>(&long).is_err());
    }

    #[test]
    fn tenants_are_shorter() {
        assert!(TenantId::parse("tenant", &"t".repeat(64)).is_ok());
        assert!(TenantId::parse("tenant", &"t".repeat(65)).is_err());
    }
}
