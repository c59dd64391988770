//! Device labels: `key=value` pairs used to select devices (`--label site=berlin`).
//! Syntax follows Kubernetes labels, which operators already know.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::limits::{MAX_LABELS, MAX_LABEL_KEY_LEN, MAX_LABEL_VALUE_LEN};

/// A validated, sorted set of labels; deserializing validates too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    into = "BTreeMap<String, String>",
    try_from = "BTreeMap<String, String>"
)]
pub struct Labels(BTreeMap<String, String>);

impl TryFrom<BTreeMap<String, String>> for Labels {
    type Error = ValidationError;
    fn try_from(map: BTreeMap<String, String>) -> Result<Self, ValidationError> {
        if map.len() > MAX_LABELS {
            return Err(ValidationError::new(
                "labels",
                format!("more than {MAX_LABELS} labels"),
            ));
        }
        for (k, v) in &map {
            check_label("labels", k, v)?;
        }
        Ok(Self(map))
    }
}

impl From<Labels> for BTreeMap<String, String> {
    fn from(l: Labels) -> Self {
        l.0
    }
}

fn key_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')
}

fn value_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// Checks one label; `field` is the API's name for where it came from.
/// The reserved label that makes a device a gateway (hub): it may list its
/// spokes on the device front. Its only value is [`GATEWAY_ROLE`].
pub const ROLE_LABEL: &str = "idreg.io/role";
pub const GATEWAY_ROLE: &str = "gateway";

/// The reserved label that names a device's class: which firmware it
/// takes. Its value is a [`crate::names::DeviceClass`].
pub const CLASS_LABEL: &str = "idreg.io/class";

pub fn check_label(field: &str, key: &str, value: &str) -> Result<(), ValidationError> {
    if key == CLASS_LABEL {
        crate::names::DeviceClass::parse(field, value)?;
    }
    if key == ROLE_LABEL && value != GATEWAY_ROLE {
        return Err(ValidationError::new(
            field,
            format!("{ROLE_LABEL} is reserved: its only value is {GATEWAY_ROLE}"),
        ));
    }
    if key == crate::clone_policy::CLONE_POLICY_LABEL
        && crate::clone_policy::ClonePolicy::parse(value).is_none()
    {
        return Err(ValidationError::new(
            field,
            format!(
                "{key} is reserved: its value is {}",
                crate::clone_policy::ClonePolicy::NAMES
            ),
        ));
    }
    if key.is_empty() {
        return Err(ValidationError::new(field, "label key must not be empty"));
    }
    if key.len() > MAX_LABEL_KEY_LEN {
        return Err(ValidationError::new(
            field,
            format!("label key {key:?} is longer than {MAX_LABEL_KEY_LEN} bytes"),
        ));
    }
    if !key.chars().all(key_char_ok) || key.starts_with('/') || key.ends_with('/') {
        return Err(ValidationError::new(
            field,
            format!("label key {key:?} may hold only ASCII letters, digits and - _ . / (not at the ends)"),
        ));
    }
    if value.len() > MAX_LABEL_VALUE_LEN {
        return Err(ValidationError::new(
            field,
            format!("label value for {key:?} is longer than {MAX_LABEL_VALUE_LEN} bytes"),
        ));
    }
    if !value.chars().all(value_char_ok) {
        return Err(ValidationError::new(
            field,
            format!("label value {value:?} may hold only ASCII letters, digits and - _ ."),
        ));
    }
    Ok(())
}

/// Parses `key=value` as typed on a command line or in a filter.
pub fn parse_selector(field: &str, text: &str) -> Result<(String, String), ValidationError> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(ValidationError::new(
            field,
            format!("{text:?} is not of the form key=value"),
        ));
    };
    check_label(field, key, value)?;
    Ok((key.to_owned(), value.to_owned()))
}

impl Labels {
    pub fn new<I, K, V>(field: &str, pairs: I) -> Result<Self, ValidationError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut map = BTreeMap::new();
        for (k, v) in pairs {
            let (k, v) = (k.into(), v.into());
            check_label(field, &k, &v)?;
            map.insert(k, v);
            if map.len() > MAX_LABELS {
                return Err(ValidationError::new(
                    field,
                    format!("more than {MAX_LABELS} labels"),
                ));
            }
        }
        Ok(Self(map))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The device's class ([`CLASS_LABEL`]), if it has one.
    pub fn class(&self) -> Option<crate::names::DeviceClass> {
        self.get(CLASS_LABEL)
            .and_then(|c| crate::names::DeviceClass::parse(CLASS_LABEL, c).ok())
    }

    /// Whether the labels make their device a gateway.
    pub fn is_gateway(&self) -> bool {
        self.get(ROLE_LABEL) == Some(GATEWAY_ROLE)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kubernetes_style_labels() {
        let l = Labels::new(
            "labels",
            [
                ("site", "berlin"),
                ("example.com/rack", "r-12"),
                ("empty", ""),
            ],
        )
        .unwrap();
        assert_eq!(l.get("site"), Some("berlin"));
        assert_eq!(l.len(), 3);
    }

    #[test]
    fn refuses_bad_syntax() {
        for (k, v) in [
            ("", "x"),
            ("a b", "x"),
            ("k", "a b"),
            ("/k", "v"),
            ("k", "a=b"),
            ("k", "ü"),
        ] {
            let e = Labels::new("labels", [(k, v)]).unwrap_err();
            assert_eq!(e.field, "labels", "{k:?}={v:?}");
        }
        assert!(Labels::new("labels", [("k".repeat(64), "v".to_owned())]).is_err());
        assert!(Labels::new("labels", [("k".to_owned(), "v".repeat(64))]).is_err());
    }

    #[test]
    fn refuses_too_many() {
        let many = (0..33).map(|i| (format!("k{i}"), "v".to_owned()));
        assert!(Labels::new("labels", many)
            .unwrap_err()
            .message
            .contains("more than 32"));
    }

    #[test]
    fn deserializing_validates() {
        let ok: Labels = serde_json::from_str(r#"{"site":"berlin"}"#).unwrap();
        assert_eq!(ok.get("site"), Some("berlin"));
        assert!(serde_json::from_str::<Labels>(r#"{"site":"a\u0000b"}"#).is_err());
        assert!(serde_json::from_str::<Labels>(r#"{"":"x"}"#).is_err());
        let many: BTreeMap<String, String> =
            (0..33).map(|i| (format!("k{i}"), "v".into())).collect();
        let text = serde_json::to_string(&many).unwrap();
        assert!(serde_json::from_str::<Labels>(&text).is_err());
    }

    #[test]
    fn selectors_need_an_equals_sign() {
        assert_eq!(
            parse_selector("label", "site=berlin").unwrap(),
            ("site".into(), "berlin".into())
        );
        assert!(parse_selector("label", "site").is_err());
    }
}
