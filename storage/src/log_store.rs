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
//! sled's data file. `save_committed` rides on the next flush (see there).
//! `sync_file_range` alone survives a process crash but neither flushes file metadata nor
//! the disk's write cache, so without the `fsync` a power loss could lose acknowledged
//! entries or a vote.
//!
//! `append` does not wait for the disk. It writes the batch into sled (memory) and hands
//! openraft's callback to the flusher, a thread of its own that takes every callback
//! waiting, makes everything written so far durable with one flush + fdatasync, and then
//! reports each callback in submission order. openraft 0.10 replicates an entry as soon as
//! `append` returns, so the leader's fsync overlaps the followers' instead of preceding
//! them; an entry still counts toward a quorum only once its callback reported it durable.
//! Concurrent appends share one fsync: that coalescing is what makes it fast.
//!
//! Power loss. sled writes a page larger than a quarter of its segment size to a file of
//! its own under `blobs/`, which it never fsyncs; after a power cut that file is empty
//! and sled 0.34.7 panics at open. So the log is opened with sled's largest segment
//! ([`SEGMENT_SIZE_BYTES`], 16 MiB: pages up to ~4 MiB stay inline) and every entry is
//! bounded ([`ENTRY_BYTES_MAX`]); a leaf holds at most ~20 items before it splits or
//! after it merges, so no page can reach the blob threshold. Should a blob file ever
//! appear anyway, it is fsynced (with its directory) inside the next flush, counted
//! ([`LogStore::blob_files`]) and logged as a warning. sled's `conf` file and its
//! directory are fsynced at open: sled writes them without. A panic inside sled while
//! opening or reading the log becomes [`Error::Unopenable`], not an abort.
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

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::RaftLogReader;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{decode_record, encode_record};
use crate::error::IoContext;
use crate::{Entry, Error, LogId, Result, TypeConfig, Vote};

pub const LOG_TREE: &str = "log";
pub const META_TREE: &str = "meta";
pub const META_VOTE: &[u8] = b"vote";
pub const META_COMMITTED: &[u8] = b"committed";
pub const META_LAST_PURGED: &[u8] = b"last_purged";
/// sled's one data file inside its directory (sled 0.34).
const SLED_DATA_FILE: &str = "db";
/// sled's configuration file (segment size, version), which sled writes without fsync.
const SLED_CONF_FILE: &str = "conf";
/// Where sled puts pages too large for a segment; never fsynced by sled.
pub const SLED_BLOBS_DIR: &str = "blobs";
/// sled's segment size: its largest (sled refuses more). A page bigger than a quarter of
/// it minus a small header goes to a blob file; 16 MiB puts that at ~4 MiB. Fixed when a
/// log is created (sled keeps it in `conf`).
pub const SEGMENT_SIZE_BYTES: usize = 16 * 1024 * 1024;
/// Largest encoded log entry the store accepts. A sled leaf splits above 16 items and two
/// small leaves merge below 4, so a page holds at most ~21 entries: 21 × 128 KiB ≈ 2.7 MiB,
/// well under the ~4 MiB blob threshold of [`SEGMENT_SIZE_BYTES`]. Client writes are far
/// smaller (group-commit entries stop at 64 KiB of commands).
pub const ENTRY_BYTES_MAX: usize = 128 * 1024;

/// sled's page cache: the log is written, read back only for replication of recent
/// entries and purged behind snapshots, so a small cache serves it; sled fills whatever
/// it is given, and it counts in the node's memory.
pub const LOG_CACHE_BYTES_DEFAULT: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct LogStoreOptions {
    /// `fsync` sled's data file after each flush, so acknowledged writes survive power
    /// loss and not only a process crash. On by default.
    pub fsync: bool,
    /// sled page cache size in bytes ([`LOG_CACHE_BYTES_DEFAULT`]).
    pub cache_capacity_bytes: u64,
    /// sled's segment size for a new log; tests lower it to provoke blob files.
    #[doc(hidden)]
    pub segment_size_bytes: usize,
}

impl Default for LogStoreOptions {
    fn default() -> Self {
        LogStoreOptions {
            fsync: true,
            cache_capacity_bytes: LOG_CACHE_BYTES_DEFAULT,
            segment_size_bytes: SEGMENT_SIZE_BYTES,
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
    /// Blob files already fsynced (see the module docs: there should be none).
    synced_blobs: std::sync::Mutex<std::collections::BTreeSet<std::ffi::OsString>>,
    /// Set once a write failed because the disk is full; the node then refuses writes
    /// (507) and reports itself unhealthy until restarted with space freed.
    disk_full: std::sync::atomic::AtomicBool,
    /// Names in sled's directory when it was last fsynced. sled renames its own
    /// page-table snapshot into place without a directory fsync; a flush that sees the
    /// names changed fsyncs the directory.
    synced_names: std::sync::Mutex<std::collections::BTreeSet<std::ffi::OsString>>,
    /// Callbacks waiting for the next flush (see the module docs). Dropping the store
    /// closes it, and the flusher thread ends.
    flusher: std::sync::mpsc::Sender<Flushed>,
}

/// What the flusher reports to once every write submitted before it is durable.
pub type Flushed = Box<dyn FnOnce(io::Result<()>) + Send>;

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
    ///
    /// A panic inside sled (as sled 0.34.7 does on a blob file emptied by a power cut) is
    /// caught and returned as [`Error::Unopenable`].
    pub fn open(dir: impl AsRef<Path>, options: LogStoreOptions) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        crate::fsutil::create_dir_durably(&dir)?;
        // A log keeps the segment size it was created with (sled refuses another).
        let segment_size = match stored_segment_size(&dir) {
            Some(stored) => {
                if stored < SEGMENT_SIZE_BYTES {
                    tracing::warn!(
                        dir = %dir.display(),
                        segment_size = stored,
                        "this log was created with a small sled segment size: large pages may go \
                         to blob files that a power cut can empty; re-create this node's data dir \
                         (see docs/operations.md, recovering a node from its peers)"
                    );
                }
                stored
            }
            None => options.segment_size_bytes,
        };
        let config = sled::Config::new()
            .path(&dir)
            .cache_capacity(options.cache_capacity_bytes)
            .segment_size(segment_size);
        let db = catch_sled_panic(&dir, || config.open())??;
        let log = db.open_tree(LOG_TREE)?;
        let meta = db.open_tree(META_TREE)?;
        // sled wrote `conf` (and perhaps created `db`, `blobs/`) without fsync: make them
        // durable before anything depends on them.
        for name in [SLED_CONF_FILE, SLED_DATA_FILE] {
            let path = dir.join(name);
            if path.exists() {
                File::open(&path).and_then(|f| f.sync_all()).at(&path)?;
            }
        }
        crate::fsutil::sync_dir(&dir)?;
        let data_file = if options.fsync {
            let path = dir.join(SLED_DATA_FILE);
            Some(File::open(&path).at(&path)?)
        } else {
            None
        };
        let (flusher, waiting) = std::sync::mpsc::channel();
        let store = LogStore {
            inner: Arc::new(Inner {
                dir,
                db,
                log,
                meta,
                data_file,
                synced_blobs: Default::default(),
                synced_names: Default::default(),
                disk_full: Default::default(),
                flusher,
            }),
        };
        let weak = Arc::downgrade(&store.inner);
        std::thread::Builder::new()
            .name("gavel-log-flush".into())
            .spawn(move || run_flusher(weak, waiting))
            .map_err(|e| Error::io(store.dir(), e))?;
        if options.fsync {
            store.inner.sync_blobs()?;
            store.inner.sync_dir_if_changed()?;
        }
        Ok(store)
    }

    /// Number of files in sled's `blobs/` directory. Gavel bounds its pages so that there
    /// are none; a non-zero count means that bound failed (see the module docs).
    pub fn blob_files(&self) -> usize {
        count_blob_files(&self.inner.dir)
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Whether a write to the log failed because its disk is full.
    pub fn disk_full(&self) -> bool {
        self.inner.disk_full.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Passes `result` on; a disk-full error is remembered and logged once with what to do.
    fn watch<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            if e.is_disk_full() {
                self.inner.note_disk_full(e);
            }
        }
        result
    }

    /// Appends entries in one atomic batch and makes them durable with one flush (+fsync).
    /// Public so benchmarks can drive it.
    pub async fn append_entries(&self, entries: impl IntoIterator<Item = Entry>) -> Result<usize> {
        let n = self.write_entries(entries)?;
        self.sync().await?;
        Ok(n)
    }

    /// Writes entries in one atomic batch, not yet durable: [`LogStore::when_durable`]
    /// says when they are.
    pub fn write_entries(&self, entries: impl IntoIterator<Item = Entry>) -> Result<usize> {
        let timer = crate::metrics::LOG_APPEND_SECONDS.start_timer();
        let result = self.write_entries_unwatched(entries);
        timer.observe_duration();
        self.watch(result)
    }

    fn write_entries_unwatched(&self, entries: impl IntoIterator<Item = Entry>) -> Result<usize> {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for entry in entries {
            let record = encode_record(&entry)?;
            if record.len() > ENTRY_BYTES_MAX {
                return Err(Error::InvalidInput(format!(
                    "log entry {} is {} bytes encoded, over the {ENTRY_BYTES_MAX}-byte bound",
                    entry.log_id.index,
                    record.len()
                )));
            }
            batch.insert(&key(entry.log_id.index), record);
            n += 1;
        }
        self.inner.log.apply_batch(batch)?;
        Ok(n)
    }

    /// Calls `done` from the flusher thread once every write made before this call is
    /// durable (or with the error that stopped it). Calls come back in submission order.
    pub fn when_durable(&self, done: Flushed) {
        if let Err(std::sync::mpsc::SendError(done)) = self.inner.flusher.send(done) {
            done(Err(io::Error::other("the log store is closed")));
        }
    }

    /// Makes every write so far durable: sled flush, then fsync of its data file.
    pub async fn sync(&self) -> Result<()> {
        let inner = self.inner.clone();
        let result = tokio::task::spawn_blocking(move || inner.sync_blocking())
            .await
            .map_err(|e| Error::io(&self.inner.dir, io::Error::other(e)))
            .and_then(|r| r);
        self.watch(result)
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
        catch_sled_panic(&self.inner.dir, || self.verify_records())?
    }

    fn verify_records(&self) -> Result<u64> {
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
        let result = encode_record(value).and_then(|r| Ok(self.inner.meta.insert(name, r).map(|_| ())?));
        self.watch(result)
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
    fn note_disk_full(&self, e: &Error) {
        if !self.disk_full.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::error!(
                dir = %self.dir.display(),
                error = %e,
                "the disk holding the Raft log is full. Raft on this node stops and writes are \
                 refused with 507 insufficient_storage; everything acknowledged is on disk. Free \
                 space (or grow the volume), then restart the node"
            );
        }
    }

    /// Flush (+ fdatasync), timed in `gavel_raft_log_fsync_duration_seconds`.
    fn sync_blocking(&self) -> Result<()> {
        let _timer = crate::metrics::LOG_FSYNC_SECONDS.start_timer();
        self.db.flush()?;
        if let Some(file) = &self.data_file {
            self.sync_blobs()?;
            self.sync_dir_if_changed()?;
            // fdatasync: the data and the size needed to read it back, not timestamps.
            file.sync_data().at(&self.dir.join(SLED_DATA_FILE))?;
        }
        Ok(())
    }

    /// fsyncs sled's directory if its entries changed since it was last fsynced.
    fn sync_dir_if_changed(&self) -> Result<()> {
        let names = std::fs::read_dir(&self.dir)
            .at(&self.dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<std::collections::BTreeSet<_>>>()
            .at(&self.dir)?;
        let mut synced = self.synced_names.lock().expect("name set lock poisoned");
        if *synced != names {
            crate::fsutil::sync_dir(&self.dir)?;
            *synced = names;
        }
        Ok(())
    }

    /// fsyncs blob files not yet fsynced, then their directory; warns about each one.
    /// Normally `blobs/` is empty and this is one `readdir`.
    fn sync_blobs(&self) -> Result<()> {
        let blobs = self.dir.join(SLED_BLOBS_DIR);
        let Ok(entries) = std::fs::read_dir(&blobs) else {
            return Ok(());
        };
        let mut synced = self.synced_blobs.lock().expect("blob set lock poisoned");
        let mut present = std::collections::BTreeSet::new();
        let mut new = 0;
        for entry in entries {
            let entry = entry.at(&blobs)?;
            let name = entry.file_name();
            if !synced.contains(&name) {
                let path = entry.path();
                match File::open(&path).and_then(|f| f.sync_all()) {
                    Ok(()) => {}
                    // sled removed it meanwhile.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io(path, e)),
                }
                tracing::warn!(
                    file = %path.display(),
                    "sled wrote a page to a blob file, which Gavel's page bound should prevent; \
                     fsynced it. Please report this with the output of `gavel log verify`"
                );
                new += 1;
            }
            present.insert(name);
        }
        if new > 0 {
            crate::fsutil::sync_dir(&blobs)?;
        }
        *synced = present;
        Ok(())
    }
}

/// The flusher thread: waits for a callback, takes every other one already waiting, makes
/// all writes so far durable once, then reports to each in order. Ends when the store is
/// dropped.
fn run_flusher(store: std::sync::Weak<Inner>, waiting: std::sync::mpsc::Receiver<Flushed>) {
    while let Ok(first) = waiting.recv() {
        let mut batch = vec![first];
        batch.extend(waiting.try_iter());
        let result = match store.upgrade() {
            Some(inner) => inner.sync_blocking().map_err(|e| {
                if e.is_disk_full() {
                    inner.note_disk_full(&e);
                }
                io::Error::other(e.to_string())
            }),
            None => Err(io::Error::other("the log store is closed")),
        };
        for done in batch {
            done(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
            });
        }
    }
}

/// The segment size recorded in sled's `conf` file, if it is there and readable (sled
/// rewrites an empty or damaged `conf` with the configured size).
fn stored_segment_size(dir: &Path) -> Option<usize> {
    let text = std::fs::read(dir.join(SLED_CONF_FILE)).ok()?;
    String::from_utf8_lossy(&text)
        .lines()
        .find_map(|line| line.strip_prefix("segment_size: "))
        .and_then(|n| n.trim().parse().ok())
}

fn count_blob_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join(SLED_BLOBS_DIR))
        .map(|entries| entries.count())
        .unwrap_or(0)
}

/// Runs `f`, turning a panic inside it (sled panics on some damaged files) into
/// [`Error::Unopenable`]. The default panic message is kept off stderr meanwhile: the
/// error says what happened.
pub(crate) fn catch_sled_panic<T>(dir: &Path, f: impl FnOnce() -> T) -> Result<T> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    result.map_err(|payload| {
        let what = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("unknown panic");
        Error::Unopenable {
            dir: dir.to_path_buf(),
            reason: format!("sled panicked: {what}"),
        }
    })
}

/// openraft's storage traits speak `io::Error`: keep the kind, and our message (which
/// names the file or record).
fn io_err(e: Error) -> io::Error {
    let kind = match &e {
        Error::Io { source, .. } => source.kind(),
        Error::Sled(sled::Error::Io(source)) => source.kind(),
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e.to_string())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry>> {
        self.read_entries(range).map_err(io_err)
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        LogStore::read_vote(self).map_err(io_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let last_purged = self.read_last_purged().map_err(io_err)?;
        let (_, last) = self.first_and_last().map_err(io_err)?;
        let last_log_id = last.map(|e| e.log_id).or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        self.write_meta(META_VOTE, vote).map_err(io_err)?;
        self.sync().await.map_err(io_err)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        // Not flushed here: the next flush carries it. openraft only uses it to re-apply
        // committed entries at start-up, and a stale value is safe there: the entries are
        // re-committed by the leader. Reads never depend on it, because a restarted node
        // never resumes leadership without an election (`enable_leader_restore` is off).
        self.write_meta(META_COMMITTED, &committed).map_err(io_err)
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        LogStore::read_committed(self).map_err(io_err)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        match self.write_entries(entries) {
            Ok(_) => {
                self.when_durable(Box::new(move |result| callback.io_completed(result)));
                Ok(())
            }
            Err(e) => {
                let e = io_err(e);
                callback.io_completed(Err(io::Error::new(e.kind(), e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let from = last_log_id.map_or(0, |id| id.index + 1);
        let result = async {
            let mut batch = sled::Batch::default();
            for k in self.inner.log.range(key(from)..).keys() {
                batch.remove(k?);
            }
            self.inner.log.apply_batch(batch)?;
            self.sync().await
        };
        result.await.map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
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
        result.await.map_err(io_err)
    }
}
