//! Files that hold secrets (keys, backups): created mode 0600, never over an
//! existing file, synced before they count as written.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;

/// Creates `path` with `content`, readable by the owner only.
pub fn create(path: &Path, content: &[u8]) -> anyhow::Result<()> {
    let mut f = open_new(path)?;
    f.write_all(content)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("cannot sync {}", path.display()))?;
    Ok(())
}

/// Opens a new file for writing, mode 0600; an existing file is an error.
pub fn open_new(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}
