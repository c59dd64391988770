//! Reading the key-encryption key from its file, refusing what would make it
//! unsafe: a file others can read (as ssh refuses a private key), and a key
//! that is not random (all zero, a repeated byte, a short pattern).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context};
use idreg_core::Kek;

/// Fewest distinct byte values a KEK may have. 32 random bytes have ~28; the
/// chance that they have fewer than 12 is below 2^-100.
const MIN_DISTINCT_BYTES: usize = 12;

/// Kubernetes makes a Secret's files `0440` with the pod's fsGroup as their
/// group, whatever `defaultMode` says. That group is this process's own (not
/// root's): reading by it is allowed; writing by it, or any access by others,
/// is not.
fn readable_only_by_our_group(mode: u32, file_gid: u32) -> bool {
    // SAFETY: getegid has no preconditions and cannot fail.
    group_read_is_ours(mode, file_gid, unsafe { libc::getegid() })
}

fn group_read_is_ours(mode: u32, file_gid: u32, our_gid: u32) -> bool {
    mode & 0o037 == 0 && file_gid == our_gid && our_gid != 0
}

pub fn read(path: &Path) -> anyhow::Result<Kek> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read KEK file {}", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 && !readable_only_by_our_group(mode, meta.gid()) {
        bail!(
            "KEK file {} is accessible by group or others (mode {:03o}); \
             run chmod 600 on it (a Kubernetes Secret: defaultMode 0400)",
            path.display(),
            mode & 0o777
        );
    }
    let content = zeroize::Zeroizing::new(
        std::fs::read(path).with_context(|| format!("cannot read KEK file {}", path.display()))?,
    );
    let key =
        Kek::parse_key_bytes(&content).with_context(|| format!("KEK file {}", path.display()))?;
    let distinct = {
        let mut seen = [false; 256];
        key.iter().for_each(|b| seen[*b as usize] = true);
        seen.iter().filter(|s| **s).count()
    };
    if distinct < MIN_DISTINCT_BYTES {
        bail!(
            "KEK file {} holds a key that is not random ({distinct} distinct byte values); \
             make one with: head -c 32 /dev/urandom | xxd -p -c 64 > kek.hex",
            path.display()
        );
    }
    Ok(Kek::from_bytes(&key))
}

/// Writes a new random KEK to `path` (mode 0600, never over an existing file).
pub fn generate(path: &Path) -> anyhow::Result<()> {
    crate::private_file::create(path, Kek::generate_hex().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, content: &[u8], mode: u32) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn a_generated_key_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kek.hex");
        generate(&p).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        read(&p).unwrap();
        assert!(generate(&p).is_err(), "never overwrites a key");
    }

    #[test]
    fn readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "k", Kek::generate_hex().as_bytes(), 0o644);
        let e = format!("{:#}", read(&p).unwrap_err());
        assert!(e.contains("chmod 600"), "{e}");
        let p = write(dir.path(), "g", Kek::generate_hex().as_bytes(), 0o640);
        assert!(read(&p).is_err());
    }

    #[test]
    fn a_secret_under_fs_group_is_ours_to_read() {
        assert!(group_read_is_ours(0o440, 10001, 10001));
        assert!(group_read_is_ours(0o640, 10001, 10001));
        assert!(
            !group_read_is_ours(0o460, 10001, 10001),
            "group may not write"
        );
        assert!(
            !group_read_is_ours(0o444, 10001, 10001),
            "others may not read"
        );
        assert!(!group_read_is_ours(0o440, 10002, 10001), "another group");
        assert!(
            !group_read_is_ours(0o440, 0, 0),
            "root's group is not ours alone"
        );
    }

    #[test]
    fn weak_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (name, key) in [
            ("zero", "00".repeat(32)),
            ("ones", "11".repeat(32)),
            ("pattern", "0102030405".repeat(7)[..64].to_string()),
        ] {
            let p = write(dir.path(), name, key.as_bytes(), 0o600);
            let e = format!("{:#}", read(&p).unwrap_err());
            assert!(e.contains("not random"), "{name}: {e}");
        }
    }
}
