//! `gavel snapshot restore`: a new data dir for a one-node cluster, seeded from a backup
//! file (or a plain snapshot file of a cluster with nothing archived), as
//! `etcdutl snapshot restore` does for etcd.
//!
//! The new node keeps the state and the log position of the snapshot — its last log id,
//! the archive it refers to, the accounts and tokens — but its membership is rewritten to
//! one voter, itself, at the given address: started with that id, it elects itself and
//! serves, and other nodes then `--join` it (they catch up through its snapshot and fetch
//! the archive from it). Its log is empty, purged up to the snapshot, and its vote is the
//! snapshot's term, committed.
//!
//! Everything is written into `<data_dir>.restoring` first, each file durably, and the
//! directory renamed into place at the end: a failure or a crash leaves no half-restored
//! data dir behind under the real name.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use openraft::storage::RaftLogStorage;

use crate::archive::Archive;
use crate::backup::{is_backup, BackupReader};
use crate::error::IoContext;
use crate::fsutil::{create_dir_durably, sync_dir, write_durably};
use crate::inspect::{archive_dir, sled_dir, snapshots_dir};
use crate::snapshot::{decode_snapshot, encode_snapshot, read_snapshot_file, SnapshotDir};
use crate::{
    AuctionBook, Error, LogStore, LogStoreOptions, Membership, NodeId, Result, SnapshotMeta, StoredMembership,
};

/// The file in a data dir naming its node (as `gavel serve` writes it).
pub const NODE_ID_FILE: &str = "node-id";
/// Archive bytes read from the backup at a time.
const RESTORE_CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// What a restore produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Restored {
    pub data_dir: PathBuf,
    pub node_id: NodeId,
    pub addr: String,
    pub term: u64,
    pub index: u64,
    pub state_hash: String,
    pub archived_auctions: u64,
}

/// Restores `file` into `data_dir` (which must not exist, or be empty) for node `id`
/// reachable at `addr` (`host:port`).
pub async fn restore(file: &Path, data_dir: &Path, id: NodeId, addr: &str) -> Result<Restored> {
    if id == 0 {
        return Err(Error::InvalidInput("the node id must be at least 1".into()));
    }
    if data_dir.exists() && std::fs::read_dir(data_dir).at(data_dir)?.next().is_some() {
        return Err(Error::InvalidInput(format!(
            "{} is not empty; restore into a new data dir",
            data_dir.display()
        )));
    }
    let mut staging = data_dir.as_os_str().to_owned();
    staging.push(".restoring");
    let staging = PathBuf::from(staging);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).at(&staging)?;
    }
    create_dir_durably(&staging)?;
    let restored = restore_into(file, &staging, id, addr).await;
    if restored.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    let mut restored = restored?;
    if data_dir.exists() {
        std::fs::remove_dir(data_dir).at(data_dir)?;
    }
    std::fs::rename(&staging, data_dir).at(data_dir)?;
    sync_dir(
        data_dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )?;
    restored.data_dir = data_dir.to_path_buf();
    Ok(restored)
}

async fn restore_into(file: &Path, dir: &Path, id: NodeId, addr: &str) -> Result<Restored> {
    let mut prefix = [0u8; 8];
    File::open(file).at(file)?.read_exact(&mut prefix).at(file)?;
    let archive = Archive::open(archive_dir(dir))?;
    let (snapshot, sfile) = if is_backup(&prefix) {
        let mut reader = BackupReader::open(BufReader::new(File::open(file).at(file)?))?;
        while let Some(frames) = reader.next_frames(RESTORE_CHUNK_BYTES)? {
            archive.append_frames(&frames)?;
        }
        let (snapshot, sfile) = (reader.snapshot.clone(), reader.file.clone());
        reader.finish()?;
        (snapshot, sfile)
    } else {
        read_snapshot_file(file)?
    };
    let book = AuctionBook::decode(sfile.payload(&snapshot))?;
    let (records, digest) = book.archive_ref();
    if archive.count() != records {
        return Err(Error::InvalidInput(format!(
            "this snapshot refers to {records} archived auctions, which a snapshot file does not carry; \
             restore from a backup (GET /v1/admin/backup), which holds them"
        )));
    }
    archive.truncate_to(records, &digest)?;
    archive.sync()?;
    let last_log_id = sfile
        .meta
        .last_log_id
        .ok_or_else(|| Error::InvalidInput("the snapshot holds no log entries: there is nothing to restore".into()))?;
    // One voter: this node, at `addr`.
    let nodes = std::collections::BTreeMap::from([(id, openraft::BasicNode { addr: addr.to_string() })]);
    let membership = Membership::new(vec![std::collections::BTreeSet::from([id])], nodes)
        .map_err(|e| Error::InvalidInput(format!("membership of the restored node: {e}")))?;
    let meta = SnapshotMeta {
        last_log_id: Some(last_log_id),
        last_membership: StoredMembership::new(Some(last_log_id), membership),
    };
    let bytes = encode_snapshot(&meta, sfile.payload(&snapshot))?;
    decode_snapshot(&bytes, "restored")?;
    SnapshotDir::open(snapshots_dir(dir))?.write(&meta, &bytes)?;

    let mut log = LogStore::open(sled_dir(dir), LogStoreOptions::default())?;
    let io = |e: std::io::Error| Error::io(sled_dir(dir), e);
    log.save_committed(Some(last_log_id)).await.map_err(io)?;
    log.purge(last_log_id).await.map_err(io)?;
    let vote = crate::Vote::new_committed(last_log_id.leader_id.term, id);
    log.save_vote(&vote).await.map_err(io)?;
    drop(log);
    write_durably(&dir.join(NODE_ID_FILE), format!("{id}\n").as_bytes())?;
    Ok(Restored {
        data_dir: dir.to_path_buf(),
        node_id: id,
        addr: addr.to_string(),
        term: last_log_id.leader_id.term,
        index: last_log_id.index,
        state_hash: book.state_hash(),
        archived_auctions: records,
    })
}
