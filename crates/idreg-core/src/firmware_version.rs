//! Firmware versions (Semantic Versioning 2.0.0: `MAJOR.MINOR.PATCH`, an
//! optional `-pre.release`, build metadata after `+` ignored for order), and
//! the comparisons operators write to select them (`<1.4.2`, `>=2.0.0`).

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// Longest version text accepted.
pub const MAX_VERSION_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FirmwareVersion {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    /// Dot-separated pre-release identifiers; empty for a release.
    pub pre: Vec<String>,
}

fn ident_ok(id: &str) -> bool {
    !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn number(field: &str, text: &str, part: &str) -> Result<u64, ValidationError> {
    // SemVer: no leading zeros.
    if part.is_empty()
        || !part.chars().all(|c| c.is_ascii_digit())
        || (part.len() > 1 && part.starts_with('0'))
    {
        return Err(ValidationError::new(
            field,
            format!("{text:?} is not a version (MAJOR.MINOR.PATCH, e.g. 1.4.2)"),
        ));
    }
    part.parse()
        .map_err(|_| ValidationError::new(field, format!("{text:?}: a number is too large")))
}

impl FirmwareVersion {
    pub fn parse(field: &str, text: &str) -> Result<Self, ValidationError> {
        if text.len() > MAX_VERSION_LEN {
            return Err(ValidationError::new(
                field,
                format!("longer than {MAX_VERSION_LEN} bytes"),
            ));
        }
        let core_and_pre = text.split_once('+').map_or(text, |(v, _)| v);
        let (core, pre) = match core_and_pre.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (core_and_pre, None),
        };
        let parts: Vec<&str> = core.split('.').collect();
        let [major, minor, patch] = parts.as_slice() else {
            return Err(ValidationError::new(
                field,
                format!("{text:?} is not a version (MAJOR.MINOR.PATCH, e.g. 1.4.2)"),
            ));
        };
        let pre: Vec<String> = match pre {
            None => Vec::new(),
            Some(p) => {
                let ids: Vec<String> = p.split('.').map(str::to_owned).collect();
                if !ids.iter().all(|i| ident_ok(i)) {
                    return Err(ValidationError::new(
                        field,
                        format!("{text:?}: a pre-release is dot-separated [0-9A-Za-z-]+"),
                    ));
                }
                ids
            }
        };
        Ok(Self {
            major: number(field, text, major)?,
            minor: number(field, text, minor)?,
            patch: number(field, text, patch)?,
            pre,
        })
    }
}

impl fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre.is_empty() {
            write!(f, "-{}", self.pre.join("."))?;
        }
        Ok(())
    }
}

/// SemVer §11: numeric identifiers compare as numbers and below
/// alphanumeric ones; a release is above its pre-releases.
fn cmp_pre(a: &[String], b: &[String]) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    for (x, y) in a.iter().zip(b) {
        let o = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(m), Ok(n)) => m.cmp(&n),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

impl Ord for FirmwareVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| cmp_pre(&self.pre, &other.pre))
    }
}

impl PartialOrd for FirmwareVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A selection of versions: `<1.4.2`, `<=`, `>`, `>=`, `=` (or a bare
/// version, meaning `=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionSelector {
    pub op: Ordering,
    /// With `op`, whether equality also matches (`<=`, `>=`, `=`).
    pub or_equal: bool,
    pub version: FirmwareVersion,
}

impl VersionSelector {
    pub fn parse(field: &str, text: &str) -> Result<Self, ValidationError> {
        let text = text.trim();
        let (op, or_equal, rest) = if let Some(r) = text.strip_prefix("<=") {
            (Ordering::Less, true, r)
        } else if let Some(r) = text.strip_prefix(">=") {
            (Ordering::Greater, true, r)
        } else if let Some(r) = text.strip_prefix('<') {
            (Ordering::Less, false, r)
        } else if let Some(r) = text.strip_prefix('>') {
            (Ordering::Greater, false, r)
        } else {
            (
                Ordering::Equal,
                true,
                text.strip_prefix('=').unwrap_or(text),
            )
        };
        Ok(Self {
            op,
            or_equal,
            version: FirmwareVersion::parse(field, rest.trim())?,
        })
    }

    pub fn matches(&self, v: &FirmwareVersion) -> bool {
        let o = v.cmp(&self.version);
        o == self.op || (self.or_equal && o == Ordering::Equal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> FirmwareVersion {
        FirmwareVersion::parse("version", text).unwrap()
    }

    #[test]
    fn semver_precedence() {
        // SemVer §11's own example chain.
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.10.0",
            "2.0.0",
        ];
        for pair in chain.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
        assert_eq!(v("1.4.2+build.7"), v("1.4.2"));
        assert_eq!(v("1.4.2-rc.1").to_string(), "1.4.2-rc.1");
    }

    #[test]
    fn bad_versions_are_refused_with_the_field() {
        for bad in [
            "1.4",
            "1.4.2.1",
            "01.4.2",
            "1.x.2",
            "",
            "1.4.2-",
            "1.4.2-a..b",
            "v1.4.2",
        ] {
            let e = FirmwareVersion::parse("version", bad).unwrap_err();
            assert_eq!(e.field, "version", "{bad}");
        }
        assert!(FirmwareVersion::parse("version", &"1".repeat(70)).is_err());
    }

    #[test]
    fn selectors_select() {
        let s = VersionSelector::parse("version", "<1.4.2").unwrap();
        assert!(s.matches(&v("1.4.1")) && s.matches(&v("1.4.2-rc.1")));
        assert!(!s.matches(&v("1.4.2")) && !s.matches(&v("2.0.0")));
        let s = VersionSelector::parse("version", ">=2.0.0").unwrap();
        assert!(s.matches(&v("2.0.0")) && s.matches(&v("2.1.0")) && !s.matches(&v("1.9.9")));
        let s = VersionSelector::parse("version", "1.4.2").unwrap();
        assert!(s.matches(&v("1.4.2")) && !s.matches(&v("1.4.3")));
        assert!(VersionSelector::parse("version", "<<1.0.0").is_err());
    }
}
