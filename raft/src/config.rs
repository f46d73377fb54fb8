//! openraft configuration and why its timeouts are what they are.
//!
//! Gavel targets small machines that also run load generators and other nodes: on the
//! 2-core development machine a follower's fsync p99 reaches a few milliseconds and, with
//! both cores busy, scheduling stalls of tens of milliseconds happen.
//!
//! - An AppendEntries RPC times out after `heartbeat_interval`, so the heartbeat stays
//!   well above a follower's fsync + network time under load: 100 ms.
//! - Failover. A follower that heard from a leader refuses votes (and pre-votes) for
//!   `election_timeout_max` after that (the leader lease); a follower's election timer
//!   fires after a random `election_timeout_min..max`, drawn afresh each time (0.10). So
//!   after a leader dies, the first candidate whose timer fires past the lease wins: about
//!   about 0.6–1.0 s with 200–400 ms.
//! - Pre-vote is on: a follower that lost the leader only on its own (a stall, a
//!   partition) asks before it raises its term, and the others, who still hear the
//!   leader, refuse. A stall of one node therefore costs no leader change; only a leader
//!   silent for the whole lease towards a majority does.
//! - Snapshots go whole and get 10 s (the 200 ms default fails for large state on a busy
//!   machine). A snapshot is taken every 10 000 entries and 1 000 entries are kept behind
//!   it, so a briefly lagging follower catches up from the log, not a snapshot.

use std::sync::Arc;

use openraft::{Config, SnapshotPolicy};
use serde::{Deserialize, Serialize};

/// Entries in one AppendEntries RPC at most. With entries of at most
/// [`gavel_storage::log_store::ENTRY_BYTES_MAX`] bytes the body stays under
/// [`crate::rpc::RPC_BODY_MAX_BYTES`], so a follower never refuses a batch as too large.
pub const MAX_PAYLOAD_ENTRIES: u64 = 256;
const _: () =
    assert!(MAX_PAYLOAD_ENTRIES as usize * gavel_storage::log_store::ENTRY_BYTES_MAX < crate::rpc::RPC_BODY_MAX_BYTES);

/// The tunable Raft timings, in milliseconds. Defaults as explained in the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftTimings {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub install_snapshot_timeout_ms: u64,
    /// Take a snapshot after this many entries since the last one.
    pub snapshot_every_entries: u64,
    /// Entries kept in the log behind the newest snapshot.
    pub keep_behind_snapshot_entries: u64,
    /// How long adding a node waits for it to acknowledge the log before it is promoted
    /// to voter; past it the node stays a learner and the add answers 503.
    pub learner_catchup_timeout_ms: u64,
}

impl Default for RaftTimings {
    fn default() -> Self {
        RaftTimings {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 200,
            election_timeout_max_ms: 400,
            install_snapshot_timeout_ms: 10_000,
            snapshot_every_entries: 10_000,
            keep_behind_snapshot_entries: 1_000,
            learner_catchup_timeout_ms: 10_000,
        }
    }
}

impl RaftTimings {
    /// Checks the relations openraft and this module rely on; the message says what to fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat_interval_ms == 0 {
            return Err("raft.heartbeat_interval_ms must be > 0".into());
        }
        if self.election_timeout_min_ms < 2 * self.heartbeat_interval_ms {
            return Err(format!(
                "raft.election_timeout_min_ms ({}) must be at least twice raft.heartbeat_interval_ms ({})",
                self.election_timeout_min_ms, self.heartbeat_interval_ms
            ));
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return Err(format!(
                "raft.election_timeout_max_ms ({}) must be greater than raft.election_timeout_min_ms ({})",
                self.election_timeout_max_ms, self.election_timeout_min_ms
            ));
        }
        if self.snapshot_every_entries == 0 {
            return Err("raft.snapshot_every_entries must be > 0".into());
        }
        Ok(())
    }

    /// The openraft `Config` for a cluster named `cluster_name`.
    pub fn to_openraft(&self, cluster_name: &str) -> Result<Arc<Config>, String> {
        self.validate()?;
        let config = Config {
            cluster_name: cluster_name.to_string(),
            // A follower asks whether it could win before it raises its term: a node that
            // was cut off or restarted cannot unseat a healthy leader when it returns.
            enable_pre_vote: Some(true),
            // A restarted node never resumes its old leadership without an election: its
            // read index would be the persisted commit index, possibly behind what it
            // acknowledged before the crash (see the stale-read regression test).
            enable_leader_restore: Some(false),
            broadcast_submitted_on_append: Some(true),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            install_snapshot_timeout: self.install_snapshot_timeout_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every_entries),
            max_in_snapshot_log_to_keep: self.keep_behind_snapshot_entries,
            // × ENTRY_BYTES_MAX (128 KiB) = 32 MiB, under the RPC body limit.
            max_payload_entries: MAX_PAYLOAD_ENTRIES,
            ..Default::default()
        };
        config
            .validate()
            .map(Arc::new)
            .map_err(|e| format!("raft configuration: {e}"))
    }
}
