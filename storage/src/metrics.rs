//! Prometheus metrics of the storage side, in the process's default registry (served by
//! `GET /metrics` with the rest).
//!
//! - The Raft log: how long `append` takes to write a batch into sled
//!   ([`LOG_APPEND_SECONDS`], memory only: it returns before the disk), and how long each
//!   flush that makes writes durable takes ([`LOG_FSYNC_SECONDS`]: sled's flush plus the
//!   `fdatasync` of its data file; one flush covers every append waiting for it).
//! - The state machine: how long each batch openraft hands to `apply` holds the book's
//!   write lock ([`APPLY_SECONDS`], per batch, not per entry: that is what readers wait
//!   for), and the entries in it ([`APPLY_BATCH_ENTRIES`]).
//! - Snapshots: how long building one took ([`SNAPSHOT_BUILD_SECONDS`]: clone, encode,
//!   write, fsync) and the newest one's size ([`SNAPSHOT_SIZE_BYTES`]: restored at
//!   start, built here, or received from the leader).
//! - The disk holding the data dir ([`refresh_disk`], read at scrape time).

use std::path::Path;
use std::sync::LazyLock;

use prometheus::{register_histogram, register_int_counter, register_int_gauge, Histogram, IntCounter, IntGauge};

/// Buckets for disk and in-memory storage steps, in seconds: 50 µs to 5 s. An fsync of a
/// small write takes ~0.15 ms on a local SSD, tens of ms on a busy or networked disk.
pub const STORAGE_BUCKETS_SECONDS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Buckets for building a snapshot, in seconds: 1 ms (an empty book) to 2 minutes.
pub const SNAPSHOT_BUCKETS_SECONDS: &[f64] = &[
    0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Buckets for log entries applied in one batch.
pub const APPLY_BATCH_BUCKETS_ENTRIES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];

/// Bids this node has applied (accepted bids, sealed bids included): the same on every
/// replica, so its rate is the cluster's accepted bids per second.
pub static APPLIED_BIDS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "gavel_applied_bids_total",
        "Accepted bids applied by this node's state machine (the same on every replica)."
    )
    .expect("metric registers once")
});

pub static LOG_APPEND_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "gavel_raft_log_append_duration_seconds",
        "Time to write one batch of log entries into sled (before it is durable; see gavel_raft_log_fsync_duration_seconds).",
        STORAGE_BUCKETS_SECONDS.to_vec()
    )
    .expect("metric registers once")
});

pub static LOG_FSYNC_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "gavel_raft_log_fsync_duration_seconds",
        "Time of one flush that makes the log durable: sled's flush plus fdatasync of its data file (the flush alone with fsync = false).",
        STORAGE_BUCKETS_SECONDS.to_vec()
    )
    .expect("metric registers once")
});

pub static APPLY_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "gavel_raft_apply_duration_seconds",
        "Time to apply one batch of committed entries to the book (under its write lock).",
        STORAGE_BUCKETS_SECONDS.to_vec()
    )
    .expect("metric registers once")
});

pub static APPLY_BATCH_ENTRIES: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "gavel_raft_apply_batch_entries",
        "Log entries applied in one batch.",
        APPLY_BATCH_BUCKETS_ENTRIES.to_vec()
    )
    .expect("metric registers once")
});

pub static SNAPSHOT_BUILD_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "gavel_snapshot_build_duration_seconds",
        "Time to build a snapshot: copy the book, encode it, write and fsync the file.",
        SNAPSHOT_BUCKETS_SECONDS.to_vec()
    )
    .expect("metric registers once")
});

pub static SNAPSHOT_SIZE_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "gavel_snapshot_size_bytes",
        "Size of this node's newest snapshot file: restored at start, built, or received from the leader (0: none)."
    )
    .expect("metric registers once")
});

pub static DISK_FREE_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "gavel_disk_free_bytes",
        "Bytes the node can still write on the file system holding its data dir."
    )
    .expect("metric registers once")
});

pub static DISK_SIZE_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "gavel_disk_size_bytes",
        "Size of the file system holding the node's data dir."
    )
    .expect("metric registers once")
});

/// Registers every metric of this crate, so that each is scraped (at zero) before its
/// first observation.
pub fn register() {
    LazyLock::force(&APPLIED_BIDS);
    LazyLock::force(&LOG_APPEND_SECONDS);
    LazyLock::force(&LOG_FSYNC_SECONDS);
    LazyLock::force(&APPLY_SECONDS);
    LazyLock::force(&APPLY_BATCH_ENTRIES);
    LazyLock::force(&SNAPSHOT_BUILD_SECONDS);
    LazyLock::force(&SNAPSHOT_SIZE_BYTES);
    LazyLock::force(&DISK_FREE_BYTES);
    LazyLock::force(&DISK_SIZE_BYTES);
}

/// Reads the free and total space of the file system holding `dir` into the disk gauges.
pub fn refresh_disk(dir: &Path) {
    match crate::fsutil::disk_space(dir) {
        Ok(space) => {
            DISK_FREE_BYTES.set(i64::try_from(space.available_bytes).unwrap_or(i64::MAX));
            DISK_SIZE_BYTES.set(i64::try_from(space.total_bytes).unwrap_or(i64::MAX));
        }
        Err(e) => tracing::debug!(error = %e, "cannot read the data dir's disk space"),
    }
}
