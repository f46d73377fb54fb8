//! openraft's `RaftStateMachine`: committed entries applied to the in-memory
//! [`AuctionBook`], snapshots kept as files ([`crate::snapshot`]).
//!
//! The book lives only in memory. At start [`StateMachineStore::open`] restores it from
//! the newest valid snapshot file; openraft then re-applies the committed log after it
//! (the log store persists `committed`). `apply` takes the write lock once per batch and
//! never awaits while holding it; readers (the API) take the read lock briefly.
//! Snapshots are built from a clone of the book taken under the read lock, encoded and
//! written outside it, so applying continues while a snapshot is written.
//!
//! Archived auctions ([`crate::archive`]) leave the book during `apply` and are appended
//! to the archive files under the same write lock, so a reader that no longer finds an
//! auction in the book finds it in the archive. The archive is synced before every
//! snapshot (which no longer holds those auctions) is written, and cut back to the
//! snapshot's record count at start (the log after it writes the rest again).

use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use futures_util::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, RaftSnapshotBuilder};

use crate::archive::Archive;
use crate::snapshot::{decode_snapshot, encode_snapshot, SnapshotDir};
use crate::AuctionEvent;
use crate::{AuctionBook, Entry, Error, LogId, Response, Result, SnapshotMeta, StoredMembership, TypeConfig};

/// A snapshot as openraft passes it around: the whole file in memory.
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, Cursor<Vec<u8>>>;

/// What the state machine has applied.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub book: AuctionBook,
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership,
}

/// Applied auction events buffered for slow listeners before they lag (and then
/// catch up from the book's recent events).
pub const APPLIED_EVENTS_CHANNEL_MAX: usize = 16_384;

/// The state machine and its snapshot directory. Clones share state.
#[derive(Debug, Clone)]
pub struct StateMachineStore {
    state: Arc<RwLock<Applied>>,
    snapshots: SnapshotDir,
    archive: Archive,
    /// Set when a snapshot could not be written for lack of space.
    disk_full: Arc<std::sync::atomic::AtomicBool>,
    /// Every auction event, as it is applied on this node. A command answered from the
    /// idempotency table sends its (old) events again: listeners dedupe by `seq`.
    events: tokio::sync::broadcast::Sender<AuctionEvent>,
}

fn snapshot_err(e: Error) -> std::io::Error {
    let kind = match &e {
        Error::Io { source, .. } => source.kind(),
        _ => std::io::ErrorKind::Other,
    };
    std::io::Error::new(kind, e.to_string())
}

impl StateMachineStore {
    /// Opens the snapshot directory and restores the newest valid snapshot, if any.
    /// Restores the newest valid snapshot from `snapshot_dir` and opens the archive in
    /// `archive_dir`, cut back to what that snapshot says it holds.
    pub fn open(snapshot_dir: impl AsRef<Path>, archive_dir: impl AsRef<Path>) -> Result<Self> {
        let snapshots = SnapshotDir::open(snapshot_dir)?;
        let archive = Archive::open(archive_dir)?;
        let mut applied = Applied::default();
        if let Some((path, bytes, file)) = snapshots.load_newest_valid()? {
            applied.book = AuctionBook::decode(file.payload(&bytes)).map_err(|e| match e {
                Error::Corrupt { reason, .. } => Error::corrupt(format!("snapshot {}", path.display()), reason),
                other => other,
            })?;
            applied.last_applied = file.meta.last_log_id;
            applied.last_membership = file.meta.last_membership.clone();
            crate::metrics::SNAPSHOT_SIZE_BYTES.set(i64::try_from(bytes.len()).unwrap_or(i64::MAX));
            tracing::info!(file = %path.display(), last_applied = ?applied.last_applied, "restored state from snapshot");
        }
        let (records, digest) = applied.book.archive_ref();
        archive.truncate_to(records, &digest)?;
        let (events, _) = tokio::sync::broadcast::channel(APPLIED_EVENTS_CHANNEL_MAX);
        Ok(StateMachineStore {
            state: Arc::new(RwLock::new(applied)),
            snapshots,
            archive,
            disk_full: Arc::default(),
            events,
        })
    }

    /// A consistent point to back up: the meta and a copy of the book as applied now
    /// (the archive holds every record the book counts).
    pub fn backup_point(&self) -> (SnapshotMeta, AuctionBook) {
        let state = self.read();
        let meta = SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.last_membership.clone(),
        };
        (meta, state.book.clone())
    }

    /// The archive of closed auctions.
    pub fn archive(&self) -> &Archive {
        &self.archive
    }

    /// Read access to the applied state. Hold it briefly; never across an `.await`.
    pub fn read(&self) -> RwLockReadGuard<'_, Applied> {
        self.state.read().expect("state machine lock poisoned")
    }

    pub fn last_applied(&self) -> Option<LogId> {
        self.read().last_applied
    }

    pub fn state_hash(&self) -> String {
        self.read().book.state_hash()
    }

    /// Auction events as they are applied here, from now on.
    pub fn subscribe_events(&self) -> tokio::sync::broadcast::Receiver<AuctionEvent> {
        self.events.subscribe()
    }

    pub fn snapshot_dir(&self) -> &SnapshotDir {
        &self.snapshots
    }

    /// Whether a snapshot could not be written because the disk is full.
    pub fn disk_full(&self) -> bool {
        self.disk_full.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Passes `result` on; a disk-full error is remembered and logged with what to do.
    fn watch<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            if e.is_disk_full() && !self.disk_full.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::error!(
                    dir = %self.snapshots.path().display(),
                    error = %e,
                    "no room for a snapshot: Raft on this node stops rather than fill the disk, and \
                     writes are refused with 507 insufficient_storage; everything acknowledged is on \
                     disk. Free space (or grow the volume), then restart the node"
                );
            }
        }
        result
    }

    /// Applies entries in order: the book's pure `apply`, then the archive records it
    /// made are written. An archive write that fails stops the node (its error goes to
    /// openraft): replicas must not differ in what they hold. Timed per call (one batch)
    /// in `gavel_raft_apply_duration_seconds`, lock wait included.
    pub fn apply_entries(&self, entries: impl IntoIterator<Item = Entry>) -> Result<Vec<Response>> {
        let timer = crate::metrics::APPLY_SECONDS.start_timer();
        let mut state = self.state.write().expect("state machine lock poisoned");
        let mut out = Vec::new();
        for entry in entries {
            let response = match entry.payload {
                EntryPayload::Blank => Response::None,
                EntryPayload::Normal(ref cmd) => state.book.apply(cmd),
                EntryPayload::Membership(ref m) => {
                    state.last_membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    Response::None
                }
            };
            let archived = state.book.take_archived();
            if !archived.is_empty() {
                let written = self.archive.append(&archived);
                self.watch(written)?;
            }
            state.last_applied = Some(entry.log_id);
            // No listener is not an error.
            response.for_each_event(&mut |event| {
                if matches!(
                    event.kind,
                    crate::EventKind::BidAccepted { .. } | crate::EventKind::SealedBid { .. }
                ) {
                    crate::metrics::APPLIED_BIDS.inc();
                }
                let _ = self.events.send(event.clone());
            });
            out.push(response);
        }
        drop(state);
        timer.observe_duration();
        crate::metrics::APPLY_BATCH_ENTRIES.observe(out.len() as f64);
        Ok(out)
    }

    /// Builds a snapshot file of the current state and returns its meta and bytes.
    /// Timed in `gavel_snapshot_build_duration_seconds` (successful builds only).
    pub async fn build(&self) -> Result<(SnapshotMeta, Vec<u8>)> {
        let started = std::time::Instant::now();
        let (book, meta) = {
            let state = self.read();
            let meta = SnapshotMeta {
                last_log_id: state.last_applied,
                last_membership: state.last_membership.clone(),
            };
            (state.book.clone(), meta)
        };
        let dir = self.snapshots.clone();
        let archive = self.archive.clone();
        let result = tokio::task::spawn_blocking(move || {
            // The snapshot no longer holds the auctions it archived: their records must be
            // on disk before it is.
            archive.sync()?;
            let bytes = encode_snapshot(&meta, &book.encode())?;
            let path = dir.write(&meta, &bytes)?;
            tracing::info!(file = %path.display(), bytes = bytes.len(), "snapshot written");
            Ok((meta, bytes))
        })
        .await
        .map_err(|e| Error::io(self.snapshots.path(), std::io::Error::other(e)))
        .and_then(|r| r);
        if let Ok((_, bytes)) = &result {
            crate::metrics::SNAPSHOT_BUILD_SECONDS.observe(started.elapsed().as_secs_f64());
            crate::metrics::SNAPSHOT_SIZE_BYTES.set(i64::try_from(bytes.len()).unwrap_or(i64::MAX));
        }
        self.watch(result)
    }

    /// Replaces the state with a snapshot file's bytes received from the leader.
    pub async fn install(&self, meta: &SnapshotMeta, bytes: Vec<u8>) -> Result<()> {
        let file = decode_snapshot(
            &bytes,
            &format!("received from the leader ({})", crate::snapshot::snapshot_id(meta)),
        )?;
        if file.meta.last_log_id != meta.last_log_id {
            return Err(Error::corrupt(
                "received snapshot",
                format!(
                    "file says last log id {:?}, transfer says {:?}",
                    file.meta.last_log_id, meta.last_log_id
                ),
            ));
        }
        let book = AuctionBook::decode(file.payload(&bytes))?;
        // The archive records the snapshot refers to were fetched before it was handed to
        // Raft (`gavel_raft::rpc`); anything after them is cut, and the rest checked.
        let (records, digest) = book.archive_ref();
        let archive = self.archive.clone();
        let size = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
        let dir = self.snapshots.clone();
        let write_meta = meta.clone();
        let written = tokio::task::spawn_blocking(move || {
            archive.truncate_to(records, &digest)?;
            archive.sync()?;
            dir.write(&write_meta, &bytes)?;
            dir.remove_newer_than(write_meta.last_log_id.map(|id| id.index).unwrap_or(0))
        })
        .await
        .map_err(|e| Error::io(self.snapshots.path(), std::io::Error::other(e)))
        .and_then(|r| r);
        self.watch(written)?;
        crate::metrics::SNAPSHOT_SIZE_BYTES.set(size);
        let mut state = self.state.write().expect("state machine lock poisoned");
        *state = Applied {
            book,
            last_applied: meta.last_log_id,
            last_membership: meta.last_membership.clone(),
        };
        tracing::info!(last_applied = ?meta.last_log_id, "installed snapshot from the leader");
        Ok(())
    }

    /// The newest valid snapshot file: its meta and bytes.
    pub fn current(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>> {
        Ok(self
            .snapshots
            .load_newest_valid()?
            .map(|(_, bytes, file)| (file.meta, bytes)))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(&mut self) -> std::io::Result<Snapshot> {
        let (meta, bytes) = self.build().await.map_err(snapshot_err)?;
        Ok(Snapshot {
            meta,
            snapshot: Cursor::new(bytes),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> std::io::Result<(Option<LogId>, StoredMembership)> {
        let state = self.read();
        Ok((state.last_applied, state.last_membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> std::io::Result<()>
    where
        Strm: Stream<Item = std::io::Result<EntryResponder<TypeConfig>>> + Unpin + Send,
    {
        // Everything openraft hands over at once is applied under one write lock.
        let mut batch = Vec::new();
        while let Some(item) = entries.next().await {
            batch.push(item?);
        }
        let (entries, responders): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let responses = self.apply_entries(entries).map_err(snapshot_err)?;
        for (responder, response) in responders.into_iter().zip(responses) {
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Cursor<Vec<u8>>) -> std::io::Result<()> {
        self.install(meta, snapshot.into_inner()).await.map_err(snapshot_err)
    }

    async fn get_current_snapshot(&mut self) -> std::io::Result<Option<Snapshot>> {
        let current = self.current().map_err(snapshot_err)?;
        Ok(current.map(|(meta, bytes)| Snapshot {
            meta,
            snapshot: Cursor::new(bytes),
        }))
    }
}
