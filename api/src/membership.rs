//! Knowing when this node is no longer a member of the cluster.
//!
//! openraft gives a removed voter no word of its removal: the leader stops replicating to
//! it as soon as it appends the configuration without it, so the node keeps its last
//! configuration (which names it) and would go on serving stale reads and forwarding
//! writes. So a node that believes it is a member but has heard from no leader for an
//! election timeout asks the other members of its configuration for theirs
//! (`GET /v1/cluster`). A member whose configuration is newer (a higher log index) and
//! does not name this node shows that it was removed. A node may also have received the
//! configuration that removed it before the leader stopped replicating to it: one whose
//! own configuration does not name it, and that hears from no leader, was removed too.
//!
//! A removed node records the index of that configuration durably in `<data_dir>/removed`
//! (so a restart does not bring it back as a member), logs it, answers `/ready` with 503,
//! and answers client routes with 503 `not_a_member`. If its own configuration later names
//! it again at a newer index (it was added back), it is a member again and the file goes.

use openraft::async_runtime::watch::WatchReceiver as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use openraft::ServerState;
use serde_json::Value;
use tokio::sync::watch;

use crate::state::AppState;

/// File in the data dir marking this node as removed (holds the membership log index).
pub const REMOVED_FILE: &str = "removed";
/// How often the watch looks at this node's standing.
pub const MEMBERSHIP_CHECK_MS: u64 = 1_000;
/// How long one peer may take to answer.
const PEER_TIMEOUT_MS: u64 = 1_000;

/// Reads the removal marker of a data dir: the membership log index it was removed at.
pub fn read_marker(data_dir: &Path) -> Option<u64> {
    std::fs::read_to_string(data_dir.join(REMOVED_FILE))
        .ok()
        .and_then(|t| t.trim().parse().ok())
}

fn marker_path(s: &AppState) -> Option<PathBuf> {
    s.data_dir.as_ref().map(|d| d.join(REMOVED_FILE))
}

/// This node's effective configuration: its log index, and whether it names this node.
fn own_membership(s: &AppState) -> (u64, bool) {
    let m = s.raft.metrics().borrow_watched().clone();
    let index = m.membership_config.log_id().map_or(0, |l| l.index);
    let named = m.membership_config.membership().get_node(&s.node_id).is_some();
    (index, named)
}

/// Marks this node removed at membership index `at` (durably) and says so.
fn mark_removed(s: &AppState, at: u64, by: u64) {
    if s.removed_at.swap(at, Ordering::Relaxed) == at {
        return;
    }
    if let Some(path) = marker_path(s) {
        if let Err(e) = gavel_storage::fsutil::write_durably(&path, format!("{at}\n").as_bytes()) {
            tracing::error!(error = %e, "could not record the removal in the data dir");
        }
    }
    tracing::warn!(
        node = s.node_id,
        membership_index = at,
        seen_at = by,
        "this node is no longer a member of the cluster: it is not ready and answers clients \
         with 503 not_a_member. To bring it back, wipe its data dir and add it again \
         (POST /v1/cluster/nodes)"
    );
}

fn clear_removed(s: &AppState, index: u64) {
    if s.removed_at.swap(0, Ordering::Relaxed) == 0 {
        return;
    }
    if let Some(path) = marker_path(s) {
        let _ = std::fs::remove_file(&path);
        if let Some(dir) = path.parent() {
            let _ = gavel_storage::fsutil::sync_dir(dir);
        }
    }
    tracing::info!(membership_index = index, "this node is a member of the cluster again");
}

/// Watches this node's standing until `stop`; see the module docs.
pub async fn run_membership_watch(s: AppState, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(MEMBERSHIP_CHECK_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        check(&s).await;
    }
}

async fn check(s: &AppState) {
    let (index, named) = own_membership(s);
    let removed_at = s.removed_at.load(Ordering::Relaxed);
    if removed_at != 0 {
        if named && index > removed_at {
            clear_removed(s, index);
        }
        return;
    }
    // A node that hears from a leader, or is one, has nothing to check.
    let m = s.raft.metrics().borrow_watched().clone();
    let heard_recently = s
        .door
        .contact
        .elapsed_ms()
        .is_some_and(|ms| ms <= s.raft.config().election_timeout_max);
    if m.state == ServerState::Leader || heard_recently {
        return;
    }
    if !named {
        // A fresh or joining node has no configuration yet (index 0). One that holds a
        // configuration without itself and hears from no leader received the change that
        // removed it before the leader stopped replicating to it.
        if index > 0 {
            mark_removed(s, index, s.node_id);
        }
        return;
    }
    let peers: Vec<(u64, String)> = m
        .membership_config
        .membership()
        .nodes()
        .filter(|(id, _)| **id != s.node_id)
        .map(|(id, node)| (*id, node.addr.clone()))
        .collect();
    for (peer, addr) in peers {
        let answer = s
            .client
            .get(format!("{}://{addr}/v1/cluster", s.scheme))
            .timeout(Duration::from_millis(PEER_TIMEOUT_MS))
            .send()
            .await;
        let Ok(answer) = answer else { continue };
        let Ok(info) = answer.json::<Value>().await else {
            continue;
        };
        let Some(their_index) = info["membership_log_index"].as_u64() else {
            continue;
        };
        let names_us = info["members"]
            .as_array()
            .is_some_and(|members| members.iter().any(|m| m["id"].as_u64() == Some(s.node_id)));
        if their_index > index && !names_us {
            mark_removed(s, their_index, peer);
            return;
        }
    }
}
