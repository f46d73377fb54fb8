//! Read-only inspection of a data directory and of snapshot files: the functions behind
//! `gavel log dump|verify` and `gavel snapshot inspect|verify`.
//!
//! Nothing here writes to the inspected files. sled has no read-only mode (opening runs
//! its recovery, which may write), so the log is read from a private copy of `sled/`
//! in a temporary directory. A running node holds sled's lock on its data file; the copy
//! is refused then, because copying a live database gives a torn picture.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use openraft::EntryPayload;
use serde::Serialize;

use crate::error::IoContext;
use crate::log_store::{LogStore, LogStoreOptions};
use crate::snapshot::{list_snapshot_files, read_snapshot_file, SnapshotFile};
use crate::{AuctionBook, BookCounts, Entry, Error, LogId, Result, Vote};

/// Where `sled/` and `snapshots/` are inside a data dir.
pub fn sled_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("sled")
}

/// Where a node keeps its archive of closed auctions.
pub fn archive_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("archive")
}

pub fn snapshots_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("snapshots")
}

/// A private, read-only-in-effect view of a stopped node's log.
pub struct LogView {
    store: LogStore,
    /// The data directory the copy was taken from.
    original: PathBuf,
    _copy: tempfile::TempDir,
}

impl LogView {
    /// Copies `<data_dir>/sled` to a temp dir and opens the copy.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let src = sled_dir(data_dir);
        if !src.join("db").is_file() {
            return Err(Error::NotFound(format!(
                "no Gavel log at {} (expected {}/db)",
                data_dir.display(),
                src.display()
            )));
        }
        let lock_path = src.join("db");
        let lock = File::open(&lock_path).at(&lock_path)?;
        if lock.try_lock_shared().is_err() {
            return Err(Error::InvalidInput(format!(
                "{} is in use by a running node; stop it first, or inspect a snapshot \
                 (GET /v1/admin/snapshot)",
                data_dir.display()
            )));
        }
        let copy = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
        copy_dir(&src, copy.path())?;
        drop(lock);
        let store = LogStore::open(
            copy.path(),
            LogStoreOptions {
                fsync: false,
                ..Default::default()
            },
        )
        .map_err(|e| name_original(e, data_dir))?;
        Ok(LogView {
            store,
            original: data_dir.to_path_buf(),
            _copy: copy,
        })
    }

    pub fn store(&self) -> &LogStore {
        &self.store
    }
}

/// Errors about the private copy name the data directory the user gave.
pub fn name_original(e: Error, original: &Path) -> Error {
    match e {
        Error::Unopenable { reason, .. } => Error::Unopenable {
            dir: original.to_path_buf(),
            reason,
        },
        other => other,
    }
}

fn copy_dir(src: &Path, dst: &Path) -> Result<()> {
    fs::create_dir_all(dst).at(dst)?;
    for entry in fs::read_dir(src).at(src)? {
        let entry = entry.at(src)?;
        let to = dst.join(entry.file_name());
        if entry.file_type().at(&entry.path())?.is_dir() {
            copy_dir(&entry.path(), &to)?;
        } else {
            fs::copy(entry.path(), &to).at(&entry.path())?;
        }
    }
    Ok(())
}

/// One log record, summarised.
#[derive(Debug, Clone, Serialize)]
pub struct RecordSummary {
    pub index: u64,
    pub term: u64,
    pub leader: u64,
    /// `blank`, `membership` or the command's op name.
    pub kind: String,
    pub ts_ms: Option<u64>,
    pub bytes: usize,
    /// For people: the operation in Rust's notation.
    pub detail: String,
    /// For scripts: the operation as JSON (membership: voters and learners; blank: null).
    pub op: serde_json::Value,
}

pub fn summarize(entry: &Entry, bytes: usize) -> RecordSummary {
    let (kind, ts_ms, detail, op) = match &entry.payload {
        EntryPayload::Blank => ("blank".to_string(), None, String::new(), serde_json::Value::Null),
        EntryPayload::Membership(m) => {
            let voters: Vec<_> = m.voter_ids().collect();
            let learners: Vec<_> = m.learner_ids().collect();
            (
                "membership".to_string(),
                None,
                format!("voters={voters:?} learners={learners:?}"),
                serde_json::json!({ "voters": voters, "learners": learners }),
            )
        }
        EntryPayload::Normal(cmd) => {
            let detail = match &cmd.idempotency {
                Some(tag) => format!("{:?} key={} client={:016x}", cmd.op, hex::encode(tag.key), tag.client),
                None => format!("{:?}", cmd.op),
            };
            let mut op = serde_json::to_value(&cmd.op).unwrap_or(serde_json::Value::Null);
            if let (Some(tag), Some(fields)) = (&cmd.idempotency, op.as_object_mut()) {
                fields.insert("idempotency_key".into(), serde_json::json!(hex::encode(tag.key)));
            }
            (cmd.op.name().to_string(), Some(cmd.ts_ms), detail, op)
        }
    };
    RecordSummary {
        index: entry.log_id.index,
        term: entry.log_id.leader_id.term,
        leader: entry.log_id.leader_id.node_id,
        kind,
        ts_ms,
        bytes,
        detail,
        op,
    }
}

/// Log pointers kept beside the entries.
#[derive(Debug, Clone, Serialize)]
pub struct LogMeta {
    pub vote: Option<Vote>,
    pub committed: Option<LogId>,
    pub last_purged: Option<LogId>,
}

/// What `gavel log verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct LogReport {
    pub entries: u64,
    pub first_index: Option<u64>,
    pub last_index: Option<u64>,
    pub last_term: Option<u64>,
    pub bytes: u64,
    pub by_kind: BTreeMap<String, u64>,
    pub meta: Option<LogMeta>,
    /// Every problem found; empty means the log is sound.
    pub errors: Vec<String>,
}

impl LogReport {
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Reads every record (checksums, decoding, index continuity, term order) and the
/// meta records; collects every problem rather than stopping at the first. `visit` sees
/// each record that decoded.
pub fn scan_log(view: &LogView, visit: impl FnMut(&RecordSummary)) -> Result<LogReport> {
    // sled panics on some damaged files (an emptied blob page, say) while reading.
    crate::log_store::catch_sled_panic(view.store().dir(), || scan_log_records(view, visit))?
        .map_err(|e| name_original(e, &view.original))
}

fn scan_log_records(view: &LogView, mut visit: impl FnMut(&RecordSummary)) -> Result<LogReport> {
    let store = view.store();
    let mut report = LogReport {
        entries: 0,
        first_index: None,
        last_index: None,
        last_term: None,
        bytes: 0,
        by_kind: BTreeMap::new(),
        meta: None,
        errors: Vec::new(),
    };
    let meta = (|| -> Result<LogMeta> {
        Ok(LogMeta {
            vote: store.read_vote()?,
            committed: store.read_committed()?,
            last_purged: store.read_last_purged()?,
        })
    })();
    match meta {
        Ok(m) => report.meta = Some(m),
        Err(e) => report.errors.push(e.to_string()),
    }
    let mut prev: Option<(u64, u64)> = None;
    for item in store.raw_records() {
        let (index, bytes) = item?;
        report.entries += 1;
        report.bytes += bytes.len() as u64;
        report.first_index.get_or_insert(index);
        report.last_index = Some(index);
        if let Some((prev_index, _)) = prev {
            if index != prev_index + 1 {
                report
                    .errors
                    .push(format!("hole in the log: index {prev_index} is followed by {index}"));
            }
        }
        match store.decode_raw(index, &bytes) {
            Ok(entry) => {
                let term = entry.log_id.leader_id.term;
                if let Some((_, prev_term)) = prev {
                    if term < prev_term {
                        report.errors.push(format!(
                            "term goes backwards at index {index}: {term} after {prev_term}"
                        ));
                    }
                }
                let summary = summarize(&entry, bytes.len());
                *report.by_kind.entry(summary.kind.clone()).or_default() += 1;
                report.last_term = Some(term);
                prev = Some((index, term));
                visit(&summary);
            }
            Err(e) => {
                report.errors.push(e.to_string());
                prev = Some((index, prev.map(|p| p.1).unwrap_or(0)));
            }
        }
    }
    if let (Some(meta), Some(first)) = (&report.meta, report.first_index) {
        if let Some(purged) = meta.last_purged {
            if purged.index + 1 < first {
                report.errors.push(format!(
                    "log starts at {first} but only up to {} was purged",
                    purged.index
                ));
            }
        }
        if let (Some(c), Some(last)) = (meta.committed, report.last_index) {
            if c.index > last {
                report
                    .errors
                    .push(format!("committed index {} is beyond the last entry {last}", c.index));
            }
        }
    }
    Ok(report)
}

/// What `gavel snapshot inspect|verify` shows for one file.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotReport {
    pub file: String,
    pub size_bytes: u64,
    pub format_version: u16,
    pub term: u64,
    pub index: u64,
    pub leader: u64,
    pub snapshot_id: String,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub nodes: BTreeMap<u64, String>,
    pub payload_bytes: u64,
    pub payload_crc32: String,
    pub header_crc32: String,
    pub state_hash: String,
    pub last_ts_ms: u64,
    pub counts: BookCounts,
    /// Auctions archived up to this snapshot (the archive holds them, not the snapshot),
    /// and the digest their records must have.
    pub archived_auctions: u64,
    pub archive_digest: String,
}

/// Reads, checks and summarises one snapshot file, or a backup file (its snapshot; with
/// `verify`, every archive record in it too). Read-only.
pub fn inspect_snapshot(path: &Path) -> Result<SnapshotReport> {
    inspect_snapshot_or_backup(path, false)
}

pub fn inspect_snapshot_or_backup(path: &Path, verify: bool) -> Result<SnapshotReport> {
    let mut prefix = [0u8; 8];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let _ = f.read(&mut prefix).map_err(|e| Error::io(path, e))?;
    }
    let (bytes, file): (Vec<u8>, SnapshotFile) = if crate::backup::is_backup(&prefix) {
        let input = std::io::BufReader::new(std::fs::File::open(path).map_err(|e| Error::io(path, e))?);
        let reader = crate::backup::BackupReader::open(input)?;
        let out = (reader.snapshot.clone(), reader.file.clone());
        if verify {
            reader.finish()?;
        }
        out
    } else {
        read_snapshot_file(path)?
    };
    let book = AuctionBook::decode(file.payload(&bytes)).map_err(|e| match e {
        Error::Corrupt { reason, .. } => Error::corrupt(format!("snapshot {}", path.display()), reason),
        other => other,
    })?;
    let membership = file.meta.last_membership.membership();
    let id = file.meta.last_log_id;
    Ok(SnapshotReport {
        file: path.display().to_string(),
        size_bytes: bytes.len() as u64,
        format_version: file.version,
        term: id.map(|i| i.leader_id.term).unwrap_or(0),
        index: id.map(|i| i.index).unwrap_or(0),
        leader: id.map(|i| i.leader_id.node_id).unwrap_or(0),
        snapshot_id: file.snapshot_id.clone(),
        voters: membership.voter_ids().collect(),
        learners: membership.learner_ids().collect(),
        nodes: membership.nodes().map(|(id, n)| (*id, n.addr.clone())).collect(),
        payload_bytes: file.payload_len as u64,
        payload_crc32: format!("{:08x}", file.payload_crc),
        header_crc32: format!("{:08x}", file.header_crc),
        state_hash: book.state_hash(),
        last_ts_ms: book.last_ts_ms(),
        counts: book.counts(),
        archived_auctions: book.archive_ref().0,
        archive_digest: hex::encode(book.archive_ref().1),
    })
}

/// The snapshot files a path names: a file itself, a snapshots directory, or a data
/// directory (its `snapshots/`). Newest first.
pub fn snapshot_files(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        return Err(Error::NotFound(format!("{} does not exist", path.display())));
    }
    let dir = if snapshots_dir(path).is_dir() {
        snapshots_dir(path)
    } else {
        path.to_path_buf()
    };
    let files = list_snapshot_files(&dir)?;
    if files.is_empty() {
        return Err(Error::NotFound(format!(
            "no snapshot files (snap-*.snap) in {} yet: a node writes its first after \
             snapshot_every_entries log entries (10 000 by default); `POST /v1/admin/snapshot` \
             takes one now, and `gavel log dump` reads the log itself",
            dir.display()
        )));
    }
    Ok(files)
}

/// The book of the newest valid snapshot file under `path` (a file, a snapshots
/// directory or a data directory), read-only; with its last log id.
pub fn book_from_snapshot(path: &Path) -> Result<(AuctionBook, Option<LogId>)> {
    let mut last_error = None;
    for file in snapshot_files(path)? {
        match read_snapshot_file(&file) {
            Ok((bytes, snap)) => {
                let book = AuctionBook::decode(snap.payload(&bytes))?;
                return Ok((book, snap.meta.last_log_id));
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| Error::NotFound(format!("no snapshot under {}", path.display()))))
}

/// The committed state of a stopped node's data dir: its newest valid snapshot, plus the
/// log entries after it up to the saved commit index, applied. Read-only.
pub fn committed_book(data_dir: &Path) -> Result<(AuctionBook, Option<LogId>)> {
    let (mut book, mut last) = match book_from_snapshot(data_dir) {
        Ok(found) => found,
        Err(Error::NotFound(_)) => (AuctionBook::new(), None),
        Err(e) => return Err(e),
    };
    let view = LogView::open(data_dir)?;
    let committed = view.store().read_committed()?;
    let from = last.map_or(0, |l| l.index + 1);
    if let Some(committed) = committed {
        for entry in view.store().read_entries(from..=committed.index)? {
            if let EntryPayload::Normal(cmd) = &entry.payload {
                book.apply(cmd);
            }
            last = Some(entry.log_id);
        }
    }
    Ok((book, last))
}
