//! Snapshot files: the format, atomic writes, and finding the newest valid one.
//!
//! Files live in `<data_dir>/snapshots/` and are named
//! `snap-<term:016x>-<index:016x>.snap` after the last log id they include, so that
//! sorting names sorts by (term, index). Layout (integers little-endian):
//!
//! ```text
//! offset   size  field
//! 0        8     magic        b"GAVELSNP"
//! 8        2     version      u16, currently 4 (3: before the archive, 2: before auction
//!                              formats, both still read; 1: before the compact
//!                              idempotency table)
//! 10       4     meta_len     u32
//! 14       M     meta         bincode `SnapshotMeta` (last log id, membership, snapshot id)
//! 14+M     8     payload_len  u64
//! 22+M     4     payload_crc  u32, CRC-32 of the payload
//! 26+M     4     header_crc   u32, CRC-32 of bytes [0, 26+M)
//! 30+M     P     payload      bincode `AuctionBook`
//! ```
//!
//! The file must end exactly after the payload. Writing: a `.tmp` file, `fsync`,
//! rename, `fsync` of the directory — a crash leaves either the old set of files or the
//! new one, plus perhaps a `.tmp` that is removed at the next start. Loading at start:
//! newest first; a file that fails any check is renamed `*.broken` (kept for
//! inspection) and the next older one is tried. The newest [`SNAPSHOTS_KEPT`] are kept.
//! The bytes sent to a follower in `install_snapshot` are exactly a file's bytes.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::codec::decode_exact;
use crate::error::IoContext;
use crate::{bincode_config, Error, Result, SnapshotMeta};

pub const SNAPSHOT_MAGIC: &[u8; 8] = b"GAVELSNP";
pub const SNAPSHOT_FORMAT_VERSION: u16 = 4;
/// The oldest version this build still reads (a version-2 book has no auction formats).
pub const SNAPSHOT_FORMAT_VERSION_MIN: u16 = 2;
/// Largest snapshot payload (the encoded book) written or read; also the most decoding
/// it may allocate. A file declaring more is refused before it is read into memory.
pub const SNAPSHOT_PAYLOAD_MAX_BYTES: usize = 1024 * 1024 * 1024;
/// Largest snapshot file: the payload and a header (meta: membership and ids).
pub const SNAPSHOT_FILE_MAX_BYTES: u64 = SNAPSHOT_PAYLOAD_MAX_BYTES as u64 + 1024 * 1024;
/// Free space a snapshot leaves for the log to grow: a snapshot is written only if the
/// disk has its size plus this much free.
pub const SNAPSHOT_SPACE_RESERVE_BYTES: u64 = 64 * 1024 * 1024;
/// How many snapshot files a node keeps.
pub const SNAPSHOTS_KEPT: usize = 3;
pub const SNAPSHOT_SUFFIX: &str = ".snap";
const FIXED_BEFORE_META: usize = 14;
const FIXED_AFTER_META: usize = 16;

/// A decoded, checked snapshot file.
#[derive(Debug, Clone)]
pub struct SnapshotFile {
    pub version: u16,
    pub meta: SnapshotMeta,
    /// `<term>-<index>` of the last entry it holds, as written in the file.
    pub snapshot_id: String,
    pub payload_crc: u32,
    pub header_crc: u32,
    /// Offset of the payload within the file's bytes.
    pub payload_offset: usize,
    pub payload_len: usize,
}

impl SnapshotFile {
    pub fn payload<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        &bytes[self.payload_offset..self.payload_offset + self.payload_len]
    }
}

/// Encodes a whole snapshot file.
/// The meta as the file stores it: openraft's snapshot meta and a snapshot id (openraft
/// 0.9 kept the id in its meta; the bytes are unchanged since).
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredMeta {
    last_log_id: Option<crate::LogId>,
    last_membership: crate::StoredMembership,
    snapshot_id: String,
}

/// `<term>-<index>` of the last entry a snapshot holds (`0-0` for none).
pub fn snapshot_id(meta: &SnapshotMeta) -> String {
    let (term, index) = meta
        .last_log_id
        .as_ref()
        .map(|id| (id.leader_id.term, id.index))
        .unwrap_or((0, 0));
    format!("{term}-{index}")
}

pub fn encode_snapshot(meta: &SnapshotMeta, payload: &[u8]) -> Result<Vec<u8>> {
    if payload.len() > SNAPSHOT_PAYLOAD_MAX_BYTES {
        return Err(Error::InvalidInput(format!(
            "snapshot payload of {} bytes exceeds the {SNAPSHOT_PAYLOAD_MAX_BYTES}-byte limit",
            payload.len()
        )));
    }
    let stored = StoredMeta {
        last_log_id: meta.last_log_id,
        last_membership: meta.last_membership.clone(),
        snapshot_id: snapshot_id(meta),
    };
    let meta_bytes = bincode::serde::encode_to_vec(&stored, bincode_config())?;
    let meta_len =
        u32::try_from(meta_bytes.len()).map_err(|_| Error::InvalidInput("snapshot meta too large".into()))?;
    let mut out = Vec::with_capacity(FIXED_BEFORE_META + meta_bytes.len() + FIXED_AFTER_META + payload.len());
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&meta_len.to_le_bytes());
    out.extend_from_slice(&meta_bytes);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    let header_crc = crc32fast::hash(&out);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Checks every field of a snapshot file's bytes. `what` names the file in errors.
pub fn decode_snapshot(bytes: &[u8], what: &str) -> Result<SnapshotFile> {
    let corrupt = |reason: String| Error::corrupt(format!("snapshot {what}"), reason);
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    if bytes.len() < FIXED_BEFORE_META {
        return Err(corrupt(format!(
            "truncated: {} bytes, shorter than the fixed header",
            bytes.len()
        )));
    }
    if &bytes[0..8] != SNAPSHOT_MAGIC {
        return Err(corrupt("bad magic: not a Gavel snapshot file".into()));
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if !(SNAPSHOT_FORMAT_VERSION_MIN..=SNAPSHOT_FORMAT_VERSION).contains(&version) {
        return Err(corrupt(format!(
            "unsupported format version {version} (this build reads {SNAPSHOT_FORMAT_VERSION_MIN} to {SNAPSHOT_FORMAT_VERSION})"
        )));
    }
    let meta_len = u32_at(10) as usize;
    let header_end = FIXED_BEFORE_META
        .checked_add(meta_len)
        .and_then(|n| n.checked_add(FIXED_AFTER_META))
        .filter(|&n| n <= bytes.len())
        .ok_or_else(|| {
            corrupt(format!(
                "truncated header: meta length {meta_len} runs past the end of {} bytes",
                bytes.len()
            ))
        })?;
    let header_crc = u32_at(header_end - 4);
    let computed = crc32fast::hash(&bytes[..header_end - 4]);
    if computed != header_crc {
        return Err(corrupt(format!(
            "header checksum mismatch: stored {header_crc:08x}, computed {computed:08x}"
        )));
    }
    let meta_end = FIXED_BEFORE_META + meta_len;
    let stored: StoredMeta = decode_exact(&bytes[FIXED_BEFORE_META..meta_end], &|| format!("snapshot {what} meta"))?;
    let meta = SnapshotMeta {
        last_log_id: stored.last_log_id,
        last_membership: stored.last_membership,
    };
    let payload_len = u64::from_le_bytes(bytes[meta_end..meta_end + 8].try_into().expect("8 bytes"));
    if payload_len > SNAPSHOT_PAYLOAD_MAX_BYTES as u64 {
        return Err(corrupt(format!(
            "payload length {payload_len} exceeds the {SNAPSHOT_PAYLOAD_MAX_BYTES}-byte limit"
        )));
    }
    let payload_crc = u32_at(meta_end + 8);
    let have = (bytes.len() - header_end) as u64;
    if have < payload_len {
        return Err(corrupt(format!(
            "truncated: header says {payload_len} payload bytes, only {have} present"
        )));
    }
    if have > payload_len {
        return Err(corrupt(format!(
            "{} unexpected bytes after the payload",
            have - payload_len
        )));
    }
    let payload = &bytes[header_end..];
    let computed = crc32fast::hash(payload);
    if computed != payload_crc {
        return Err(corrupt(format!(
            "payload checksum mismatch: stored {payload_crc:08x}, computed {computed:08x}"
        )));
    }
    Ok(SnapshotFile {
        version,
        meta,
        snapshot_id: stored.snapshot_id,
        payload_crc,
        header_crc,
        payload_offset: header_end,
        payload_len: payload.len(),
    })
}

/// `snap-<term:016x>-<index:016x>.snap` for the snapshot's last log id.
pub fn file_name(meta: &SnapshotMeta) -> String {
    let (term, index) = meta
        .last_log_id
        .map(|id| (id.leader_id.term, id.index))
        .unwrap_or((0, 0));
    format!("snap-{term:016x}-{index:016x}{SNAPSHOT_SUFFIX}")
}

/// Parses `(term, index)` out of a snapshot file name.
pub fn parse_file_name(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix("snap-")?.strip_suffix(SNAPSHOT_SUFFIX)?;
    let (term, index) = rest.split_once('-')?;
    if term.len() != 16 || index.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(term, 16).ok()?,
        u64::from_str_radix(index, 16).ok()?,
    ))
}

/// Reads and checks one snapshot file.
pub fn read_snapshot_file(path: &Path) -> Result<(Vec<u8>, SnapshotFile)> {
    let len = fs::metadata(path).at(path)?.len();
    if len > SNAPSHOT_FILE_MAX_BYTES {
        return Err(Error::corrupt(
            format!("snapshot {}", path.display()),
            format!("{len} bytes, over the {SNAPSHOT_FILE_MAX_BYTES}-byte limit"),
        ));
    }
    let bytes = fs::read(path).at(path)?;
    let file = decode_snapshot(&bytes, &path.display().to_string())?;
    Ok((bytes, file))
}

/// Snapshot files in `dir` (read-only), newest first by (index, term).
pub fn list_snapshot_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        if let Some((term, index)) = name.to_str().and_then(parse_file_name) {
            found.push(((index, term), entry.path()));
        }
    }
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// A node's snapshot directory: owns writing, pruning and fallback over broken files.
#[derive(Debug, Clone)]
pub struct SnapshotDir {
    dir: PathBuf,
}

impl SnapshotDir {
    /// Opens (creating) the directory and removes `.tmp` files a crash left behind.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).at(&dir)?;
        for entry in fs::read_dir(&dir).at(&dir)? {
            let path = entry.at(&dir)?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                tracing::info!(file = %path.display(), "removing unfinished snapshot file");
                fs::remove_file(&path).at(&path)?;
            }
        }
        Ok(SnapshotDir { dir })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes a snapshot file atomically and durably; prunes old files. Blocking.
    ///
    /// Checks free space first: the file needs its size, and the log must still have room
    /// to grow ([`SNAPSHOT_SPACE_RESERVE_BYTES`]). Short of that, older snapshots beyond
    /// the newest are removed and the check repeated; still short, nothing is written and
    /// the error is [`Error::DiskFull`] (a half-written file would fill the disk and stop
    /// the log too).
    pub fn write(&self, meta: &SnapshotMeta, bytes: &[u8]) -> Result<PathBuf> {
        let needed = bytes.len() as u64 + SNAPSHOT_SPACE_RESERVE_BYTES;
        let mut available = crate::fsutil::available_bytes(&self.dir)?;
        if available < needed {
            self.prune(1)?;
            available = crate::fsutil::available_bytes(&self.dir)?;
        }
        if available < needed {
            return Err(Error::DiskFull {
                path: self.dir.clone(),
                needed,
                available,
            });
        }
        let name = file_name(meta);
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        {
            let mut f = File::create(&tmp).at(&tmp)?;
            f.write_all(bytes).at(&tmp)?;
            f.sync_all().at(&tmp)?;
        }
        fs::rename(&tmp, &path).at(&path)?;
        File::open(&self.dir).and_then(|d| d.sync_all()).at(&self.dir)?;
        self.prune(SNAPSHOTS_KEPT)?;
        Ok(path)
    }

    /// Keeps the newest `keep` files.
    pub fn prune(&self, keep: usize) -> Result<()> {
        for old in list_snapshot_files(&self.dir)?.into_iter().skip(keep) {
            fs::remove_file(&old).at(&old)?;
        }
        Ok(())
    }

    /// Removes files that include entries beyond `index` (after installing an older
    /// snapshot from the leader they would describe a state we no longer have).
    pub fn remove_newer_than(&self, index: u64) -> Result<()> {
        let mut removed = false;
        for path in list_snapshot_files(&self.dir)? {
            let name = path.file_name().and_then(|n| n.to_str()).and_then(parse_file_name);
            if name.is_some_and(|(_, i)| i > index) {
                fs::remove_file(&path).at(&path)?;
                removed = true;
            }
        }
        // Durably: such a file must not come back after a power cut.
        if removed {
            crate::fsutil::sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// The newest file that passes every check. Files that fail are renamed `.broken`
    /// (with a warning) and the next older one is tried.
    pub fn load_newest_valid(&self) -> Result<Option<(PathBuf, Vec<u8>, SnapshotFile)>> {
        for path in list_snapshot_files(&self.dir)? {
            match read_snapshot_file(&path) {
                Ok((bytes, file)) => return Ok(Some((path, bytes, file))),
                Err(err @ Error::Corrupt { .. }) => {
                    let broken = path.with_extension("snap.broken");
                    tracing::error!(file = %path.display(), error = %err, "snapshot failed its checks; renamed to .broken, trying the previous one");
                    fs::rename(&path, &broken).at(&path)?;
                }
                Err(err) => return Err(err),
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(term: u64, index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(crate::log_id(term, 1, index)),
            last_membership: Default::default(),
        }
    }

    #[test]
    fn round_trip_and_names() {
        let m = meta(3, 42);
        let bytes = encode_snapshot(&m, b"payload bytes").unwrap();
        let f = decode_snapshot(&bytes, "x").unwrap();
        assert_eq!(f.meta, m);
        assert_eq!(f.payload(&bytes), b"payload bytes");
        assert_eq!(file_name(&m), "snap-0000000000000003-000000000000002a.snap");
        assert_eq!(parse_file_name(&file_name(&m)), Some((3, 42)));
        assert_eq!(parse_file_name("snap-3-42.snap"), None);
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_detected() {
        let bytes = encode_snapshot(&meta(1, 7), b"some state").unwrap();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            let err = decode_snapshot(&bad, "f.snap").unwrap_err().to_string();
            assert!(err.contains("f.snap"), "byte {i}: {err}");
        }
        for cut in 0..bytes.len() {
            assert!(decode_snapshot(&bytes[..cut], "f.snap").is_err(), "cut {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_snapshot(&longer, "f.snap").is_err());
    }

    #[test]
    fn broken_newest_falls_back_and_prune_keeps_newest() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SnapshotDir::open(tmp.path()).unwrap();
        for i in 1..=5 {
            let m = meta(1, i * 10);
            dir.write(&m, &encode_snapshot(&m, format!("state {i}").as_bytes()).unwrap())
                .unwrap();
        }
        let files = list_snapshot_files(tmp.path()).unwrap();
        assert_eq!(files.len(), SNAPSHOTS_KEPT);
        let newest = files[0].clone();
        assert!(newest.ends_with(file_name(&meta(1, 50))));

        let mut bytes = fs::read(&newest).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&newest, bytes).unwrap();
        fs::write(
            tmp.path().join("snap-0000000000000001-0000000000000063.snap.tmp"),
            b"partial",
        )
        .unwrap();

        let dir = SnapshotDir::open(tmp.path()).unwrap();
        let (path, bytes, f) = dir.load_newest_valid().unwrap().unwrap();
        assert!(path.ends_with(file_name(&meta(1, 40))));
        assert_eq!(f.payload(&bytes), b"state 4");
        assert!(newest.with_extension("snap.broken").exists());
        assert!(!newest.exists());
        assert_eq!(
            fs::read_dir(tmp.path())
                .unwrap()
                .filter(|e| e.as_ref().unwrap().path().extension().unwrap() == "tmp")
                .count(),
            0
        );
    }
}
