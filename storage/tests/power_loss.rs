//! Power loss at the storage level: sled must never put a log page in a blob file (a file
//! it never fsyncs, which a power cut leaves empty), and if a log is damaged that way
//! anyway, opening or verifying it is an error naming the directory, not a panic.

use std::fs;
use std::path::Path;

use gavel_storage::log_store::{ENTRY_BYTES_MAX, SLED_BLOBS_DIR};
use gavel_storage::{Command, Entry, Error, LogStore, LogStoreOptions, Op};
use openraft::EntryPayload;

/// sled's default segment size, which Gavel used before it chose its own.
const SLED_DEFAULT_SEGMENT_BYTES: usize = 512 * 1024;

/// An entry whose encoding is close to `bytes` (a bid with a long bidder name).
fn big_entry(index: u64, bytes: usize) -> Entry {
    Entry {
        log_id: gavel_storage::log_id(1, 1, index),
        payload: EntryPayload::Normal(Command::new(
            index,
            Op::PlaceBid {
                auction_id: 1,
                bidder: format!("{index:08}{}", "b".repeat(bytes - 64)),
                amount: Some(1_000 + index),
                max_amount: None,
            },
        )),
    }
}

/// Appends `n` entries of about `bytes` each, 8 per append (one flush each), as a loaded
/// leader would, and returns the store.
async fn fill(dir: &Path, segment_size_bytes: usize, n: u64, bytes: usize) -> LogStore {
    let store = LogStore::open(
        dir,
        LogStoreOptions {
            segment_size_bytes,
            ..Default::default()
        },
    )
    .unwrap();
    for start in (1..=n).step_by(8) {
        let batch: Vec<Entry> = (start..(start + 8).min(n + 1)).map(|i| big_entry(i, bytes)).collect();
        store.append_entries(batch).await.unwrap();
    }
    store
}

fn blob_paths(dir: &Path) -> Vec<std::path::PathBuf> {
    fs::read_dir(dir.join(SLED_BLOBS_DIR))
        .map(|it| it.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_largest_entries_never_become_blob_files() {
    eprintln!("entries at the size bound, 8 per flush: no page may go to a blob file");
    let tmp = tempfile::tempdir().unwrap();
    let store = fill(
        tmp.path(),
        gavel_storage::log_store::SEGMENT_SIZE_BYTES,
        400,
        ENTRY_BYTES_MAX - 256,
    )
    .await;
    assert_eq!(store.blob_files(), 0, "blob files: {:?}", blob_paths(tmp.path()));
    assert_eq!(store.verify().unwrap(), 400);
}

#[tokio::test]
async fn with_sleds_default_segment_64k_entries_do_make_blobs() {
    eprintln!("control: the default 512 KiB segment puts pages of 64 KiB entries in blob files");
    let tmp = tempfile::tempdir().unwrap();
    let store = fill(tmp.path(), SLED_DEFAULT_SEGMENT_BYTES, 200, 64 * 1024).await;
    assert!(store.blob_files() > 0, "expected blob files with the small segment");
}

#[tokio::test]
async fn an_emptied_blob_file_is_an_error_naming_the_directory_not_a_panic() {
    eprintln!("a blob file emptied as a power cut would leave it: open/verify fail cleanly");
    // sled either panics at open (most runs) or rolls its recovery back to before the
    // first damaged page (then the entries are simply not there). Neither may abort
    // the process; a panic must come back as `Unopenable` naming the directory.
    let mut unopenable = 0;
    for attempt in 0..6 {
        let tmp = tempfile::tempdir().unwrap();
        let store = fill(tmp.path(), SLED_DEFAULT_SEGMENT_BYTES, 200, 64 * 1024).await;
        drop(store);
        let blobs = blob_paths(tmp.path());
        assert!(!blobs.is_empty());
        for blob in &blobs {
            fs::File::create(blob).unwrap(); // truncates to 0 bytes
        }
        match LogStore::open(tmp.path(), LogStoreOptions::default()).and_then(|s| s.verify()) {
            Err(Error::Unopenable { dir, reason }) => {
                assert_eq!(dir, tmp.path());
                eprintln!("attempt {attempt}: reported: {reason}");
                unopenable += 1;
            }
            Err(other @ Error::Corrupt { .. }) => eprintln!("attempt {attempt}: reported as corrupt: {other}"),
            Ok(records) => {
                assert!(records < 200, "the damage cannot go unnoticed: {records} records");
                eprintln!("attempt {attempt}: sled rolled back to {records} records");
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert!(unopenable > 0, "sled's panic was seen and reported at least once");
}
