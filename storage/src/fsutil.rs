//! Durable file-system steps: what every file a node needs at start goes through.
//!
//! A power cut keeps only what was fsynced. A file written with a plain `write` may come
//! back empty (its data was still in the page cache), and a file created or renamed
//! without an fsync of its *directory* may not come back at all. So a file the node
//! needs at start is written as: a temporary file beside it, `fsync` of that file,
//! `rename` over the final name, `fsync` of the directory. After a cut the name holds
//! either the old content or the new, never a torn or empty file. Directories are
//! created the same way: each new directory's parent is fsynced so the entry survives.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::IoContext;
use crate::Result;

/// Suffix of the temporary file [`write_durably`] writes before renaming it.
pub const TMP_SUFFIX: &str = ".tmp";

/// Replaces `path` with `bytes` atomically and durably (temp file, fsync, rename, fsync
/// of the directory). The parent directory must exist.
pub fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_of(path);
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(TMP_SUFFIX);
    let tmp = dir.join(tmp_name);
    {
        let mut f = File::create(&tmp).at(&tmp)?;
        f.write_all(bytes).at(&tmp)?;
        f.sync_all().at(&tmp)?;
    }
    fs::rename(&tmp, path).at(path)?;
    sync_dir(dir)
}

/// Like [`write_durably`], for a secret: the file is created readable by its owner only
/// (mode 0600) before anything is written to it.
pub fn write_durably_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = parent_of(path);
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(TMP_SUFFIX);
    let tmp = dir.join(tmp_name);
    let _ = fs::remove_file(&tmp);
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .at(&tmp)?;
        f.write_all(bytes).at(&tmp)?;
        f.sync_all().at(&tmp)?;
    }
    fs::rename(&tmp, path).at(path)?;
    sync_dir(dir)
}

/// fsyncs a directory, so that entries created, renamed or removed in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Creates `dir` and any missing parents, fsyncing the parent of every directory it
/// created, so the whole path survives a power cut.
pub fn create_dir_durably(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = parent_of(dir);
    create_dir_durably(parent)?;
    match fs::create_dir(dir) {
        Ok(()) => {}
        // Another process (or thread) created it meanwhile: fine, and still fsync below.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(crate::Error::io(dir, e)),
    }
    sync_dir(parent)
}

/// Bytes an unprivileged process can still write on the file system holding `path`.
pub fn available_bytes(path: &Path) -> Result<u64> {
    Ok(disk_space(path)?.available_bytes)
}

/// Space on the file system holding a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    /// What an unprivileged process can still write.
    pub available_bytes: u64,
    /// The file system's size.
    pub total_bytes: u64,
}

/// Space on the file system holding `path` (one `statvfs`).
pub fn disk_space(path: &Path) -> Result<DiskSpace> {
    let st = rustix::fs::statvfs(path).map_err(|e| crate::Error::io(path, e.into()))?;
    Ok(DiskSpace {
        available_bytes: st.f_bavail.saturating_mul(st.f_frsize),
        total_bytes: st.f_blocks.saturating_mul(st.f_frsize),
    })
}

/// Whether an I/O error means the disk is full (or the quota used up).
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(28) | Some(122))
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_durably_replaces_the_file_and_leaves_no_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("node-id");
        write_durably(&path, b"1\n").unwrap();
        write_durably(&path, b"2\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"2\n");
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["node-id"]);
    }

    #[test]
    fn create_dir_durably_makes_every_missing_level() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("a/b/c");
        create_dir_durably(&deep).unwrap();
        assert!(deep.is_dir());
        create_dir_durably(&deep).unwrap();
    }
}
