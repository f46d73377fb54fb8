//! The Raft log on sled: openraft's `RaftLogStorage` and `RaftLogReader`.
//!
//! Layout in `<data_dir>/sled/`:
//! - tree `log`: key = log index as big-endian `u64` (so sled's byte order is index
//!   order); value = one framed record ([`crate::codec`]) holding a bincode
//!   `openraft::Entry<TypeConfig>`.
//! - tree `meta`: keys `vote`, `committed`, `last_purged`; each value a framed record.
//!
//! Durability. Every write that openraft must find after a crash — `append`,
//! `save_vote`, `truncate`, `purge` — is followed by one `Db::flush` (sled writes its
//! page buffers out with `sync_file_range`) and then, unless disabled, one `fdatasync` of
//! sled's data file. `save_committed` rides on the next flush (see there). `sync_file_range` alone survives a process crash but neither flushes
//! file metadata nor the disk's write cache, so without the `fsync` a power loss could
//! lose acknowledged entries or a vote. `append` writes the whole batch, makes it durable
//! once, then calls openraft's callback: one flush per batch is what makes it fast.
//!
//! Invariants: the log has no holes (`purge` persists `last_purged` before deleting, and
//! deletes from the front; `truncate` deletes from the back); writes happen in call
//! order (openraft holds `&mut self`). Every read checks the record's crc and that the
//! entry stored under key `i` has index `i`; a mismatch is an error naming the index.

use std::fmt::Debug;
use std::fs::File;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, RaftLogReader, StorageIOError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{decode_record, encode_record};
use crate::error::IoContext;
use crate::{Entry, Error, LogId, Result, StorageError, TypeConfig, Vote};

pub const LOG_TREE: &str = "log";
pub const META_TREE: &str = "meta";
pub const META_VOTE: &[u8] = b"vote";
pub const META_COMMITTED: &[u8] = b"committed";
pub const META_LAST_PURGED: &[u8] = b"last_purged";
/// sled's one data file inside its directory (sled 0.34).
const SLED_DATA_FILE: &str = "db";

#[derive(Debug, Clone)]
pub struct LogStoreOptions {
    /// `fsync` sled's data file after each flush, so acknowledged writes survive power
    /// loss and not only a process crash. On by default.
    pub fsync: bool,
    /// sled page cache size in bytes.
    pub cache_capacity_bytes: u64,
}

impl Default for LogStoreOptions {
    fn default() -> Self {
        LogStoreOptions {
            fsync: true,
            cache_capacity_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The sled-backed log store. Cheap to clone: clones share one sled `Db`; the clone
/// handed to openraft's replication tasks only reads.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    /// Open handle to sled's data file, for `fsync`; `None` when fsync is off.
    data_file: Option<File>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").field("dir", &self.inner.dir).finish()
    }
}

fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn index_of(key: &[u8], dir: &Path) -> Result<u64> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| {
        Error::corrupt(
            format!("log tree in {}", dir.display()),
            format!("key of {} bytes, expected 8", key.len()),
        )
    })?;
    Ok(u64::from_be_bytes(bytes))
}

impl LogStore {
    /// Opens (or creates) the sled database in `dir` (normally `<data_dir>/sled`).
    pub fn open(dir: impl AsRef<Path>, options: LogStoreOptions) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).at(&dir)?;
        let db = sled::Config::new()
            .path(&dir)
            .cache_capacity(options.cache_capacity_bytes)
            .open()?;
        let log = db.open_tree(LOG_TREE)?;
        let meta = db.open_tree(META_TREE)?;
        let data_file = if options.fsync {
            let path = dir.join(SLED_DATA_FILE);
            let file = File::open(&path).at(&path)?;
            // The data file's directory entry must itself be durable once.
            File::open(&dir).and_then(|d| d.sync_all()).at(&dir)?;
            Some(file)
        } else {
            None
        };
        Ok(LogStore {
            inner: Arc::new(Inner {
                dir,
                db,
                log,
                meta,
                data_file,
            }),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Appends entries in one atomic batch and makes them durable with one flush (+fsync).
    /// This is the body of openraft's `append`; public so benchmarks can drive it.
    pub async fn append_entries(&self, entries: impl IntoIterator<Item = Entry>) -> Result<usize> {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for entry in entries {
            batch.insert(&key(entry.log_id.index), encode_record(&entry)?);
            n += 1;
        }
        self.inner.log.apply_batch(batch)?;
        self.sync().await?;
        Ok(n)
    }

    /// Makes every write so far durable: sled flush, then fsync of its data file.
    pub async fn sync(&self) -> Result<()> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.sync_blocking())
            .await
            .map_err(|e| Error::io(&self.inner.dir, io::Error::other(e)))?
    }

    /// Reads and checks entries with index in `range`, in order, failing on any hole.
    pub fn read_entries(&self, range: impl RangeBounds<u64>) -> Result<Vec<Entry>> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => Bound::Included(key(i)),
            Bound::Excluded(&i) => Bound::Excluded(key(i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for item in self.inner.log.range((Bound::Included(key(start)), end)) {
            let (k, v) = item?;
            let index = index_of(&k, &self.inner.dir)?;
            let entry = self.decode_entry(index, &v)?;
            if let Some(prev) = out.last().map(|e: &Entry| e.log_id.index) {
                if index != prev + 1 {
                    return Err(Error::corrupt(
                        format!("log in {}", self.inner.dir.display()),
                        format!("hole between index {prev} and {index}"),
                    ));
                }
            }
            out.push(entry);
        }
        Ok(out)
    }

    /// Checks every record's framing and checksum, that keys run without holes, and the
    /// meta records; the first problem is an error naming the record. Run at start so a
    /// damaged log is refused before Raft reads from it. Returns the number of records.
    pub fn verify(&self) -> Result<u64> {
        self.read_vote()?;
        self.read_committed()?;
        self.read_last_purged()?;
        let mut prev: Option<u64> = None;
        let mut n = 0;
        for item in self.raw_records() {
            let (index, bytes) = item?;
            let what = || format!("log record at index {index} in {}", self.inner.dir.display());
            crate::codec::check_record(&bytes, &what)?;
            if let Some(p) = prev {
                if index != p + 1 {
                    return Err(Error::corrupt(
                        format!("log in {}", self.inner.dir.display()),
                        format!("hole between index {p} and {index}"),
                    ));
                }
            }
            prev = Some(index);
            n += 1;
        }
        self.first_and_last()?;
        Ok(n)
    }

    /// Every stored record in index order, unchecked (for `gavel log verify`, which
    /// wants to report all problems, not stop at the first).
    pub fn raw_records(&self) -> impl Iterator<Item = Result<(u64, Vec<u8>)>> + '_ {
        self.inner.log.iter().map(|item| {
            let (k, v) = item?;
            Ok((index_of(&k, &self.inner.dir)?, v.to_vec()))
        })
    }

    /// Checks and decodes the record stored for `index`.
    pub fn decode_raw(&self, index: u64, bytes: &[u8]) -> Result<Entry> {
        self.decode_entry(index, bytes)
    }

    fn decode_entry(&self, index: u64, bytes: &[u8]) -> Result<Entry> {
        let what = || format!("log record at index {index} in {}", self.inner.dir.display());
        let entry: Entry = decode_record(bytes, &what)?;
        if entry.log_id.index != index {
            return Err(Error::corrupt(
                what(),
                format!("holds the entry of index {}", entry.log_id.index),
            ));
        }
        Ok(entry)
    }

    /// The first and last entries present, checked.
    pub fn first_and_last(&self) -> Result<(Option<Entry>, Option<Entry>)> {
        let decode = |item: Option<(sled::IVec, sled::IVec)>| -> Result<Option<Entry>> {
            match item {
                None => Ok(None),
                Some((k, v)) => Ok(Some(self.decode_entry(index_of(&k, &self.inner.dir)?, &v)?)),
            }
        };
        Ok((decode(self.inner.log.first()?)?, decode(self.inner.log.last()?)?))
    }

    pub fn read_vote(&self) -> Result<Option<Vote>> {
        self.read_meta(META_VOTE)
    }

    pub fn read_committed(&self) -> Result<Option<LogId>> {
        Ok(self.read_meta::<Option<LogId>>(META_COMMITTED)?.flatten())
    }

    pub fn read_last_purged(&self) -> Result<Option<LogId>> {
        self.read_meta(META_LAST_PURGED)
    }

    /// Number of entries present.
    pub fn len(&self) -> usize {
        self.inner.log.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.log.is_empty()
    }

    fn read_meta<T: DeserializeOwned>(&self, name: &[u8]) -> Result<Option<T>> {
        match self.inner.meta.get(name)? {
            None => Ok(None),
            Some(v) => {
                let what = || {
                    format!(
                        "meta record `{}` in {}",
                        String::from_utf8_lossy(name),
                        self.inner.dir.display()
                    )
                };
                Ok(Some(decode_record(&v, &what)?))
            }
        }
    }

    fn write_meta<T: Serialize>(&self, name: &[u8], value: &T) -> Result<()> {
        self.inner.meta.insert(name, encode_record(value)?)?;
        Ok(())
    }

    /// Test hook: overwrite the raw bytes stored for one index (to simulate corruption).
    #[doc(hidden)]
    pub fn raw_put(&self, index: u64, bytes: &[u8]) -> Result<()> {
        self.inner.log.insert(key(index), bytes)?;
        self.inner.sync_blocking()
    }

    /// Test hook: the raw bytes stored for one index.
    #[doc(hidden)]
    pub fn raw_get(&self, index: u64) -> Result<Option<Vec<u8>>> {
        Ok(self.inner.log.get(key(index))?.map(|v| v.to_vec()))
    }
}

impl Inner {
    fn sync_blocking(&self) -> Result<()> {
        self.db.flush()?;
        if let Some(file) = &self.data_file {
            // fdatasync: the data and the size needed to read it back, not timestamps.
            file.sync_data().at(&self.dir.join(SLED_DATA_FILE))?;
        }
        Ok(())
    }
}

fn read_err(e: Error) -> StorageError {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_err(e: Error) -> StorageError {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.read_entries(range).map_err(read_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged = self.read_last_purged().map_err(read_err)?;
        let (_, last) = self.first_and_last().map_err(read_err)?;
        let last_log_id = last.map(|e| e.log_id).or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let result = async {
            self.write_meta(META_VOTE, vote)?;
            self.sync().await
        };
        result
            .await
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        // Handed to openraft as not committed. openraft 0.9 restores a node whose stored
        // vote is its own committed leadership straight into the leader state, in the same
        // term and without a new noop entry, so its read index would be the persisted
        // commit index, which may be behind what it acknowledged before the crash. With
        // the vote uncommitted, a restarted node rejoins as a follower and any leader is
        // elected afresh, in a new term, and commits a noop before it serves reads. The
        // term and who was voted for — what Raft's safety needs — are kept.
        let vote = LogStore::read_vote(self).map_err(|e| StorageIOError::read_vote(AnyError::new(&e)))?;
        Ok(vote.map(|v| Vote { committed: false, ..v }))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed here: the next append's flush (or any other) carries it. openraft
        // only uses it to re-apply committed entries at start-up, and a stale value is
        // safe there: the entries are re-committed by the leader. Reads never depend on
        // it, because a restarted node never resumes leadership (see `read_vote`).
        self.write_meta(META_COMMITTED, &committed).map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        LogStore::read_committed(self).map_err(read_err)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        match self.append_entries(entries).await {
            Ok(_) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let result = async {
            let mut batch = sled::Batch::default();
            for k in self.inner.log.range(key(log_id.index)..).keys() {
                batch.remove(k?);
            }
            self.inner.log.apply_batch(batch)?;
            self.sync().await
        };
        result.await.map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let result = async {
            // Persist the new purge point first: a crash between the two steps leaves
            // entries below it that get_log_state simply does not report.
            self.write_meta(META_LAST_PURGED, &log_id)?;
            self.sync().await?;
            let mut batch = sled::Batch::default();
            for k in self.inner.log.range(..=key(log_id.index)).keys() {
                batch.remove(k?);
            }
            self.inner.log.apply_batch(batch)?;
            self.sync().await
        };
        result.await.map_err(write_err)
    }
}
